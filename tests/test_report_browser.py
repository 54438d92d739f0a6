"""report.html as a person sees it: headless Chromium loads it, every table and figure is there, nothing broken."""
import re
import shutil
import subprocess

import pytest

from conftest import hhperc

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs Debian's chromium when it can)")
def test_report_renders_in_chromium(tmp_path):
    out = tmp_path / "out"
    hhperc("reproduce", "demo_settings", "--profile", "smoke", "--out", out, "--no-progress")
    # a second figure and a table, so the page has more than one of each
    from hhperc.tables import long_table, write_table
    write_table(long_table([dict(row="x", variant="overall", metric="m", value=1.0)], "extra", mode="synthetic"), out)
    import shutil as sh
    sh.copy(out / "figures" / "demo_settings_models.png", out / "figures" / "copy.png")
    from hhperc.reproduce import build_report
    report = build_report(out)
    n_tables = len(list((out / "tables").glob("*.csv")))
    n_figs = len(list((out / "figures").glob("*.png")))
    prof = tmp_path / "profile"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={prof}", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body))
    assert attrs.get("checked") == "yes", body
    assert int(attrs["tables"]) == n_tables and int(attrs["images"]) == n_figs
    assert attrs["broken"] == "", f"images failed to load: {attrs['broken']}"
    assert "mode: synthetic" in dom and "not a reproduction" in dom
    png = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={prof}", "--window-size=1200,1600", f"--screenshot={png}", report.as_uri()],
                   capture_output=True, timeout=120)
    assert png.exists() and png.stat().st_size > 10_000
