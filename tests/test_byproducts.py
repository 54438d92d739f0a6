"""ImageNet-AB / COCO-AB readers, writers and index (hhperc.luab.formats) and the objects world CLI.

docs/FORMATS.md samples parse to the documented values; write -> read round trips (hypothesis);
a fuzz corpus of broken records is skipped and counted, never crashes a reader, and the fast index
parser agrees with the full parser; the cached index reloads equal to a direct read;
`hhperc synth --study objects` works at smoke scale.
"""
import json
import math
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hhperc.formats import FormatError
from hhperc.luab.formats import COCO_CLASSES, COCO_INDEX, BadRecord, build_byproduct_index, coco_ab_row, coco_points, fast_imagenet_ab_row, imagenet_ab_row, imagenet_ab_xml, load_byproduct_index, parse_imagenet_ab_xml, read_coco_ab, read_imagenet_ab, write_coco_ab, write_imagenet_ab_xml

# docs/FORMATS.md section 2, with its placeholders (`..`, `True|False`, prose in element text) filled in.
IMAGENET_AB_SAMPLE = """<annotation>
  <folder>n02490219</folder> <filename>n02490219_6469</filename>
  <source><database>ILSVRC_2012</database></source>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <segmented>0</segmented>
  <metadata>
    <selected>True</selected>
    <selectedRecord><x>0.54</x><y>0.47</y><time>1641425052319</time></selectedRecord>
    <worker_id>47DBDD543E</worker_id> <assignment_id>3AB1C</assignment_id>
    <estimateTime>1830</estimateTime> <selectedCount>1</selectedCount>
    <hoveredRecord><action>enter</action><time>1641425050100</time></hoveredRecord>
    <hoveredRecord><action>leave</action><time>1641425052900</time></hoveredRecord>
    <mouseTracking><time>1641425051000</time><x>0.2</x><y>0.9</y></mouseTracking>
    <mouseTracking><time>1641425051017</time><x>0.25</x><y>0.85</y></mouseTracking>
  </metadata>
</annotation>
"""

# docs/FORMATS.md section 3, verbatim (a valid JSON object as printed).
COCO_AB_SAMPLE = """{"image_id": 296169, "worker_id": "00AA3B5E80", "hit_id": "<32 hex>", "page_id": 7,
 "originalImageWidth": 480, "originalImageHeight": 360, "imageWidth": 450, "imageHeight": 450,
 "timeSpent": 168291,
 "actionHistories": [
   {"actionType": "add",  "iconType": "cake", "pointFrom": null,
    "pointTo": {"x": 0.788, "y": 0.838}, "timeAt": 155755},
   {"actionType": "move", "iconType": "cake", "pointFrom": {"x": 0.788, "y": 0.838},
    "pointTo": {"x": 0.702, "y": 0.544}, "timeAt": 158789}],
 "categoryHistories": [{"categoryIndex": 1, "categoryName": "Animal", "timeAt": 144081, "usingKeyboard": false}],
 "mouseTracking": [{"timeAt": 0, "x": 0.1, "y": 0.2}]}"""


def same_row(a: dict, b: dict, skip=()) -> bool:
    "Row dicts equal, NaN == NaN."
    def eq(x, y):
        return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
    return a.keys() == b.keys() and all(eq(a[k], b[k]) for k in a if k not in skip)


def _rec(k: int, wnid: str = "n02490219") -> dict:
    "A deterministic realistic record from the objects world's simulated annotators."
    from hhperc.luab.synth import annotate_imagenet_ab, make_annotators
    rng = np.random.default_rng(k)
    mask = np.zeros((40, 40), bool)
    x, y = rng.integers(0, 25, 2)
    mask[y:y + 12, x:x + 12] = True
    return annotate_imagenet_ab(rng, f"{wnid}_{k}", wnid, mask, make_annotators(np.random.default_rng(0), 6), with_box=k % 2 == 0)


# ---------------------------------------------------------------- docs/FORMATS.md samples

