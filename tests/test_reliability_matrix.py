"""The reliability matrix: every entry point x every fault, run through the command line as a user would.

Entry points: annotate, similarity, predict, LUAB train, the HHI pipeline (`hhi pseudolabel`), reproduce.
Faults: a corrupt input, a missing field, a wrong file type, a missing model, an interrupted run (kill -9) resumed,
and a full disk on the output folder (a real, small tmpfs filled up; skipped where mounting is not allowed).

Each case must end in one clear message (no traceback, the file or setting named) or a counted skip, and must
lose no finished result. `test_matrix_is_complete` keeps the grid whole: 6 x 6 = 36 cases."""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import BIN, ROOT, hhperc

ENTRIES = ("annotate", "similarity", "predict", "luab", "hhi", "reproduce")
FAULTS = ("corrupt_input", "missing_field", "wrong_file_type", "missing_model", "interrupted_resumed", "full_disk")
CASES = {}
ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def case(entry, fault):
    def deco(fn):
        CASES[(entry, fault)] = fn
        return fn
    return deco


# ---------------------------------------------------------------------------------------------------- helpers
def cli(*args, check=False, timeout=600):
    return hhperc(*args, check=check, timeout=timeout, env=ENV)


def clear_error(r, *needles, code=None):
    "Failed with one clear message: no traceback, every needle in stderr."
    msg = f"rc={r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    assert r.returncode != 0 if code is None else r.returncode == code, msg
    assert "Traceback" not in r.stderr, msg
    for n in needles:
        assert n in r.stderr, f"{n!r} not in the message\n{msg}"


def ok(r):
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    return r


def kill_when(args, ready, timeout=300):
    """Start `hhperc args` and SIGKILL it as soon as `ready()` holds. Fails unless the kill landed: the process died
    by the signal (returncode -9), not by finishing first. Each case then checks that the run had not finished
    (its final output is absent) before it checks the resume."""
    exe = BIN / "hhperc"
    p = subprocess.Popen([str(exe), *map(str, args)], cwd=ROOT, env={**os.environ, **ENV},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    try:
        while time.time() - t0 < timeout:
            if p.poll() is not None:
                raise AssertionError(f"hhperc {args} ended (rc {p.returncode}) before the kill point: the fault was not injected")
            if ready():
                p.send_signal(signal.SIGKILL); p.wait()
                assert p.returncode == -signal.SIGKILL, f"the kill did not land: rc {p.returncode}"
                return
            time.sleep(0.05)
        raise AssertionError(f"hhperc {args}: kill point not reached in {timeout} s")
    finally:
        if p.poll() is None:
            p.kill(); p.wait()


def no_temp_files(folder):
    left = [p for p in Path(folder).rglob("*") if p.name.startswith(".") and (".tmp" in p.name or ".old-" in p.name)]
    assert not left, f"temporary files left behind: {left[:5]}"


class Disk:
    "A small tmpfs mounted at `root`; `fill(leave)` takes all but `leave` bytes, `free()` gives them back."
    def __init__(self, root: Path):
        self.root, self.ballast = root, root / ".ballast"

    def fill(self, leave: int = 0):
        reserve = self.root / ".reserve"
        if leave: reserve.write_bytes(b"\0" * leave)
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for chunk in (1 << 20, 1 << 12):
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError:
                    pass
        finally:
            os.close(fd)
        reserve.unlink(missing_ok=True)

    def free(self):
        self.ballast.unlink(missing_ok=True)


@pytest.fixture
def disk(tmp_path):
    root = tmp_path / "disk"
    root.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400m", "tmpfs", str(root)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()[:80]}); atomic writes under ENOSPC are "
                    "covered by test_reliability.test_full_disk_keeps_the_old_file_and_names_the_target")
    try:
        yield Disk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)


