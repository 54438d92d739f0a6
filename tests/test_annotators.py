"""hhperc.perception.annotators end to end: resume after kill -9, corrupt images, shard merge, export round trip, CLI.

Tiny models on the synthetic households (hhperc.perception.synth), which include a truncated and an empty JPEG."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hhperc.perception.annotators import AnnotationStore, CaptionAnnotator, ObjectAnnotator, list_images
from hhperc.perception.commands import annotate_main

TINY = ["--set", "models.detector=tiny", "--set", "models.captioner=tiny"]
ARGS = ["--floor", "0.3", "--max-new-tokens", "5", "--no-progress", "--threads", "1"] + TINY
DET, CAP = ObjectAnnotator("tiny", threshold=0.3), CaptionAnnotator("tiny", max_new_tokens=5)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from hhperc.perception.synth import make_households
    paths = make_households(tmp_path_factory.mktemp("hh"), scale=16, seed=0)
    images = paths["images_dir"]
    good, bad = [], []
    from PIL import Image
    for image_id, p in list_images(images).items:
        try:
            with Image.open(p) as im: im.load()
            good.append(image_id)
        except Exception:
            bad.append(image_id)
    assert len(good) >= 10 and bad, (len(good), bad)
    return dict(paths=paths, images=images, good=sorted(good), bad=sorted(bad))


@pytest.fixture(scope="module")
def full_store(world, tmp_path_factory):
    store = tmp_path_factory.mktemp("full") / "store"
    assert annotate_main(["--images", str(world["images"]), "--store", str(store), "--batch", "4", "--workers", "2"] + ARGS) == 0
    return AnnotationStore(store)


def _raw_ids(store: AnnotationStore, key: str) -> list:
    ids = []
    for p in sorted((store.root / "records" / key).glob("part-*.parquet")):
        ids += pq.read_table(p, columns=["image_id"]).column(0).to_pylist()   # every shard must be readable
    return ids


def test_full_run_and_corrupt_images(world, full_store):
    for a in (DET, CAP):
        ids = _raw_ids(full_store, a.key)
        assert sorted(ids) == world["good"], "each good image annotated exactly once"
    err = full_store.errors()
    assert sorted(err.image_id) == world["bad"] and set(err.stage) == {"decode"}
    assert err.reason.str.match(r"^[A-Za-z]+(Error|Exception): ").all(), err.reason.tolist()   # "<exception>: <message>"
    sizes = {i: os.stat(Path(world["images"]) / f"{i}.jpg").st_size for i in world["bad"]}
    assert dict(zip(err.image_id, err.file_size)) == sizes               # the file each error is about, by its size
    det = full_store.records(DET.key)
    assert det.labels.map(len).gt(0).any() and (det.scores.map(lambda s: all(x > 0.3 for x in s))).all()


def test_resume_after_kill(world, tmp_path):
    store = tmp_path / "store"
    code = ("import sys; from hhperc.perception.commands import annotate_main; sys.exit(annotate_main(sys.argv[1:]))")
    cmd = [sys.executable, "-c", code, "--images", str(world["images"]), "--store", str(store), "--batch", "2",
           "--workers", "0", "--throttle", "0.4"] + ARGS
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    folder = store / "records" / DET.key
    try:   # the run always ends on its own (a few images, throttled), so this loop cannot hang
        while len(list(folder.glob("part-*.parquet"))) < 2:
            assert proc.poll() is None, "the annotate run ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    st = AnnotationStore(store)
    before = {k: set(_raw_ids(st, k)) for k in (DET.key, CAP.key)}
    parts_before = {p.name for p in folder.glob("part-*.parquet")}
    assert 0 < len(before[DET.key]) < len(world["good"]), "killed mid-run"
    # re-run: finishes the rest, nothing twice, nothing lost
    assert annotate_main(["--images", str(world["images"]), "--store", str(store), "--batch", "4", "--workers", "0"] + ARGS) == 0
    for k in (DET.key, CAP.key):
        ids = _raw_ids(st, k)
        assert len(ids) == len(set(ids)), f"{k}: duplicates after resume"
        assert sorted(ids) == world["good"] and before[k] <= set(ids)
    assert parts_before <= {p.name for p in folder.glob("part-*.parquet")}
    assert sorted(st.errors().image_id) == world["bad"]


def test_shards_merge(world, full_store, tmp_path):
    stores = []
    for i in range(2):
        s = tmp_path / f"s{i}"
        assert annotate_main(["--images", str(world["images"]), "--store", str(s), "--shard", f"{i}/2", "--workers", "0"] + ARGS) == 0
        stores.append(s)
    a, b = (set(AnnotationStore(s).records(DET.key).image_id) for s in stores)
    assert a and b and not a & b
    merged = AnnotationStore(tmp_path / "merged")
    shards = sum(len(list(Path(s).glob(g))) for s in stores for g in ("records/*/part-*.parquet", "errors/part-*.parquet"))
    assert merged.merge_from(*stores) == shards > 0                   # every shard of both stores, once
    assert merged.merge_from(*stores) == 0            # merging twice copies nothing
    for k in (DET.key, CAP.key):
        m, f = merged.records(k), full_store.records(k)
        assert list(m.image_id) == list(f.image_id) == world["good"]
    # same results as the single run (deterministic models)
    assert (merged.records(CAP.key).caption.values == full_store.records(CAP.key).caption.values).all()
    assert (merged.records(DET.key).labels.map(list) == full_store.records(DET.key).labels.map(list)).all()
    assert sorted(merged.errors().image_id) == world["bad"]
    # a re-run over the merged store has nothing to do
    again = annotate_main(["--images", str(world["images"]), "--store", str(merged.root), "--workers", "0"] + ARGS)
    assert again == 0 and sorted(_raw_ids(merged, DET.key)) == world["good"]


def test_export_roundtrip(world, full_store, tmp_path, cli):
    from hhperc.perception.formats import read_annotation_table
    out = tmp_path / "table.csv"
    r = cli("annotate", "--annotators", "", "--store", full_store.root, "--export", out,
            "--metadata", world["paths"]["metadata_dir"], "--human", world["paths"]["human_tags"], *TINY)
    assert "wrote" in r.stdout
    back = read_annotation_table(out)
    human = {i[:-4] for i in __import__("pandas").read_csv(world["paths"]["human_tags"], dtype=str)["imageID"]}   # "<id>.jpg"
    expect = sorted(set(world["good"]) & human)
    assert set(expect) <= set(back.id) and len(expect) >= 5          # (crowd-tagged images without a caption are read back as skips)
    det = full_store.records(DET.key).set_index("image_id")
    cap = full_store.records(CAP.key).set_index("image_id")
    for row in back.itertuples():
        assert row.ml_captions == cap.caption[row.id]
        labels = [] if not isinstance(row.ml_labels, str) or not row.ml_labels else row.ml_labels.split(",")
        # the store keeps detections down to its floor (0.3 here); the export keeps the paper's > 0.5
        assert labels == [l for l, s in zip(det.labels[row.id], det.scores[row.id]) if s > 0.5]
        assert list(json.loads(row.ml_label_scores)) == list(det.labels[row.id])
        assert row.mode == "tiny" and row.region in ("Africa", "Asia", "Europe", "The Americas")


def test_cli_errors(tmp_path, cli):
    r = cli("annotate", "--images", tmp_path / "nope", "--store", tmp_path / "s", *TINY, check=False)
    assert r.returncode == 2 and "nope" in r.stderr
    r = cli("annotate", "--images", tmp_path, "--store", tmp_path / "s", "--shard", "2/2", *TINY, check=False)
    assert r.returncode == 2 and "--shard" in r.stderr


def test_crowd_results_in_the_released_shape(tmp_path):
    "The authors' crowd export (docs/FORMATS.md section 1): numeric WorkerId, imageID '<id>.jpg', tag10 after tag1."
    from hhperc.formats import FormatError
    from hhperc.perception.annotators import HumanLabels
    p = tmp_path / "resultswithgoodworkeronly.csv"
    p.write_text("WorkerId,imageID,Answer.tag1,Answer.tag10,Answer.tag2,Answer.tag3\n"
                 "734511,5ec4f91ef0611d7ddd7414a4.jpg,Kitchen,,cooking,appliance\n"
                 "734512,5ec4f91ef0611d7ddd7414a4.jpg,kitchen,home,Fridge,\n"
                 "734511,62a63e809280e38799f991a8.jpg,door,,,\n")
    t = HumanLabels.from_csv(p).table.set_index("id")
    assert list(t.index) == ["5ec4f91ef0611d7ddd7414a4", "62a63e809280e38799f991a8"]
    # the authors' convention: each worker's tags tag1..tag10 (numeric order, although the file has tag10 second),
    # workers in file order, lower-cased, joined with ",", repeats kept
    assert t.human_labels.iloc[0] == "kitchen,cooking,appliance,kitchen,fridge,home"
    assert json.loads(t.tag_counts.iloc[0]) == {"kitchen": 2, "cooking": 1, "appliance": 1, "fridge": 1, "home": 1}
    assert t.n_workers.tolist() == [2, 1] and t.n_tags.tolist() == [6, 1]
    p.write_text(p.read_text().replace("imageID", "picture"))
    with pytest.raises(FormatError) as e:
        HumanLabels.from_csv(p)
    assert "--id-column" in str(e.value) and "id_column=" not in str(e.value)   # the CLI flag, not the Python keyword
    assert len(HumanLabels.from_csv(p, id_column="picture")) == 2
