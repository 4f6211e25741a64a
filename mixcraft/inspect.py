"""`mixcraft inspect`: one packed row, decoded piece by piece with its span."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from mixcraft.errors import UserError
from mixcraft.stats import load_manifest
from mixcraft.tokenize import load_tokenizer


def _pick_stream(manifest: dict, source: str | None, bucket: str | None) -> dict:
    streams = manifest["streams"]
    if source is not None:
        streams = [s for s in streams if s["source"] == source]
        if not streams:
            have = sorted({s["source"] for s in manifest["streams"]})
            raise UserError(f"--source {source!r}: no such source in this build (have: {', '.join(have)})")
    if bucket is not None:
        picked = [s for s in streams if s["bucket"] == bucket]
        if not picked:
            raise UserError(f"--bucket {bucket!r}: not a bucket of {streams[0]['source']} "
                            f"(have: {', '.join(s['bucket'] for s in streams)})")
        streams = picked
    return streams[0]


def _shorten(text: str, chars: int) -> str:
    """Rich markup for `text`, its middle cut out when long."""
    if len(text) <= 2 * chars + 20:
        return escape(text)
    return f"{escape(text[:chars])}\n[dim]... {len(text) - 2 * chars:,} characters ...[/]\n{escape(text[-chars:])}"


def show_row(out: Path, *, source: str | None, bucket: str | None, row: int, chars: int, console: Console) -> None:
    from mixcraft.mds import read_row

    manifest = load_manifest(out)
    stream = _pick_stream(manifest, source, bucket)
    r = read_row(out / stream["path"], row)
    tok = load_tokenizer(manifest["tokenizer"]["file"] or manifest["tokenizer"]["name"])
    ids = np.asarray(r["input_ids"])
    mask = np.asarray(r["mask"]) if "mask" in r else None
    spans = r["indices"]
    console.print(f"[bold]{stream['path']}[/] row {row}: {len(ids):,} tokens, {len(spans)} pieces, "
                  f"domain {r['domain']}")
    for k, (a, b) in enumerate(spans.tolist()):
        title = f"piece {k}  [{a:,}, {b:,})  {b - a:,} tokens"
        if mask is not None:
            title += f"  loss on {int(mask[a:b].sum()):,} tokens"
            body = _masked_text(tok, ids[a:b], mask[a:b], chars)
        else:
            body = _shorten(tok.decode(ids[a:b]), chars)
        console.print(Panel(body, title=title, title_align="left"))


def _masked_text(tok, ids: np.ndarray, mask: np.ndarray, chars: int) -> str:
    """Loss tokens in green, the rest dimmed; runs of equal mask decoded together."""
    parts, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start]:
            text = _shorten(tok.decode(ids[start:i]), chars)
            parts.append(f"[green]{text}[/]" if mask[start] else f"[dim]{text}[/]")
            start = i
    return "".join(parts)