# ---------------------------------------------------------------------------------------------------- worlds
@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    "Smoke-size synthetic worlds of the three studies, the tiny-model cache, and broken variants of their inputs."
    root = tmp_path_factory.mktemp("worlds")
    for study in ("households", "objects", "interactions"):
        ok(cli("synth", "--study", study, "--scale", "smoke", "--out", root / study))
    hh = root / "households"
    table = hh / "annotations.csv"
    lines = table.read_text().splitlines()
    lines[3] = lines[3] + ",an,extra,field"               # too many fields
    lines[5] = "\x00\x00" + lines[5][:25]                  # NUL bytes and a truncated row
    (root / "corrupt.csv").write_text("\n".join(lines) + "\n")
    df = pd.read_csv(table, dtype=str)
    df.drop(columns=["region"]).to_csv(root / "no_region.csv", index=False)
    df.drop(columns=["income"]).to_csv(root / "no_income.csv", index=False)
    (root / "not_a_table.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    return dict(root=root, hh=hh, table=table, objects=root / "objects", interactions=root / "interactions",
                cache=root / "cache")


def S(w, *extra):
    "Settings flags for the smoke profile with the module's cache."
    return ["--profile", "smoke", "--set", f"run.cache={w['cache']}", "--set", "run.device=cpu", *extra]


# ---------------------------------------------------------------------------------------------------- annotate
TINY = ["--set", "models.detector=tiny", "--set", "models.captioner=tiny", "--threshold", "0.3", "--max-new-tokens", "4",
        "--no-progress", "--threads", "1"]


def _images(w, tmp, n=6):
    src = sorted((w["hh"] / "images").glob("*.jpg"))
    from PIL import Image
    d = tmp / "images"
    d.mkdir()
    good = []
    for p in src:
        try:
            with Image.open(p) as im: im.load()
        except Exception:
            continue
        shutil.copy(p, d / p.name); good.append(p.stem)
        if len(good) == n: break
    return d, sorted(good)


def _store_ids(store):
    from hhperc.perception.annotators import AnnotationStore
    st = AnnotationStore(store)
    keys = sorted(p.name for p in (Path(store) / "records").iterdir())
    return {k: sorted(st.records(k).image_id) for k in keys}


@case("annotate", "corrupt_input")
def _(w, tmp):
    d, good = _images(w, tmp)
    (d / "trunc.jpg").write_bytes((d / f"{good[0]}.jpg").read_bytes()[:300])
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("not an image")
    r = ok(cli("annotate", "--images", d, "--store", tmp / "s", *TINY, *S(w)))
    assert "3 errors" in r.stdout, r.stdout
    from hhperc.perception.annotators import AnnotationStore
    err = AnnotationStore(tmp / "s").errors()
    assert sorted(err.image_id) == ["empty", "text", "trunc"] and set(err.stage) == {"decode"}
    assert all(ids == good for ids in _store_ids(tmp / "s").values())       # every good image kept


@case("annotate", "missing_field")
def _(w, tmp):
    d, good = _images(w, tmp)
    meta = pd.read_csv(sorted((w["hh"] / "metadata").glob("*.csv"))[0], dtype=str).drop(columns=["income"])
    meta.to_csv(tmp / "meta.csv", index=False)
    r = cli("annotate", "--images", d, "--store", tmp / "s", "--export", tmp / "t.csv", "--metadata", tmp / "meta.csv", *TINY, *S(w))
    clear_error(r, "meta.csv", "missing ['income']")
    assert all(ids == good for ids in _store_ids(tmp / "s").values())       # the annotations themselves are kept
    assert not (tmp / "t.csv").exists()


@case("annotate", "wrong_file_type")
def _(w, tmp):
    r = cli("annotate", "--images", w["table"], "--store", tmp / "s", *TINY, *S(w))
    clear_error(r, "annotations.csv", "not a folder of images")


@case("annotate", "missing_model")
def _(w, tmp):
    d, _ = _images(w, tmp, 2)
    r = cli("annotate", "--images", d, "--store", tmp / "s", *TINY, *S(w, "--set", f"models.detector={tmp / 'no-such-model'}"))
    clear_error(r, "[models] detector", "does not exist", "--set models.detector=")


