"""`make bench`: run every bench/bench_*.py (or those named on the command line) and print their figures.

Each benchmark module has main(), printing `metric: value` lines and ratios against a baseline measured
in the same run. A failing benchmark is reported and the others still run; the exit code says whether
all of them finished."""
import importlib.util
import sys
import time
import traceback
from pathlib import Path

here = Path(__file__).resolve().parent
names = sys.argv[1:]
files = sorted(here.glob("bench_*.py"))
if names:
    files = [f for f in files if any(n in f.stem for n in names)]
failed = []
for f in files:
    print(f"\n=== {f.stem} ===", flush=True)
    t = time.perf_counter()
    try:
        spec = importlib.util.spec_from_file_location(f.stem, f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod.main()
        print(f"({f.stem}: {time.perf_counter() - t:.1f}s)", flush=True)
    except Exception:
        traceback.print_exc()
        failed.append(f.stem)
print(f"\n{len(files) - len(failed)}/{len(files)} benchmarks finished" + (f"; failed: {', '.join(failed)}" if failed else ""))
sys.exit(1 if failed else 0)
