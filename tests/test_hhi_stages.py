"""Study C, steps 2 and 3 (PAPERS.md C.2, C.3): the authors' stage A / stage B rules and the pair filters, each
against a hand-written example (TAU-VAILab/learning-interactions: generate_new_interactions.py,
generate_new_captions.py, filter_new_captions.py, postprocess_pseudolabels.py)."""
import re
from collections import Counter

import pandas as pd
import pytest

from hhperc.hhi import pairs as P, pseudolabels as PL, text as T
from hhperc.hhi.extract import normalise_interaction
from hhperc.hhi.synth import FIRST_NAMES, random_names


# ---- stage A: one line, the authors' check_output rules
@pytest.mark.parametrize("line,why", [
    ("Alex hugging Bailey", None),
    ("Alex giving Bailey a hug", None),
    ("Bailey hugging Alex", "not 'Alex ... Bailey'"),
    ("Alex hugging Alex and Bailey", "a name twice"),
    ("Alex hugging Bailey in Paris", "another capital letter"),          # a named place
    ("Alex introducing Bailey to Charlie", "another capital letter"),    # a third person
    ("Alex near Bailey", "no 'ing'"),
    ("Alex handing Bailey the", "ends in 'the'/'a'"),
    ("Alex giving Bailey a", "ends in 'the'/'a'"),
])
def test_stage_a_rules(line, why):
    assert P.stage_a_reason(line) == why


def test_stage_a_stops_at_the_line_end():
    c = Counter()
    assert P.filter_stage_a("Alex kissing Bailey\nAlex tickling Bailey\n", counts=c) == ["Alex kissing Bailey"]
    assert P.filter_stage_a("\nAlex kissing Bailey", counts=c) == ["Alex kissing Bailey"]    # leading blank stripped, as theirs
    assert P.filter_stage_a("Alex near Bailey\nAlex hugging Bailey", counts=c) == []          # the second line is never read
    assert c == Counter({"kept": 2, "no 'ing'": 1})


class _Tok:                                       # a GPT-2-like tokenizer: the line end is one token, 198
    pad_token_id, eos_token_id, padding_side, truncation_side = 0, 50256, "right", "right"
    def __call__(self, texts, **kw):
        import torch
        if texts == "\n": return {"input_ids": [198]}
        n = len(texts)
        return {"input_ids": torch.ones(n, 4, dtype=torch.long), "attention_mask": torch.ones(n, 4, dtype=torch.long)}
    def batch_decode(self, ids, **kw): return [""] * len(ids)


def _lm():
    import torch
    from types import SimpleNamespace
    class LM(torch.nn.Module):
        config = SimpleNamespace(max_position_embeddings=2048)
        def __init__(self): super().__init__(); self.w = torch.nn.Parameter(torch.zeros(1)); self.calls = []
        def generate(self, input_ids, **kw): self.calls.append(kw); return torch.cat([input_ids, input_ids], 1)
    return LM()


def test_generation_ends_at_a_line_end_and_stage_b_blocks_repeated_trigrams():
    lm = _lm()
    P.generate(lm, _Tok(), ["Alex hugging Bailey\n"], P.STAGE_A_SAMPLING)
    P.generate(lm, _Tok(), ["Caption of image showing x:\n"], P.STAGE_B_SAMPLING)
    a, b = lm.calls
    assert a["eos_token_id"] == b["eos_token_id"] == 198                       # the newline is the stop token
    assert (a["temperature"], a["top_p"], a["no_repeat_ngram_size"], a["max_new_tokens"]) == (1.0, 0.95, 3, 200)
    assert (b["temperature"], b["top_p"], b["no_repeat_ngram_size"], b["max_new_tokens"]) == (0.7, 0.95, 3, 200)
    assert P.newline_id(_Tok()) == 198


