"""Open questions 1 and 3 on the command line: several annotator sets in one store, detections kept down to a floor.

Two detector families (torchvision Faster R-CNN `tiny`, a Hugging Face Conditional DETR saved by
`save_tiny_hf_annotator`) and two captioner architectures (BLIP `tiny`, a Hugging Face GIT), random weights."""
import json

import pandas as pd
import pytest

from hhperc.perception.annotators import AnnotationStore, annotator_sets, save_tiny_hf_annotator


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image
    import numpy as np
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(3): Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(d / f"im{i}.jpg")
    return d


def test_two_named_sets_side_by_side(images, tmp_path, cli):
    git, detr = save_tiny_hf_annotator("git", tmp_path / "git"), save_tiny_hf_annotator("conditional_detr", tmp_path / "detr")
    store = tmp_path / "store"
    base = ["--images", images, "--store", store, "--no-progress", "--workers", "0", "--threads", "1", "--max-new-tokens", "4"]
    cli("annotate", *base, "--annotator-set", "paper-tiny", "--set", "models.detector=tiny", "--set", "models.captioner=tiny", "--floor", "0.3")
    cli("annotate", *base, "--annotator-set", "detr+git", "--set", f"models.detector={detr}", "--set", f"models.captioner={git}")
    sets = annotator_sets(store).set_index("set")
    assert sorted(sets.index) == ["detr+git", "paper-tiny"] and sets.images.tolist() == [3, 3]
    assert sets.loc["detr+git", "mode"] == "substitute" and sets.loc["paper-tiny", "mode"] == "tiny"
    assert sets.loc["detr+git", "captioner"] == str(git) and sets.loc["paper-tiny", "detector"] == "tiny"
    st = AnnotationStore(store)
    for name in ("paper-tiny", "detr+git"):
        out = tmp_path / f"{name}.csv"
        cli("annotate", "--store", store, "--annotators", "", "--export", out, "--annotator-set", name, "--set", "data.dollar_street=")
        t = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("id")
        cap = st.records(sets.loc[name, "captioner_key"]).set_index("image_id").caption
        assert t.ml_captions.to_dict() == cap.to_dict()                        # the set's own captioner
        assert set(t.annotator_set) == {name} and set(t["mode"]) == {sets.loc[name, "mode"]}
    r = cli("annotate", "--store", store, "--annotators", "", "--export", tmp_path / "x.csv", "--annotator-set", "nope",
            "--set", "data.dollar_street=", check=False)
    assert r.returncode == 2 and "--annotator-set 'nope'" in r.stderr and "detr+git" in r.stderr


def test_floor_in_the_store_threshold_at_export(images, tmp_path, cli):
    "Detections kept down to the floor and the paper's 0.5 applied at export give the labels of a detector run at 0.5."
    run = ["--images", images, "--annotators", "detector", "--set", "models.detector=tiny", "--no-progress", "--workers", "0", "--threads", "1"]
    cli("annotate", *run, "--store", tmp_path / "low")                        # default floor 0.05
    cli("annotate", *run, "--store", tmp_path / "paper", "--floor", "0.5")    # the paper's threshold at detection time
    tabs = {}
    for name in ("low", "paper"):
        cli("annotate", "--store", tmp_path / name, "--annotators", "", "--export", tmp_path / f"{name}.csv", "--set", "data.dollar_street=")
        tabs[name] = pd.read_csv(tmp_path / f"{name}.csv", dtype=str, keep_default_na=False).set_index("id")
    assert tabs["low"].ml_labels.to_dict() == tabs["paper"].ml_labels.to_dict()
    det = AnnotationStore(tmp_path / "low").records(annotator_sets(tmp_path / "low").detector_key.iloc[0]).set_index("image_id")
    for i, row in tabs["low"].iterrows():
        scores = json.loads(row.ml_label_scores)
        assert scores == {l: round(float(s), 4) for l, s in zip(det.labels[i], det.scores[i])}   # every kept label with its score
        assert set(json.loads(tabs["paper"].ml_label_scores[i])) <= set(scores)
        labels = row.ml_labels.split(",") if row.ml_labels else []
        assert labels == [l for l, s in zip(det.labels[i], det.scores[i]) if s > 0.5]
    r = cli("annotate", "--store", tmp_path / "paper", "--annotators", "", "--export", tmp_path / "y.csv", "--threshold", "0.3",
            "--set", "data.dollar_street=", check=False)
    assert r.returncode == 2 and "below the store's detection floor" in r.stderr
