"""The LUAB tables' evaluation (hhperc.luab.metrics) against references written here, on fixtures shaped like the
released sets (docs/FORMATS.md section 3b): ReaL's real.json, ObjectNet's mapping files, ImageNet-C's tree, the
Background Challenge's release layout with .npy masks, COCO instances with polygon segmentations.

The model is a fixed "colour net": its logits are per-channel means (after ImageNet normalisation) of the input,
so every prediction can be worked out by hand.
"""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn

from hhperc.formats import FormatError
from hhperc.luab.data import eval_transform
from hhperc.luab.metrics import (IMAGENET_COLUMNS, aupr, bg_adversarial_acc, coco_columns, cooccurrence_drop, imagenet_c,
                                 imagenet_columns, instance_mask, objectnet_class_map, objectnet_top1, real_top1, folder_logits,
                                 image_files, si_score)

RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "purple": (255, 0, 255), "black": (0, 0, 0)}


class ColorNet(nn.Module):
    "Logits (R, G, B) = channel means; with `n` outputs the rest are -10."
    def __init__(self, n=3, mix=None):
        super().__init__()
        self.n, self.mix, self.dummy = n, mix, nn.Parameter(torch.zeros(()))
    def forward(self, x):
        m = x.mean((2, 3))
        if self.mix is not None: m = m @ torch.as_tensor(self.mix, dtype=m.dtype).T
        out = torch.full((x.shape[0], self.n), -10.0) + 0 * self.dummy
        out[:, : m.shape[1]] = m
        return out


def solid(path, color, size=16):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), RGB[color]).save(path)
    return path


# ------------------------------------------------------------------ AUPR against a reference written here

def reference_ap(pos, neg):
    "Average precision by its definition: sum over distinct thresholds (high to low) of (recall gain) x precision."
    s = np.r_[pos, neg]; y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    ap, prev_recall = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        hit = s >= t
        recall, precision = y[hit].sum() / len(pos), y[hit].sum() / hit.sum()
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return 100 * ap


def test_aupr_by_hand_and_against_the_definition():
    # ranked 0.9 (+) 0.6 (-) 0.4 (+) 0.1 (-): precision 1 at recall 1/2, 2/3 at recall 1
    assert aupr([0.9, 0.4], [0.6, 0.1]) == pytest.approx(100 * (0.5 * 1 + 0.5 * 2 / 3))
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos, neg = rng.integers(0, 6, rng.integers(1, 9)) / 5, rng.integers(0, 6, rng.integers(1, 9)) / 5   # many ties
        assert aupr(pos, neg) == pytest.approx(reference_ap(pos, neg))


# ------------------------------------------------------------------ IN-Real: order by val file name

def test_real_labels_follow_the_sorted_val_file_names(tmp_path):
    val = tmp_path / "val"
    # ImageNet's val naming; folder order (by wnid) differs from file-name order on purpose
    solid(val / "n02" / "ILSVRC2012_val_00000001.JPEG", "green")
    solid(val / "n01" / "ILSVRC2012_val_00000002.JPEG", "red")
    solid(val / "n01" / "ILSVRC2012_val_00000003.JPEG", "purple")
    (val / "n02" / "ILSVRC2012_val_00000004.JPEG").write_bytes(b"broken")        # unreadable: must not shift the labels
    solid(val / "n02" / "ILSVRC2012_val_00000005.JPEG", "blue")
    real = tmp_path / "real.json"
    real.write_text(json.dumps([[1], [0], [], [1], [0, 1]]))                       # file 3 has no valid label
    lg, rows = folder_logits(ColorNet(), val, size=16)
    assert len(rows) == 4
    # by hand: file 1 green -> 1 in [1] yes; file 2 red -> 0 in [0] yes; file 3 left out; file 5 blue -> 2 not in [0, 1]
    assert real_top1(lg, rows, image_files(val), real) == pytest.approx(200 / 3)
    real.write_text(json.dumps([[1], [0], []]))
    with pytest.raises(FormatError, match="5 label lists"):
        real_top1(lg, rows, image_files(val), real)


