"""The foundation from the outside: install, command line, reproduce, settings, models, failures."""
import json
import time
from pathlib import Path

import pytest

from conftest import ROOT, hhperc


def test_info_offline_shows_bundled_and_missing_hub_models():
    r = hhperc("info", "--profile", "full")
    assert "sentence" in r.stdout and "bundled" in r.stdout
    line = next(l for l in r.stdout.splitlines() if l.strip().startswith("captioner"))
    assert "NOT AVAILABLE" in line or "loads" in line
    assert "To supply a missing model" in r.stdout or "NOT AVAILABLE" not in r.stdout


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
    t = time.perf_counter()
    with pytest.raises(MissingModelError) as e:
        load_captioner("Salesforce/blip-image-captioning-base", timeout=3)
    assert time.perf_counter() - t < 5
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
            out = m.model([torch.rand(3, 40, 50)]); assert "scores" in out[0]
        elif role in ("captioner",):
            model, proc = m; g = model.generate(**proc(images=[img], return_tensors="pt"), max_new_tokens=3); assert g.shape[0] == 1
        elif role == "clip":
            model, proc = m; f = model.get_image_features(**proc(images=[img], return_tensors="pt")); assert f is not None
        elif role == "sentence":
            assert m.encode(["a b"]).shape[0] == 1
        elif role == "nli":
            model, tok, lab = m; assert model(**tok(["a"], ["b"], return_tensors="pt")).logits.shape == (1, 3)
        elif role == "bleurt":
            model, tok = m; assert model(**tok(["a"], ["b"], return_tensors="pt")).logits.shape == (1, 1)
        else:
            model, tok = m
            enc = tok(["summarize: Alex hugs Bailey"], return_tensors="pt")
            g = model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
            assert g.shape[0] == 1


def test_reproduce_demo_notebook_cli(tmp_path):
    out = tmp_path / "out"
    r = hhperc("reproduce", "demo_settings", "--profile", "smoke", "--out", out, "--no-progress")
    assert "1/1 notebooks ok" in r.stdout
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
