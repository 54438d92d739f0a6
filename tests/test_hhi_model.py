"""Study C: the CLIP-prefix captioner (single process and DDP under torchrun), the metric aggregation rules,
and the hhi_benchmark paper notebook at the smoke profile."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings as hsettings, strategies as S

from hhperc.hhi import metrics as HM
from hhperc.models import WordVectors

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["_ hugging _", "_ shaking hands with _", "_ kissing _"]
# a fast text pipeline for the notebook test (the integration, not the quality, is under test)
FAST_TEXT = ["smoke.hhi_summarizer_min_steps=80", "smoke.hhi_heldout=10"]


def _images(folder: Path, n: int = 6) -> pd.DataFrame:
    from PIL import Image
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    rows = []
    for i in range(n):
        d = folder / "data" / f"{i:06d}"; d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.tile(np.array(colours[i % 3], np.uint8), (32, 32, 1))).save(d / "image.jpg")
        rows.append(dict(id=f"{i:06d}", pseudolabel=LABELS[i % 3], weight=1.0))
    return pd.DataFrame(rows)


def _cli_args(tmp_path, df):
    df.to_csv(tmp_path / "phhi.csv", index=False)
    return ["--labels", str(tmp_path / "phhi.csv"), "--images", str(tmp_path / "ww"), "--profile", "smoke",
            "--set", "models.clip=tiny", "--set", "models.decoder=tiny", "--set", f"run.cache={tmp_path / 'cache'}",
            "--set", "run.device=cpu"]


def test_captioner_cli_trains_saves_and_resumes(tmp_path):
    from hhperc.hhi.commands import hhi_captioner_main
    from hhperc.hhi.captioner import load_bundle, predict_clipcap
    df = _images(tmp_path / "ww")
    args = _cli_args(tmp_path, df) + ["--out", str(tmp_path / "out")]
    assert hhi_captioner_main(args) == 0
    ck = list((tmp_path / "out" / "checkpoints").glob("clipcap-*.ckpt"))
    assert len(ck) == 1
    b = load_bundle(tmp_path / "out" / "captioner")
    p = predict_clipcap(b, [tmp_path / "ww" / "data" / "000000" / "image.jpg"], ids=["x"], num_beams=4, num_return=2)
    assert list(p["rank"]) == [1, 2] and p["prediction"].str.len().gt(0).all()
    # a second run finds the finished checkpoint: no training, same loss history
    mtime = ck[0].stat().st_mtime_ns
    assert hhi_captioner_main(args) == 0
    assert ck[0].stat().st_mtime_ns == mtime


def test_captioner_bad_labels_file(tmp_path):
    from hhperc.formats import FormatError
    from hhperc.hhi.commands import hhi_captioner_main
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FormatError, match="bad.csv"):
        hhi_captioner_main(["--labels", str(tmp_path / "bad.csv"), "--images", str(tmp_path), "--out", str(tmp_path / "o")])


@pytest.mark.slow
def test_captioner_ddp_under_torchrun(tmp_path):
    "Two gloo processes train one model (DistributedSampler + DDP); rank 0 saves it."
    df = _images(tmp_path / "ww", 8)
    args = _cli_args(tmp_path, df) + ["--out", str(tmp_path / "ddp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
                        "-m", "hhperc.hhi.commands", *args], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "ddp" / "captioner" / "captioner.json").exists()
    assert r.stdout.count("captioner saved") == 1          # only rank 0 writes


# ---- metric aggregation rules, on random scored predictions ----

@S.composite
def scored(draw):
    n_items = draw(S.integers(3, 9))
    rows = []
    for i in range(n_items):
        src = ["ww", "cc", "coco"][i % 3]
        for r in range(draw(S.integers(1, 8))):
            vals = draw(S.lists(S.floats(0, 1, allow_nan=False), min_size=4, max_size=4))
            rows.append(dict(source=src, id=f"i{i}", rank=r + 1, **dict(zip(HM.METRICS, vals))))
    return pd.DataFrame(rows)


@hsettings(max_examples=40, deadline=None)
@given(scored())
def test_aggregation_rules(d):
    items = {k: HM.aggregate_items(d, k).set_index("id") for k in (1, 5, 8)}
    for i, g in d.groupby("id"):
        g = g.sort_values("rank")
        for k, it in items.items():
            top = g.head(k)
            assert np.isclose(it.loc[i, "similarity"], top.similarity.max())
            assert np.isclose(it.loc[i, "bleurt"], top.bleurt.max())
            assert np.isclose(it.loc[i, "p_entail"], top.p_entail.max())
            assert np.isclose(it.loc[i, "p_contradict"], top.p_contradict.min())
        # more beams never lower the max metrics nor raise P(contradict)
        assert items[8].loc[i, "similarity"] >= items[1].loc[i, "similarity"]
        assert items[8].loc[i, "p_contradict"] <= items[1].loc[i, "p_contradict"]
    summ = HM.summarise(pd.concat(items.values()).reset_index()).set_index(["source", "beams", "metric"])["value"]
    for k in (1, 5, 8):
        per_source = [items[k][items[k].source == s].similarity.mean() for s in ("ww", "cc", "coco")]
        assert np.isclose(summ[("overall", k, "similarity")], np.mean(per_source))   # unweighted mean of source means


def test_missing_models_are_missing_not_zero():
    bench = pd.DataFrame(dict(source=["ww", "cc", "coco"], id=["a", "b", "c"], label=LABELS, caption=["_ hugs _"] * 3))
    pred = pd.DataFrame(dict(id=["a", "b", "c"], rank=1, prediction=LABELS))
    words = WordVectors(table={"hugging": np.array([1.0, 0]), "shaking": np.array([0, 1.0])})
    out = HM.score(pred, bench, HM.Scorers(words=words, notes={"bleurt": "missing: no BLEURT here"}), beams=(1,))
    miss = out[out.metric != "similarity"]
    assert miss.value.isna().all() and miss.note.str.startswith("missing").all()
    sim = out[(out.metric == "similarity")].set_index("source").value
    assert sim["coco"] == 0.0 and np.isclose(sim["ww"], 1.0)      # "kissing" has no vector -> 0, never NaN


# ---- the paper notebook ----

def test_hhi_benchmark_notebook_smoke(run_paper, tmp_path):
    preds = pd.DataFrame(dict(method=["CoFormer"] * 2, id=["ww_00001", "ww_00001"], rank=[1, 2],
                              prediction=["_ shaking hands with _", "_ hugging _"]))
    preds.to_csv(tmp_path / "preds.csv", index=False)
    out = run_paper("hhi_benchmark", tmp_path / "out", overrides=FAST_TEXT, predictions_csv=str(tmp_path / "preds.csv"))
    t = pd.read_csv(out / "tables" / "hhi_benchmark.csv")
    rows = set(t["row"])
    assert {"Extractor (rules)", "Summariser (text)", "CLIPCap (pHHI)", "CoFormer"} <= rows
    # the paper's baselines run on tiny checkpoints in ClipCap's layout, labelled tiny
    baselines = {"CLIPCap (COCO)", "CLIPCap (CC)", "CLIPCap (CC+WW)", "CLIPCap (CC+pHHI)", "EncDec (pHHI)"}
    assert baselines <= rows
    assert t["paper"].isna().all()
    for r in baselines | {"CLIPCap (pHHI)"}:
        assert set(t.loc[t.row == r, "mode"]) == {"synthetic+tiny"}, r
    # several interactions per image: post-filtered and diverse beams, for every image model
    for how in ("post-filter", "diverse beams"):
        for m in ("recall", "distinct", "dissimilarity"):
            got = set(t.loc[t.metric == f"{m}@k3 {how}", "row"])
            assert baselines | {"CLIPCap (pHHI)"} <= got, (m, how, got)
    d = t[t.metric.str.startswith("distinct@k3")]
    assert ((d.value.dropna() > 0) & (d.value.dropna() <= 1)).all() and d.value.notna().any()
    assert t.loc[t.metric.str.startswith("bleurt"), "value"].isna().all()        # no BLEURT model offline
    assert {"similarity@1", "similarity@5", "similarity@8", "p_entail@8", "coverage"} <= set(t.metric)
    assert {"ww", "cc", "coco", "overall", "imsitu"} <= set(t.variant)
    cov = t[(t.row == "CoFormer") & (t.metric == "coverage") & (t.variant == "ww")].value.iloc[0]
    assert 0 < cov < 1                                                            # one of the ww items predicted
    assert (out / "models" / "clipcap_phhi" / "captioner.json").exists()
