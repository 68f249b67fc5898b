"""Leaderboard figures as PNG files: the partial fine-tuning curve (paper Fig. 9 style), the
masking-ratio sweep (Fig. 5 style, only when backbones were pretrained with different ratios)
and one grouped bar chart per task and dataset.

matplotlib is imported here only, through its object API (Figure + Agg canvas): no pyplot
global state and no backend switch, so drawing is safe inside any host program."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from maebench.leaderboards.columns import METRIC_LABELS, TASK_LABELS, Column, dataset_label, format_blocks
from maebench.leaderboards.reference import ARCH_LABELS
from maebench.leaderboards.table import Leaderboard

DPI = 110


def _figure(ncols: int = 1, nrows: int = 1, width: float = 6.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for line in axes for ax in line]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _k_label(k: float | None) -> str:
    return "MLP" if k == 0.5 else format_blocks(k)


def partial_curves(board: Leaderboard, out_dir: Path) -> list[Path]:
    """Top-1 vs number of tuned last blocks K, one line per backbone, one figure per dataset.
    On ImageNet the paper's Fig. 9 points are drawn dashed for reference."""
    by_dataset: dict[str, list[Column]] = defaultdict(list)
    for col in board.columns:
        if col.task == "partial" and col.blocks is not None:
            by_dataset[col.dataset].append(col)
    paths = []
    for dataset, cols in sorted(by_dataset.items()):
        paper_lines = []
        if board.reference is not None and dataset == "imagenet":
            groups = defaultdict(list)
            for e in board.reference.leaderboard_entries():
                if e.task == "partial" and e.dataset == dataset:
                    groups[e.row_label].append((e.blocks, e.value))
            paper_lines = sorted(groups.items())
        ks = sorted({c.blocks for c in cols} | {k for _, pts in paper_lines for k, _ in pts})
        pos = {k: i for i, k in enumerate(ks)}
        fig, (ax,) = _figure()
        for row in board.measured_rows:
            pts = [(c.blocks, row.cells[c]) for c in sorted(cols, key=Column.sort_key) if c in row.cells]
            if not pts:
                continue
            ax.errorbar([pos[k] for k, _ in pts], [c.mean for _, c in pts],
                        yerr=[c.std or 0.0 for _, c in pts], marker="o", capsize=3, label=row.label)
        for label, pts in paper_lines:
            pts.sort()
            ax.plot([pos[k] for k, _ in pts], [v for _, v in pts], "k--", marker="s", label=label)
        ax.set_xticks(range(len(ks)), [_k_label(k) for k in ks])
        ax.set_xlabel("blocks fine-tuned (K; MLP = last block's MLP only)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"Partial fine-tuning [{dataset_label(dataset)}]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(_save(fig, out_dir / f"partial_{_slug(dataset)}.png"))
    return paths


def mask_ratio_sweep(board: Leaderboard, out_dir: Path) -> list[Path]:
    """Metric vs the backbone's pretraining mask ratio, one panel per column (partial K
    columns excepted: the curve has those) with results at two or more ratios, one line per
    (family, size). Nothing when no sweep was run."""
    panels = []
    for col in board.columns:
        if col.task == "partial":
            continue
        lines: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for row in board.measured_rows:
            if row.mask_ratio is not None and col in row.cells:
                name = f"{row.family} {ARCH_LABELS.get(row.arch or '', row.arch or '')}".strip()
                lines[name][row.mask_ratio].extend(row.cells[col].values)
        if len({r for pts in lines.values() for r in pts}) >= 2:
            panels.append((col, lines))
    if not panels:
        return []
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = _figure(ncols, nrows, width=4.5, height=3.5)
    for ax, (col, lines) in zip(axes, panels):
        for name, pts in sorted(lines.items()):
            ratios = sorted(pts)
            ax.plot([100 * r for r in ratios], [sum(pts[r]) / len(pts[r]) for r in ratios],
                    marker="o", label=name)
        ax.set_title(col.header, fontsize=9)
        ax.set_xlabel("masking ratio (%)")
        ax.set_ylabel(f"{METRIC_LABELS.get(col.metric, col.metric)} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return [_save(fig, out_dir / "mask_ratio.png")]


def task_bars(board: Leaderboard, out_dir: Path) -> list[Path]:
    """One grouped bar chart per (task, dataset): a group per backbone, a bar per metric or K,
    error bars = sample std over seeds."""
    groups: dict[tuple[str, str], list[Column]] = defaultdict(list)
    for col in board.columns:
        groups[(col.task, col.dataset)].append(col)
    paths = []
    for (task, dataset), cols in groups.items():
        rows = [r for r in board.measured_rows if any(c in r.cells for c in cols)]
        if not rows:
            continue
        fig, (ax,) = _figure(width=max(5.0, 1.2 * len(rows) * max(1, len(cols)) ** 0.5 + 2))
        width = 0.8 / len(cols)
        for j, col in enumerate(cols):
            xs, ys, errs = [], [], []
            for i, row in enumerate(rows):
                if col in row.cells:
                    cell = row.cells[col]
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(cell.mean)
                    errs.append(cell.std or 0.0)
            metric = METRIC_LABELS.get(col.metric, col.metric)
            label = f"K={_k_label(col.blocks)}" if task == "partial" else metric
            ax.bar(xs, ys, width=width, yerr=errs, capsize=3, label=label)
        ax.set_xticks(range(len(rows)), [r.label for r in rows], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(" / ".join(sorted({METRIC_LABELS.get(c.metric, c.metric) for c in cols})))
        ax.set_title(f"{TASK_LABELS.get(task, task)} [{dataset_label(dataset)}]")
        ax.grid(axis="y", alpha=0.3)
        if len(cols) > 1:
            ax.legend(fontsize=8)
        paths.append(_save(fig, out_dir / f"bars_{_slug(task)}_{_slug(dataset)}.png"))
    return paths


def write_figures(board: Leaderboard, out_dir: str | Path) -> list[Path]:
    """Draw every figure the board's data supports into out_dir; returns the PNG paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if board.empty:
        return []
    return [*partial_curves(board, out_dir), *mask_ratio_sweep(board, out_dir), *task_bars(board, out_dir)]
