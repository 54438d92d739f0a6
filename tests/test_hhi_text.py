"""Study C text pipeline: formats, synthetic world, extraction, filters, weights, the summariser (training, resume), CLI and the pHHI paper notebook."""
import json, os, signal, subprocess, sys, time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hhperc.formats import FormatError
from hhperc.hhi.formats import read_phhi, read_waldo_wenda, read_whos_waldo, read_imsitu_hhi, write_whos_waldo_sample
from hhperc.hhi import text as hhi
from hhperc.hhi import pairs as hhi_pairs


def test_prompt_formats():
    labels = ["_ hugging _", "_ shaking hands with _", "_ helping _ up"]
    p = hhi.stage_a_prompt(labels, seed=0)
    lines = p.splitlines()
    assert len(lines) == 10 and p.endswith("\n")
    assert set(lines) <= {"Alex hugging Bailey", "Alex shaking hands with Bailey", "Alex helping Bailey up"}
    q = hhi.stage_b_prompt([("Alex hugging Bailey", "Alex hugs Bailey."), ("Alex kissing Bailey", "Alex kisses Bailey.")],
                           "Alex waving to Bailey")
    assert q == ("Caption of image showing Alex hugging Bailey:\nAlex hugs Bailey.\n\n"
                 "Caption of image showing Alex kissing Bailey:\nAlex kisses Bailey.\n\n"
                 "Caption of image showing Alex waving to Bailey:\n")
    assert hhi.STAGE_A_SAMPLING["no_repeat_ngram_size"] == 3 and hhi.STAGE_A_SAMPLING["max_new_tokens"] == 200
    assert hhi.STAGE_A_SAMPLING["temperature"] == 1.0 and hhi.STAGE_B_SAMPLING["temperature"] == 0.7


@pytest.mark.parametrize("line,reason", [
    ("Alex hugging Bailey", None),
    ("Bailey hugging Alex", "not 'Alex ... Bailey'"),
    ("Alex hugging Alex and Bailey", "a name twice"),
    ("Alex near Bailey", "no 'ing'"),
])
def test_stage_a_rules(line, reason):
    assert hhi.stage_a_reason(line) == reason


def test_stage_b_rule():
    assert hhi.filter_stage_b("Alex hugs Bailey.\n\nCaption of", ["Alex", "Bailey"]) == "Alex hugs Bailey."
    assert hhi.filter_stage_b("Alex smiles.", ["Alex", "Bailey"]) is None


@pytest.mark.parametrize("raw,label,reason", [
    ("Alex hugging Bailey", "_ hugging _", None),
    ("Alex and Bailey shaking hands", "_ shaking hands with _", None),
    ("Alex and Bailey at the gala", "_ at the gala with _", "no verb"),
    ("Alex posing for a picture with Bailey", "_ posing for a picture with _", "photo/image/picture"),
    ("Alex hugging Bailey and Charlie", "_ hugging _ and _", "more than two names"),
    ("Alex hugging", "_ hugging", "not the form"),
])
def test_filter_rules(raw, label, reason):
    got = hhi.normalise_interaction(raw, ["Alex", "Bailey", "Charlie"])
    assert got == label and hhi.filter_reason(got) == reason
    assert hhi.is_valid_interaction(got) == (reason is None)


def test_filter_pairs_counts_and_nli_rule(monkeypatch):
    pairs = pd.DataFrame(dict(interaction=["Alex hugging Bailey", "Alex posing for a photo with Bailey", "Alex kissing Bailey at noon"],
                              caption=["Alex hugs Bailey.", "x", "Alex kisses Bailey at noon."], names=[["Alex", "Bailey"]] * 3))
    kept, c = hhi.filter_pairs(pairs)
    assert kept.target.tolist() == ["_ hugging _", "_ kissing _ at noon"] and c["photo/image/picture"] == 1
    kept, _ = hhi.filter_pairs(pairs, strip_pps=True)
    assert kept.target.tolist() == ["_ hugging _", "_ kissing _"]

    # the entailment rule: P(entail) = 0.9 for the first pair, 0.2 for the others
    monkeypatch.setattr(hhi_pairs, "nli_entailment", lambda nli, p, h, batch_size=16: np.array([0.9, 0.2, 0.2]))
    kept, c = hhi.filter_pairs(pairs, nli=object())
    assert kept.target.tolist() == ["_ hugging _"] and c["not entailed"] == 2


