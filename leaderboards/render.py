"""From a built Leaderboard to written text, shared by `maebench leaderboard` and `maebench demo`:

    board = build_leaderboard(store)                    # leaderboards.table
    figs = write_figures(board, "leaderboards/figures")  # leaderboards.figures
    text = write_board(board, "leaderboards/demo.md", "github", figures=figs)
    write_board(board, "leaderboards/demo.html", "html", figures=figs)
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

from maebench.leaderboards.board import Leaderboard
from maebench.leaderboards.views import VIEWS
from maebench.errors import MaebenchError, unknown

FORMATS = ("github", "markdown", "terminal", "latex", "html", "csv", "json")
_SUFFIX_FORMATS = {".md": "github", ".markdown": "github", ".tex": "latex", ".html": "html",
                   ".htm": "html", ".csv": "csv", ".json": "json", ".txt": "terminal"}


def format_for(out_path: str | os.PathLike | None, fmt: str | None) -> str:
    """The explicit format, else the one the output file's suffix names, else github."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise unknown("format", fmt, FORMATS)
        return "github" if fmt == "markdown" else fmt
    suffix = Path(out_path).suffix.lower() if out_path else ""
    return _SUFFIX_FORMATS.get(suffix, "github")


def render(board: Leaderboard, fmt: str, figures: Sequence[Path] = (), base_dir: Path | None = None,
           which: str = "all") -> str:
    """The board as text in `fmt` ('all' tables, or only 'tasks', 'summary' or 'cost'); html
    embeds `figures`, github links them relative to base_dir."""
    from maebench.leaderboards import html, latex, longform, markdown, terminal
    fmt = format_for(None, fmt)
    if which not in VIEWS:
        raise unknown("table selection", which, VIEWS)
    if fmt == "github":
        return markdown.to_markdown(board, figures, base_dir, which)
    if fmt == "terminal":
        return terminal.to_terminal(board, which=which)
    if fmt == "latex":
        return latex.to_latex(board, which)
    if fmt == "csv":
        return longform.to_csv(board)
    if fmt == "json":
        return longform.to_json(board)
    return html.to_html(board, figures, which)


def _write_atomic(path: Path, content: str) -> None:
    """Write via a temporary file + rename, so a reader never sees half a leaderboard."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_board(board: Leaderboard, out_path: str | os.PathLike | None = None, fmt: str | None = "github",
                figures_dir: str | os.PathLike | None = None, *, figures: Sequence[Path] | None = None,
                which: str = "all") -> str:
    """Render a built board in `fmt` and return the text; with `out_path` also write it there;
    with `figures_dir` write the PNG figures there (linked from markdown, embedded in html).
    `figures` passes figures already drawn by figures.write_figures instead (one drawing for
    several formats). html embeds its figures even without either (drawn in a temporary
    directory). An empty board writes nothing and returns the one-line message saying why."""
    fmt = format_for(out_path, fmt)
    if board.empty:
        return board.empty_message()
    out = Path(out_path) if out_path else None
    if out is not None and out.is_dir():
        raise MaebenchError(f"--out {out} is a directory; give a file name")
    base_dir = out.parent if out is not None else Path.cwd()
    if figures is not None:
        content = render(board, fmt, [Path(f) for f in figures], base_dir, which)
    elif figures_dir is not None:
        from maebench.leaderboards.figures import write_figures
        content = render(board, fmt, write_figures(board, figures_dir), base_dir, which)
    elif fmt == "html":
        from maebench.leaderboards.figures import write_figures
        with tempfile.TemporaryDirectory(prefix="maebench-figures-") as tmp:
            content = render(board, fmt, write_figures(board, tmp), base_dir, which)
    else:
        content = render(board, fmt, (), base_dir, which)
    if out is not None:
        _write_atomic(out, content)
    return content
