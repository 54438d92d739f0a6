"""report.html as a person sees it: headless Chromium loads it, every table and figure is there, nothing broken,
and the page never scrolls sideways (wide tables scroll inside their own box)."""
import re
import shutil
import struct
import subprocess

import pytest

from conftest import hhperc

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (`make browser` installs Debian's chromium)")


def browse(page, profile, width=1200, height=900, screenshot=None):
    """Load `page` in headless Chromium at width x height; -> (what the page's script wrote into <body>, the DOM).
    With `screenshot`, also save a PNG of the window there."""
    base = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"<body([^>]*)>", dom)
    assert m, f"no <body> in Chromium's DOM dump: {dom[:500]!r}"
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', m.group(1)))
    if screenshot is not None:
        subprocess.run(base + [f"--screenshot={screenshot}", page.as_uri()], capture_output=True, timeout=120)
    return attrs, dom


def overflow(attrs):
    "How many CSS pixels the page is wider than the window (0: no horizontal page scroll)."
    assert attrs.get("checked") == "yes", f"the page's measuring script did not run: {attrs}"
    return int(attrs["scroll-width"]) - int(attrs["inner-width"])


def png_size(path):
    "(width, height) from a PNG's IHDR chunk."
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def wide_report(out):
    """An output folder whose one table is far wider than any window: 30 variants x 2 metrics of readable numbers."""
    from hhperc.reproduce import build_report
    from hhperc.tables import long_table, write_table
    recs = [dict(row=f"arch{r}", variant=f"variant-{v:02d}", metric=m, value=1847.25 + v, std=74.0, n=3)
            for r in range(3) for v in range(30) for m in ("IN-1K", "IN-Sketch")]
    write_table(long_table(recs, "wide", mode="synthetic+tiny"), out)
    return build_report(out, {"profile": "smoke"})


@needs_chromium
def test_overflow_check_catches_a_wide_table_without_its_scroll_box(tmp_path):
    """The control: the same page with the scroll box's rule removed overflows, and the check says so."""
    page = wide_report(tmp_path / "out")
    html = page.read_text()
    rule = re.search(r"\.scroll \{[^}]*overflow-x: auto[^}]*\}", html)
    assert rule, "the report's scroll-box rule is missing"
    bare = page.with_name("bare.html")
    bare.write_text(html.replace(rule.group(0), ".scroll { }"))
    attrs, _ = browse(bare, tmp_path / "profile")
    assert overflow(attrs) > 1000, attrs          # 60 columns of '1,847 ± 74' are far wider than 1200 px


@needs_chromium
@pytest.mark.parametrize("width", [1200, 700])
def test_wide_table_scrolls_inside_its_box(tmp_path, width):
    page = wide_report(tmp_path / "out")
    attrs, dom = browse(page, tmp_path / "profile", width=width)
    assert overflow(attrs) <= 0, f"the page scrolls sideways by {overflow(attrs)} px at width {width}: {attrs}"
    assert int(attrs["tables"]) == 1 and "1,848 ± 74" in dom


@needs_chromium
def test_report_renders_in_chromium(tmp_path):
    out = tmp_path / "out"
    hhperc("reproduce", "demo_settings", "--profile", "smoke", "--out", out, "--no-progress")
    # a table that carries published figures (so the scorecard has lines) and a second figure
    from hhperc.reproduce import build_report
    from hhperc.tables import long_table, write_table
    write_table(long_table([dict(row="ResNet18", variant="LUAB", metric="IN-1K", value=71.53, std=0.21, n=3, paper=72.2),
                            dict(row="ResNet18", variant="base", metric="IN-1K", value=70.02, std=0.3, n=3, paper=71.5)],
                           "extra", mode="synthetic+tiny"), out, notebook="demo_settings")
    shutil.copy(out / "figures" / "demo_settings_models.png", out / "figures" / "extra_copy.png")
    report = build_report(out)
    n_tables = len(list((out / "tables").glob("*.csv")))
    n_figs = len(list((out / "figures").glob("*.png")))
    shot = tmp_path / "report.png"
    attrs, dom = browse(report, tmp_path / "profile", width=1200, height=1600, screenshot=shot)
    assert int(attrs["tables"]) == n_tables and int(attrs["images"]) == n_figs
    assert attrs["broken"] == "", f"images failed to load: {attrs['broken']}"
    assert overflow(attrs) <= 0, attrs
    # the scorecard comes first and says how far each number is from the paper, and that it is not a reproduction
    assert dom.index('id="scorecard"') < dom.index('id="tables"')
    card = dom[dom.index('id="scorecard"'):dom.index('id="tables"')]
    assert "71.5 ± 0.2" in card and "72.2" in card and "-0.7" in card and "+0.0" not in card
    assert "synthetic data · tiny random models" in card and 'href="notebooks/demo_settings.ipynb"' in card
    assert "is not a reproduction" in dom
    assert png_size(shot) == (1200, 1600) and shot.stat().st_size > 10_000