# ---- stage B: random names per sample, caption must contain them as words
def test_stage_b_names_each_sample_and_each_example():
    ex = [("_ hugging _", "[NAME] hugs [NAME] at the airport."), ("_ waving to _", "[NAME] waves to [NAME].")]
    inter, names, prompt = P.stage_b_sample(ex, "_ kissing _", seed=11, k=2)
    assert inter == f"{names[0]} kissing {names[1]}" and set(names) <= set(FIRST_NAMES)
    blocks = prompt.split("\n\n")
    assert len(blocks) == 3 and blocks[-1] == f"Caption of image showing {inter}:\n"
    seen = []
    for b in blocks[:2]:
        head, cap = b.split(":\n")
        who = re.findall(r"[A-Z][a-z]+", head.replace("Caption of image showing", ""))
        assert len(who) == 2 and cap.split()[0] == who[0] and who[1] in cap
        seen.append(tuple(who))
    assert len(set(seen + [tuple(names)])) == 3                               # fresh names for every example and the query
    assert P.stage_b_sample(ex, "_ kissing _", seed=12, k=2)[1] != names


@pytest.mark.parametrize("text,names,want", [
    ("Olivia kisses Simon at the gala.\nCaption of image showing", ["Olivia", "Simon"], "Olivia kisses Simon at the gala."),
    ("Olivia kisses her husband.", ["Olivia", "Simon"], None),               # one name missing
    ("Olivian kisses Simon.", ["Olivia", "Simon"], None),                    # a name inside a word is no name
    ("", ["Olivia", "Simon"], None),
])
def test_stage_b_caption_rule(text, names, want):
    assert P.filter_stage_b(text, names) == want


def test_llm_stages_end_to_end_with_a_scripted_model(tmp_path, monkeypatch):
    """Stages A and B with a scripted LLM: the stage A line is masked back to a label, stage B names its query with
    random names the caption must contain, and a second run generates nothing."""
    calls = []
    def scripted(model, tok, prompts, sampling, seed=0, device=None, stop_at_newline=True):
        calls.append((sampling["temperature"], len(prompts)))
        out = []
        for p in prompts:
            m = re.search(r"Caption of image showing (\w+) (.*) (\w+):\n$", p)
            if m: out.append(f"{m.group(1)} and {m.group(3)} are seen together.\n")
            else: out.append("Alex tickling Bailey\n" if "hugging" in p.splitlines()[0] else "Alex near Bailey\n")
        return out
    monkeypatch.setattr(P, "generate", scripted)
    labels = ["_ hugging _", "_ waving to _", "_ kissing _"]
    ex = [("_ hugging _", "[NAME] hugs [NAME].")]
    store = P.PairStore(tmp_path / "s.jsonl")
    pairs, counts = P.llm_pairs(None, None, labels, ex, n_prompts=6, store=store, k=1)
    n_a = sum(1 for t, _ in calls if t == 1.0)
    assert n_a >= 1 and counts["kept"] >= 1 and counts["kept"] + counts["no 'ing'"] == 6
    assert len(pairs) == 1 and counts["stage B kept"] == 1                    # six prompts, one distinct kept label
    row = pairs.iloc[0]
    assert row.interaction == f"{row.names[0]} tickling {row.names[1]}" and set(row.names) <= set(FIRST_NAMES)
    assert row.caption.startswith(f"{row.names[0]} and {row.names[1]}")
    calls.clear()
    pairs2, _ = P.llm_pairs(None, None, labels, ex, n_prompts=6, store=P.PairStore(tmp_path / "s.jsonl"), k=1)
    assert calls == [] and pairs2.equals(pairs)


# ---- the filters of C.3
@pytest.mark.parametrize("raw,want", [
    ("Alex and Bailey shaking hands", "_ shaking hands with _"),
    ("Alex & Bailey shaking hands", "_ shaking hands with _"),
    ("Alex, and Bailey dancing", "_ dancing with _"),                       # a list of two
    ("Alex with Bailey walking the dog", "_ walking the dog with _"),
    ("Alex is hugging Bailey", "_ hugging _"),
    ("Alex hugging Bailey", "_ hugging _"),
    ("Alex’s son hugging Bailey", "_'s son hugging _"),                     # curly apostrophe, as theirs
])
def test_normalisation(raw, want):
    assert normalise_interaction(raw, ["Alex", "Bailey"]) == want