def test_weight_formula():
    labels = ["_ a _"] * 3 + ["_ b _"]
    caps = ["x", "x", "y", "z"]
    w = hhi.phhi_weights(labels, caps)
    base = np.array([3 ** -0.25] * 3 + [1.0])
    base /= base.mean()
    np.testing.assert_allclose(w, base / np.array([2, 2, 1, 1]))
    with pytest.raises(ValueError):
        hhi.phhi_weights(["a"], [])


def test_extractor_on_synthetic_benchmark():
    ho = hhi.heldout_captions(300, seed=5)
    sc = hhi.label_scores(hhi.extractor_predictions(ho.caption.tolist()), ho.label.tolist())
    assert 0.55 < sc["exact_match"] < 0.95 and sc["coverage"] < 1


def test_world_round_trip_and_bad_records(tmp_path):
    from hhperc.hhi.synth import make_interactions
    w = make_interactions(tmp_path / "w", "smoke", seed=1)
    ww = read_whos_waldo(w["whos_waldo"])
    assert len(ww) == 60 and ww.attrs["report"].skipped == 0
    assert len(read_waldo_wenda(w["waldo_wenda_csv"])) == 10 and len(read_imsitu_hhi(w["imsitu_list"])) == 12
    d = Path(w["whos_waldo"]) / "data"
    (d / "000001" / "coreferences.json").write_text("[[[0, 6]")                 # truncated JSON
    (d / "000002" / "caption.txt").unlink()                                        # missing caption
    (d / "._000003").write_text("junk")
    ww = read_whos_waldo(w["whos_waldo"])
    r = ww.attrs["report"]
    assert len(ww) == 58 and r.reasons == {"bad json": 1, "missing caption.txt": 1, "junk file": 1}
    with pytest.raises(FormatError, match="Who's Waldo"):
        read_whos_waldo(w["waldo_wenda_csv"])
    with pytest.raises(FormatError, match="pHHI"):
        read_phhi(w["waldo_wenda_csv"])


def test_cli_extract_and_pairs(cli, tmp_path):
    r = cli("hhi", "extract", "--caption", "[NAME], the mayor, shakes hands with [NAME] in Oslo.")
    assert "_ shaking hands with _" in r.stdout
    out = tmp_path / "pairs.csv"
    r = cli("hhi", "pairs", "--profile", "smoke", "--out", out, "--n", 50)
    df = pd.read_csv(out)
    assert "grammar" in r.stdout and len(df) > 30 and df.target.map(hhi.is_valid_interaction).all()


def test_paper_notebook_smoke(run_paper, tmp_path):
    out = run_paper("hhi_pseudolabels", tmp_path / "out")
    ph = read_phhi(out / "data" / "phhi.csv")
    assert len(ph) > 0 and ph.attrs["report"].skipped == 0
    assert ph.pseudolabel.map(hhi.is_valid_interaction).all()
    t = pd.read_csv(out / "tables" / "hhi_pseudolabels.csv")
    assert set(t["mode"]) == {"synthetic+tiny"}
    assert {"held-out synthetic captions", "weights", "top verbs", "pseudo-labels"} <= set(t["row"].str.split(":").str[0])
    assert {"pHHI", "extractor (rules)", "summariser (tiny)"} <= set(t["variant"])
    # resume: a given summariser skips training and gives the same labels
    out2 = run_paper("hhi_pseudolabels", tmp_path / "out2", summarizer=str(out / "data" / "hhi_summarizer"))
    ph2 = read_phhi(out2 / "data" / "phhi.csv")
    assert ph2.pseudolabel.tolist() == ph.pseudolabel.tolist()


def test_readers_never_crash_on_fuzz(tmp_path):
    """Random bytes / JSON in every Who's Waldo file and random CSV cells: skipped and counted, never a crash."""
    from hypothesis import given, settings, strategies as st, HealthCheck
    from hhperc.hhi.formats import write_phhi
    root = tmp_path / "ww"
    write_whos_waldo_sample(root, 1, b"\xff\xd8jpeg", "[NAME] hugs [NAME].")
    jsonish = st.recursive(st.none() | st.booleans() | st.integers(-3, 99) | st.floats(allow_nan=True) | st.text(max_size=5),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3), max_leaves=8)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(["coreferences.json", "detections.json", "ground_truth.json", "license.json", "caption.txt"]),
           content=st.one_of(st.binary(max_size=40), jsonish.map(lambda v: json.dumps(v).encode())))
    def check(name, content):
        (root / "data" / "000001" / name).write_bytes(content)
        df = read_whos_waldo(root)
        r = df.attrs["report"]
        assert len(df) + r.skipped == 1

    check()

    # one CSV line per record; no lone surrogates (they cannot be written as UTF-8, so no real file holds them)
    txt = lambda n: st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=n)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cells=st.lists(st.tuples(txt(8), txt(12), st.one_of(st.floats(allow_nan=True), txt(4))), min_size=1, max_size=5))
    def check_phhi(cells):
        p = tmp_path / "p.csv"
        pd.DataFrame(cells, columns=["id", "pseudolabel", "weight"]).to_csv(p, index=False)
        df = read_phhi(p)
        assert len(df) + df.attrs["report"].skipped <= len(cells)
        assert (df.weight >= 0).all()

    check_phhi()


