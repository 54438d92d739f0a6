"""Benchmark: interaction extraction, captions/s on 10,000 synthetic captions (rule-based extractor; spaCy when installed).

Baseline measured in the same run: a regex that only finds the word after the first name (the least any
extractor must do), so the ratio says what the full rules cost."""
import re
import time


def main(n: int = 10_000):
    from hhperc.hhi.text import extract_interactions, extractor_method, heldout_captions, label_scores, verb_lemma, gerund
    ho = heldout_captions(n, seed=123)
    caps, gold = ho.caption.tolist(), ho.label.tolist()
    extract_interactions("[NAME] hugs [NAME].")                # load lemminflect's tables (once per process)
    verb_lemma.cache_clear(); gerund.cache_clear()             # time the rules, not a warm memo
    t = time.perf_counter()
    base = [re.findall(r"\[NAME\] (\w+)", c)[:1] for c in caps]
    t_base = time.perf_counter() - t
    t = time.perf_counter()
    preds = [extract_interactions(c) for c in caps]
    t_ex = time.perf_counter() - t
    sc = label_scores([(p or [""])[0] for p in preds], gold)
    print(f"extractor: {extractor_method()}")
    print(f"captions: {n}")
    print(f"extraction_captions_per_s: {n / t_ex:.0f}")
    print(f"baseline_regex_captions_per_s: {n / t_base:.0f}")
    print(f"ratio_extraction_vs_regex: {t_base / t_ex:.3f}")
    print(f"extraction_exact_match: {sc['exact_match']:.3f}")
    print(f"extraction_verb_accuracy: {sc['verb_accuracy']:.3f}")
    print(f"extraction_coverage: {sc['coverage']:.3f}")


if __name__ == "__main__":
    main()
