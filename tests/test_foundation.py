"""The foundation from the outside: install, command line, reproduce, settings, models, failures."""
import json
from pathlib import Path

import pytest

from conftest import ROOT, hhperc


def test_info_offline_shows_bundled_and_missing_hub_models():
    from hhperc.models import host_reachable
    from huggingface_hub import constants
    r = hhperc("info", "--profile", "full")
    sentence = next(l for l in r.stdout.splitlines() if l.strip().startswith("sentence "))
    assert "bundled" in sentence and "loads" in sentence          # the bundled MiniLM needs no network
    line = next(l for l in r.stdout.splitlines() if l.strip().startswith("captioner"))
    assert "Salesforce/blip-image-captioning-base" in line         # the full profile asks for the paper's captioner
    if not host_reachable(constants.ENDPOINT, 2) and "loads" not in line.split("Salesforce/blip-image-captioning-base")[1]:
        assert "NOT AVAILABLE" in line and "To supply a missing model" in r.stdout


def test_settings_override_by_env_and_set(tmp_path):
    r = hhperc("info", "--set", "run.seed=42", env={"HHPERC_RUN_DEVICE": "cpu"})
    assert "seed = 42" in r.stdout and "device = cpu" in r.stdout
    bad = hhperc("info", "--set", "oops", check=False)
    assert bad.returncode == 2 and "section.key=value" in bad.stderr


def test_uncached_hub_model_fails_fast_with_fix():
    from hhperc.models import MissingModelError, load_captioner, host_reachable
    from huggingface_hub import constants
    if host_reachable(constants.ENDPOINT, 2):
        pytest.skip("the hub is reachable here: the offline failure cannot be shown")
    with pytest.raises(MissingModelError) as e:       # how fast it fails is a benchmark's business, not a test's
        load_captioner("Salesforce/blip-image-captioning-base", timeout=3)
    msg = str(e.value)
    assert "captioner" in msg and "tiny" in msg and "--set models.captioner" in msg
    assert "Traceback" not in msg


@pytest.mark.parametrize("role", ["detector", "captioner", "sentence", "llm", "summarizer", "clip", "decoder", "nli", "bleurt"])
def test_every_tiny_model_builds_and_runs(role):
    import numpy as np
    import torch
    from PIL import Image
    from hhperc.models import load_model
    img = Image.fromarray((np.random.RandomState(0).rand(40, 50, 3) * 255).astype("uint8"))
    m = load_model(role, "tiny")
    with torch.no_grad():
        if role == "detector":
            det = m.model([torch.rand(3, 40, 50)])[0]
            k = len(det["scores"])
            assert det["boxes"].shape == (k, 4) and det["labels"].shape == (k,)
            assert bool(((det["boxes"][:, 2:] >= det["boxes"][:, :2]) & (det["boxes"][:, 2:] <= torch.tensor([50, 40]))).all())
        elif role == "captioner":
            model, proc = m
            g = model.generate(**proc(images=[img], return_tensors="pt"), max_new_tokens=3)
            assert g.shape[0] == 1 and 2 <= g.shape[1] <= 1 + 3                 # a start token and at most 3 new ones
        elif role == "clip":
            model, proc = m
            f = model.get_image_features(**proc(images=[img], return_tensors="pt"))
            f = getattr(f, "pooler_output", f)
            assert tuple(f.shape) == (1, model.config.projection_dim) and bool(torch.isfinite(f).all())
        elif role == "sentence":
            e = m.encode(["a b", "a b", "c"])
            dim = (getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension)()
            assert e.shape == (3, dim)
            assert np.allclose(e[0], e[1]) and not np.allclose(e[0], e[2])     # same text, same vector; other text, other vector
        elif role == "nli":
            model, tok, lab = m
            assert model(**tok(["a"], ["b"], return_tensors="pt")).logits.shape == (1, 3) and len(lab) == 3
        elif role == "bleurt":
            model, tok = m; assert model(**tok(["a"], ["b"], return_tensors="pt")).logits.shape == (1, 1)
        else:
            model, tok = m
            enc = tok(["summarize: Alex hugs Bailey"], return_tensors="pt")
            g = model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
            new = g.shape[1] - (0 if model.config.is_encoder_decoder else enc["input_ids"].shape[1])
            assert g.shape[0] == 1 and 1 <= new <= 3 + 1                      # at most the 3 new tokens (+ a start token)


