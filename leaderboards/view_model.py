"""What the per-task tables (leaderboards/views.py) and the summary and cost tables
(leaderboards/summary.py) are made of, and the rules they share: a View is a title, headers,
rows of cells (text parts, a value to sort by, whether the part is the column's best, the runs
behind it) and caption lines; tables are grouped per (task, dataset, protocol, labels), sorted
by the task's headline metric, best values marked. Both modules import this one, one way."""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable

from maebench.leaderboards import label_mark, searched
from maebench.leaderboards.columns import HEADLINE, PER_K_TASKS, Column
from maebench.leaderboards.board import MEASURED, PAPER, BoardRow, Leaderboard
from maebench.leaderboards.stats import Cell


@dataclass(frozen=True)
class Part:
    text: str
    best: bool = False


@dataclass
class VCell:
    parts: tuple[Part, ...] = ()
    value: float | None = None     # what the column sorts by
    group: str | None = None       # id of the runs behind the cell (html links to them)
    title: str = ""                # a longer description (html tooltip)
    note_mark: str = ""            # footnote marks after the value ("†", "§": view_model.note_mark)

    def text(self, mark: Callable[[str], str] | None = None) -> str:
        text = " / ".join(mark(p.text) if mark and p.best else p.text for p in self.parts)
        return f"{text} {self.note_mark}" if self.note_mark and text else text

    @property
    def best(self) -> bool:
        return any(p.best for p in self.parts)


@dataclass
class VRow:
    label: str
    kind: str                      # MEASURED or PAPER
    cells: list[VCell]
    backbone: str | None = None
    family: str = ""


@dataclass
class View:
    key: str                       # "summary", "cost", "finetune-shapes": anchors and labels
    title: str
    headers: list[str]             # the first is the row label's
    numeric: list[bool]            # right-aligned columns
    rows: list[VRow] = field(default_factory=list)
    caption: list[str] = field(default_factory=list)

    @property
    def measured(self) -> list[VRow]:
        return [r for r in self.rows if r.kind == MEASURED]

    @property
    def paper(self) -> list[VRow]:
        return [r for r in self.rows if r.kind == PAPER]


def note_mark(cell: Cell) -> str:
    """The footnote marks a measured cell carries in every table: "†" (leaderboards/label_mark.py),
    "§" (a searched result, leaderboards/searched.py), both ("† §") or ""."""
    return " ".join(m for m, on in ((label_mark.MARK, cell.seen_all_labels), (searched.MARK, cell.searched)) if on)


def mark_notes(view: View) -> list[str]:
    """The footnotes of the marks `view` shows (its caption ends with them)."""
    shown = {m for r in view.rows for c in r.cells for m in c.note_mark.split()}
    return [note for mark, note in ((label_mark.MARK, label_mark.NOTE), (searched.MARK, searched.NOTE))
            if mark in shown]


def by_value(col: Column | None):
    """Sort key of board rows by `col`: the highest mean first, rows without a value last (then by label)."""
    def key(row: BoardRow):
        cell = row.cells.get(col) if col is not None else None
        return (cell is None, -(cell.mean if cell else 0.0), row.label)
    return key


def group_id(backbone: str, col: Column) -> str:
    """The id of the runs of one backbone behind one (task, dataset, K, protocol, labels): every
    metric of a run links to the same place."""
    key = f"{backbone}|{col.task}|{col.dataset}|{col.blocks}"
    if col.protocol or col.labels:
        key += f"|{col.protocol}|{col.labels}"
    return "runs-" + hashlib.sha1(key.encode()).hexdigest()[:10]


GroupKey = tuple[str, str, str, str]       # (task, dataset, protocol, labels): one per-task table


def markdown_width(view: View) -> int:
    """Characters of the widest line of `view` as a github markdown table (bold best marks)."""
    widths = [len(h) for h in view.headers]
    for row in view.rows:
        label = f"*{row.label}*" if row.kind == PAPER else row.label
        texts = [label, *(c.text(lambda s: f"**{s}**") for c in row.cells)]
        widths = [max(w, len(t)) for w, t in zip(widths, texts)]
    return 1 + sum(w + 3 for w in widths)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def mark_best(cells_by_col: dict[Column, list[tuple[int, float]]],
               digits: int = 2) -> dict[tuple[int, Column], bool]:
    """(row index, column) -> best, per column over measured rows (to the printed precision);
    nothing is marked in a column with fewer than two values or with all values equal."""
    best = {}
    for col, values in cells_by_col.items():
        if len({round(v, digits) for _, v in values}) < 2:
            continue
        top = max(round(v, digits) for _, v in values)
        for i, v in values:
            best[(i, col)] = round(v, digits) == top
    return best


def per_k_column(cols: list[Column], rows: Iterable[BoardRow]) -> Column | None:
    """The K a per-K task is summarised and sorted by: measured for the most backbones, then the
    largest K."""
    rows = list(rows)
    counted = [(sum(c in r.cells for r in rows), c.blocks or 0.0, c) for c in cols]
    counted = [t for t in counted if t[0]]
    return max(counted, key=lambda t: t[:2])[2] if counted else None


def sort_column(task: str, cols: list[Column], rows: list[BoardRow]) -> Column | None:
    if task in PER_K_TASKS:
        return per_k_column(cols, rows)
    for metric in HEADLINE.get(task, ()):
        for c in cols:
            if c.metric == metric:
                return c
    return cols[0] if cols else None


def groups(board: Leaderboard) -> dict[GroupKey, list[Column]]:
    """Columns per table: one table per task, dataset, protocol and low-label setting."""
    out: dict[GroupKey, list[Column]] = defaultdict(list)
    for col in board.columns:                      # already in display order
        out[(col.task, col.dataset, col.protocol, col.labels)].append(col)
    return out
