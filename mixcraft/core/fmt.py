"""The one set of number formatters for tables, the HTML report and `--dry-run`."""

from __future__ import annotations


def count(v: float | None) -> str:
    """A count with thousands separators; '-' when unknown."""
    return "-" if v is None else f"{v:,.0f}"


def pct(v: float | None, digits: int = 1) -> str:
    """A share as a percentage; '(shared)' for a bucket that shares its source's target."""
    return "(shared)" if v is None else f"{100 * v:.{digits}f}%"


def pp(v: float | None, digits: int = 1) -> str:
    """A deviation in percentage points, signed; '' when there is no target."""
    return "" if v is None else f"{v:+.{digits}f}"


def reasons(d: dict[str, int]) -> str:
    """Drop reasons, most frequent first: 'too_short 12, sampled_out 3'; '-' when none."""
    return ", ".join(f"{k} {v:,}" for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def human(n: float) -> str:
    """1234567 -> '1.2M' (rates and totals in progress lines)."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"


def tokens_label(x: float) -> str:
    """A token length on a power-of-two axis: 65536 -> '64K'."""
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if x >= size:
            return f"{x / size:g}{unit}"
    return f"{x:g}"