@case("annotate", "interrupted_resumed")
def _(w, tmp):
    d, good = _images(w, tmp, 12)
    args = ["annotate", "--images", d, "--store", tmp / "s", "--batch", "2", "--workers", "0", *TINY, *S(w)]
    parts = lambda: list((tmp / "s" / "records").glob("*/part-*.parquet"))
    kill_when([*args, "--throttle", "1"], lambda: len(parts()) >= 2)   # 1 s after each batch: the kill lands mid-run
    done = _store_ids(tmp / "s")
    assert done and all(len(ids) < len(good) for ids in done.values()), done    # the run had not finished
    r = ok(cli(*args))
    todo = int(r.stdout.split(" to do")[0].split()[-1])
    assert 0 < todo < len(good), r.stdout                          # finished batches were not redone
    assert all(ids == good for ids in _store_ids(tmp / "s").values())       # each image exactly once
    # kill -9 can leave the temp file of a write in progress: readers ignore it, and --compact removes it once it is
    # stale (an hour: younger ones may belong to another shard's process writing into the same store right now)
    for t in (tmp / "s").rglob(".*.tmp"):
        os.utime(t, (time.time() - 7200, time.time() - 7200))
    ok(cli(*args, "--compact"))
    assert all(ids == good for ids in _store_ids(tmp / "s").values())
    no_temp_files(tmp / "s")


@case("annotate", "full_disk")
def _(w, tmp, disk):
    d, good = _images(w, tmp, 8)
    store = disk.root / "s"
    ok(cli("annotate", "--images", d, "--store", store, "--limit", "4", *TINY, *S(w)))
    before = _store_ids(store)
    disk.fill()
    r = cli("annotate", "--images", d, "--store", store, *TINY, *S(w))
    clear_error(r, "could not write", "Free space")
    assert _store_ids(store) == before                            # the finished shards are intact and readable
    no_temp_files(store)
    disk.free()
    ok(cli("annotate", "--images", d, "--store", store, *TINY, *S(w)))
    assert all(ids == good for ids in _store_ids(store).values())


# ---------------------------------------------------------------------------------------------------- similarity / predict
def _sim(w, out, table, *extra):
    return cli("similarity", "--annotations", table, "--out", out, "--epochs", "1", *S(w, "--set", "models.sentence=tiny", *extra))


def _pred(w, out, table, *extra):
    return cli("predict", "--task", "region", "--annotations", table, "--out", out, "--epochs", "1", "--grid", "tiny",
               "--folds", "2", "--seeds", "2", "--n-jobs", "1", *S(w, "--set", "models.sentence=tiny", *extra))


@case("similarity", "corrupt_input")
def _(w, tmp):
    r = ok(_sim(w, tmp / "o", w["root"] / "corrupt.csv"))
    assert "2 skipped" in r.stdout + r.stderr and "malformed line" in r.stdout + r.stderr
    assert len(pd.read_csv(tmp / "o" / "similarity.csv")) == len(pd.read_csv(w["table"])) - 2


@case("similarity", "missing_field")
def _(w, tmp):
    clear_error(_sim(w, tmp / "o", w["root"] / "no_region.csv"), "no_region.csv", "missing ['region']")


@case("similarity", "wrong_file_type")
def _(w, tmp):
    clear_error(_sim(w, tmp / "o", w["root"] / "not_a_table.png"), "not_a_table.png", "binary data")


@case("similarity", "missing_model")
def _(w, tmp):
    r = cli("similarity", "--annotations", w["table"], "--out", tmp / "o", "--model", tmp / "no-model", *S(w))
    clear_error(r, "[models] sentence", "does not exist")


