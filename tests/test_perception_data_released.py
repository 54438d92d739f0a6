"""Study A's data side on files shaped exactly like the authors' release (docs/FORMATS.md section 1).

`tests/fixtures/perception/released/` was written by hand in the released shapes: two per-topic metadata files
(every value quoted, `families` in the `topic` column, `visit` / `kitchen-sinks` tags in `topics`, a URL whose id
differs from `id`, `video` rows, an income with decimals) and a crowd export (`WorkerId, imageID` with `.jpg`, tag
columns in lexicographic order, a quoted tag with a comma, case varying, an image not in the metadata, a row with
no image). The expected numbers below are worked out by hand from those files:

drinking-water: Africa 30, 60, 90 (D1), 120 (D2), 150 -> rank quartiles 1, 1, 2, 3, 4; Asia, Europe, The Americas
4 images each -> one per quartile. Smallest cell 1: 16 kept (one of 30/60 dropped).
kitchens: Africa 35, 50, 90 (D1), 95, 120 (D2), 125, 130, 140, 160 -> quartiles (9 rows: floor(4r/9)+1)
1, 1, 1, 2, 2, 3, 3, 4, 4; the other regions 8 images -> 2 per quartile. Smallest cell 2: 32 kept. D1 shares
its quartile-1 cell with two single-topic images, so it is spared; D2's quartile-2 cell has exactly 2 rows, so
D2 is kept there too. D2 is then selected under both topics and stays under kitchens (the later name), so
drinking-water ends with 15 = 16 - 1, the paper's pattern (drinking-water 254 = 256 - 2). 47 images in all.
"""
import json
from pathlib import Path

import pandas as pd
import pytest

from hhperc.formats import FormatError
from hhperc.perception.annotators import HumanLabels, annotation_table
from hhperc.perception.dataset import select_study_images, selection_summary
from hhperc.perception.formats import ANNOTATION_COLUMNS, read_dollar_street

FIX = Path(__file__).parent / "fixtures" / "perception" / "released"
CROWD = FIX / "resultswithgoodworkeronly.csv"
D1, D2, ASIA = "5d4bde03cf0b3a0f3f35d001", "5d4bde03cf0b3a0f3f35d002", "5f1a00000000000000000004"


@pytest.fixture
def meta_dir(tmp_path):
    d = tmp_path / "data"; d.mkdir()
    for f in ("drinking-water.csv", "kitchens.csv"): (d / f).write_bytes((FIX / f).read_bytes())
    return d


def test_reader_takes_the_topic_from_the_file_name(meta_dir):
    raw = read_dollar_street(meta_dir)
    assert raw.attrs["report"].skipped == 0 and len(raw) == 17 + 33
    assert raw.groupby("topic").size().to_dict() == {"drinking-water": 17, "kitchens": 33}
    assert set(pd.read_csv(meta_dir / "kitchens.csv", dtype=str)["topic"]) == {"families"}   # what the file says
    assert raw.loc[raw.income % 1 != 0, "income"].tolist() == [1999.5]


def test_selection_counts_by_hand(meta_dir):
    sel, log = select_study_images(meta_dir, seed=0)
    assert sel.groupby("topic").size().to_dict() == {"drinking-water": 15, "kitchens": 32} and len(sel) == 47
    assert sel.groupby(["topic", "region", "income_quartile"]).size().groupby(level=0).max().to_dict() == {"drinking-water": 1, "kitchens": 2}
    assert sel.set_index("id").loc[[D1, D2], "topic"].tolist() == ["drinking-water", "kitchens"]
    assert log[log.step == "two topics"][["id", "topic"]].values.tolist() == [[D2, "drinking-water"]]
    assert sorted(log.loc[log.step == "balance", "id"].str[:4].tolist()) == ["5d4b", "5f1a"]   # D1 under kitchens, one of 30/60
    assert len(sel) + len(log) == 50
    assert sel.region.value_counts().to_dict() == {"Asia": 12, "Europe": 12, "The Americas": 12, "Africa": 11}
    s = selection_summary(sel, log).set_index(["step", "kind"]).rows.to_dict()
    assert s[("image", "not checked (no images given)")] == 0            # from the metadata alone, and it says so
    for seed in (1, 2, 3):                                               # the counts do not depend on the seed
        assert select_study_images(meta_dir, seed=seed)[0].groupby("topic").size().to_dict() == {"drinking-water": 15, "kitchens": 32}


