"""Benchmark of the ImageNet-AB byproduct index (hhperc.luab.formats).

1. Build rate: parse N synthetic ImageNet-AB XML files (default 20,000; 1-3 annotation tasks each
   with hover events and a 60 Hz mouse track of 0.5-3 s) into the cached Parquet index with a
   process pool; report files/s overall and per core (target >= 2,000 per core). Baseline in the
   same run: the full `xml.etree` parser (`read_imagenet_ab(tracks=True)`) on a 1,000-file subset.
2. Reload: write a synthetic index of 1.28 M rows (the size of ImageNet train) with the index
   schema, then reload it in a fresh process; report seconds and peak RSS (targets <= 5 s,
   <= 2 GB). Baseline in the same run: re-parsing 1.28 M XML files at the measured build rate.
   Wall-clock numbers on a shared machine include waiting for a CPU; the CPU-second figures
   (`build_files_per_cpu_s`, `reload_cpu_s`) are what one unshared core does.

Usage: python bench/bench_index.py [--files 20000] [--rows 1280000] [--workers 0] [--keep DIR]
"""
from __future__ import annotations
import argparse, os, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hhperc.luab.formats import IMAGENET_AB_SCHEMA, build_byproduct_index, imagenet_ab_xml, read_imagenet_ab_table, write_index_table, _n_workers


def random_record(rng: np.random.Generator, wnid: str, n: int) -> dict:
    "One plausible ImageNet-AB record: 1-3 tasks, clicks near a centre, hovers, a 60 Hz track."
    W, H = int(rng.integers(200, 800)), int(rng.integers(200, 800))
    cx, cy = rng.uniform(0.2, 0.8, 2)
    tasks = []
    for _ in range(int(rng.integers(1, 4))):
        t0 = 1641425000000 + int(rng.integers(0, 10**8))
        sel = bool(rng.random() < 0.8)
        dur = float(rng.uniform(0.5, 3.0))
        m = max(2, int(dur * 60))
        sx, sy = rng.uniform(0, 1, 2)
        a = np.linspace(0, 1, m)
        xs = np.clip(sx + (cx - sx) * a + rng.normal(0, 0.01, m), 0, 1)
        ys = np.clip(sy + (cy - sy) * a + rng.normal(0, 0.01, m), 0, 1)
        tc = t0 + int(dur * 1000)
        tasks.append({"selected": sel,
                      "selected_records": [{"x": round(float(np.clip(cx + rng.normal(0, .03), 0, 1)), 4),
                                            "y": round(float(np.clip(cy + rng.normal(0, .03), 0, 1)), 4), "time": tc}] if sel else [],
                      "worker_id": f"{int(rng.integers(0, 16**10)):010X}", "assignment_id": f"{int(rng.integers(0, 16**12)):012X}",
                      "estimate_time": int(rng.integers(100, 5000)), "selected_count": int(sel),
                      "hovers": [{"action": "enter", "time": t0}, {"action": "leave", "time": tc + 300}],
                      "track": [{"time": t0 + int(k * 1000 / 60), "x": round(float(x), 4), "y": round(float(y), 4)}
                                for k, (x, y) in enumerate(zip(xs, ys))]})
    return {"id": f"{wnid}_{n}", "wnid": wnid, "width": W, "height": H, "depth": 3, "objects": [], "tasks": tasks}


