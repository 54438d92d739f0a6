"""Shared fixtures: run the command line and the paper notebooks (smoke profile) like a user would."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Property tests explore new random examples on developers' machines, but CI (CI=true) replays a fixed,
# derandomised set so a landing never depends on luck; a failure found locally becomes a regression test.
from hypothesis import settings as _hsettings
_hsettings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hsettings.load_profile("ci")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


def hhperc(*args, check=True, timeout=600, env=None, cwd=None):
    """Run the installed `hhperc` console script; returns CompletedProcess (text)."""
    exe = BIN / "hhperc"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "hhperc.cli"]
    e = {**os.environ, **(env or {})}
    r = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=e, cwd=cwd or ROOT)
    if check and r.returncode != 0:
        raise AssertionError(f"hhperc {' '.join(map(str, args))} -> {r.returncode}\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}")
    return r


@pytest.fixture
def cli():
    return hhperc


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One cache folder for the whole test session (synthetic worlds, embeddings, tiny models)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def run_paper(shared_cache):
    """run_paper(name, out_dir, **params) executes nbs/paper/<name>.ipynb with papermill at the smoke
    profile (cache shared across the session) and returns the output folder; fails with the cell's error."""
    from hhperc.reproduce import run_notebooks

    def run(name, out_dir, profile="smoke", overrides=(), **params):
        out = Path(out_dir)
        ov = [f"run.cache={shared_cache}", *overrides]
        res = run_notebooks([name], profile=profile, out=out, overrides=ov, params=params, progress=False, log=lambda *a: None)
        assert res[0].status == "ok", f"{name} failed: {res[0].error}; executed notebook: {res[0].output}"
        return out

    return run