def test_crowd_results_gathered_as_the_authors_did():
    hl = HumanLabels.from_csv(CROWD)
    t = hl.table.set_index("id")
    assert sorted(t.index) == sorted([D1, D2, ASIA, "ffffffffffffffffffffffff"])
    # per worker tag1..tag10 (the file lists tag10 second), workers in file order, cleaned, repeats kept
    assert t.human_labels[D2] == "kitchen,cooking,fridge,kitchen,pots pans,stove,window,sink"
    assert t.human_labels[D1] == "water,bucket,rusted fence,tap"
    assert t.human_labels[ASIA] == "glass,water,table"
    assert (t.n_workers[D2], t.n_tags[D2]) == (3, 8) and json.loads(t.tag_counts[D2])["kitchen"] == 2
    assert hl.report.reasons == {"missing field": 1}


def test_annotate_ingests_the_released_crowd_results(meta_dir, tmp_path, cli):
    out = tmp_path / "table.csv"
    r = cli("annotate", "--human", CROWD, "--metadata", meta_dir, "--store", tmp_path / "s", "--export", out,
            "--set", "data.dollar_street_images=", "--no-progress")
    assert "nothing annotated" in r.stdout and "wrote" in r.stdout
    t = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(t.columns[:8]) == ANNOTATION_COLUMNS
    assert t.id.tolist() == sorted([D1, D2, ASIA])                        # the image outside the metadata is left out
    t = t.set_index("id")
    assert t.loc[ASIA, ["category", "country", "income", "region"]].tolist() == ["drinking-water", "India", "200.0", "Asia"]
    assert t.human_labels[D2] == "kitchen,cooking,fridge,kitchen,pots pans,stove,window,sink"
    assert t.category[D1] == "kitchens"          # raw metadata: an image of two topics takes the later name
    assert set(t.ml_captions) == {""} and set(t["mode"]) == {"real"}
    # with the selection as --metadata, every image has the topic it was selected under
    cli("select", "--metadata", meta_dir, "--out", tmp_path / "sel.csv", "--set", "data.dollar_street_images=")
    cli("annotate", "--human", CROWD, "--metadata", tmp_path / "sel.csv", "--store", tmp_path / "s", "--export", out,
        "--set", "data.dollar_street_images=", "--no-progress")
    t2 = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("id")
    assert t2.category[D1] == "drinking-water" and t2.category[D2] == "kitchens"


def test_ingest_that_finds_nothing_is_one_error(meta_dir, tmp_path, cli):
    bad = tmp_path / "crowd.csv"
    bad.write_text("WorkerId,imageID,Answer.tag1\n1,aaaaaaaaaaaaaaaaaaaaaaaa.jpg,door\n")
    r = cli("annotate", "--human", bad, "--metadata", meta_dir, "--store", tmp_path / "s", "--export", tmp_path / "t.csv",
            "--set", "data.dollar_street_images=", check=False)
    assert r.returncode == 2 and str(meta_dir) in r.stderr and "--metadata" in r.stderr and not (tmp_path / "t.csv").exists()
    with pytest.raises(FormatError, match="--human"):
        annotation_table(tmp_path / "empty-store")


def test_select_from_a_folder_of_other_files_is_one_error(tmp_path, cli):
    d = tmp_path / "other"; d.mkdir()
    (d / "families.csv").write_bytes((FIX / "kitchens.csv").read_bytes())
    r = cli("select", "--metadata", d, "--out", tmp_path / "s.csv", "--set", "data.dollar_street_images=", check=False)
    assert r.returncode == 2 and str(d) in r.stderr and "--metadata" in r.stderr and not (tmp_path / "s.csv").exists()


def test_ds_dataset_reproduces_the_counts_from_released_metadata(meta_dir, tmp_path, cli, shared_cache):
    out = tmp_path / "o"
    r = cli("reproduce", "ds_dataset", "--profile", "smoke", "--out", out, "--no-progress", "--param", f"metadata={meta_dir}",
            "--set", f"run.cache={shared_cache}")
    assert "1/1 notebooks ok" in r.stdout, r.stdout[-2000:]
    sel = pd.read_csv(out / "data" / "ds_selection.csv", dtype={"id": str})
    assert sel.groupby("topic").size().to_dict() == {"drinking-water": 15, "kitchens": 32}
