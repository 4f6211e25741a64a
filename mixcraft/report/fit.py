"""Tables that fit the terminal without cutting a number.

A table is key columns (the source, the bucket) and groups of other columns. When every column
fits the console's width it is one table; otherwise consecutive groups are packed into as few
tables as fit, each repeating the key columns (at 80 columns `stats` prints its mixture as
three tables), and a group too wide on its own is split by column. Numbers never wrap; names and free text (drop reasons, inputs) wrap at spaces,
and only a single word wider than the whole console is folded, never cut with an ellipsis.
`wide=True` prints one table whatever the width.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Col:
    header: str
    text: bool = False  # free text: left-aligned, may wrap at spaces; otherwise a right-aligned number
    no_wrap: bool = False  # a name that stays on one line while the console has room for it


@dataclass(frozen=True)
class Group:
    title: str | None  # the title of a table that starts with this group
    cols: tuple[Col, ...]


@dataclass
class GroupedRows:
    """Rows as cells per key column and per group, with an optional style (e.g. "dim")."""

    key: tuple[Col, ...]
    groups: tuple[Group, ...]
    rows: list[tuple[list[str], list[list[str]], str]]

    def add(self, key_cells: list[str], *group_cells: list[str], style: str = "") -> None:
        self.rows.append((key_cells, list(group_cells), style))


def _table(title: str | None, key: tuple[Col, ...], parts: list[tuple[int, Group]], rows: GroupedRows) -> Table:
    """The key columns and `parts`: (index of a group in `rows.groups`, that group or some of its columns)."""
    table = Table(title=title)
    for col in key + tuple(c for _, g in parts for c in g.cols):
        table.add_column(col.header, justify="left" if col.text else "right", overflow="fold",
                         no_wrap=not col.text or col.no_wrap)
    picks = [(i, [rows.groups[i].cols.index(c) for c in g.cols]) for i, g in parts]
    for key_cells, group_cells, style in rows.rows:
        table.add_row(*key_cells, *(group_cells[i][j] for i, js in picks for j in js), style=style or None)
    return table


# A wrapping column (names, reasons, inputs) is given at least this many characters, or its
# longest word, or what it holds if less: narrower, a hub input like "where
# meta.redpajama_set_name = RedPajamaBook" would take four lines.
MIN_TEXT_WIDTH = 24


def _col_width(col: Col, cells: list[str]) -> int:
    """The characters a column needs: all of them for a number or a name, else see MIN_TEXT_WIDTH."""
    lines = [line for c in [col.header, *cells] for line in Text.from_markup(c).plain.splitlines()]
    natural = max((cell_len(line) for line in lines), default=0)
    if not col.text or col.no_wrap:
        return natural
    longest_word = max((cell_len(w) for line in lines for w in line.split()), default=0)
    return min(natural, max(longest_word, MIN_TEXT_WIDTH))


def _fits(key: tuple[Col, ...], parts: list[tuple[int, Group]], rows: GroupedRows, width: int) -> bool:
    """Whether the table of `parts` fits `width` with every number whole (3 characters of padding
    and border per column, plus the last border)."""
    cols = [(c, [r[0][k] for r in rows.rows]) for k, c in enumerate(key)]
    cols += [(c, [r[1][i][rows.groups[i].cols.index(c)] for r in rows.rows]) for i, g in parts for c in g.cols]
    return sum(_col_width(c, cells) + 3 for c, cells in cols) + 1 <= width


def fitted_tables(rows: GroupedRows, console: Console, *, title: str | None, wide: bool = False) -> list[Table]:
    """One table if it fits (or `wide`); else consecutive groups packed into tables that fit, a
    group too wide on its own being packed column by column."""
    parts = list(enumerate(rows.groups))
    if wide or _fits(rows.key, parts, rows, console.width):
        return [_table(title, rows.key, parts, rows)]
    units: list[list[tuple[int, Group]]] = []  # each: (group index, the group or one of its columns)
    for i, g in parts:
        if _fits(rows.key, [(i, g)], rows, console.width):
            units.append([(i, g)])
        else:
            units += [[(i, Group(g.title, (c,)))] for c in g.cols]
    packed: list[list[tuple[int, Group]]] = []
    for unit in units:
        if packed and _fits(rows.key, packed[-1] + unit, rows, console.width):
            packed[-1] += unit
        else:
            packed.append(list(unit))
    return [_table(title if n == 0 else _titles(chunk), rows.key, chunk, rows) for n, chunk in enumerate(packed)]


def _titles(chunk: list[tuple[int, Group]]) -> str | None:
    """The titles of the groups a table holds columns of, in order."""
    return "; ".join(dict.fromkeys(g.title for _, g in chunk if g.title)) or None