@case("similarity", "interrupted_resumed")
def _(w, tmp):
    import numpy as np
    args = lambda cache: ["similarity", "--annotations", w["table"], "--out", tmp / "o", "--epochs", "3",
                          *S(w, "--set", "models.sentence=tiny", "--set", f"run.cache={cache}")]
    ckpt = lambda: [c for c in (tmp / "cache" / "ds_finetune").glob("*/checkpoint-*") if (c / "trainer_state.json").exists()]
    kill_when(args(tmp / "cache"), ckpt)                          # killed during fine-tuning, after its first epoch
    assert not (tmp / "o" / "ds_similarity.csv").exists()           # the run had not finished
    r = ok(cli(*args(tmp / "cache")))
    assert "resuming fine-tuning from" in r.stdout, r.stdout
    assert not list((tmp / "cache" / "ds_finetune").glob("*/checkpoint-*"))     # cleaned up once finished
    ok(cli(*args(tmp / "ref")))
    a, b = (dict(np.load(next((tmp / c / "ds_embeddings").glob("*.npz")))) for c in ("cache", "ref"))
    assert all(np.array_equal(a[k], b[k]) for k in a)              # resumed == uninterrupted, bit for bit
    r = ok(cli(*args(tmp / "cache")))
    assert "embeddings from cache" in r.stdout                     # and a finished run is not redone


@case("similarity", "full_disk")
def _(w, tmp, disk):
    out = disk.root / "o"
    ok(_sim(w, out, w["table"]))
    before = (out / "ds_similarity.csv").read_bytes()
    disk.fill()
    clear_error(_sim(w, out, w["table"], "--set", "run.seed=1"), "could not write", "Free space")
    assert (out / "ds_similarity.csv").read_bytes() == before       # the earlier result is whole
    no_temp_files(out)
    disk.free()
    ok(_sim(w, out, w["table"], "--set", "run.seed=1"))


@case("predict", "corrupt_input")
def _(w, tmp):
    r = ok(_pred(w, tmp / "o", w["root"] / "corrupt.csv"))
    assert "2 skipped" in r.stdout + r.stderr
    assert (tmp / "o" / "ds_region.csv").exists()


@case("predict", "missing_field")
def _(w, tmp):
    r = cli("predict", "--task", "income", "--annotations", w["root"] / "no_income.csv", "--out", tmp / "o", *S(w))
    clear_error(r, "no_income.csv", "missing ['income']")


@case("predict", "wrong_file_type")
def _(w, tmp):
    clear_error(_pred(w, tmp / "o", w["objects"] / "coco_ab.json"), "coco_ab.json", "JSON")


@case("predict", "missing_model")
def _(w, tmp):
    clear_error(_pred(w, tmp / "o", w["table"], "--set", f"models.sentence={tmp / 'gone'}"), "[models] sentence", "does not exist")


@case("predict", "interrupted_resumed")
def _(w, tmp):
    cache = tmp / "cache"
    args = ["predict", "--task", "region", "--annotations", w["table"], "--out", tmp / "o", "--epochs", "1", "--grid", "tiny",
            "--folds", "2", "--seeds", "3", "--n-jobs", "1", *S(w, "--set", "models.sentence=tiny", "--set", f"run.cache={cache}")]
    kill_when(args, lambda: any((cache / "predict_units").glob("*.npz")))
    assert not (tmp / "o" / "ds_region.csv").exists()                     # the run had not finished
    r = ok(cli(*args))
    assert "fits restored" in r.stderr, r.stderr                          # finished (combination, seed) fits kept
    ref = ok(cli(*args[:6], tmp / "ref", *args[7:-2], "--set", f"run.cache={tmp / 'cache2'}"))
    a, b = pd.read_csv(tmp / "o" / "ds_region.csv"), pd.read_csv(tmp / "ref" / "ds_region.csv")
    pd.testing.assert_frame_equal(a, b)                                   # resumed == uninterrupted


@case("predict", "full_disk")
def _(w, tmp, disk):
    out = disk.root / "o"
    disk.fill()
    clear_error(_pred(w, out, w["table"]), "could not write", "ds_region.csv", "Free space")
    no_temp_files(disk.root)
    disk.free()
    r = ok(_pred(w, out, w["table"]))
    assert "fits restored" in r.stderr                                    # the fits of the failed run were kept