def test_imagenet_ab_sample_parses(tmp_path):
    p = tmp_path / "train_xml" / "n02490219" / "n02490219_6469.xml"
    p.parent.mkdir(parents=True)
    p.write_text(IMAGENET_AB_SAMPLE)
    (p.parent / "._n02490219_6469.xml").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    df = read_imagenet_ab(tmp_path)
    assert len(df) == 1
    r = df.iloc[0]
    assert (r.id, r.wnid, r.width, r.height) == ("n02490219_6469", "n02490219", 500, 375)
    assert r.n_tasks == 1 and r.selected == [True] and r.first_x == [0.54] and r.first_y == [0.47]
    assert r.first_time == [1641425052319] and r.worker_id == ["47DBDD543E"]
    assert r.estimate_time == [1830] and r.selected_count == [1] and r.n_hover == [2] and r.n_track == [2]
    assert (r.luab_x, r.luab_y, r.luab_n) == (0.54, 0.47, 1)
    assert [h["action"] for h in r.hovers[0]] == ["enter", "leave"]
    assert r.track[0][1] == {"time": 1641425051017, "x": 0.25, "y": 0.85}
    rep = df.attrs["report"]
    assert rep.ok == 1 and rep.skipped == 1 and rep.reasons == {"junk file": 1}


def test_coco_ab_sample_parses(tmp_path):
    p = tmp_path / "coco_ab.json"
    p.write_text("[" + COCO_AB_SAMPLE + "]")
    df = read_coco_ab(p)
    r = df.iloc[0]
    assert (r.image_id, r.worker_id, r.hit_id, r.page_id) == (296169, "00AA3B5E80", "<32 hex>", 7)
    assert (r.orig_width, r.orig_height, r.width, r.height, r.time_spent) == (480, 360, 450, 450, 168291)
    assert r.classes == ["cake"] and r.n_actions == 2
    k = COCO_INDEX["cake"]
    assert (r.add_x[k], r.add_y[k]) == (0.788, 0.838)            # the last add; the move is ignored
    assert sum(v is not None for v in r.add_x) == 1
    assert np.allclose(coco_points(df)[0, k], [0.788 * 480, 0.838 * 360])
    assert np.isnan(coco_points(df)[0, COCO_INDEX["person"]]).all()
    assert [a["action"] for a in r.actions] == ["add", "move"] and r.actions[1]["to_x"] == 0.702
    assert r.category_histories[0] == {"index": 1, "name": "Animal", "time": 144081.0, "keyboard": False}
    assert r.mouse_tracking == [{"time": 0.0, "x": 0.1, "y": 0.2}]


def test_luab_point_is_mean_of_first_selected_points():
    rec = parse_imagenet_ab_xml(IMAGENET_AB_SAMPLE)
    t = rec["tasks"][0]
    second = {**t, "selected_records": [{"x": 0.1, "y": 0.2, "time": 1}, {"x": 0.9, "y": 0.9, "time": 2}]}
    unselected = {**t, "selected": False, "selected_records": [{"x": 0.0, "y": 0.0, "time": 3}]}
    row = imagenet_ab_row({**rec, "tasks": [t, second, unselected]})
    assert row["luab_n"] == 2 and math.isclose(row["luab_x"], (0.54 + 0.1) / 2) and math.isclose(row["luab_y"], (0.47 + 0.2) / 2)
    assert row["n_selected"] == 2 and row["first_x"] == [0.54, 0.1, 0.0]


