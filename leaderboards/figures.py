"""Leaderboard figures as PNG files: one grouped bar chart per task and dataset (y from 0), the
partial fine-tuning curve over K (paper Fig. 9 style, one line per backbone) and the
masking-ratio sweep (Fig. 5 style, only when backbones were pretrained with different ratios).
Legends sit outside the axes, where they hide no data.

matplotlib is imported here only, through its object API (Figure + Agg canvas): no pyplot
global state and no backend switch, so drawing is safe inside any host program."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from maebench.leaderboards.columns import (METRIC_LABELS, PER_K_TASKS, Column, dataset_label, format_blocks,
                                           labels_label, protocol_label)
from maebench.leaderboards.families import family_label
from maebench.leaderboards.reference import ARCH_LABELS
from maebench.leaderboards.board import PAPER, Leaderboard

DPI = 110


def _figure(ncols: int = 1, nrows: int = 1, width: float = 6.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for line in axes for ax in line]


def _save(fig, path: Path) -> Path:
    fig.savefig(path, format="png", bbox_inches="tight")     # keeps legends outside the axes
    return path


def _legend_outside(ax) -> None:
    """The legend right of the axes, where it can hide no data point."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)


def _nice_top(top: float) -> float:
    """Upper y limit of a bar chart that starts at 0: a little above the tallest bar (and paper
    value), and at least 1 point, so that values near 0 look near 0."""
    return max(1.0, top * 1.12)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _k_label(k: float | None) -> str:
    return "MLP" if k == 0.5 else format_blocks(k)


