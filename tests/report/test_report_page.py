"""The `stats --report` page in a real headless browser (Debian's Chromium): every image loads
at its PNG's size, each plot sits under a human section heading, and the plots show what they
claim (the drop chart's reasons, every subset's line)."""

from __future__ import annotations

import html
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from mixcraft.core.manifest import read_manifest
from mixcraft.report.html import SECTIONS
from mixcraft.report.plot_drops import reason_colours
from mixcraft.report.plot_rows import not_full
from mixcraft.report.plots import PLOTS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: `apt-get install -y chromium` (Debian) runs the browser check")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
# Injected into a copy of the page: when everything has loaded, the body says how many images
# there are, how many decoded, and each one's size in pixels.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0);
  document.body.setAttribute("data-probe",
    `${imgs.length}/${ok.length}/` + imgs.map(i => `${i.naturalWidth}x${i.naturalHeight}`).join(","));
});
</script>"""


def _browser(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


def _probe(page: Path, tmp_path: Path) -> tuple[int, int, list[tuple[int, int]]]:
    """(images, images decoded, their sizes) of `page` as Chromium loads it."""
    probed = tmp_path / f"probe-{page.name}"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _browser(probed, tmp_path, "--virtual-time-budget=10000", "--dump-dom").stdout
    m = re.search(r'data-probe="(\d+)/(\d+)/([\dx,]*)"', dom)
    assert m, f"the probe did not run; chromium printed:\n{dom[:2000]}"
    sizes = [tuple(map(int, s.split("x"))) for s in m[3].split(",") if s]
    return int(m[1]), int(m[2]), sizes


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk
    return width, height


@pytest.fixture(scope="module")
def report(knobs_build, tmp_path_factory):
    from helpers import run_cli

    out, _ = knobs_build
    folder = tmp_path_factory.mktemp("report")
    res = run_cli("stats", out, "--report", folder)
    assert res.returncode == 0, res.stderr
    return out, folder


@needs_chromium
def test_every_image_of_the_page_loads_in_a_browser(report, tmp_path):
    _, folder = report
    total, loaded, sizes = _probe(folder / "report.html", tmp_path)
    assert total == len(PLOTS) == loaded, f"{loaded} of {total} images loaded"
    assert sizes == [_png_size(folder / name) for name in PLOTS], "each image at its PNG's own size"
    shot = tmp_path / "page.png"
    _browser(folder / "report.html", tmp_path, f"--screenshot={shot}", "--window-size=1280,4000")
    assert _png_size(shot) == (1280, 4000) and shot.stat().st_size > 100_000, "a rendered page, not a blank one"


@needs_chromium
def test_the_probe_sees_a_broken_image(report, tmp_path):
    """Guards the check above: an image that does not decode is counted as not loaded."""
    _, folder = report
    page = folder / "report.html"
    broken = tmp_path / "broken.html"
    text = page.read_text()
    first = text.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken.write_text(text[:first] + "AAAA" + text[first + 4:])
    total, loaded, _ = _probe(broken, tmp_path)
    assert (total, loaded) == (len(PLOTS), len(PLOTS) - 1)


def test_plots_sit_under_human_headings(report):
    _, folder = report
    page = (folder / "report.html").read_text()
    headings = [(k, html.unescape(h)) for k, h in re.findall(r"<h2 id=\"(\w+)\">([^<]+)</h2>", page)]
    assert [h for _, h in headings] == [SECTIONS[k] for k, _ in headings]
    assert {k for k, _ in headings} >= {section for section, _ in PLOTS.values()}, "a section for every plot"
    assert not re.search(r"<h\d[^>]*>[^<]*\.png", page), "no heading is a file name"
    for name, (section, title) in PLOTS.items():  # each plot after its own heading, before the next one
        start = page.index(f'<h2 id="{section}">')
        end = page.find("<h2", start + 1)
        assert f'<img alt="{html.escape(title)}"' in page[start:end if end > 0 else None], name


def test_the_drop_chart_names_every_reason_and_rows_show_fill_only_when_padded(report):
    """Every reason the ledger holds is in the chart's legend (or shares `other reasons`), and
    the fill panel appears only for subsets with rows not full."""
    out, _ = report
    m = read_manifest(out)
    reasons = {r for led in m.ledger.values() for r, n in led.docs.dropped.items() if n}
    colours = reason_colours(m)
    assert len(reasons) >= 2, "the fixture drops documents for several reasons"
    assert set(colours) == reasons
    assert not any(not_full(s) for s in m.streams), "prolong packing fills every row"


def test_many_reasons_share_one_colour_past_the_ninth():
    from types import SimpleNamespace

    def ledger(dropped):
        return SimpleNamespace(docs=SimpleNamespace(dropped=dropped))

    m = SimpleNamespace(ledger={"a": ledger({f"r{k:02d}": 100 - k for k in range(8)}),
                                "b": ledger({f"r{k:02d}": 100 - k for k in range(8, 12)} | {"none": 0})})
    colours = reason_colours(m)
    assert list(colours) == [*(f"r{k:02d}" for k in range(9)), "other reasons"], "most documents first"
    assert len(set(colours.values())) == len(colours)


def test_the_fill_panel_appears_only_for_padded_subsets(report, tmp_path):
    """Prolong packing fills every row: one panel (pieces per row). A subset with rows under 100 %
    adds the fill panel beside it, for that subset alone."""
    import dataclasses

    from mixcraft.report.plot_rows import plot_row_pieces
    from mixcraft.report.plotkit import DPI

    out, _ = report
    m = read_manifest(out)
    plot_row_pieces(m, tmp_path / "full.png")
    first = m.streams[0]
    padded = dataclasses.replace(first, row_fill_pct={"97": 2, **first.row_fill_pct})
    plot_row_pieces(dataclasses.replace(m, streams=[padded, *m.streams[1:]]), tmp_path / "padded.png")
    assert _png_size(tmp_path / "full.png")[0] == round(6.5 * DPI)
    assert _png_size(tmp_path / "padded.png")[0] == round(13 * DPI)
    assert [s.path for s in m.streams if not_full(s)] == [] and not_full(padded)