def test_wrong_files_are_one_clear_error(tmp_path):
    cj = write_coco_ab([json.loads(COCO_AB_SAMPLE)], tmp_path / "coco_ab.json")
    with pytest.raises(FormatError, match="ImageNet-AB"):
        read_imagenet_ab(cj)
    with pytest.raises(FormatError, match="nothing at that path"):
        read_imagenet_ab(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no .xml files"):
        read_imagenet_ab(tmp_path / "empty")
    csv = tmp_path / "annotations.csv"
    csv.write_text("id,category,country,income,region,human_labels,ml_captions,ml_labels\n1,kitchens,India,30,Asia,a,b,c\n")
    with pytest.raises(FormatError, match="COCO-AB"):
        read_coco_ab(csv)
    inst = tmp_path / "instances.json"
    inst.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(FormatError, match="COCO instances"):
        read_coco_ab(inst)
    voc = tmp_path / "voc" / "train_xml" / "n1"
    voc.mkdir(parents=True)
    (voc / "n1_1.xml").write_text("<html><body>not an annotation</body></html>")
    with pytest.raises(FormatError, match="none readable"):
        read_imagenet_ab(tmp_path / "voc")


# ---------------------------------------------------------------- round trips

unit = st.floats(0, 1, allow_nan=False).map(lambda v: round(v, 6))
ms = st.integers(1_600_000_000_000, 1_700_000_000_000)
ident = st.text("0123456789ABCDEF", min_size=1, max_size=12)
point = st.fixed_dictionaries({"x": unit, "y": unit, "time": ms})


@st.composite
def tasks(draw):
    selected = draw(st.booleans())
    recs = draw(st.lists(point, min_size=1 if selected else 0, max_size=3))
    return {"selected": selected, "selected_records": recs, "worker_id": draw(st.none() | ident),
            "assignment_id": draw(st.none() | ident), "estimate_time": draw(st.none() | st.integers(0, 10**6)),
            "selected_count": draw(st.none() | st.integers(0, 5)),
            "hovers": draw(st.lists(st.fixed_dictionaries({"action": st.sampled_from(["enter", "leave"]), "time": ms}), max_size=4)),
            "track": draw(st.lists(st.fixed_dictionaries({"time": ms, "x": unit, "y": unit}), max_size=20))}


@st.composite
def ab_records(draw):
    wnid = "n%08d" % draw(st.integers(0, 10**8 - 1))
    return {"id": f"{wnid}_{draw(st.integers(0, 10**6))}", "wnid": wnid, "width": draw(st.integers(1, 5000)),
            "height": draw(st.integers(1, 5000)), "depth": draw(st.none() | st.just(3)),
            "objects": draw(st.lists(st.fixed_dictionaries({"name": st.just(wnid), "xmin": st.integers(0, 99).map(float),
                                                            "ymin": st.integers(0, 99).map(float), "xmax": st.integers(100, 200).map(float),
                                                            "ymax": st.integers(100, 200).map(float)}), max_size=2)),
            "tasks": draw(st.lists(tasks(), max_size=4))}


@settings(max_examples=60, deadline=None)
@given(ab_records())
def test_imagenet_ab_xml_round_trip(rec):
    text = imagenet_ab_xml(rec)
    parsed = parse_imagenet_ab_xml(text)
    assert parsed.pop("field_errors") == [] and parsed == rec
    assert same_row(fast_imagenet_ab_row(text.encode()), imagenet_ab_row(rec, tracks=False))


def test_imagenet_ab_folder_round_trip(tmp_path):
    recs = [_rec(k, f"n{k % 3:08d}") for k in range(12)]
    for r in recs:
        write_imagenet_ab_xml(r, tmp_path / "train_xml" / r["wnid"] / f"{r['id']}.xml")
    df = read_imagenet_ab(tmp_path).set_index("id")
    assert df.attrs["report"].skipped == 0
    for r in recs:
        want = imagenet_ab_row(r)
        got = df.loc[r["id"]]
        for k, v in want.items():
            if k == "id": continue
            g = got[k]
            if isinstance(v, float) and math.isnan(v): assert math.isnan(g)
            else: assert (g.tolist() if hasattr(g, "tolist") else g) == v, k


action = st.sampled_from(COCO_CLASSES).flatmap(lambda c: st.one_of(
    st.fixed_dictionaries({"actionType": st.just("add"), "iconType": st.just(c), "pointFrom": st.none(),
                           "pointTo": st.fixed_dictionaries({"x": unit, "y": unit}), "timeAt": st.integers(0, 10**6)}),
    st.fixed_dictionaries({"actionType": st.just("move"), "iconType": st.just(c), "pointFrom": st.fixed_dictionaries({"x": unit, "y": unit}),
                           "pointTo": st.fixed_dictionaries({"x": unit, "y": unit}), "timeAt": st.integers(0, 10**6)}),
    st.fixed_dictionaries({"actionType": st.just("remove"), "iconType": st.just(c), "pointFrom": st.fixed_dictionaries({"x": unit, "y": unit}),
                           "pointTo": st.none(), "timeAt": st.integers(0, 10**6)})))
coco_record = st.fixed_dictionaries({
    "image_id": st.integers(0, 10**6), "worker_id": ident, "hit_id": ident, "page_id": st.integers(0, 20),
    "originalImageWidth": st.integers(1, 2000), "originalImageHeight": st.integers(1, 2000),
    "imageWidth": st.just(450), "imageHeight": st.just(450), "timeSpent": st.integers(0, 10**6),
    "actionHistories": st.lists(action, max_size=8),
    "categoryHistories": st.lists(st.fixed_dictionaries({"categoryIndex": st.integers(0, 11), "categoryName": st.sampled_from(["Animal", "Food"]),
                                                         "timeAt": st.integers(0, 10**6), "usingKeyboard": st.booleans()}), max_size=3),
    "mouseTracking": st.lists(st.fixed_dictionaries({"timeAt": st.integers(0, 10**6), "x": unit, "y": unit}), max_size=5)})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(coco_record, max_size=6))