def partial_curves(board: Leaderboard, out_dir: Path) -> list[Path]:
    """Top-1 vs number of tuned last blocks K, one line per backbone, one figure per dataset with
    at least two measured K (one K is a bar chart, not a curve). On ImageNet the paper's Fig. 9
    points are drawn dashed. Lines are shifted sideways a little so equal values stay visible."""
    by_dataset: dict[tuple[str, str], list[Column]] = defaultdict(list)
    for col in board.columns:                 # low-label settings are curves of their own
        if col.task in PER_K_TASKS and col.blocks is not None:
            by_dataset[(col.dataset, col.labels)].append(col)
    paths = []
    for (dataset, labels), cols in sorted(by_dataset.items()):
        rows = [r for r in board.measured_rows if any(c in r.cells for c in cols)]
        measured_k = {c.blocks for c in cols if any(c in r.cells for r in rows)}
        if len(measured_k) < 2:
            continue
        paper_rows = [r for r in board.rows if r.kind == PAPER and any(c in r.cells for c in cols)]
        ks = sorted(measured_k | {c.blocks for r in paper_rows for c in r.cells if c in cols})
        pos = {k: i for i, k in enumerate(ks)}
        fig, (ax,) = _figure(width=7.0)
        shift = 0.08 if len(rows) > 1 else 0.0
        for i, row in enumerate(rows):
            dx = shift * (i - (len(rows) - 1) / 2) / max(1, len(rows) - 1) * 2
            pts = [(c.blocks, row.cells[c]) for c in sorted(cols, key=Column.sort_key) if c in row.cells]
            errs = [c.std or 0.0 for _, c in pts]
            ax.errorbar([pos[k] + dx for k, _ in pts], [c.mean for _, c in pts],
                        yerr=errs if any(errs) else None, marker="o", capsize=3, label=row.label)
        for row in paper_rows:
            pts = sorted((c.blocks, cell.mean) for c, cell in row.cells.items() if c in cols)
            ax.plot([pos[k] for k, _ in pts], [v for _, v in pts], "k--", marker="s", label=row.label)
        ax.set_xticks(range(len(ks)), [_k_label(k) for k in ks])
        ax.set_xlim(-0.5, len(ks) - 0.5)
        ax.set_xlabel("blocks fine-tuned (K; MLP = last block's MLP only)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"Partial fine-tuning [{dataset_label(dataset)}{', ' + labels_label(labels) if labels else ''}]")
        ax.grid(alpha=0.3)
        _legend_outside(ax)
        paths.append(_save(fig, out_dir / f"partial_{_slug(dataset)}{'_' + _slug(labels) if labels else ''}.png"))
    return paths


def mask_ratio_sweep(board: Leaderboard, out_dir: Path) -> list[Path]:
    """Metric vs the backbone's pretraining mask ratio, one panel per column (partial K
    columns excepted: the curve has those) with results at two or more ratios, one line per
    (family, size). Nothing when no sweep was run."""
    panels = []
    for col in board.columns:
        if col.task in PER_K_TASKS:
            continue
        lines: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for row in board.measured_rows:
            if row.mask_ratio is not None and col in row.cells:
                name = f"{family_label(row.family)} {ARCH_LABELS.get(row.arch or '', row.arch or '')}".strip()
                lines[name][row.mask_ratio].extend(row.cells[col].values)
        if len({r for pts in lines.values() for r in pts}) >= 2:
            panels.append((col, lines))
    if not panels:
        return []
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = _figure(ncols, nrows, width=4.5, height=3.5)
    names = sorted({name for _, lines in panels for name in lines})
    colors = {name: f"C{i % 10}" for i, name in enumerate(names)}     # one colour per line, every panel
    handles = {}
    for ax, (col, lines) in zip(axes, panels):
        for name, pts in sorted(lines.items()):
            ratios = sorted(pts)
            (handles[name],) = ax.plot([100 * r for r in ratios], [sum(pts[r]) / len(pts[r]) for r in ratios],
                                       marker="o", color=colors[name], label=name)
        ax.set_title(col.header, fontsize=9)
        ax.set_xlabel("masking ratio (%)")
        ax.set_ylabel(f"{METRIC_LABELS.get(col.metric, col.metric)} (%)")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    # one legend for all panels, right of the last column, where it covers no panel
    fig.legend([handles[n] for n in names], names, fontsize=8, loc="upper left", frameon=False,
               bbox_to_anchor=(1.0, 0.98), bbox_transform=fig.transFigure)
    return [_save(fig, out_dir / "mask_ratio.png")]


def task_bars(board: Leaderboard, out_dir: Path) -> list[Path]:
    """One grouped bar chart per (task, dataset): a group per backbone (in the summary's order),
    a bar per metric or K, error bars = sample std over seeds, the paper's number each
    cell is compared with as a black dash. The y-axis starts at 0 and spans bars and dashes."""
    groups: dict[tuple[str, str, str, str], list[Column]] = defaultdict(list)
    for col in board.columns:                 # one chart per table: protocols and label budgets apart
        groups[(col.task, col.dataset, col.protocol, col.labels)].append(col)
    paths = []
    for (task, dataset, protocol, labels), cols in groups.items():
        rows = [r for r in board.measured_rows if any(c in r.cells for c in cols)]
        if not rows:
            continue
        cols = [c for c in cols if any(c in r.cells for r in rows)]
        fig, (ax,) = _figure(width=max(5.5, 0.9 * len(rows) * max(1, len(cols)) ** 0.5 + 2.5))
        width = 0.8 / len(cols)
        top, paper_drawn = 0.0, False
        for j, col in enumerate(cols):
            xs, ys, errs = [], [], []
            for i, row in enumerate(rows):
                cell = row.cells.get(col)
                if cell is None:
                    continue
                x = i - 0.4 + width * (j + 0.5)
                xs.append(x)
                ys.append(cell.mean)
                errs.append(cell.std or 0.0)
                if cell.reference is not None:
                    ax.hlines(cell.reference, x - width / 2, x + width / 2, colors="k", linewidth=2,
                              label=None if paper_drawn else "paper")
                    paper_drawn = True
                    top = max(top, cell.reference)
            top = max([top, *(y + e for y, e in zip(ys, errs))])
            label = f"K={_k_label(col.blocks)}" if task in PER_K_TASKS else METRIC_LABELS.get(col.metric, col.metric)
            bars = ax.bar(xs, ys, width=width, yerr=errs if any(errs) else None, capsize=3, label=label)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        ax.set_ylim(0, _nice_top(top))
        ax.set_xticks(range(len(rows)), [r.label for r in rows], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(" / ".join(dict.fromkeys(METRIC_LABELS.get(c.metric, c.metric) for c in cols)) + " (%)")
        ax.set_title(f"{protocol_label(task, protocol)} [{dataset_label(dataset)}"
                     f"{', ' + labels_label(labels) if labels else ''}]")
        ax.grid(axis="y", alpha=0.3)
        if len(cols) > 1 or paper_drawn or task in PER_K_TASKS:     # a single K is still named
            _legend_outside(ax)
        tail = "".join(f"_{_slug(x)}" for x in (protocol, labels) if x)
        paths.append(_save(fig, out_dir / f"bars_{_slug(task)}_{_slug(dataset)}{tail}.png"))
    return paths


def write_figures(board: Leaderboard, out_dir: str | Path) -> list[Path]:
    """Draw every figure the board's data supports into out_dir; returns the PNG paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if board.empty:
        return []
    return [*partial_curves(board, out_dir), *mask_ratio_sweep(board, out_dir), *task_bars(board, out_dir)]