# ---------------------------------------------------------------------------------------------------- LUAB train
def _luab(w, out, data=None, xml=None, *extra, epochs=1):
    o = w["objects"]
    return cli("luab", "train", "--data", data or o / "imagenet", "--byproducts", xml or o / "imagenet_ab", "--out", out,
               "--arch", "resnet18", "--epochs", epochs, "--no-progress", *S(w), *extra)


def _copy_objects(w, tmp):
    d = tmp / "objects"
    shutil.copytree(w["objects"] / "imagenet", d / "imagenet"); shutil.copytree(w["objects"] / "imagenet_ab", d / "imagenet_ab")
    return d


@case("luab", "corrupt_input")
def _(w, tmp):
    d = _copy_objects(w, tmp)
    imgs = sorted((d / "imagenet" / "train").rglob("*.JPEG"))
    imgs[0].write_bytes(imgs[0].read_bytes()[:200]); imgs[5].write_text("not an image")
    r = ok(_luab(w, tmp / "o", d / "imagenet", d / "imagenet_ab"))
    m = json.loads((tmp / "o" / "metrics.json").read_text())
    assert m["skipped_images"] == 2 and "unreadable training image" in r.stderr
    assert {Path(p).name for p, _ in m["skipped_examples"]} == {imgs[0].name, imgs[5].name}


@case("luab", "missing_field")
def _(w, tmp):
    import re
    d = _copy_objects(w, tmp)
    for x in sorted((d / "imagenet_ab").rglob("*.xml"))[:3]:
        x.write_text(re.sub(r"<size>.*?</size>", "", x.read_text(), flags=re.S))
    r = ok(_luab(w, tmp / "o", d / "imagenet", d / "imagenet_ab"))
    m = json.loads((tmp / "o" / "metrics.json").read_text())
    # a missing <size> is unrelated to the click: the record and its click are kept, the field error counted
    assert m["byproducts_skipped"] == 0 and m["byproduct_skip_reasons"] == {"field error, record kept": 3}, m
    assert "0 skipped" in r.stderr and "field error, record kept" in r.stderr


@case("luab", "wrong_file_type")
def _(w, tmp):
    clear_error(_luab(w, tmp / "o", None, w["objects"] / "coco_ab.json"), "coco_ab.json", "expected an ImageNet-AB XML folder")


@case("luab", "missing_model")
def _(w, tmp):
    r = hhperc("luab", "train", "--synthetic", "--out", tmp / "o", "--arch", "resnet18", "--weights", "IMAGENET1K_V1", "--epochs", "1",
               *S(w), check=False, env={**ENV, "TORCH_HOME": str(tmp / "torch-home")})
    clear_error(r, "IMAGENET1K_V1", "not cached", "luab_weights")


@case("luab", "interrupted_resumed")
def _(w, tmp):
    args = lambda out: ["luab", "train", "--data", w["objects"] / "imagenet", "--byproducts", w["objects"] / "imagenet_ab",
                        "--out", out, "--arch", "resnet18", "--epochs", "3", "--no-progress", *S(w)]
    kill_when(args(tmp / "o"), lambda: (tmp / "o" / "last.pt").exists())
    import torch
    assert not (tmp / "o" / "history.json").exists()                       # the run had not finished ...
    assert torch.load(tmp / "o" / "last.pt", weights_only=False)["epoch"] < 3   # ... and its checkpoint is an early epoch
    ok(cli(*args(tmp / "o")))
    ok(cli(*args(tmp / "ref")))
    h, ref = (json.loads((tmp / d / "history.json").read_text()) for d in ("o", "ref"))
    assert [e["epoch"] for e in h] == [1, 2, 3]
    assert [round(e["loss"], 5) for e in h] == [round(e["loss"], 5) for e in ref], (h, ref)   # resumed == uninterrupted