def write_corpus(root: Path, n_files: int, seed: int = 0, distinct: int = 1000) -> int:
    "n_files XML files in 1,000-file wnid folders; `distinct` different records, repeated (same parse cost)."
    rng = np.random.default_rng(seed)
    n_classes = max(1, n_files // 1000)
    nbytes = 0
    texts = {}
    for i in range(n_files):
        wnid = f"n{9000000 + i % n_classes:08d}"
        d = root / "train_xml" / wnid
        if i < n_classes: d.mkdir(parents=True, exist_ok=True)
        k = i % distinct
        if k not in texts: texts[k] = imagenet_ab_xml(random_record(rng, "n00000000", k))
        (d / f"{wnid}_{i}.xml").write_text(texts[k])
        nbytes += len(texts[k])
    return nbytes


def synthetic_index(rows: int, seed: int = 0) -> pa.Table:
    "A `rows`-row table with the index schema: 1-3 tasks per image, vectorised."
    rng = np.random.default_rng(seed)
    nt = rng.integers(1, 4, rows).astype(np.int32)
    off = np.zeros(rows + 1, np.int32); np.cumsum(nt, out=off[1:])
    T = int(off[-1])
    sel = rng.random(T) < 0.8
    fx = pa.array(np.where(sel, rng.random(T), np.nan), mask=~sel)
    fy = pa.array(np.where(sel, rng.random(T), np.nan), mask=~sel)
    seg = np.repeat(np.arange(rows), nt)
    cnt = np.bincount(seg, weights=sel, minlength=rows)
    lx = np.bincount(seg, weights=np.where(sel, fx.to_numpy(zero_copy_only=False), 0), minlength=rows)
    ly = np.bincount(seg, weights=np.where(sel, fy.to_numpy(zero_copy_only=False), 0), minlength=rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        lx, ly = lx / cnt, ly / cnt
    def L(values):
        if isinstance(values, pa.ChunkedArray): values = values.combine_chunks()
        return pa.ListArray.from_arrays(pa.array(off), values)
    wnid = np.array([f"n{9000000 + k:08d}" for k in range(1000)])[np.arange(rows) % 1000]
    ids = [f"{w}_{k}" for k, w in enumerate(wnid)]
    cols = {"id": pa.array(ids), "wnid": pa.array(wnid), "width": pa.array(rng.integers(200, 800, rows).astype(np.int32)),
            "height": pa.array(rng.integers(200, 800, rows).astype(np.int32)), "n_tasks": pa.array(nt),
            "n_selected": pa.array(cnt.astype(np.int32)), "luab_x": pa.array(lx), "luab_y": pa.array(ly),
            "luab_n": pa.array(cnt.astype(np.int32)), "selected": L(pa.array(sel)), "first_x": L(fx), "first_y": L(fy),
            "first_time": L(pa.array(1641425000000 + rng.integers(0, 10**8, T), mask=~sel)),
            "worker_id": L(pa.array(np.array([f"{k:010X}" for k in range(5000)])[rng.integers(0, 5000, T)])),
            "assignment_id": L(pa.array(np.array([f"{k:012X}" for k in range(50000)])[rng.integers(0, 50000, T)])),
            "estimate_time": L(pa.array(rng.integers(100, 5000, T).astype(float))),
            "selected_count": L(pa.array(sel.astype(np.int32))), "n_hover": L(pa.array(np.full(T, 2, np.int32))),
            "n_track": L(pa.array(rng.integers(30, 180, T).astype(np.int32)))}
    return pa.table(cols).cast(IMAGENET_AB_SCHEMA)


_RELOAD = """
import resource, sys, time
t = time.perf_counter()
from hhperc.luab.formats import read_byproduct_index
t1 = time.perf_counter()
c1 = time.process_time()
df = read_byproduct_index(sys.argv[1])
t2 = time.perf_counter(); c2 = time.process_time()
assert len(df) == int(sys.argv[2])
print(t2 - t1, c2 - c1, t1 - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--rows", type=int, default=1_280_000)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--keep", default=None, help="work folder to keep (default: a temporary one, removed)")
    if argv is None:   # run directly: the command line; from bench/run.py (make bench): the defaults
        argv = sys.argv[1:] if __name__ == "__main__" else []
    a = ap.parse_args(argv)
    work = Path(a.keep or tempfile.mkdtemp(prefix="bench_index_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        n = _n_workers(a.workers)
        print(f"cores: {n}  load_average_1min: {os.getloadavg()[0]:.1f}")
        t = time.perf_counter(); nbytes = write_corpus(work / "ab", a.files)
        print(f"corpus_files: {a.files}")
        print(f"corpus_mean_kb: {nbytes / a.files / 1024:.1f}")
        print(f"corpus_write_s: {time.perf_counter() - t:.1f}")
        # baseline: full ElementTree parse, one process, on a subset
        sub = work / "sub" / "train_xml"
        wn = sorted((work / "ab" / "train_xml").iterdir())[0]
        (sub / wn.name).mkdir(parents=True)
        for f in sorted(wn.iterdir())[:1000]: shutil.copy(f, sub / wn.name / f.name)
        t = time.perf_counter(); tab, _ = read_imagenet_ab_table(work / "sub", tracks=True, workers=1)
        base = tab.num_rows / (time.perf_counter() - t)
        print(f"baseline_etree_files_per_s_1core: {base:.0f}")
        t = time.perf_counter(); tab1, _ = read_imagenet_ab_table(work / "sub", tracks=False, workers=1)
        one = tab1.num_rows / (time.perf_counter() - t)
        print(f"index_parser_files_per_s_1core: {one:.0f}")
        print(f"ratio_index_parser_vs_etree: {one / base:.1f}")
        ru0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter(); p = build_byproduct_index(work / "ab", work / "cache", workers=n, force=True)
        dt = time.perf_counter() - t
        ru1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = sum((b.ru_utime + b.ru_stime) - (a.ru_utime + a.ru_stime) for a, b in zip(ru0, ru1))
        rows = pq.read_metadata(p).num_rows
        assert rows == a.files, (rows, a.files)
        print(f"build_workers: {n}")
        print(f"build_s: {dt:.2f}")
        print(f"build_files_per_s: {a.files / dt:.0f}")
        print(f"build_files_per_s_per_core: {a.files / dt / n:.0f}  (target >= 2000; wall clock, includes waiting for a shared CPU)")
        print(f"build_cpu_s: {cpu:.2f}")
        print(f"build_files_per_cpu_s: {a.files / cpu:.0f}  (per core when the core is not shared)")
        # reload of a 1.28 M-row index, in a fresh process (peak RSS of that process)
        t = time.perf_counter(); big = synthetic_index(a.rows)
        bp = work / "big.parquet"; write_index_table(big, bp)
        print(f"reload_rows: {a.rows}")
        print(f"reload_file_mb: {bp.stat().st_size / 2**20:.1f}  (generated in {time.perf_counter() - t:.1f} s)")
        out = subprocess.run([sys.executable, "-c", _RELOAD, str(bp), str(a.rows)], capture_output=True, text=True, check=True)
        secs, cpu, imp, rss = map(float, out.stdout.split())
        print(f"reload_s: {secs:.2f}  (target <= 5; import {imp:.2f} s extra)")
        print(f"reload_cpu_s: {cpu:.2f}  (all threads)")
        print(f"reload_peak_rss_mb: {rss:.0f}  (target <= 2048)")
        rebuild = a.rows / (a.files / dt)
        print(f"baseline_rebuild_from_xml_s: {rebuild:.0f}  (estimated: {a.rows} files at this run's build rate)")
        print(f"ratio_reload_vs_rebuild: {secs / rebuild:.4f}")
    finally:
        if not a.keep: shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