def test_coco_ab_round_trip(tmp_path, records):
    p = write_coco_ab(records, tmp_path / "ab.json")
    df = read_coco_ab(p)
    assert len(df) == len(records) and df.attrs["report"].skipped == 0
    for (_, row), rec in zip(df.iterrows(), records):
        want = coco_ab_row(rec)
        assert row.image_id == want["image_id"] and list(row.classes) == want["classes"]
        assert [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in row.add_x] == want["add_x"]
        last = {}
        for a in rec["actionHistories"]:
            if a["actionType"] == "add": last[a["iconType"]] = a["pointTo"]
        for c, pt in last.items():
            assert (row.add_x[COCO_INDEX[c]], row.add_y[COCO_INDEX[c]]) == (pt["x"], pt["y"])


# ---------------------------------------------------------------- fuzz corpus

def _mutations(text: str, rng: random.Random):
    "(name, broken text) pairs, each certain to be unusable."
    yield "truncated", text[: rng.randrange(1, len(text) - 20)]
    yield "empty", ""
    yield "binary", "\x00\x01garbage\x02"
    yield "no selected", text.replace("<selected>True</selected>", "", 1)
    yield "bad selected", text.replace("<selected>True</selected>", "<selected>maybe</selected>", 1)
    yield "x out of range", text.replace("<x>0.54</x>", "<x>1.7</x>", 1)
    yield "x nan", text.replace("<x>0.54</x>", "<x>nan</x>", 1)
    yield "selected without point", text.replace(text[text.index("<selectedRecord>"): text.index("</selectedRecord>") + 17], "", 1)
    yield "wrong root", text.replace("<annotation>", "<html>").replace("</annotation>", "</html>")
    yield "unclosed metadata", text.replace("</metadata>", "", 1)


# A fault in a field LUAB does not learn from: the record and its click are kept, the fault is counted.
FIELD_ERRORS = [
    ("no size", lambda t: t.replace(t[t.index("<size>"): t.index("</size>") + 7], ""), "missing field: size"),
    ("bad width", lambda t: t.replace("<width>500", "<width>abc500", 1), "bad value: size.width='abc500'"),
    ("zero height", lambda t: t.replace("<height>375</height>", "<height>0</height>", 1), "out of range: size.height=0.0"),
    ("bad count", lambda t: t.replace("<selectedCount>1</selectedCount>", "<selectedCount>1.5</selectedCount>", 1),
     "bad value: metadata[0].selectedCount='1.5' is not an integer"),
    ("negative estimateTime", lambda t: t.replace("<estimateTime>1830</estimateTime>", "<estimateTime>-4</estimateTime>", 1),
     "out of range: metadata[0].estimateTime=-4.0"),
    ("odd hover action", lambda t: t.replace("<action>leave</action>", "<action>hover</action>", 1),
     "bad value: metadata[0].hoveredRecord.action='hover'"),
    ("bad track sample", lambda t: t.replace("<x>0.25</x>", "<x>left</x>", 1), "bad value: metadata[0].mouseTracking.x='left'"),
    ("bad click time", lambda t: t.replace("<time>1641425052319</time>", "<time>noon</time>", 1),
     "bad value: metadata[0].selectedRecord.time='noon'"),
]


