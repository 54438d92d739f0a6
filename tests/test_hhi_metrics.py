"""Study C metrics: GloVe vectors from a text file (a GloVe-format fixture written here), the MiniLM fallback
labelled, NLI / BLEURT inputs at the model's own limit, the several-interactions metric against an independent
reference, and the Waldo and Wenda reader counting bad lines."""
import itertools

import numpy as np
import pandas as pd
import pytest

from hhperc.hhi import metrics as HM
from hhperc.hhi.formats import read_waldo_wenda

GLOVE = ("hugging 0.1 0.9 0.0 0.2\n"           # glove.6B.*d.txt layout: word, then the numbers, one space apart
         "embracing 0.2 0.8 0.1 0.2\n"
         "kicking 0.9 -0.1 0.3 0.0\n"
         "shaking 0.0 0.1 0.9 0.4\n")


def _cos(a, b):
    a, b = np.array(a), np.array(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_glove_text_file_gives_paper_similarity(tmp_path):
    (tmp_path / "glove.toy.4d.txt").write_text(GLOVE)
    s = HM.load_scorers(word_vectors=str(tmp_path / "glove.toy.4d.txt"), nli="", bleurt="")
    assert s.modes["similarity"] == "real" and "similarity" not in s.notes
    bench = pd.DataFrame(dict(source=["ww", "cc", "coco"], id=["a", "b", "c"],
                              label=["_ hugging _", "_ shaking hands with _", "_ kicking _"], caption=["x"] * 3))
    pred = pd.DataFrame(dict(id=["a", "a", "b", "c"], rank=[1, 2, 1, 1],
                             prediction=["_ kicking _", "_ embracing _", "_ dancing with _", "_ kicking _"]))
    out = HM.score(pred, bench, s, beams=(1, 5)).set_index(["source", "beams", "metric"])["value"]
    want_a1 = _cos([0.9, -0.1, 0.3, 0.0], [0.1, 0.9, 0.0, 0.2])
    want_a5 = max(want_a1, _cos([0.2, 0.8, 0.1, 0.2], [0.1, 0.9, 0.0, 0.2]))
    assert np.isclose(out[("ww", 1, "similarity")], want_a1) and np.isclose(out[("ww", 5, "similarity")], want_a5)
    assert out[("cc", 1, "similarity")] == 0.0                     # "dancing" has no vector: 0, as the paper
    assert np.isclose(out[("overall", 5, "similarity")], (want_a5 + 0.0 + 1.0) / 3)


def test_minilm_fallback_is_labelled():
    s = HM.load_scorers(word_vectors="bundled", nli="", bleurt="")
    assert s.modes["similarity"] == "bundled" and "MiniLM" in s.notes["similarity"]


def test_nli_and_bleurt_read_up_to_the_model_limit():
    import torch
    from hhperc.models import load_nli, load_bleurt
    m, t, ids = load_nli("tiny")
    limit = min(t.model_max_length, m.config.max_position_embeddings)
    assert HM.input_limit(m, t) == limit
    premise = " ".join(f"w{i}" for i in range(600))               # longer than any limit
    seen = []
    orig = m.forward
    def spy(*a, **kw): seen.append(kw["input_ids"].shape[1]); return orig(*a, **kw)
    m.forward = spy
    HM.nli_scorer(m, t, ids)([premise], ["_ hugging _"])
    assert seen == [limit]
    bm, bt = load_bleurt("tiny")
    seen_b = []
    orig_b = bm.forward
    def spy_b(*a, **kw): seen_b.append(kw["input_ids"].shape[1]); return orig_b(*a, **kw)
    bm.forward = spy_b
    HM.bleurt_scorer(bm, bt)([premise], ["person hugging person"])
    assert seen_b == [HM.input_limit(bm, bt)] and seen_b[0] != 256


def _reference_several(pred, bench, k, vec):
    "Independent: per item, walk the ranks, collect new verbs up to k, then average per source."
    items = {}
    for _, b in bench.iterrows():
        rows = pred[pred.id == b.id].sort_values("rank")
        verbs = []
        for p in rows.prediction:
            w = p.split()[1].lower() if len(p.split()) > 1 else p.lower()
            if w and w not in verbs: verbs.append(w)
            if len(verbs) == k: break
        if not verbs: continue
        gold = b.label.split()[1].lower() if len(b.label.split()) > 1 else b.label.lower()
        pairs = list(itertools.combinations(verbs, 2))
        dis = np.mean([1 - _cos(vec[x], vec[y]) for x, y in pairs]) if pairs else np.nan
        items.setdefault(b.source, []).append((float(gold in verbs), len(verbs) / k, dis))
    return {s: np.nanmean(np.array(v, dtype=float), axis=0) for s, v in items.items()}


def test_several_interactions_against_reference():
    from hhperc.models import WordVectors
    rng = np.random.default_rng(3)
    verbs = ["hugging", "kissing", "talking", "walking", "carrying"]
    vec = {v: rng.normal(size=5) for v in verbs}
    bench = pd.DataFrame(dict(source=[["ww", "cc", "coco"][i % 3] for i in range(12)], id=[f"i{i}" for i in range(12)],
                              label=[f"_ {verbs[i % 5]} _" for i in range(12)]))
    rows = [dict(id=f"i{i}", rank=r + 1, prediction=f"_ {rng.choice(verbs)} with _") for i in range(11) for r in range(8)]
    pred = pd.DataFrame(rows)
    for k in (1, 3):
        got = HM.several_interactions(pred, bench, k, WordVectors(table=vec)).set_index(["source", "metric"])["value"]
        ref = _reference_several(pred, bench, k, vec)
        for s in ("ww", "cc", "coco"):
            assert np.isclose(got[(s, "recall")], ref[s][0]) and np.isclose(got[(s, "distinct")], ref[s][1])
            if k > 1: assert np.isclose(got[(s, "dissimilarity")], ref[s][2])
        assert np.isclose(got[("overall", "recall")], np.mean([ref[s][0] for s in ("ww", "cc", "coco")]))
    miss = HM.several_interactions(pred, bench, 3).set_index(["source", "metric"])
    assert miss.loc[("coco", "recall"), "n_missing"] == 1             # i11 (source coco) has no prediction


def test_waldo_wenda_reader_counts_bad_lines(tmp_path):
    # the released layout (FORMATS.md section 4): source,id,label,caption,url; one caption with an unquoted comma
    (tmp_path / "waldo_wenda.csv").write_text(
        "source,id,label,caption,url\n"
        "ww,000017,_ shaking hands with _,[NAME] shakes hands with [NAME] in Paris.,https://x/000017.jpg\n"
        "coco,000018,_ hugging _,a man hugs his son, at the airport,https://x/000018.jpg\n"
        '"cc","000019","_ talking to _","Two people, talking, on a bench","https://x/000019.jpg"\n')
    df = read_waldo_wenda(tmp_path / "waldo_wenda.csv")
    assert df.id.tolist() == ["000017", "000019"]
    rep = df.attrs["report"]
    assert rep.skipped == 1 and rep.reasons == {"bad line": 1} and "coco" in rep.examples[0][0]