@case("luab", "full_disk")
def _(w, tmp, disk):
    ok(_luab(w, tmp / "size", epochs=1))
    last, best = ((tmp / "size" / f).stat().st_size for f in ("last.pt", "best.pt"))   # epoch 1 writes both
    disk.fill(leave=int(last + best + 0.5 * last))   # room for epoch 1's checkpoints, not for the replacement of last.pt
    out = disk.root / "o"
    clear_error(_luab(w, out, epochs=2), "could not write", "last.pt", "Free space")
    import torch
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 1     # epoch 1 is whole and resumable
    no_temp_files(out)
    disk.free()
    ok(_luab(w, out, epochs=2))
    assert [e["epoch"] for e in json.loads((out / "history.json").read_text())] == [1, 2]


# ---------------------------------------------------------------------------------------------------- HHI pipeline
def _hhi(w, out, ww=None, *extra):
    return cli("hhi", "pseudolabel", "--out", out, "--whos-waldo", ww or w["interactions"] / "whos_waldo", *S(w), *extra)


@case("hhi", "corrupt_input")
def _(w, tmp):
    ww = tmp / "ww"
    shutil.copytree(w["interactions"] / "whos_waldo", ww)
    first = sorted((ww / "data").iterdir())[0]
    (first / "ground_truth.json").write_text('[[[0, ')
    r = ok(_hhi(w, tmp / "o", ww))
    assert "1 skipped (bad json: 1)" in r.stdout + r.stderr
    stats = json.loads((tmp / "o" / "data" / "pseudolabel_stats.json").read_text())
    assert stats["whos_waldo"]["skipped"] == 1 and stats["phhi_rows"] > 0


@case("hhi", "missing_field")
def _(w, tmp):
    ww = tmp / "ww"
    shutil.copytree(w["interactions"] / "whos_waldo", ww)
    for s in sorted((ww / "data").iterdir())[:2]:
        (s / "caption.txt").unlink()
    r = ok(_hhi(w, tmp / "o", ww))
    assert "2 skipped (missing caption.txt: 2)" in r.stdout + r.stderr


@case("hhi", "wrong_file_type")
def _(w, tmp):
    clear_error(_hhi(w, tmp / "o", w["interactions"] / "whos_waldo" / "test.json"), "test.json", "expected a Who's Waldo folder")


@case("hhi", "missing_model")
def _(w, tmp):
    clear_error(_hhi(w, tmp / "o", None, "--set", f"models.summarizer={tmp / 'gone'}"), "[models] summarizer", "does not exist")
    assert not (tmp / "o").exists()                                    # failed before doing any work
    # the spaCy pipeline is optional: --method spacy names the fix, auto falls back to the rules
    gone = ("hhi", "extract", "--caption", "[NAME] hugs [NAME].", "--set", "models.spacy=no_such_pipeline_xyz")
    clear_error(cli(*gone, "--method", "spacy"), "no_such_pipeline_xyz", "python -m spacy download", "--spacy-model")
    assert ok(cli(*gone)).stdout.startswith("_ hugging _\t")


@case("hhi", "interrupted_resumed")
def _(w, tmp):
    out = tmp / "o"
    kill_when(["hhi", "pseudolabel", "--out", out, "--whos-waldo", w["interactions"] / "whos_waldo", *S(w)],
              lambda: (out / "data" / "hhi_summarizer" / "hhperc.json").exists())
    assert not (out / "data" / "phhi.csv").exists()                      # the run had not finished
    weights = (out / "data" / "hhi_summarizer" / "model.safetensors").read_bytes()
    r = ok(_hhi(w, out))
    assert "summariser restored" in r.stdout
    assert (out / "data" / "hhi_summarizer" / "model.safetensors").read_bytes() == weights
    assert (out / "data" / "phhi.csv").exists()


@case("hhi", "full_disk")
def _(w, tmp, disk):
    out = disk.root / "o"
    ok(_hhi(w, out))
    before = (out / "data" / "phhi.csv").read_bytes()
    disk.fill()
    clear_error(_hhi(w, out, None, "--set", "run.seed=1"), "could not write", "Free space")
    assert (out / "data" / "phhi.csv").read_bytes() == before
    no_temp_files(out)
    disk.free()
    ok(_hhi(w, out, None, "--set", "run.seed=1"))


