"""Study B trainer: tests that a broken LUAB would fail (the head learns the click, Rand trains on random points,
per-rank seeds, exact DDP resume through the command line) and the CLI training a timm ViT and a torchvision ResNet
with the paper's presets at the smoke profile."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

SMOKE = ["--profile", "smoke", "--set", "run.device=cpu", "--no-progress"]


def _smoke(tmp_path, *extra):
    return [*SMOKE, "--set", f"run.cache={tmp_path / 'cache'}", *extra]


# ---------------------------------------------------------------- the CLI with the paper's presets

def test_cli_trains_timm_vit_with_the_deit_preset(tmp_path, capsys):
    from hhperc.luab.commands import luab_main
    out = tmp_path / "vit"
    assert luab_main(["train", "--synthetic", "--out", str(out), "--model", "timm:deit_tiny_patch16_224", "--preset", "deit",
                      "--epochs", "2", "--batch", "16", "--lr", "1e-3", *_smoke(tmp_path)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    c = m["config"]
    # the DeiT recipe reached the run, the --lr flag won over the preset's rule
    assert (c["arch"], c["preset"], c["optimizer"], c["lr"], c["weight_decay"]) == ("timm:deit_tiny_patch16_224", "deit", "adamw", 1e-3, 0.05)
    assert (c["mixup"], c["cutmix"], c["randaugment"], c["random_erase"], c["ema"], c["label_smoothing"]) == (0.8, 1.0, 9, 0.25, 0.99996, 0.1)
    assert (c["vit_depth"], c["patch_size"], c["image_size"]) == (2, 8, 32)          # the smoke profile's ViT sizes
    ck = torch.load(out / "last.pt", weights_only=True)
    assert any(k.startswith("net.blocks.1.") for k in ck["model"]) and not any(k.startswith("net.blocks.2.") for k in ck["model"])
    assert ck["scheduler"]["ema"] is not None                                         # the EMA is checkpointed
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2] and all("reg" in h and "ema_top1" in h for h in hist)
    n_val = hist[0]["val_eval_images"]
    assert n_val == 48 and all(abs(h["val_top1"] * n_val / 100 - round(h["val_top1"] * n_val / 100)) < 1e-9 for h in hist)
    # best.pt holds the epoch with the best top-1; luab eval of it on --device cpu gives that epoch's numbers
    best = max(hist, key=lambda h: h["val_top1"])
    capsys.readouterr()
    world = out / "synthetic" / "imagenet"
    assert luab_main(["eval", "--checkpoint", str(out / "best.pt"), "--data", str(world / "val"), "--classes", str(world / "train"),
                      "--device", "cpu", "--profile", "smoke"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["device"] == "cpu" and ev["images"] == n_val
    assert ev["top1"] == pytest.approx(best["val_top1"]) and ev["top5"] == pytest.approx(best["val_top5"])
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("epoch,")


def test_cli_trains_torchvision_resnet_with_the_resnet_preset(tmp_path):
    from hhperc.luab.commands import luab_main
    out = tmp_path / "r18"
    assert luab_main(["train", "--synthetic", "--out", str(out), "--model", "torchvision:resnet18", "--preset", "resnet",
                      "--variant", "rand", "--batch", "16", "--wd", "5e-4", "--clip-grad", "1.0", "--label-smoothing", "0.1",
                      *_smoke(tmp_path)]) == 0
    c = json.loads((out / "metrics.json").read_text())["config"]
    assert (c["preset"], c["optimizer"], c["momentum"], c["weight_decay"], c["grad_clip"], c["label_smoothing"]) == \
        ("resnet", "sgd", 0.9, 5e-4, 1.0, 0.1)
    assert (c["mixup"], c["cutmix"], c["randaugment"], c["ema"]) == (0.0, 0.0, 0, 0.0)   # the reference loader: crop and flip only
    assert c["lr"] is None and c["batch_size"] == 16                                    # 0.1 per 256 images: resolved at run time
    sd = torch.load(out / "last.pt", weights_only=True)["model"]
    assert "net.layer4.1.bn2.weight" in sd and sd["head.2.weight"].shape == (2, 256)    # torchvision ResNet-18 + click head


def test_cli_help_shows_the_recipe_flags(capsys):
    from hhperc.luab.commands import luab_main
    with pytest.raises(SystemExit):
        luab_main(["train", "--help"])
    h = capsys.readouterr().out
    for flag in ("--model", "timm:", "--preset", "--lr", "--wd", "--label-smoothing", "--amp", "--channels-last", "--clip-grad",
                 "--workers", "--persistent-workers", "--pin-memory", "--epochs", "--batch", "--extras", "--coco", "--mixup",
                 "--cutmix", "--randaugment", "--random-erase", "--ema"):
        assert flag in h, flag


def test_cli_zero_click_coverage_names_both_paths(tmp_path, capsys):
    """A LUAB run whose images match no byproduct record stops; it names the image root and the byproduct root."""
    from hhperc.luab.commands import luab_main
    from hhperc.luab.synth import make_objects
    w = make_objects(tmp_path / "w", "smoke", seed=0)
    other = tmp_path / "other_ab" / "train_xml" / "n99999999"
    other.mkdir(parents=True)
    src = next(Path(w["imagenet_ab"]).rglob("*.xml"))
    (other / "n99999999_1.xml").write_bytes(src.read_bytes())                   # a real-format XML of an image we do not have
    rc = luab_main(["train", "--data", str(w["imagenet"]), "--byproducts", str(tmp_path / "other_ab"), "--out", str(tmp_path / "o"),
                    "--variant", "luab", *_smoke(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and str(Path(w["imagenet"])) in err and str(tmp_path / "other_ab") in err
    assert "--data" in err and "--byproducts" in err and not (tmp_path / "o" / "last.pt").exists()


# ---------------------------------------------------------------- the head learns the click; Rand does not

class _PosNet(nn.Module):
    "A small CNN whose final Linear (fc) sees the unpooled feature map, so position is in its features."
    def __init__(self, n_classes=4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(16 * 8 * 8, n_classes)

    def forward(self, x): return self.fc(torch.flatten(self.body(x), 1))


def _head_error(model, ds):
    model.eval()
    with torch.no_grad():
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        pred = model(x, aux=True)[1]["points"][:, 0]
    return float((pred - ds.t).norm(dim=1).mean())


def test_head_learns_the_click_and_rand_does_not():
    from hhperc.luab.model import LuabModel
    from hhperc.luab.train import BlobDataset, TrainConfig, train_luab
    torch.set_num_threads(1)
    train, test = BlobDataset(256, 16, seed=0, p_click=1.0), BlobDataset(64, 16, seed=1, p_click=1.0)
    centre = float((test.t - 0.5).norm(dim=1).mean())                     # the error of always guessing the centre
    err = {}
    for variant in ("luab", "rand"):
        torch.manual_seed(0)
        cfg = TrainConfig(variant=variant, num_classes=4, image_size=16, epochs=12, batch_size=32, lr=0.05, device="cpu", lam=5.0)
        r = train_luab(train, cfg, model=LuabModel(_PosNet()), progress=False)
        err[variant] = _head_error(r["model"], test)
    assert err["luab"] < 0.6 * centre, (err, centre)                      # it learned where the annotator clicked
    assert err["rand"] > 0.85 * centre, (err, centre)                     # random targets teach it nothing about the click


def test_rand_targets_are_what_the_loop_trains_on(monkeypatch):
    """Spy on the loss the loop calls: Rand gets uniform points where a click exists and -1 elsewhere, never the clicks."""
    import hhperc.luab.train as T
    seen = []

    class Spy(T.LuabLoss):
        def forward(self, logits, labels, aux=None, target=None, weight=None, extra=None):
            seen.append((target.detach().clone(), weight.detach().clone()))
            return super().forward(logits, labels, aux, target, weight, extra)

    monkeypatch.setattr(T, "LuabLoss", Spy)
    ds = T.BlobDataset(64, 16, seed=0, p_click=0.5)
    cfg = T.TrainConfig(arch="resnet18", variant="rand", num_classes=4, image_size=16, epochs=1, batch_size=64, lr=0.01, device="cpu")
    T.train_luab(ds, cfg, progress=False)
    (target, weight), = seen
    clicked = weight > 0
    assert 0 < clicked.sum() < 64
    assert (target[~clicked] == -1).all()                                  # no click: no target
    t = target[clicked]
    assert ((t >= 0) & (t <= 1)).all()
    real = ds.t[ds.w > 0]                                                  # the dataset's clicks, in whatever order
    assert not any(torch.isclose(t, r).all(dim=1).any() for r in real)     # none of them is a real click
    # and LUAB sees exactly the real clicks, in the sampler's order
    seen.clear()
    T.train_luab(ds, T.TrainConfig(**{**cfg.__dict__, "variant": "luab"}), progress=False)
    (target, weight), = seen
    rows = lambda a: torch.tensor(sorted(map(tuple, a.tolist())))
    torch.testing.assert_close(rows(target[weight > 0]), rows(real))


# ---------------------------------------------------------------- per-rank seeds and exact DDP resume through the CLI

class _Draws(torch.utils.data.Dataset):
    "Each item records one draw from the process's torch stream, as a random augmentation would."
    def __init__(self, n=32): self.n, self.draws = n, []
    def __len__(self): return self.n
    def __getitem__(self, k):
        u = float(torch.rand(()))
        self.draws.append(u)
        return torch.full((3, 16, 16), u), k % 4, torch.tensor([0.5, 0.5]), torch.tensor(1.0)


def _rank_draws(seed: int) -> dict:
    from hhperc.luab.train import TrainConfig, train_luab
    ds = _Draws()
    r = train_luab(ds, TrainConfig(arch="resnet18", variant="rand", num_classes=4, image_size=16, epochs=1, batch_size=8,
                                   lr=0.01, seed=seed, device="cpu"), progress=False)
    return {"rank": r["rank"], "seed": r["seed"], "draws": ds.draws}


def test_per_rank_seeds_differ():
    from hhperc.train import spawn_local
    r0, r1 = spawn_local(_rank_draws, 2, 7)
    assert (r0["rank"], r1["rank"], r0["seed"], r1["seed"]) == (0, 1, 7, 8)
    assert len(r0["draws"]) == len(r1["draws"]) == 16
    assert r0["draws"] != r1["draws"]                                      # identical seeds would draw identical streams
    again = spawn_local(_rank_draws, 2, 7)
    assert again[0]["draws"] == r0["draws"] and again[1]["draws"] == r1["draws"]   # and each rank's stream is reproducible


def _cli_rank(argv: list) -> int:
    from hhperc.luab.commands import luab_main
    return luab_main(argv)


@pytest.mark.slow
def test_ddp_cli_run_resumes_exactly(tmp_path):
    """Two gloo ranks through `hhperc luab train`: a run cut after epoch 1 (the cut landed: last.pt at epoch 1, no epoch 2)
    and then resumed ends with the same weights, EMA and history as the run that was never cut."""
    from hhperc.train import spawn_local
    from hhperc.luab.synth import make_objects
    w = make_objects(tmp_path / "w", "smoke", seed=0)                     # one world for both runs
    base = ["train", "--data", str(w["imagenet"]), "--byproducts", str(w["imagenet_ab"]), "--model", "torchvision:resnet18",
            "--preset", "resnet", "--epochs", "2", "--batch", "8", "--lr", "0.05", "--ema", "0.9", *_smoke(tmp_path)]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert spawn_local(_cli_rank, 2, base + ["--out", str(full)]) == [0, 0]
    steps_per_epoch = 96 // 2 // 8
    assert spawn_local(_cli_rank, 2, base + ["--out", str(cut), "--max-steps", str(steps_per_epoch)]) == [0, 0]
    ck = torch.load(cut / "last.pt", weights_only=True)
    assert ck["epoch"] == 1 and ck["step"] == steps_per_epoch and len(ck["history"]) == 1 and ck["world"] == 2   # the cut landed
    assert spawn_local(_cli_rank, 2, base + ["--out", str(cut)]) == [0, 0]
    a, b = (torch.load(d / "last.pt", weights_only=True) for d in (full, cut))
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["scheduler"]["ema"][k], b["scheduler"]["ema"][k]) for k in a["scheduler"]["ema"])
    drop = lambda h: {k: v for k, v in h.items() if k != "time_s"}
    assert [drop(h) for h in a["history"]] == [drop(h) for h in b["history"]]


# ---------------------------------------------------------------- the byproduct table

@pytest.mark.slow
def test_paper_notebook_luab_byproducts_smoke(run_paper, tmp_path):
    import pandas as pd
    out = run_paper("luab_byproducts", tmp_path / "bp")
    t = pd.read_csv(out / "tables" / "luab_byproducts.csv")
    imagenet = {"base", "Rand", "LUAB", "Rand + log_hover_s", "LUAB + log_hover_s", "Rand + log_track", "LUAB + log_track"}
    coco = {"base", "Rand", "LUAB", "Rand + log_actions", "LUAB + log_actions", "Rand + log_time_to_add_s", "LUAB + log_time_to_add_s"}
    assert set(t["variant"]) == imagenet | coco and set(t["mode"]) == {"synthetic"} and set(t["row"]) == {"ResNet18"}
    acc = t[t.metric == "IN-1K"]
    assert set(acc["variant"]) == imagenet and len(acc) == len(imagenet) and (acc["n"] == 1).all()
    mp = t[t.metric == "mAP"]
    assert set(mp["variant"]) == coco and mp["value"].notna().all()      # every COCO study has its mAP
    n_val = 48                                                             # the smoke world's val images
    assert all(abs(v * n_val / 100 - round(v * n_val / 100)) < 1e-6 for v in acc["value"])   # whole images right


def test_cli_coco_with_action_history_targets(tmp_path):
    """--coco trains the multi-label model with 80 points and the two action-history targets; a name that is not one
    of them is refused with the allowed names."""
    from hhperc.luab.commands import luab_main
    out = tmp_path / "coco"
    assert luab_main(["train", "--synthetic", "--coco", "--out", str(out), "--variant", "rand", "--batch", "16",
                      "--extras", "log_actions,log_time_to_add_s", *_smoke(tmp_path)]) == 0
    c = json.loads((out / "metrics.json").read_text())["config"]
    assert (c["multilabel"], c["num_classes"], c["n_points"], c["n_extra"]) == (True, 80, 80, 2)
    sd = torch.load(out / "last.pt", weights_only=True)["model"]
    assert sd["head.2.weight"].shape[0] == 2 * 80 + 2                    # 80 points and two extra targets
    assert luab_main(["train", "--synthetic", "--coco", "--out", str(tmp_path / "x"), "--extras", "log_track", *_smoke(tmp_path)]) == 2


# ---------------------------------------------------------------- COCO targets: the authors' loader, rewritten here

def _reference_coco(record, gt_cat_ids, crop_frac, flip, W, H, names91):
    """The authors' CocoMultiClsWeakMixSup.__getitem__ (naver-ai/NeglectedFreeLunch, coco_dataloader.ipynb), rewritten:
    clicks at int pixels, crop box back in int pixels, a class's point only for its ground-truth annotations, and the
    label of a clicked class whose point left the crop dropped. Returns (points {80 index: (x, y)}, labels set)."""
    weak = {}
    for a in record["actionHistories"]:
        if a["actionType"] == "add":
            weak[names91.index(a["iconType"])] = (int(a["pointTo"]["y"] * H), int(a["pointTo"]["x"] * W))
    i, j, h, w = (int(crop_frac[0] * H), int(crop_frac[1] * W), int(crop_frac[2] * H), int(crop_frac[3] * W))
    cat2cat = {c: k for k, c in enumerate(sorted(c for c, n in enumerate(names91) if n not in ("__background__", "N/A")))}
    points, labels = {}, set()
    for cid in gt_cat_ids:
        m = cat2cat[cid]
        if cid in weak:
            py, px = weak[cid]
            if flip: px = W - px
            if i <= py <= i + h and j <= px <= j + w:
                points[m] = ((px - j) / w, (py - i) / h); labels.add(m)
        else:
            labels.add(m)
    return points, labels


def test_coco_targets_match_the_reference_loader(tmp_path):
    import numpy as np
    from hhperc.luab.data import coco_items, coco_point_target
    from hhperc.models import coco_categories
    names91 = list(coco_categories())                                     # torchvision's list: index = COCO category id
    cats = [{"id": k, "name": n} for k, n in enumerate(names91) if n not in ("__background__", "N/A")]
    gen = np.random.default_rng(0)
    W, H = 640, 480
    images, anns, records = [], [], []
    for iid in range(1, 41):
        gt = sorted(gen.choice([c["id"] for c in cats], size=int(gen.integers(1, 5)), replace=False).tolist())
        clicked = gt[: int(gen.integers(0, len(gt) + 1))] + [int(gen.choice([c["id"] for c in cats]))]   # + one click that may be off-GT
        images.append({"id": iid, "file_name": f"COCO_train2014_{iid:012d}.jpg", "width": W, "height": H})
        anns += [{"id": len(anns) + k + 1, "image_id": iid, "category_id": c} for k, c in enumerate(gt)]
        acts = [{"actionType": "add", "iconType": names91[c], "pointFrom": None, "timeAt": 1000 + k,
                 "pointTo": {"x": float(gen.uniform(0.02, 0.98)), "y": float(gen.uniform(0.02, 0.98))}} for k, c in enumerate(clicked)]
        records.append({"image_id": iid, "worker_id": "W", "hit_id": "h", "page_id": 1, "originalImageWidth": W,
                        "originalImageHeight": H, "imageWidth": 450, "imageHeight": 450, "timeSpent": 5000,
                        "actionHistories": acts, "categoryHistories": [], "mouseTracking": []})
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2014.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    (tmp_path / "coco_ab.json").write_text(json.dumps(records))
    items = coco_items(tmp_path, "train2014", tmp_path / "coco_ab.json")
    compared = 0
    for it, rec in zip(items, records):
        gt_ids = sorted({a["category_id"] for a in anns if a["image_id"] == it["image_id"]})
        for _ in range(60):
            frac = (gen.uniform(0, 0.5), gen.uniform(0, 0.5), gen.uniform(0.3, 0.5), gen.uniform(0.3, 0.5))
            flip = bool(gen.integers(0, 2))
            # the authors' flip rewrites the crop box to the mirrored image's (j -> 1 - j - w) before comparing
            ref_frac = (frac[0], 1 - frac[1] - frac[3], frac[2], frac[3]) if flip else frac
            ref_pts, ref_lab = _reference_coco(rec, gt_ids, ref_frac, flip, W, H, names91)
            crop = (int(frac[0] * H), int(frac[1] * W), int(frac[2] * H), int(frac[3] * W))
            xy, wt, lab = coco_point_target(it["points"], it["has_point"], crop, flip, (W, H), it["label"], drop_outside_labels=True)
            px = it["points"][:, 0] if not flip else W - it["points"][:, 0]
            cj = W - crop[1] - crop[3] if flip else crop[1]                # the crop's left edge in the shown image
            near = (np.abs(px - cj) < 3) | (np.abs(px - cj - crop[3]) < 3) | \
                   (np.abs(it["points"][:, 1] - crop[0]) < 3) | (np.abs(it["points"][:, 1] - crop[0] - crop[2]) < 3)
            for m in range(80):
                if near[m] and it["has_point"][m]: continue                  # int pixels vs ours: the border may differ
                assert (lab[m].item() == 1) == (m in ref_lab), (it["image_id"], m)
                assert (wt[m] > 0) == (m in ref_pts), (it["image_id"], m)
                if m in ref_pts:
                    np.testing.assert_allclose(xy[m], ref_pts[m], atol=3 / min(crop[2], crop[3]))   # int pixels there
                    compared += 1
    assert compared > 400                                                  # clicked GT classes inside the crop, compared


def test_metrics_log_writes_tensorboard_when_installed(tmp_path, monkeypatch):
    """tensorboard is optional: with a SummaryWriter importable, every numeric metric of the epoch is logged at its epoch."""
    import sys, types
    from hhperc.luab.train import MetricsLog
    calls = []

    class Writer:
        def __init__(self, logdir): calls.append(("dir", logdir))
        def add_scalar(self, k, v, step): calls.append((k, v, step))
        def flush(self): calls.append(("flush",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    MetricsLog(tmp_path).write([{"epoch": 1, "loss": 0.5, "val_top1": 25.0, "note": "x"}])
    assert calls == [("dir", str(tmp_path / "tb")), ("loss", 0.5, 1), ("val_top1", 25.0, 1), ("flush",)]
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch,loss,val_top1,note", "1,0.5,25.0,x"]
