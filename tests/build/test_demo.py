"""The demo recipe end to end (slow: about a minute on 2 cores): every source within 1 pp of
its target, nothing to explain, the report written, verify clean."""

from pathlib import Path

import pytest

from mixcraft.build.load import load_recipe
from mixcraft.build.run import BuildOptions, build
from mixcraft.report.plots import write_report
from mixcraft.report.summary import summarize
from mixcraft.report.verify import verify_output

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_mixture_is_on_target(tmp_path):
    if not (REPO / ".cache" / "demo").is_dir():
        pytest.skip("demo corpus not fetched (run `make demo` once)")
    manifest = build(load_recipe(REPO / "recipes" / "demo.yaml"), tmp_path / "out",
                     BuildOptions(workers=2, show_progress=False))
    stats = summarize(manifest)
    assert len(stats.sources) == 5
    for row in stats.sources:
        assert abs(row.deviation_pp) <= 1.0, row
    assert stats.why == {}
    written = write_report(manifest, tmp_path / "report")
    assert all(p.stat().st_size > 0 for p in written)
    assert verify_output(tmp_path / "out") == []
