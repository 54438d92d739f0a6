"""Reliability of the shared machinery: full disk, interrupted writes, bad settings, missing models.
Study-specific fault cases (corrupt images, malformed XML/JSON, resumed training...) live in each study's tests."""
import errno
import json
import os

import pytest

from conftest import hhperc


def test_full_disk_keeps_the_old_file_and_names_the_target(tmp_path, monkeypatch):
    from hhperc.config import write_json, write_csv
    import pandas as pd
    target = tmp_path / "tables" / "t.json"
    write_json(target, {"v": 1})

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as e:
        write_json(target, {"v": 2})
    assert str(target) in str(e.value) and "Free space" in str(e.value)
    with pytest.raises(OSError):
        write_csv(pd.DataFrame({"a": [1]}), tmp_path / "tables" / "x.csv")
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["t.json"]   # no temp files, no half csv


def test_unwritable_output_during_reproduce_is_one_clear_message(tmp_path):
    # an output folder that cannot be written stands in for a full disk (the tmpfs cases of test_reliability_matrix
    # fill a real one): read-only for an ordinary user, under a regular file for root, who may write anywhere
    out = tmp_path / "ro"
    out.mkdir()
    os.chmod(out, 0o500)
    try:
        if os.access(out, os.W_OK):
            (tmp_path / "a-file").write_text("")
            out = tmp_path / "a-file" / "out"
        r = hhperc("reproduce", "demo_settings", "--profile", "smoke", "--out", out, "--no-progress", check=False)
        assert r.returncode in (1, 2), (r.returncode, r.stderr[-2000:])
        assert "Traceback" not in r.stderr and str(out) in r.stderr, r.stderr[-2000:]   # one message naming the folder
    finally:
        os.chmod(tmp_path / "ro", 0o700)
    assert not list((tmp_path / "ro").iterdir())                        # nothing half-written


def test_bad_settings_file_is_one_clear_message(tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text("[run\nseed = 1\n")
    r = hhperc("info", "--settings", bad, check=False)
    assert r.returncode == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr
    r = hhperc("info", "--settings", tmp_path / "missing.ini", check=False)
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_wrong_type_setting_names_the_key(tmp_path):
    from hhperc.config import load_settings, SettingsError
    st = load_settings(overrides=["run.seed=abc"], env={})
    with pytest.raises(SettingsError) as e:
        st.seed
    assert "seed" in str(e.value) and "--set" in str(e.value)


def test_missing_local_model_names_the_setting(tmp_path):
    from hhperc.models import MissingModelError, load_model
    for role in ("captioner", "sentence", "nli", "detector"):
        with pytest.raises(MissingModelError) as e:
            load_model(role, str(tmp_path / "nope"))
        assert role in str(e.value) and "does not exist" in str(e.value)


def test_unsafe_checkpoint_is_refused(tmp_path):
    """A pickled object in a .pt file is not executed: weights_only loading refuses it."""
    import pickle
    import torch
    from hhperc.models import _state_dict

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > %s" % (tmp_path / "pwned"),))
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):    # refused, not merely broken
        _state_dict(p)
    assert not (tmp_path / "pwned").exists()