# ------------------------------------------------------------------ IN-C: the mean over cells

def test_imagenet_c_is_the_mean_over_corruptions_and_severities(tmp_path):
    root = tmp_path / "imagenet-c"
    # cell (fog, 1): 1 of 4 right; (fog, 2): 1 of 1; (snow, 5): 0 of 2. Mean of cells 41.67, not 2/7 of the images.
    for k, c in enumerate(["red", "green", "green", "blue"]): solid(root / "fog" / "1" / "n01" / f"{k}.JPEG", c)
    solid(root / "fog" / "2" / "n02" / "0.JPEG", "green")
    for k in range(2): solid(root / "snow" / "5" / "n03" / f"{k}.JPEG", "red")
    mean, cells = imagenet_c(ColorNet(), root, ["n01", "n02", "n03"], size=16)
    assert cells == {("fog", 1): 25.0, ("fog", 2): 100.0, ("snow", 5): 0.0}
    assert mean == pytest.approx((25 + 100 + 0) / 3)


# ------------------------------------------------------------------ ObjectNet: the release's mapping files

def objectnet_release(root):
    "images/<folder>/*.png with a 1-pixel red border; mappings/ as ObjectNet ships them (labels with commas)."
    for folder, colors in {"tomato": ["green", "green"], "leaf": ["blue"], "dial_phone": ["red"]}.items():
        for k, c in enumerate(colors):
            p = root / "images" / folder / f"{k}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            img = Image.new("RGB", (12, 12), (255, 0, 0)); img.paste(Image.new("RGB", (10, 10), RGB[c]), (1, 1)); img.save(p)
    m = root / "mappings"; m.mkdir(parents=True)
    (m / "folder_to_objectnet_label.json").write_text(json.dumps({"tomato": "Tomato", "leaf": "Leaf", "dial_phone": "Dial phone"}))
    (m / "objectnet_to_imagenet_1k.json").write_text(json.dumps({"Tomato": "green thing, verdant; lime", "Leaf": "blue thing"}))
    (m / "imagenet_to_label_2012_v2").write_text("blue thing\ngreen thing, verdant\nlime\n")   # line i: ImageNet label i
    (m / "pytorch_to_imagenet_2012_id.json").write_text(json.dumps({"0": 2, "1": 1, "2": 0}))  # model index -> line
    return root


def test_objectnet_mapping_border_and_restricted_argmax(tmp_path):
    root = objectnet_release(tmp_path / "objectnet")
    # Tomato -> lines 1 and 2 -> model classes 1 and 0; Leaf -> line 0 -> model class 2; Dial phone maps to nothing
    assert objectnet_class_map(root, 3) == {"tomato": [0, 1], "leaf": [2]}
    # green images of tomato -> class 1 (right), blue leaf -> class 2 (right); the red border, if it were kept,
    # would still not win (1 pixel of 12); the red dial phone is left out
    assert objectnet_top1(ColorNet(), root, 3, size=10) == 100.0
    (root / "mappings" / "objectnet_to_imagenet_1k.json").unlink()
    with pytest.raises(FormatError, match="objectnet_to_imagenet_1k.json"):
        objectnet_class_map(root, 3)


# ------------------------------------------------------------------ SI-Score: the release's factor folders and class CSV

def test_si_score_reads_the_release_layout(tmp_path):
    root = tmp_path / "si-score"
    # as `aws s3 cp s3://si-score-dataset/object_size/` lays it out: <class name>/*.jpg and foreground_classes.csv
    for k, c in enumerate(["red", "red", "blue"]): solid(root / "object_size" / "lemon" / f"{k}.jpg", c)
    solid(root / "object_size" / "zebra" / "0.jpg", "blue")
    (root / "object_size" / "foreground_classes.csv").write_text("int,label\n0,lemon\n2,zebra\n")
    solid(root / "object_location" / "lemon" / "0.jpg", "green")
    (root / "object_location" / "foreground_classes.csv").write_text("int,label\n0,lemon\n")
    # by hand: size 3 of 4 right (the blue lemon is wrong); location 0 of 1; no rotation folder, no SI-rot
    assert si_score(ColorNet(), root, ["n01", "n02", "n03"], size=16) == {"SI-size": 75.0, "SI-loc": 0.0}
    (root / "object_location" / "foreground_classes.csv").write_text("index,name\n0,lemon\n")
    with pytest.raises(FormatError, match="int,label"):
        si_score(ColorNet(), root, ["n01", "n02", "n03"], size=16)


