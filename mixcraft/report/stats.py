"""`mixcraft stats OUT`: the mixture of one build, or of each stage of a curriculum in training
order, as tables, JSON, ProLong-style stream lines, or a report folder."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from mixcraft.core.manifest import Manifest, read_curriculum, read_manifest
from mixcraft.core.outdir import OutLayout
from mixcraft.report.plots import write_report
from mixcraft.report.summary import summarize
from mixcraft.report.table import render_summary


def build_outputs(out: Path) -> list[tuple[str | None, Path]]:
    """(stage name or None, folder) of each build in OUT: one, or a curriculum's stages."""
    curriculum = read_curriculum(out)
    if curriculum is not None and not OutLayout(out).manifest.is_file():
        return [(st.name, out / st.path) for st in curriculum.stages]
    return [(None, out)]


def streams_lines(m: Manifest, out: Path) -> list[str]:
    """ProLong-style `path@proportion`, one per subset, with OUT prefixed (paste into ProLong's
    `domains=(...)` or `--tokenized_mds_train`)."""
    return [f"{out / e}" for e in m.prolong_streams]


def stats_command(out: Path, *, as_json: bool, report: Path | None, streams: bool, console: Console,
                  wide: bool = False) -> None:
    builds = [(name, path, read_manifest(path)) for name, path in build_outputs(out)]
    if streams:
        for _, path, m in builds:
            print("\n".join(streams_lines(m, path)))
    elif as_json:
        data = [{**({"stage": name} if name else {}), **summarize(m).to_data()} for name, _, m in builds]
        print(json.dumps(data[0] if builds[0][0] is None else {"stages": data}, indent=1))
    else:
        for name, _, m in builds:
            if name:
                console.print(f"[bold]stage {name}[/]")
            render_summary(summarize(m), m, console, wide=wide)
    if report is not None:
        notes = Console(stderr=True)  # stdout may be JSON or stream lines for a script
        for name, _, m in builds:
            written = write_report(m, report / name if name else report)
            notes.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False, soft_wrap=True)