# ---------------------------------------------------------------------------------------------------- reproduce
def _repro(w, out, *args, settings=()):
    return cli("reproduce", *args, "--out", out, "--no-progress", *S(w, *settings))


@case("reproduce", "corrupt_input")
def _(w, tmp):
    cache = tmp / "cache"
    ok(_repro(w, tmp / "o", "demo_settings", settings=("--set", f"run.cache={cache}")))
    assert list((cache / "notebooks").glob("*/record.json"))
    damaged = list((cache / "notebooks").glob("*/files/tables/*.csv"))
    assert damaged
    for f in damaged:
        f.write_text("damaged")                                   # a damaged cached result must not be restored
    for f in (tmp / "o" / "tables").glob("*.csv"):
        f.unlink()
    r = ok(_repro(w, tmp / "o", "demo_settings", settings=("--set", f"run.cache={cache}")))
    assert "1/1 notebooks ok in" in r.stdout, r.stdout              # executed again instead (not "ok (1 from cache)")
    tables = list((tmp / "o" / "tables").glob("*.csv"))
    assert tables and "damaged" not in "".join(p.read_text() for p in tables)


@case("reproduce", "missing_field")
def _(w, tmp):
    r = _repro(w, tmp / "o", "ds_similarity", "--param", f"annotations_csv={w['root'] / 'no_region.csv'}")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "missing ['region']" in r.stdout and (tmp / "o" / "notebooks" / "ds_similarity.ipynb").exists()


@case("reproduce", "wrong_file_type")
def _(w, tmp):
    bad = tmp / "settings.json"
    bad.write_text('{"run": {"seed": 1}}')
    clear_error(cli("reproduce", "demo_settings", "--settings", bad, "--out", tmp / "o"), "settings.json", "not a valid settings file")


@case("reproduce", "missing_model")
def _(w, tmp):
    r = _repro(w, tmp / "o", "ds_similarity", settings=("--set", f"models.sentence={tmp / 'gone'}"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "cannot be loaded" in r.stdout and "--set models.sentence=" in r.stdout


@case("reproduce", "interrupted_resumed")
def _(w, tmp):
    cache = tmp / "cache"
    args = ["reproduce", "demo_settings", "ds_similarity", "--out", tmp / "o", "--no-progress", *S(w, "--set", f"run.cache={cache}")]
    kill_when(args, lambda: any((cache / "notebooks").glob("*/record.json")))
    assert not (tmp / "o" / "report.html").exists() and not (tmp / "o" / "manifest.json").exists()   # the run had not finished
    r = ok(cli(*args))
    assert "2/2 notebooks ok (1 from cache)" in r.stdout, r.stdout   # the notebook finished before the kill was not run again


@case("reproduce", "full_disk")
def _(w, tmp, disk):
    out = disk.root / "o"
    ok(_repro(w, out, "demo_settings"))
    before = {p: p.read_bytes() for p in (out / "tables").glob("*")}
    disk.fill()
    r = _repro(w, out, "demo_settings", "--force")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "No space left" in r.stdout + r.stderr or "Free space" in r.stdout + r.stderr
    assert {p: p.read_bytes() for p in (out / "tables").glob("*")} == before       # the earlier tables are whole
    disk.free()
    ok(_repro(w, out, "demo_settings", "--force"))


# ---------------------------------------------------------------------------------------------------- the grid
def test_matrix_is_complete():
    missing = [(e, f) for e in ENTRIES for f in FAULTS if (e, f) not in CASES]
    assert not missing and len(CASES) == 36, missing


@pytest.mark.parametrize("entry,fault", [(e, f) for e in ENTRIES for f in FAULTS], ids=lambda v: v)
def test_reliability(entry, fault, worlds, tmp_path, request):
    fn = CASES[(entry, fault)]
    if fault == "full_disk":
        fn(worlds, tmp_path, request.getfixturevalue("disk"))
    else:
        fn(worlds, tmp_path)