# ------------------------------------------------------------------ BGC-acc against a brute-force reference

def bgc_release(root, rng, n_fg=3, n_bg=5, size=8):
    classes = ["00_red", "01_green", "02_blue"]
    for split in ("original", "fg_mask", "only_bg_t", "mixed_same"): (root / split / "val").mkdir(parents=True, exist_ok=True)
    for j, c in enumerate(classes):
        for split in ("original", "fg_mask", "only_bg_t", "mixed_same"): (root / split / "val" / c).mkdir()
        for k in range(n_fg):
            img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8); img[..., j] += 150
            mask = rng.random((size, size)) < rng.uniform(0.1, 0.95)            # small objects lose to strong backgrounds
            Image.fromarray(img).save(root / "original" / "val" / c / f"fg_{k}.JPEG", quality=100)
            np.save(root / "fg_mask" / "val" / c / f"fg_{k}.npy", mask)
        for k in range(n_bg):
            bg = rng.integers(0, 80, (size, size, 3)); bg[..., rng.integers(3)] += 170  # one strong colour
            Image.fromarray(bg.astype(np.uint8)).save(root / "only_bg_t" / "val" / c / f"bg_{k}.JPEG")
    (root / "in_to_in9.json").write_text(json.dumps({"0": 0, "1": 1, "2": 2}))          # the challenge's own mapping file
    return classes


def reference_bgc_acc(model, root, classes, size):
    "Every foreground on every background, no early exit, composed with numpy."
    bgs = sorted((root / "only_bg_t" / "val").rglob("*.JPEG"))
    tf, right, n = eval_transform(size), 0, 0
    for j, c in enumerate(classes):
        for m in sorted((root / "fg_mask" / "val" / c).glob("*.npy")):
            mask = np.load(m)[..., None]
            fg = np.asarray(Image.open(root / "original" / "val" / c / f"{m.stem}.JPEG").convert("RGB"), float)
            preds = [int(model(tf(Image.fromarray(np.round(np.asarray(Image.open(b).convert("RGB"), float) * (1 - mask) + fg * mask)
                                                      .astype(np.uint8)))[None]).argmax()) for b in bgs]
            right += all(p == j for p in preds); n += 1
    return 100 * right / n


def test_bgc_acc_equals_the_brute_force_challenge(tmp_path):
    rng = np.random.default_rng(3)
    classes = bgc_release(tmp_path / "bgc", rng)
    got = bg_adversarial_acc(ColorNet(), tmp_path / "bgc", ["r", "g", "b"], size=8, batch_size=2)
    want = reference_bgc_acc(ColorNet(), tmp_path / "bgc", classes, 8)
    assert got == pytest.approx(want)
    assert 0 < want < 100                                                        # the fixture fools some foregrounds, not all


# ------------------------------------------------------------------ V^min / V^avg against a reference written here

def coco_fixture(root):
    "Two val images in COCO's layout: polygon segmentations, COCO category ids, a crowd RLE."
    (root / "val2014").mkdir(parents=True); (root / "annotations").mkdir()
    img = np.zeros((20, 20, 3), np.uint8)
    for poly, c in (([2, 2, 10, 2, 10, 10, 2, 10], "red"), ([4, 12, 16, 12, 16, 18, 4, 18], "green")):   # objects = their polygons
        m = Image.new("L", (20, 20), 0); ImageDraw.Draw(m).polygon(list(zip(poly[::2], poly[1::2])), fill=1)
        img[np.asarray(m, bool)] = RGB[c]
    Image.fromarray(img).save(root / "val2014" / "COCO_val2014_000000000001.jpg", quality=100)
    img2 = np.zeros((20, 20, 3), np.uint8); img2[5:15, 5:15] = RGB["blue"]
    Image.fromarray(img2).save(root / "val2014" / "COCO_val2014_000000000002.jpg", quality=100)
    cats = [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}, {"id": 3, "name": "car"}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]]},
            {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0, "segmentation": [[4, 12, 16, 12, 16, 18, 4, 18]]},
            {"id": 3, "image_id": 2, "category_id": 3, "iscrowd": 1, "segmentation": {"counts": [105] + [10, 10] * 9 + [10, 105], "size": [20, 20]}}]
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "COCO_val2014_000000000001.jpg", "height": 20, "width": 20},
                    {"id": 2, "file_name": "COCO_val2014_000000000002.jpg", "height": 20, "width": 20}],
         "annotations": anns, "categories": cats}))
    return root