def test_reproduce_demo_notebook_cli(tmp_path):
    out = tmp_path / "out"
    r = hhperc("reproduce", "demo_settings", "--profile", "smoke", "--out", out, "--force")
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["[1/1]", "demo_settings", "ok"] and lines[1].startswith("1/1 notebooks ok in ")
    assert len(lines) == 3 and lines[2] == f"report: {out.resolve() / 'report.html'}"     # one line per notebook, a summary
    for noise in ("Unable to parse line", "Passed unknown parameter", "without encryption", "Executing:"):
        assert noise not in r.stdout + r.stderr, noise
    man = json.loads((out / "manifest.json").read_text())
    assert man["profile"] == "smoke" and man["git"]["commit"] and man["packages"]["torch"]
    assert (out / "report.html").exists() and (out / "tables" / "demo_settings.md").exists()
    assert (out / "figures" / "demo_settings_models.png").exists()


def test_reproduce_unknown_notebook_is_a_clear_error(tmp_path):
    r = hhperc("reproduce", "no_such_notebook", "--out", tmp_path / "out", check=False)
    assert r.returncode != 0 and "unknown notebook" in (r.stderr + r.stdout) and "available:" in (r.stderr + r.stdout)


def test_failing_notebook_is_kept_with_error_and_others_run(tmp_path):
    import nbformat
    from hhperc.reproduce import run_notebooks
    folder = tmp_path / "paper"; folder.mkdir()
    src = nbformat.read(str(ROOT / "nbs/paper/demo_settings.ipynb"), as_version=4)
    bad = nbformat.from_dict(json.loads(json.dumps(src)))
    bad.cells.insert(2, nbformat.v4.new_code_cell("raise RuntimeError('boom: corrupt input')"))
    nbformat.write(bad, str(folder / "a_bad.ipynb")); nbformat.write(src, str(folder / "b_good.ipynb"))
    res = run_notebooks(profile="smoke", out=tmp_path / "out", keep_going=True, progress=False, log=lambda *a: None, folder=folder)
    assert [r.status for r in res] == ["failed", "ok"]
    kept = (tmp_path / "out/notebooks/a_bad.ipynb").read_text()
    assert "boom: corrupt input" in kept
    res = run_notebooks(profile="smoke", out=tmp_path / "out2", keep_going=False, progress=False, log=lambda *a: None, folder=folder)
    assert [r.status for r in res] == ["failed", "skipped"]


def test_report_survives_a_bad_table(tmp_path):
    from hhperc.reproduce import build_report
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "broken.csv").write_text("not,a,long,table\n1,2,3,4\n")
    p = build_report(tmp_path, {"profile": "smoke"})
    assert "unreadable" in p.read_text()


def test_notebooks_ship_in_the_package():
    from hhperc.reproduce import list_notebooks
    assert set(list_notebooks()) == {p.stem for p in (ROOT / "nbs/paper").glob("*.ipynb")}


def test_full_profile_skips_what_its_data_does_not_allow(tmp_path):
    from hhperc.reproduce import exit_code, run_notebooks
    r = hhperc("reproduce", "luab_imagenet", "--profile", "full", "--out", tmp_path / "out", check=False)
    assert "[1/1] luab_imagenet  skipped" in r.stdout and "needs [data] imagenet, [data] imagenet_ab" in r.stdout
    assert "0/1 notebooks ok, 1 skipped" in r.stdout and "Traceback" not in r.stderr
    res = run_notebooks(["luab_coco"], profile="full", out=tmp_path / "o2", log=lambda *a: None)
    assert [(x.status, x.error) for x in res] == [("skipped", "needs [data] coco, [data] coco_ab")] and exit_code(res) == 0


def test_every_paper_notebook_declares_what_full_needs():
    from hhperc.reproduce import declared_needs, list_notebooks
    needs = {n: declared_needs(p) for n, p in list_notebooks().items()}
    assert needs["demo_settings"] == [] and needs["luab_imagenet"] == ["data.imagenet", "data.imagenet_ab"]
    assert all(needs[n] for n in needs if n != "demo_settings"), needs


def test_a_param_no_chosen_notebook_declares_is_an_error(tmp_path):
    r = hhperc("reproduce", "demo_settings", "--param", "annotations_cvs=t.csv", "--out", tmp_path / "out", check=False)
    assert r.returncode != 0 and "--param annotations_cvs: declared by none of demo_settings" in r.stderr + r.stdout
    assert not (tmp_path / "out" / "notebooks" / "demo_settings.ipynb").exists()