@pytest.mark.parametrize("raw,unknown", [
    ("Olivia hugging Simon", None), ("Olivia patting Simon's back", None),
    ("Olivia hugging Simon at the Louvre", "Louvre"), ("Olivia hugging Peter", "Peter"),
])
def test_unknown_name_rule(raw, unknown):
    assert P.unknown_name(raw, ["Olivia", "Simon"]) == unknown


def test_filter_pairs_rule_by_rule():
    nm = ["Olivia", "Simon"]
    rows = [("Olivia hugging Simon", None), ("Olivia posing for a photo with Simon", "photo/image/picture"),
            ("Olivia hugging Simon at the Louvre", "unknown name"), ("Olivia and Simon smiling in this", "in this"),
            ("Olivia hugging Simon and Ethan", "unknown name"), ("Olivia at the gala with Simon", "no verb"),
            ("Olivia and Simon fighting for the ball", None)]
    df = pd.DataFrame(dict(interaction=[r for r, _ in rows], caption=["c"] * len(rows), names=[nm] * len(rows)))
    kept, c = P.filter_pairs(df, strip_pps=True)
    assert kept.target.tolist() == ["_ hugging _", "_ fighting with _"]
    assert c == Counter({"total": 7, "kept": 2, "unknown name": 2, "photo/image/picture": 1, "in this": 1, "no verb": 1})
    df3 = pd.DataFrame(dict(interaction=["Olivia hugging Simon and Ethan"], caption=["c"], names=[["Olivia", "Simon", "Ethan"]]))
    assert P.filter_pairs(df3)[1]["more than two names"] == 1


# ---- one pool of names, per sample, for the pairs and the pseudo-labels
def test_one_name_pool_for_training_and_pseudo_labelling():
    gp = P.grammar_pairs(40, seed=1)
    assert all(set(n) <= set(FIRST_NAMES) for n in gp.names) and gp.names.map(tuple).nunique() > 30
    seen = []
    PL.pseudo_label(pd.DataFrame(dict(id=["1", "2"], caption=["[NAME] hugs [NAME].", "[NAME] greets [NAME] in Rome."])),
                    lambda cs: seen.extend(cs) or ["x"] * len(cs))
    used = [re.findall(r"[A-Z][a-z]+", c) for c in seen]
    assert all(set(u) - {"Rome"} <= set(FIRST_NAMES) for u in used) and used[0] != used[1][:2]
    assert PL.caption_names("[NAME] hugs [NAME].") == random_names(2, "caption:[NAME] hugs [NAME].")


# ---- train split only; benchmark ids and the ignore list out of pHHI
def test_seed_captions_come_from_the_train_split():
    ww = pd.DataFrame(dict(caption=["a", "b", "c", "d"], split=["train", "val", "test", "train"]))
    res = {}
    assert T._train_captions(ww, res) == ["a", "d"] and res["pair_seed_captions"] == dict(split="train", n=2)
    assert T._train_captions(ww.assign(split=""), {}) == ["a", "b", "c", "d"]      # no split given: all


def test_benchmark_ids_and_ignore_list_are_excluded(tmp_path):
    ign = tmp_path / "ignore.txt"; ign.write_text("000004\n# comment\n\n")
    bench = pd.DataFrame(dict(source=["ww", "cc", "ww"], id=["000002", "000003", "000009"]))
    ex = PL.excluded_ids(bench, ign)
    assert ex == {"000002", "000009", "000004"}
    df = pd.DataFrame(dict(id=[f"00000{i}" for i in range(1, 6)], caption=[f"[NAME] hugs [NAME] {i}." for i in range(1, 6)]))
    seen = []
    ph = PL.pseudo_label(df, lambda cs: seen.extend(cs) or [f"{c.split()[0]} hugging {c.split()[2]}" for c in cs], exclude_ids=ex)
    assert ph.id.tolist() == ["000001", "000003", "000005"] and ph.attrs["excluded"] == 2 and len(seen) == 3