@pytest.mark.parametrize("name,edit,reason", FIELD_ERRORS, ids=[f[0] for f in FIELD_ERRORS])
def test_a_field_error_keeps_the_record_and_its_click(name, edit, reason, tmp_path):
    text = edit(IMAGENET_AB_SAMPLE)
    assert text != IMAGENET_AB_SAMPLE
    rec = parse_imagenet_ab_xml(text)
    assert rec["field_errors"] == [reason]
    pt = rec["tasks"][0]["selected_records"][0]
    assert (pt["x"], pt["y"]) == (0.54, 0.47)                      # the click of docs/FORMATS.md's sample, by hand
    fast = fast_imagenet_ab_row(text.encode())
    assert same_row(fast, imagenet_ab_row(rec, tracks=False))      # the index path keeps it the same way
    assert (fast["luab_x"], fast["luab_y"], fast["luab_n"]) == (0.54, 0.47, 1)
    d = tmp_path / "train_xml" / "n02490219"
    d.mkdir(parents=True)
    (d / "n02490219_6469.xml").write_text(text)
    for tracks in (True, False):
        df = read_imagenet_ab(tmp_path, tracks=tracks)
        rep = df.attrs["report"]
        assert len(df) == rep.ok == 1 and rep.skipped == 0 and rep.reasons == {"field error, record kept": 1}
        assert rep.examples[0][1].endswith(reason)


def test_fuzz_corpus_is_skipped_and_counted(tmp_path):
    rng = random.Random(0)
    d = tmp_path / "train_xml" / "n02490219"
    d.mkdir(parents=True)
    good = [_rec(k) for k in range(10)]
    for k, r in enumerate(good):
        (d / f"n02490219_{k}.xml").write_text(imagenet_ab_xml(r))
    broken = list(_mutations(IMAGENET_AB_SAMPLE, rng))
    for k, (name, text) in enumerate(broken):
        (d / f"n02490219_{100 + k}.xml").write_text(text)
        with pytest.raises(BadRecord):
            parse_imagenet_ab_xml(text.encode())
        with pytest.raises(BadRecord):
            fast_imagenet_ab_row(text.encode())
    (d / "._n02490219_0.xml").write_bytes(b"\x00\x05\x16\x07")
    for tracks in (True, False):
        df = read_imagenet_ab(tmp_path, tracks=tracks)
        rep = df.attrs["report"]
        assert len(df) == rep.ok == len(good)
        assert rep.skipped == len(broken) + 1
        assert {"malformed XML", "missing field", "bad value", "out of range", "not an annotation", "junk file"} <= set(rep.reasons)
        assert len(rep.examples) == rep.keep and all(p.endswith(".xml") for p, _ in rep.examples)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_fuzz_random_edits_never_crash_and_paths_agree(data):
    "Random byte edits of a valid file: both parsers either read it or raise BadRecord, and agree on which."
    text = IMAGENET_AB_SAMPLE.encode()
    n = data.draw(st.integers(1, 4))
    for _ in range(n):
        op = data.draw(st.sampled_from(["cut", "delete", "insert", "replace"]))
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 30)))
        ins = data.draw(st.binary(max_size=8) | st.sampled_from([b"<", b">", b"</x>", b"nan", b"2.5", b"-1", b"<selected>False</selected>"]))
        text = {"cut": text[:i], "delete": text[:i] + text[j:], "insert": text[:i] + ins + text[i:],
                "replace": text[:i] + ins + text[j:]}[op]
    try:
        full = imagenet_ab_row(parse_imagenet_ab_xml(text), tracks=False)
    except BadRecord as e:
        full = e
    try:
        fast = fast_imagenet_ab_row(text)
    except BadRecord as e:
        fast = e
    assert isinstance(full, BadRecord) == isinstance(fast, BadRecord), (full, fast)
    if not isinstance(full, BadRecord):
        assert same_row(full, fast, skip=("id", "wnid")), (full, fast)


