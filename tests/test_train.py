"""The shared training runtime (`hhperc.train`) under DDP: two gloo CPU processes for each trainer.

For the LUAB trainer and the CLIP-prefix captioner alike: both ranks end with identical weights, each
rank trains with its own seed (seed + rank) so their random draws differ, the per-epoch loss is the
mean over both ranks' samples (the same number on both ranks), and a DDP run stopped after epoch 1
and started again reports the losses and ends with the weights of an uninterrupted 2-epoch run.
Data are tiny (16 toy images, 8 embeddings) so each test takes seconds."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from hhperc.train import spawn_local

WORLD = 2


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ---------------------------------------------------------------------------------------------------- LUAB
class Shifted(Dataset):
    "A dataset's images shifted by up to 3 pixels (an augmentation drawn from the global torch RNG); records the draws."
    def __init__(self, base):
        self.base, self.drawn = base, []

    def __len__(self): return len(self.base)

    def __getitem__(self, k):
        x, y, t, w = self.base[k]
        s = int(torch.randint(-3, 4, (1,)))
        self.drawn.append((k, s))
        return torch.roll(x, s, dims=2), y, t, w


def _luab_rank(cfg_d: dict, out: str, n: int, size: int) -> dict:
    from hhperc.luab.train import BlobDataset, TrainConfig, train_luab
    cfg = TrainConfig(**cfg_d)
    ShiftedBlobs = lambda n, size: Shifted(BlobDataset(n, size))
    ds = ShiftedBlobs(n, size)
    full = train_luab(ds, cfg, out_dir=Path(out) / "full", progress=False)
    per_epoch = n // WORLD // cfg.batch_size
    stop = train_luab(ShiftedBlobs(n, size), cfg, out_dir=Path(out) / "cut", progress=False, max_steps=per_epoch)
    res = train_luab(ShiftedBlobs(n, size), cfg, out_dir=Path(out) / "cut", progress=False)
    return dict(rank=full["rank"], world=full["world"], seed=full["seed"], drawn=ds.drawn[:cfg.batch_size],
                full=[h["loss"] for h in full["history"]], stop=[h["loss"] for h in stop["history"]],
                res=[h["loss"] for h in res["history"]], w_full=_flat(full["model"]), w_res=_flat(res["model"]))


def test_luab_ddp_two_gloo_ranks(tmp_path):
    from dataclasses import asdict
    from hhperc.luab.train import TrainConfig
    cfg = TrainConfig(arch="vit_tiny", vit_depth=1, patch_size=8, variant="luab", num_classes=4, image_size=16, epochs=2,
                      batch_size=4, lr=0.05, seed=11, device="cpu")          # a one-layer ViT: small enough for seconds
    r0, r1 = spawn_local(_luab_rank, WORLD, asdict(cfg), str(tmp_path), 16, 16)
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)
    # identical replicas, which moved from their (common) start
    assert torch.equal(r0["w_full"], r1["w_full"])
    torch.manual_seed(11)
    assert not torch.equal(_flat(cfg.model()), r0["w_full"])
    # per-rank seeds: 11 and 12, so the two ranks drew different shifts for their first batch
    assert (r0["seed"], r1["seed"]) == (11, 12)
    assert len(r0["drawn"]) == 4 and [s for _, s in r0["drawn"]] != [s for _, s in r1["drawn"]]
    assert {k for k, _ in r0["drawn"]}.isdisjoint(k for k, _ in r1["drawn"])     # and different images (their shards)
    # the epoch loss is reduced over both ranks: the same number on each
    assert len(r0["full"]) == 2 and r0["full"] == r1["full"]
    # stopped after epoch 1, resumed: the losses and weights of the uninterrupted run
    assert r0["stop"] == r0["full"][:1]
    assert r0["res"] == r0["full"] and r1["res"] == r1["full"]
    assert torch.equal(r0["w_res"], r0["w_full"]) and torch.equal(r1["w_res"], r0["w_full"])
    ck = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    assert ck["epoch"] == 2 and ck["world"] == 2 and len(ck["rng"]) == 2                  # every rank's generators saved
    assert not torch.equal(ck["rng"][0]["torch"], ck["rng"][1]["torch"])


# ---------------------------------------------------------------------------------------------------- captioner
TEXTS = ["_ hugging _", "_ shaking hands with _", "_ kissing _", "_ talking to _"] * 2


def _captioner_rank(out: str) -> dict:
    from hhperc.hhi.captioner import CaptionerConfig, ClipPrefixCaptioner, train_captioner
    from hhperc.models import tiny_gpt2
    emb = torch.randn(len(TEXTS), 16, generator=torch.Generator().manual_seed(1))
    cfg = CaptionerConfig(lr=3e-3, batch_size=2, epochs=2, seed=3)

    def fresh():
        dec, tok = tiny_gpt2(hidden=16, ffn=32)
        torch.manual_seed(0)
        return ClipPrefixCaptioner(dec, 16), tok

    m_full, tok = fresh()
    full = train_captioner(m_full, emb, TEXTS, None, tok, cfg, "cpu", ckpt=Path(out) / "full.ckpt", data_key="t")
    seed = torch.initial_seed()
    per_epoch = len(TEXTS) // WORLD // cfg.batch_size
    stop = train_captioner(fresh()[0], emb, TEXTS, None, tok, cfg, "cpu", ckpt=Path(out) / "cut.ckpt", data_key="t", max_steps=per_epoch)
    m_res = fresh()[0]
    res = train_captioner(m_res, emb, TEXTS, None, tok, cfg, "cpu", ckpt=Path(out) / "cut.ckpt", data_key="t")
    import torch.distributed as dist
    return dict(rank=dist.get_rank(), seed=seed, full=full, stop=stop, res=res, w_full=_flat(m_full), w_res=_flat(m_res))


def test_captioner_ddp_two_gloo_ranks(tmp_path):
    r0, r1 = spawn_local(_captioner_rank, WORLD, str(tmp_path))
    assert (r0["rank"], r1["rank"]) == (0, 1)
    assert torch.equal(r0["w_full"], r1["w_full"])                     # one model, trained by two processes
    assert (r0["seed"], r1["seed"]) == (3, 4)                          # dropout masks drawn from different seeds
    assert len(r0["full"]) == 2 and r0["full"] == r1["full"]           # loss reduced over both ranks
    assert r0["stop"] == r0["full"][:1]
    assert r0["res"] == r0["full"] and torch.equal(r0["w_res"], r0["w_full"]) and torch.equal(r1["w_res"], r0["w_full"])
    ck = torch.load(tmp_path / "cut.ckpt", weights_only=True)
    assert ck["epoch"] == 2 and len(ck["rng"]) == 2


# ---------------------------------------------------------------------------------------------------- prepare once
def _prepare_rank(path: str) -> dict:
    "Inside rank0_first, rank 0 writes the file; rank 1 must find it already there."
    import time
    from hhperc.train import rank0_first, start_distributed
    d = start_distributed("cpu")
    p = Path(path)
    with rank0_first(d):
        found = p.exists()
        if not found:
            time.sleep(0.5)                   # a slow build: rank 1 must still wait for it
            p.write_text(f"built by rank {d.rank}")
    return dict(rank=d.rank, found=found, text=p.read_text())


def test_rank0_first_prepares_once(tmp_path):
    r0, r1 = spawn_local(_prepare_rank, WORLD, str(tmp_path / "index.txt"))
    assert (r0["found"], r1["found"]) == (False, True)
    assert r0["text"] == r1["text"] == "built by rank 0"


# ---------------------------------------------------------------------------------------------------- precision flags
def test_luab_amp_and_channels_last_on_cpu_when_asked():
    "The GPU defaults (bf16 autocast, channels-last) run on CPU when asked; a wrong layout or dtype path would fail here."
    from hhperc.luab.train import BlobDataset, TrainConfig, train_luab
    torch.set_num_threads(1)
    ds = BlobDataset(16, 16)
    base = dict(arch="resnet18", variant="luab", num_classes=4, image_size=16, epochs=1, batch_size=8, lr=0.05, device="cpu")
    off = train_luab(ds, TrainConfig(**base), progress=False)
    on = train_luab(ds, TrainConfig(**base, amp="on", channels_last="on"), progress=False)
    conv = next(m.weight for m in on["model"].modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.is_contiguous(memory_format=torch.channels_last) and conv.dtype == torch.float32   # master weights stay fp32
    l_off, l_on = off["history"][0]["loss"], on["history"][0]["loss"]
    assert l_on != l_off and abs(l_on - l_off) < 0.05 * l_off        # bf16 rounding: close, not equal