def test_instance_masks_decode_polygons_and_crowd_rle():
    poly = instance_mask([[2, 2, 10, 2, 10, 10, 2, 10]], 20, 20)
    assert poly[2:11, 2:11].all() and poly.sum() == 81                           # PIL fills the closed polygon, edges included
    rle = instance_mask({"counts": [105] + [10, 10] * 9 + [10, 105], "size": [20, 20]}, 20, 20)
    assert rle.sum() == 100 and rle[5:15, 5:15].all()                            # column-major runs: rows 5..14 of columns 5..14


def test_cooccurrence_drop_against_an_independent_erase(tmp_path):
    root = coco_fixture(tmp_path / "coco")
    # person's logit reads red and green together: erasing the bicycle (green) lowers the person's score
    net = ColorNet(80, mix=[[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    cols = coco_columns(net, root, size=20)
    tf = eval_transform(20)
    score = lambda a: torch.sigmoid(net(tf(Image.fromarray(a))[None]))[0].detach().numpy()
    img = np.asarray(Image.open(root / "val2014" / "COCO_val2014_000000000001.jpg").convert("RGB")).copy()
    person = instance_mask([[2, 2, 10, 2, 10, 10, 2, 10]], 20, 20)
    bike = instance_mask([[4, 12, 16, 12, 16, 18, 4, 18]], 20, 20)
    s = score(img)
    no_bike, no_person = img.copy(), img.copy()
    no_bike[bike & ~person] = (124, 116, 104); no_person[person & ~bike] = (124, 116, 104)
    pairs = [(s[0], [score(no_bike)[0]]), (s[1], [score(no_person)[1]])]          # image 2 has one class: no pair
    want = np.mean([[100 * max(0, a - min(w)) / a, 100 * max(0, a - np.mean(w)) / a] for a, w in pairs], 0)
    assert cols["V^min"]["value"] == pytest.approx(want[0], rel=1e-5) and cols["V^avg"]["value"] == pytest.approx(want[1], rel=1e-5)
    assert want[0] > 0                                                            # the fixture has reliance to measure
    assert "2 (image, class) pairs" in cols["V^min"]["note"]
    assert cooccurrence_drop(0.8, [0.4, 0.6]) == (50.0, 37.5)


# ------------------------------------------------------------------ the entry point: never silently absent

def test_every_column_is_a_value_or_a_reason(tmp_path):
    val = tmp_path / "val"
    solid(val / "n01" / "a.JPEG", "red"); solid(val / "n02" / "b.JPEG", "green")
    cols = imagenet_columns(ColorNet(), {"IN-1K": val}, ["n01", "n02", "n03"], size=16)
    assert list(cols) == list(IMAGENET_COLUMNS) and len(cols) == 15
    assert cols["IN-1K"]["value"] == 100.0
    for c, v in cols.items():
        if c != "IN-1K": assert math.isnan(v["value"]) and v["note"], c
    assert cols["IN-O"]["note"] == "not given: set [data] imagenet_o" and cols["SI-rot"]["note"] == "not given: set [data] si_score"
    with pytest.raises(FileNotFoundError):                                        # a set given but wrong is an error, not a NaN
        imagenet_columns(ColorNet(), {"IN-1K": val, "IN-C": tmp_path / "nowhere"}, ["n01", "n02", "n03"], size=16)
