"""Text renderings of a Leaderboard: GitHub markdown and LaTeX (tabulate), CSV and JSON.

Markdown and LaTeX are for reading and pasting; their cells use Cell.text, which
stats.parse_cell reads back. CSV and JSON are for machines: numbers, not strings."""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Sequence

from maebench.leaderboards.families import family_label
from maebench.leaderboards.table import COST_COLUMNS, PAPER, BoardRow, Leaderboard

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
                  "−": "--", "Δ": r"$\Delta$", "±": r"$\pm$"}


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def cost_texts(row: BoardRow) -> list[str]:
    if row.cost is None:
        return ["" for _ in COST_COLUMNS]
    c = row.cost
    return [format_duration(c.pretrain_wall_s), format_duration(c.transfer_wall_s),
            "" if c.peak_mem_mb is None else f"{c.peak_mem_mb:.0f}",
            "" if c.pretrain_images_per_s is None else f"{c.pretrain_images_per_s:.1f}"]


def headers(board: Leaderboard) -> list[str]:
    return ["family", "backbone", *(c.header for c in board.columns), *(h for _, h in COST_COLUMNS)]


def grid(board: Leaderboard, pm: str = "±", delta_sign: str = "Δ") -> list[list[str]]:
    """The table as strings, one list per row, in `headers` order."""
    out = []
    for row in board.rows:
        cells = [row.cells[c].text(pm, delta_sign) if c in row.cells else "" for c in board.columns]
        out.append([family_label(row.family), row.label, *cells, *cost_texts(row)])
    return out


def summary_line(board: Leaderboard) -> str:
    runs, backbones = sum(len(r.runs) for r in board.measured_rows), len(board.measured_rows)
    return (f"Results: `{board.results_path}` · {runs} finished run{'s' * (runs != 1)} of "
            f"{backbones} backbone{'s' * (backbones != 1)} · generated {time.strftime('%Y-%m-%d %H:%M')}")


def to_markdown(board: Leaderboard, figures: Sequence[Path] = (), base_dir: Path | None = None) -> str:
    """GitHub markdown: title, table, notes, and image links to `figures` (relative to base_dir)."""
    from tabulate import tabulate
    rows = [[c.replace("|", r"\|") for c in r] for r in grid(board)]
    lines = ["# maebench leaderboard", "", summary_line(board), "",
             tabulate(rows, headers=headers(board), tablefmt="github", disable_numparse=True), ""]
    lines += [f"- {n}" for n in board.notes()]
    if figures:
        lines += ["", "## Figures", ""]
        for fig in figures:
            rel = _relative(fig, base_dir)
            lines += [f"![{fig.stem}]({rel})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _relative(path: Path, base_dir: Path | None) -> str:
    if base_dir is None:
        return str(path)
    try:
        return Path(path).resolve().relative_to(Path(base_dir).resolve()).as_posix()
    except ValueError:
        return str(Path(path).resolve())


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(board: Leaderboard) -> str:
    """A tabular to paste into a paper (cells escaped here, so tabulate's raw mode); the notes
    become LaTeX comments above it."""
    from tabulate import tabulate
    rows = [[latex_escape(c) for c in r] for r in grid(board)]
    heads = headers(board)
    body = tabulate(rows, headers=[latex_escape(h) for h in heads], tablefmt="latex_raw",
                    disable_numparse=True, colalign=["left", "left"] + ["right"] * (len(heads) - 2))
    comments = [f"% {latex_escape(n)}" for n in ["maebench leaderboard", summary_line(board), *board.notes()]]
    return "\n".join([*comments, body]) + "\n"


def csv_fieldnames(board: Leaderboard) -> list[str]:
    fields = ["family", "backbone", "kind", "arch"]
    for c in board.columns:
        fields += [f"{c.key} mean", f"{c.key} std", f"{c.key} n", f"{c.key} delta"]
    return fields + [k for k, _ in COST_COLUMNS]


def to_csv(board: Leaderboard) -> str:
    """One line per leaderboard row; per column its mean, std, n and delta as numbers (a paper
    row's number is in 'mean', with n empty). Blank = no value."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=csv_fieldnames(board), lineterminator="\n")
    writer.writeheader()
    for row in board.rows:
        line = {"family": row.family, "backbone": row.label, "kind": row.kind, "arch": row.arch or ""}
        for col, cell in row.cells.items():
            line[f"{col.key} mean"] = repr(cell.mean)
            if row.kind != PAPER:
                line[f"{col.key} std"] = "" if cell.std is None else repr(cell.std)
                line[f"{col.key} n"] = cell.n
                line[f"{col.key} delta"] = "" if cell.delta is None else repr(cell.delta)
        if row.cost is not None:
            line.update({k: "" if v is None else repr(v) for k, v in row.cost.as_dict().items()})
        writer.writerow(line)
    return buf.getvalue()


def to_dict(board: Leaderboard) -> dict:
    """The machine-readable leaderboard (what --format json prints)."""
    return {
        "results": board.results_path,
        "columns": [{"key": c.key, "header": c.header, "task": c.task, "metric": c.metric,
                     "dataset": c.dataset, "blocks": c.blocks, "paper_dataset": c.is_paper_dataset}
                    for c in board.columns],
        "rows": [{"kind": r.kind, "label": r.label, "backbone": r.backbone, "family": r.family,
                  "family_source": r.family_source, "arch": r.arch, "mask_ratio": r.mask_ratio,
                  "cells": {c.key: cell.as_dict() for c, cell in sorted(r.cells.items(), key=lambda kv: kv[0].sort_key())},
                  "cost": r.cost.as_dict() if r.cost else None}
                 for r in board.rows],
        "paper": board.reference.paper if board.reference else None,
        "ignored_runs": board.ignored,
        "notes": board.notes(),
    }


def to_json(board: Leaderboard) -> str:
    return json.dumps(to_dict(board), indent=2, ensure_ascii=False) + "\n"
