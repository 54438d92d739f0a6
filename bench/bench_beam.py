"""Beam search of the CLIP-prefix captioner: images/s at 32 beams (top 8, 20 tokens): transformers' beam search batched vs
one image at a time, and the authors' ranking (summed log-probability, finished beams leave the beam; one image at a time),
plain and with diverse groups.

Tiny CLIP + tiny GPT-2 sized like the default profile (hhi_tiny_hidden); CPU by default, `--device cuda` on a GPU.
Prints `metric: value` lines; the ratio compares batched decoding with one-image-at-a-time decoding in the same run.
"""
from __future__ import annotations
import argparse, os, time

import numpy as np
import torch
from PIL import Image


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--beams", type=int, default=32)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=None, help="tiny model width (default: the default profile's hhi_tiny_hidden)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    from hhperc.config import load_settings
    from hhperc.hhi.captioner import ClipPrefixCaptioner, clip_features, generate, load_models
    hidden = a.hidden or int(load_settings(profile="default").size("hhi_tiny_hidden", 64)) or 64
    dev = torch.device(a.device)
    torch.manual_seed(0)
    clip, proc, dec, tok = load_models("tiny", "tiny", hidden)
    model = ClipPrefixCaptioner(dec, clip.config.projection_dim).eval()
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(a.images)]
    t = time.perf_counter(); emb = clip_features(clip, proc, imgs, dev); t_clip = time.perf_counter() - t
    kw = dict(num_beams=a.beams, num_return=a.top, max_len=a.max_len, device=dev)
    generate(model, emb[:2], tok, batch_size=2, **kw)          # warm-up
    def timed(bs, ranking="hf", **extra):
        if dev.type == "cuda": torch.cuda.synchronize()
        t = time.perf_counter(); out = generate(model, emb, tok, batch_size=bs, ranking=ranking, **kw, **extra)
        if dev.type == "cuda": torch.cuda.synchronize()
        return time.perf_counter() - t, out
    t_one, out1 = timed(1)
    t_bat, outb = timed(a.batch)
    agree = np.mean([x[0][0] == y[0][0] for x, y in zip(out1, outb)])
    sweep = {bs: timed(bs)[0] for bs in (2, 4, 8) if bs < a.batch}
    t_sum, outs = timed(1, "sum")
    t_div, _ = timed(1, "sum", groups=4, diversity=1.0)
    same_top = np.mean([x[0][0] == y[0][0] for x, y in zip(out1, outs)])
    print(f"device: {dev} (threads {torch.get_num_threads()})")
    print(f"model: tiny CLIP + tiny GPT-2, hidden {hidden}, prefix 10, vocab {len(tok)}")
    print(f"beams: {a.beams} (top {a.top}, {a.max_len} new tokens), images: {a.images}")
    print(f"clip_images_per_s: {a.images / t_clip:.1f}")
    print(f"one_at_a_time_images_per_s: {a.images / t_one:.2f}")
    print(f"batched_{a.batch}_images_per_s: {a.images / t_bat:.2f}")
    print(f"ratio_batched_vs_one: {t_one / t_bat:.2f}")
    for bs, tb in sweep.items():
        print(f"batched_{bs}_images_per_s: {a.images / tb:.2f} (ratio {t_one / tb:.2f})")
    print(f"top1_agreement_batched_vs_one: {agree:.2f}")
    print(f"authors_sum_ranking_images_per_s: {a.images / t_sum:.2f} (ratio vs hf one-at-a-time {t_one / t_sum:.2f})")
    print(f"diverse_4_groups_images_per_s: {a.images / t_div:.2f} (ratio vs authors {t_sum / t_div:.2f})")
    print(f"top1_agreement_sum_vs_hf_ranking: {same_top:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