@pytest.mark.parametrize("caption,want", [
    ("[NAME], the mayor of Springfield, shakes hands with [NAME] during the summit in Oslo.", ["_ shaking hands with _"]),
    ("[NAME] (left) high-fives [NAME] after the final match.", ["_ high-fiving _"]),
    ("[NAME] is seen hugging [NAME] on May 3, 2010.", ["_ hugging _"]),
    ("[NAME] and [NAME] shake hands in Paris.", ["_ shaking hands with _"]),
    ("[NAME] helped [NAME] up.", ["_ helping _ up"]),
    ("[NAME] is carried by [NAME].", ["_ carrying _"]),      # a short passive: the agent carries
    ("[NAME] and [NAME] at the premiere.", []),
])
def test_extractor_cases(caption, want):
    """Labels written by hand for typical news phrasings (and a caption that states no interaction)."""
    assert hhi.extract_interactions(caption, method="rules") == want


PAIRS = (["Adam hugs Bob at the airport.", "Adam shakes hands with Bob in Oslo.", "Adam waves to Bob.", "Adam helps Bob up."],
         ["_ hugging _", "_ shaking hands with _", "_ waving to _", "_ helping _ up"])


def _tiny(caps, tgts):
    tok = hhi.word_tokenizer(caps + tgts + ["Adam", "Bob"])
    return hhi.small_t5(tok, hidden=32, layers=1), tok


def test_summariser_learns_its_pairs():
    """Seq2SeqTrainer on four pairs seen 8 times per epoch: the loss falls, and the model writes back every target."""
    caps, tgts = PAIRS
    m, tok = _tiny(caps, tgts)
    before = hhi.Summarizer(m, tok)(caps)
    h = hhi.train_summarizer(m, tok, caps * 8, tgts * 8, epochs=25, batch_size=8, lr=3e-3)
    assert h["steps"] == 25 * 4 and len(h["loss"]) == 25
    assert h["loss"][-1] < h["loss"][0] / 5
    assert before != tgts and hhi.Summarizer(m, tok)(caps) == tgts


KILL_SCRIPT = """
import sys, time
from pathlib import Path
from transformers import TrainerCallback
from tests.test_hhi_text import PAIRS, _tiny
from hhperc.hhi.text import train_summarizer
class Stall(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        if state.global_step == 8:
            Path(sys.argv[2]).write_text("saved"); time.sleep(120)
caps, tgts = PAIRS
m, tok = _tiny(caps, tgts)
train_summarizer(m, tok, caps * 4, tgts * 4, epochs=4, batch_size=4, lr=3e-3, output_dir=sys.argv[1], callbacks=[Stall()])
Path(sys.argv[2]).write_text("finished")
"""


def test_summariser_resumes_after_kill(tmp_path):
    """kill -9 after the checkpoint of epoch 2 of 4; the next run resumes there and ends with the weights of an uninterrupted run."""
    import torch
    ck, marker = tmp_path / "ck", tmp_path / "marker"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(ck), str(marker)], cwd=Path(__file__).parent.parent, env=env)
    t0 = time.time()
    while not marker.exists() and p.poll() is None and time.time() - t0 < 240: time.sleep(0.2)
    assert marker.exists() and marker.read_text() == "saved", "the run never reached its epoch-2 checkpoint"
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL                                   # the kill landed; the run did not finish
    from hhperc.train import last_complete_checkpoint
    assert last_complete_checkpoint(ck) == str(ck / "checkpoint-8")
    caps, tgts = PAIRS
    resumed, tok = _tiny(caps, tgts)
    h = hhi.train_summarizer(resumed, tok, caps * 4, tgts * 4, epochs=4, batch_size=4, lr=3e-3, output_dir=ck)
    assert h["steps"] == 16 and len(h["loss"]) == 4                          # the history of epochs 1-2 comes from the checkpoint
    full, _ = _tiny(caps, tgts)
    hf = hhi.train_summarizer(full, tok, caps * 4, tgts * 4, epochs=4, batch_size=4, lr=3e-3)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(resumed.parameters(), full.parameters()))
    np.testing.assert_allclose(h["loss"], hf["loss"], atol=1e-4)
