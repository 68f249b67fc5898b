"""The leaderboard as GitHub markdown: the summary, one table per task and dataset, the cost
table, notes and links to the figures. Best values in bold, paper rows in italics after the
measured ones."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from maebench.leaderboards.board import PAPER, Leaderboard
from maebench.leaderboards.view_model import View
from maebench.leaderboards.views import views_for


def results_line(board: Leaderboard) -> str:
    runs, backbones = sum(len(r.runs) for r in board.measured_rows), len(board.measured_rows)
    filters = f" · filters: {board.filter_args}" if board.filter_args else ""
    return (f"Results: `{board.results_path}` · {runs} finished run{'s' * (runs != 1)} of "
            f"{backbones} backbone{'s' * (backbones != 1)}{filters} · generated {time.strftime('%Y-%m-%d %H:%M')}")


def _escape(text: str) -> str:
    return text.replace("|", r"\|")


def table_lines(view: View) -> list[str]:
    """A padded github table; numeric columns right-aligned."""
    grid = [[_escape(h) for h in view.headers]]
    for row in view.rows:
        label = f"*{_escape(row.label)}*" if row.kind == PAPER else _escape(row.label)
        grid.append([label, *(_escape(c.text(lambda s: f"**{s}**")) for c in row.cells)])
    widths = [max(len(line[j]) for line in grid) for j in range(len(view.headers))]

    def fmt(line: list[str]) -> str:
        cells = [t.rjust(w) if num else t.ljust(w) for t, w, num in zip(line, widths, view.numeric)]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                          for w, num in zip(widths, view.numeric)) + "|"
    return [fmt(grid[0]), rule, *(fmt(line) for line in grid[1:])]


def view_markdown(view: View, level: str = "##") -> list[str]:
    return [f"{level} {view.title}", "", *table_lines(view), "", *(" ".join(view.caption) and [" ".join(view.caption)]), ""]


def _relative(path: Path, base_dir: Path | None) -> str:
    if base_dir is None:
        return str(path)
    try:
        return Path(path).resolve().relative_to(Path(base_dir).resolve()).as_posix()
    except ValueError:
        return str(Path(path).resolve())


def to_markdown(board: Leaderboard, figures: Sequence[Path] = (), base_dir: Path | None = None,
                which: str = "all") -> str:
    """Title, results line, the tables, notes, and image links to `figures` (relative to base_dir)."""
    lines = ["# maebench leaderboard", "", results_line(board), ""]
    for view in views_for(board, which):
        lines += view_markdown(view)
    lines += ["## Notes", "", *(f"- {n}" for n in board.notes())]
    if figures:
        lines += ["", "## Figures", ""]
        for fig in figures:
            lines += [f"![{fig.stem}]({_relative(fig, base_dir)})", ""]
    return "\n".join(lines).rstrip() + "\n"