def test_coco_ab_fuzz_is_skipped_and_counted(tmp_path):
    base = json.loads(COCO_AB_SAMPLE)
    def edit(f):
        r = json.loads(COCO_AB_SAMPLE); f(r); return r
    broken = [
        edit(lambda r: r.pop("image_id")), edit(lambda r: r.update(image_id="abc")),
        edit(lambda r: r.pop("originalImageWidth")), edit(lambda r: r.update(originalImageHeight=0)),
        edit(lambda r: r.pop("actionHistories")), edit(lambda r: r.update(actionHistories={"a": 1})),
        "not a record", 17, None, [],
    ]
    # an unusable action is dropped, an unrelated bad field reads as missing: the record and its other clicks stay
    kept = [
        edit(lambda r: r["actionHistories"][1].update(actionType="paint")),
        edit(lambda r: r["actionHistories"][1].update(iconType="unicorn")),
        edit(lambda r: r["actionHistories"][1].update(pointTo={"x": 1.5, "y": 0.2})),
        edit(lambda r: r["actionHistories"][1].update(pointTo=None)),
        edit(lambda r: r["actionHistories"][1].update(pointFrom="here")),
        edit(lambda r: r.update(timeSpent="long")), edit(lambda r: r.update(categoryHistories=[5])),
        edit(lambda r: r.update(mouseTracking=[{"timeAt": 0, "x": "a", "y": 0}])),
        edit(lambda r: r.update(imageWidth=-450)),
    ]
    good = [dict(base, image_id=k) for k in range(5)]
    kept = [dict(r, image_id=100 + k) for k, r in enumerate(kept)]
    records = good[:2] + broken + good[2:] + kept
    p = write_coco_ab(records, tmp_path / "ab.json")
    df = read_coco_ab(p)
    rep = df.attrs["report"]
    assert df.image_id.tolist() == list(range(5)) + [100 + k for k in range(len(kept))]
    assert rep.ok == 5 + len(kept) and rep.skipped == len(broken) and rep.reasons["field error, record kept"] == len(kept)
    assert {"missing field", "bad value"} <= set(rep.reasons)
    cake = COCO_INDEX["cake"]
    assert all((x[cake], y[cake]) == (0.788, 0.838) for x, y in zip(df.add_x, df.add_y))   # every record keeps its add of 'cake'
    assert df.set_index("image_id").loc[105, "time_spent"] is None or np.isnan(df.set_index("image_id").loc[105, "time_spent"])
    # truncated file: records before the cut survive, the cut is one skip
    text = p.read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: int(len(text) * 0.6)])
    dc = read_coco_ab(cut)
    assert 2 <= len(dc) and dc.attrs["report"].reasons.get("truncated JSON") == 1
    # any truncation keeps exactly the good records that end before the cut, and counts the cut itself
    lines, ends, pos = text.split("\n"), [], len("[\n")
    for ln in lines[1:-2]:                                   # "[", one record per line, "]", ""
        ends.append(pos + len(ln.rstrip(","))); pos += len(ln) + 1
    is_good = [True] * 2 + [False] * len(broken) + [True] * 3 + [True] * len(kept)
    for k in range(1, len(text) - 3, max(1, len(text) // 40)):
        cut.write_text(text[:k])
        d = read_coco_ab(cut)
        rep = d.attrs["report"]
        assert rep.ok == sum(g and e <= k for g, e in zip(is_good, ends)), k
        assert "truncated JSON" in rep.reasons or "malformed JSON" in rep.reasons, (k, rep.reasons)


# ---------------------------------------------------------------- index

def test_index_build_parallel_and_reload_equals_direct_read(tmp_path):
    root = tmp_path / "ab"
    recs = [_rec(k, f"n{k % 3:08d}") for k in range(60)]
    for r in recs:
        write_imagenet_ab_xml(r, root / "train_xml" / r["wnid"] / f"{r['id']}.xml")
    (root / "train_xml" / "n00000000" / "n00000000_999.xml").write_text("<annotation><size>")
    cache = tmp_path / "cache"
    p = build_byproduct_index(root, cache, workers=2, chunk=8)          # process pool, 8 chunks
    assert p.exists() and p.suffix == ".parquet" and p.with_suffix(".report.json").exists()
    direct = read_imagenet_ab(root, tracks=False)
    idx = load_byproduct_index(root, cache)
    pd.testing.assert_frame_equal(idx, direct)
    assert len(idx) == 60 and idx.attrs["report"].skipped == 1 == direct.attrs["report"].skipped
    mtime = p.stat().st_mtime_ns
    assert build_byproduct_index(root, cache) == p and p.stat().st_mtime_ns == mtime   # reused, not rebuilt
    # a new file changes the listing: a new index
    write_imagenet_ab_xml({**recs[0], "wnid": "n00000001", "id": "n00000001_1000"}, root / "train_xml" / "n00000001" / "n00000001_1000.xml")
    assert len(load_byproduct_index(root, cache)) == 61
    # the full read (process pool, tracks) agrees with the index on the index columns
    idx2 = load_byproduct_index(root, cache)
    full = read_imagenet_ab(root, workers=2)
    pd.testing.assert_frame_equal(full[list(idx2.columns)], idx2)


# ---------------------------------------------------------------- the objects world

def test_synth_objects_cli_smoke(cli, tmp_path):
    out = tmp_path / "world"
    r = cli("synth", "--study", "objects", "--scale", "smoke", "--out", out, "--seed", "1")
    paths = dict(line.split(": ", 1) for line in r.stdout.strip().splitlines())
    for key in ("imagenet", "imagenet_ab", "bg_challenge", "coco", "coco_ab", "coco_labels", "truth", "world"):
        assert key in paths and (out / paths[key].split(str(out) + "/", 1)[-1]).exists(), key
    ab = read_imagenet_ab(paths["imagenet_ab"])
    n_train = len(list((out / "imagenet" / "train").rglob("*.JPEG")))
    assert 0.7 * n_train <= len(ab) < n_train and ab.attrs["report"].skipped == 0
    assert (ab.luab_n > 0).mean() > 0.8 and ab.selected.map(lambda s: not all(s)).any()   # unselected tasks exist
    cab = read_coco_ab(paths["coco_ab"])
    assert len(cab) > 0 and cab.attrs["report"].skipped == 0 and cab.n_actions.sum() > 0
    # the Background Challenge's release layout: <variant>/val/<class>/ and fg_mask/val/<class>/*.npy
    assert {"original", "mixed_same", "mixed_rand", "mixed_next", "only_fg", "only_bg_b", "only_bg_t", "no_fg", "fg_mask"} == \
        {p.name for p in (out / "bg_challenge").iterdir()}
    assert all((p / "val").is_dir() for p in (out / "bg_challenge").iterdir())
    world = json.loads((out / "objects_world.json").read_text())
    assert world["params"]["seed"] == 1 and world["mode"] == "synthetic"
    # the same command again reuses the world; a bad study is a clean error
    r2 = cli("synth", "--study", "objects", "--scale", "smoke", "--out", out, "--seed", "1")
    assert r2.stdout == r.stdout
    bad = cli("synth", "--study", "planets", "--out", out, check=False)
    assert bad.returncode != 0 and "planets" in bad.stderr


def test_nested_element_in_a_text_field_parses_the_same_both_ways():
    "Regression (found by the fuzz test in CI): an element inside <worker_id> made the two parsers disagree."
    t = IMAGENET_AB_SAMPLE.encode()
    i = t.index(b"<worker_id>") + len(b"<worker_id>") + 1
    bad = t[:i] + b"<selected>False</selected>" + t[i:]
    assert same_row(imagenet_ab_row(parse_imagenet_ab_xml(bad), tracks=False), fast_imagenet_ab_row(bad), skip=("id", "wnid"))
