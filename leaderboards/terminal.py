"""The leaderboard as plain text for a terminal: the same tables as markdown without the
markup, each fitted to the terminal's width (a table too wide is split into column blocks that
repeat the backbone column), captions wrapped. Best values carry a trailing '*'."""
from __future__ import annotations

import shutil
import textwrap

from maebench.leaderboards.markdown import results_line
from maebench.leaderboards.board import PAPER, Leaderboard
from maebench.leaderboards.view_model import View
from maebench.leaderboards.views import views_for

GAP = "  "


def terminal_width() -> int:
    """The terminal's width ($COLUMNS wins), at least 40."""
    return max(40, shutil.get_terminal_size((100, 24)).columns)


def _grid(view: View) -> list[list[str]]:
    rows = [list(view.headers)]
    for row in view.rows:
        rows.append([row.label, *(c.text(lambda s: s + "*") for c in row.cells)])
    return rows


def _blocks(widths: list[int], width: int) -> list[list[int]]:
    """Column indices per block: column 0 (the backbone) in every block, the others added while
    the line fits."""
    blocks, current = [], [0]
    used = widths[0]
    for j in range(1, len(widths)):
        need = len(GAP) + widths[j]
        if len(current) > 1 and used + need > width:
            blocks.append(current)
            current, used = [0], widths[0]
        current.append(j)
        used += need
    blocks.append(current)
    return blocks


def table_lines(view: View, width: int) -> list[str]:
    grid = _grid(view)
    widths = [max(len(line[j]) for line in grid) for j in range(len(view.headers))]
    widths[0] = min(widths[0], max(12, width // 3))           # a very long name is cut, not wrapped
    first_paper = next((i for i, r in enumerate(view.rows) if r.kind == PAPER), None)
    out = []
    for block in _blocks(widths, width):
        if out:
            out.append("")

        def fmt(line: list[str]) -> str:
            cells = []
            for j in block:
                text = line[j] if len(line[j]) <= widths[j] else line[j][:widths[j] - 1] + "…"
                cells.append(text.rjust(widths[j]) if view.numeric[j] else text.ljust(widths[j]))
            return GAP.join(cells).rstrip()

        rule = GAP.join("-" * widths[j] for j in block)
        out += [fmt(grid[0]), rule]
        for i, line in enumerate(grid[1:]):
            if i == first_paper:
                out.append(rule)
            out.append(fmt(line))
    return out


def to_terminal(board: Leaderboard, width: int | None = None, which: str = "all") -> str:
    width = width or terminal_width()
    wrap = textwrap.TextWrapper(width=width)
    lines = [*wrap.wrap(results_line(board).replace("`", "")), ""]
    for view in views_for(board, which):
        lines += [view.title.upper() if view.key.startswith("summary") or view.key == "cost" else view.title,
                  *table_lines(view, width)]
        lines += wrap.wrap(" ".join(view.caption)) + [""]
    lines += ["* best in its column. Notes:"]
    for note in board.notes():
        lines += textwrap.wrap(note, width=width, initial_indent="- ", subsequent_indent="  ")
    return "\n".join(lines) + "\n"
