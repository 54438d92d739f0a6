"""Study A's data side: Dollar Street readers, the synthetic households, the balanced selection, ds_dataset."""
import json
from pathlib import Path

import pandas as pd
import pytest

from hhperc.formats import FormatError
from hhperc.perception.formats import ANNOTATION_COLUMNS, METADATA_COLUMNS, REGIONS, TOPICS, read_annotation_table, read_dollar_street, write_annotation_table, write_dollar_street
from hhperc.perception.dataset import select_study_images
from hhperc.perception.paper import study_table, DS_ANNOTATIONS
from hhperc.perception.synth import make_households


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The smoke households world, with rendered images (a few of them broken)."""
    return make_households(tmp_path_factory.mktemp("hh") / "w", "smoke", seed=0, images=True)


def test_selection_balanced_and_deterministic(world):
    raw = read_dollar_street(world["metadata_dir"])
    sel, log = select_study_images(raw, seed=0, images_root=world["images_dir"])
    cells = sel.groupby(["topic", "region", "income_quartile"]).size()
    assert cells.groupby(level=0).size().eq(16).all()            # every region x quartile present
    assert cells.groupby(level=0).nunique().eq(1).all()           # and equal within each topic
    assert not sel["id"].duplicated().any()                       # no image in two topics
    assert set(sel["topic"]) == set(TOPICS) and len(sel) == 160
    assert len(sel) + len(log) == len(raw)                        # every raw row is kept or logged
    assert {"topic", "image", "balance"} <= set(log["step"])
    again, log2 = select_study_images(raw.sample(frac=1, random_state=1), seed=0, images_root=world["images_dir"])
    pd.testing.assert_frame_equal(sel, again)
    pd.testing.assert_frame_equal(log.sort_values(["step", "id", "topic"]).reset_index(drop=True),
                                  log2.sort_values(["step", "id", "topic"]).reset_index(drop=True))
    other, _ = select_study_images(raw, seed=5, images_root=world["images_dir"])
    assert len(other) == len(sel) and set(other["id"]) != set(sel["id"])
    # the released-table schema of the world is that selection
    table = read_annotation_table(world["annotation_table"])
    assert sorted(table["id"]) == sorted(sel["id"])


def test_readers_round_trip(world, tmp_path):
    raw = read_dollar_street(world["metadata_dir"])
    write_dollar_street(raw, tmp_path / "meta")
    back = read_dollar_street(tmp_path / "meta")
    assert back.attrs["report"].skipped == 0
    key = ["topic", "id"]
    pd.testing.assert_frame_equal(raw[METADATA_COLUMNS].sort_values(key).reset_index(drop=True),
                                  back[METADATA_COLUMNS].sort_values(key).reset_index(drop=True), check_dtype=False)
    t = read_annotation_table(world["annotation_table"])
    assert list(t.columns[:8]) == ANNOTATION_COLUMNS and "ml_label_scores" in t.columns
    write_annotation_table(t, tmp_path / "t.csv")
    pd.testing.assert_frame_equal(t, read_annotation_table(tmp_path / "t.csv"))


def test_bad_records_counted(world, tmp_path):
    raw = read_dollar_street(world["metadata_dir"])                 # the world writes a few bad rows itself
    files = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in Path(world["metadata_dir"]).glob("*.csv")])
    income = pd.to_numeric(files["income"], errors="coerce")
    bad = ~(income >= 0) | ~files["region"].isin(REGIONS)            # counted here without the reader
    assert raw.attrs["report"].skipped == bad.sum() >= 2 and len(raw) == (~bad).sum()
    t = read_annotation_table(world["annotation_table"]).head(6).copy()
    t["income"] = t["income"].astype(object)
    t.loc[t.index[0], "income"] = float("nan"); t.loc[t.index[1], "income"] = -3
    t.loc[t.index[2], "region"] = "Oceania"; t.loc[t.index[3], "human_labels"] = ""
    t.to_csv(tmp_path / "bad.csv", index=False)
    r = read_annotation_table(tmp_path / "bad.csv")
    rep = r.attrs["report"]
    assert len(r) == 2 and rep.skipped == 4
    assert rep.reasons == {"income": 2, "unknown region": 1, "missing field": 1}


def test_wrong_file_is_one_clear_error(tmp_path, world):
    coco = tmp_path / "coco_ab.json"
    coco.write_text(json.dumps([{"image_id": 1, "worker_id": "A", "actionHistories": []}]))
    with pytest.raises(FormatError) as e:
        read_annotation_table(coco)
    assert str(coco) in str(e.value) and "human_labels" in str(e.value)
    with pytest.raises(FormatError, match="missing"):
        read_annotation_table(Path(world["metadata_dir"]) / "kitchens.csv")
    with pytest.raises(FormatError):
        read_dollar_street(coco)


def test_select_cli(cli, world, tmp_path):
    out = tmp_path / "sel.csv"
    r = cli("select", "--metadata", world["metadata_dir"], "--images", world["images_dir"], "--out", out, "--seed", "0")
    assert "selected" in r.stdout
    sel = pd.read_csv(out, dtype={"id": str})
    assert len(sel) == 160 and not sel["id"].duplicated().any()
    assert (tmp_path / "sel.log.csv").is_file()
    bad = cli("select", "--metadata", tmp_path / "nowhere", "--out", out, check=False)
    assert bad.returncode == 2 and "nowhere" in bad.stderr


def test_study_table_resolution(tmp_path):
    from hhperc.reproduce import paper_run
    run = paper_run("smoke", str(tmp_path / "out"), "", [f"run.cache={tmp_path / 'cache'}"], "t")
    df, mode, src = study_table(run)                       # nothing given: the synthetic households
    assert mode == "synthetic" and len(df) == 160 and set(df["region"]) == set(REGIONS)
    mine = tmp_path / "mine.csv"
    write_annotation_table(df.head(20), mine)
    df2, mode2, src2 = study_table(run, str(mine))         # the notebook parameter wins
    assert mode2 == "user" and len(df2) == 20 and src2 == str(mine)   # extra columns: not the released shape
    write_annotation_table(df.head(20)[ANNOTATION_COLUMNS], mine)
    assert study_table(run, str(mine))[1] == "real"                   # exactly the released columns
    run2 = paper_run("smoke", str(tmp_path / "out"), "", [f"run.cache={tmp_path / 'cache'}", f"data.annotation_table={mine}"], "t")
    assert study_table(run2)[1] == "real"
    d = Path(run.out) / "data"; d.mkdir(parents=True, exist_ok=True)   # ds_dataset's output in the same folder
    write_annotation_table(df.head(30), d / DS_ANNOTATIONS)
    (d / "ds_annotations.json").write_text(json.dumps({"mode": "synthetic+tiny"}))
    df3, mode3, _ = study_table(run)
    assert mode3 == "synthetic+tiny" and len(df3) == 30


def test_ds_dataset_notebook(run_paper, tmp_path):
    out = run_paper("ds_dataset", tmp_path / "out", annotate=True)
    t = pd.read_csv(out / "tables" / "ds_dataset.csv")
    assert set(t["mode"]) == {"synthetic"}
    n = t[(t.row == "all") & (t.variant == "count") & (t.metric == "images")]
    assert n["value"].iloc[0] == 160 and n["paper"].iloc[0] == 1886
    per_region = t[(t.variant == "count") & t.row.isin(REGIONS)]
    assert per_region["value"].eq(40).all()
    assert (out / "figures" / "ds_dataset_income.png").is_file()
    ann = read_annotation_table(out / "data" / DS_ANNOTATIONS)
    assert len(ann) == 160
    assert json.loads((out / "data" / "ds_annotations.json").read_text())["mode"] == "synthetic+tiny"


# ---- fuzz: broken records are skipped and counted with the right reason, never a crash ----
from hypothesis import given, settings as hsettings, strategies as st, HealthCheck

_income = st.one_of(st.floats(0, 20000, allow_nan=False).map(lambda x: (str(round(x, 2)), None)),
                    st.sampled_from([("nan", "income"), ("", "income"), ("abc", "income"), ("-12", "income"), ("inf", "income")]))
_region = st.one_of(st.sampled_from([(r, None) for r in REGIONS] + [("americas", None), (" Asia ", None)]),
                    st.sampled_from([("Oceania", "unknown region"), ("", "unknown region"), ("42", "unknown region")]))
_ident = st.one_of(st.text("abcdef0123456789", min_size=4, max_size=12).map(lambda s: (s, None)),
                   st.just(("", "missing field")))


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_ident, _income, _region), min_size=1, max_size=12))
def test_fuzz_annotation_table(tmp_path, rows):
    ids = [f"{i}-{k}" if i else "" for k, ((i, _), _, _) in enumerate(rows)]   # unique when present
    df = pd.DataFrame({"id": ids, "category": "kitchens", "country": "X", "income": [v for _, (v, _), _ in rows],
                       "region": [v for _, _, (v, _) in rows], "human_labels": "pot", "ml_captions": "a pot", "ml_labels": ""})
    p = tmp_path / "fuzz.csv"; df.to_csv(p, index=False)
    t = read_annotation_table(p)
    rep = t.attrs["report"]
    expected = {}
    for (_, e1), (_, e2), (_, e3) in rows:
        reason = e1 or e2 or e3
        if reason: expected[reason] = expected.get(reason, 0) + 1
    assert rep.ok + rep.skipped == len(rows) and len(t) == rep.ok
    assert rep.reasons == expected, (rep.reasons, expected)


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(1, 400), junk=st.binary(max_size=40))
def test_fuzz_truncated_metadata(tmp_path, world, cut, junk):
    src = (Path(world["metadata_dir"]) / "kitchens.csv").read_bytes()
    p = tmp_path / "kitchens.csv"; p.write_bytes(src[:cut] + junk)
    try:
        df = read_dollar_street(p)
    except FormatError as e:
        assert str(p) in str(e)
        return
    assert len(df) == df.attrs["report"].ok


def test_selection_on_mlcommons_schema(world, tmp_path):
    """The same images written in the MLCommons schema select the same set."""
    from hhperc.perception.dataset import read_metadata
    raw = read_dollar_street(world["metadata_dir"])
    codes = {"Africa": "af", "Asia": "as", "Europe": "eu", "The Americas": "am"}
    ml = raw.groupby("id", sort=True).agg(topics=("topic", list), region=("region", "first"), country=("country", "first"),
                                          income=("income", "first"), media=("media_type", "first")).reset_index()
    ml = pd.DataFrame({"id": ml["id"], "country.id": "xx", "country.name": ml["country"], "region.id": ml["region"].map(codes),
                       "type": ml["media"].map({"img": "image", "video": "video"}), "imageRelPath": ml["id"] + ".jpg",
                       "topics": ml["topics"].map(str), "place": "home", "income": ml["income"]})
    ml.to_csv(tmp_path / "mlcommons.csv", index=False)
    m = read_metadata(tmp_path / "mlcommons.csv", world["images_dir"])
    assert "image" in m.columns and m.attrs["report"].skipped == 0
    a, _ = select_study_images(raw, seed=0, images_root=world["images_dir"])
    b, _ = select_study_images(m, seed=0, images_root=world["images_dir"])
    assert sorted(a["id"]) == sorted(b["id"])


def test_full_chain_images_to_tables(tmp_path, shared_cache):
    """Issue 9: rendered images -> selection -> tiny annotators -> annotation table -> the three study tables, one command."""
    from conftest import hhperc
    out = tmp_path / "chain"
    r = hhperc("reproduce", "ds_dataset", "ds_similarity", "ds_region", "ds_income", "--profile", "smoke", "--out", out,
               "--no-progress", "--param", "annotate=True", "--param", "sentence_model=tiny", "--set", f"run.cache={shared_cache}")
    assert "4/4 notebooks ok" in r.stdout
    ann = json.loads((out / "data" / "ds_annotations.json").read_text())
    assert ann["mode"] == "synthetic+tiny"
    for name in ("ds_similarity", "ds_region", "ds_income"):
        t = pd.read_csv(out / "tables" / f"{name}.csv")
        assert len(t) and t["mode"].str.contains("tiny").all(), name      # the tiny-annotated table, labelled as such


_HDR = '"id","topics","media_type","images","familyid","region","country","slug","income","topic"\n'


def _line(i, region, income, tag="visit"):
    "One row exactly as the released per-topic files write it (every value quoted, `families` in `topic`)."
    return (f'"{i}","{tag}","img","https://media.dollarstreet.org/x/{i[:8]}_2048.jpg","62a6057e9280e33271f96992",'
            f'"{region}","Kenya","family-408","{income}","families"\n')


def test_released_shape_topic_from_file_name(tmp_path):
    "docs/FORMATS.md section 1: the study topic is the file's name; the topic column says `families` on every row."
    d = tmp_path / "data"; d.mkdir()
    (d / "kitchens.csv").write_text(_HDR + _line("62a63e809280e38799f991a8", "Africa", "198")
                                    + _line("5d4bde03cf0b3a0f3f354b29", "Europe", "2496.5", "kitchen-sinks"))
    (d / "front-doors.csv").write_text(_HDR + _line("62a63e809280e38799f991a8", "Africa", "198"))
    raw = read_dollar_street(d)
    assert sorted(zip(raw["topic"], raw["id"])) == [("front-doors", "62a63e809280e38799f991a8"),
                                                    ("kitchens", "5d4bde03cf0b3a0f3f354b29"), ("kitchens", "62a63e809280e38799f991a8")]
    assert raw["income"].tolist() == [198.0, 198.0, 2496.5] and raw.attrs["report"].skipped == 0
    with pytest.raises(FormatError) as e:                # three rows fill no topic's 16 cells: one error, not an empty study
        select_study_images(raw)
    assert str(d) in str(e.value) and "--metadata" in str(e.value) and "3 of them in a study topic" in str(e.value)


def test_selection_counts_by_hand(tmp_path):
    "One topic, per region 8, 9, 10, 11 images: quartiles of 2,2,2,2 / 3,2,2,2 / 3,2,3,2 / 3,3,3,2 rows; 16 cells of 2 = 32 kept."
    rows = [dict(id=f"{r[:2]}{j:02d}", topic="kitchens", region=r, income=float(100 + j))
            for r, n in zip(REGIONS, (8, 9, 10, 11)) for j in range(n)]
    sel, log = select_study_images(pd.DataFrame(rows), seed=3)
    assert len(sel) == 32 and len(log) == 38 - 32 and set(log.step) == {"balance"}
    assert sel.groupby(["region", "income_quartile"]).size().eq(2).all()
    # quartiles by rank within the region: the two cheapest Africa images are quartile 1, the two dearest quartile 4
    af = sel[sel.region == "Africa"].sort_values("income")
    assert af.id.tolist() == [f"Af{j:02d}" for j in range(8)] and af.income_quartile.tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
