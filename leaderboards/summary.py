"""The summary table (backbone x each task's headline metric, one column per task, dataset,
protocol and label budget) and the cost table, built from a Leaderboard as leaderboards.views
builds the per-task tables, from the same parts (leaderboards/view_model.py)."""
from __future__ import annotations

from collections import defaultdict

from maebench.leaderboards.columns import (METRIC_LABELS, PER_K_TASKS, TASK_LABELS, Column, dataset_label,
                                           format_blocks, protocol_label)
from maebench.leaderboards.families import family_label
from maebench.leaderboards.board import MEASURED, Leaderboard
from maebench.leaderboards.view_model import (Part, VCell, View, VRow, by_value, format_duration, group_id, groups,
                                              mark_best, mark_notes, markdown_width, note_mark, sort_column)

SUMMARY_WIDTH = 100   # characters of a summary table's markdown line


def summary_views(board: Leaderboard) -> list[View]:
    """Backbone x (task, dataset, protocol, labels): the task's headline metric (the first of the
    task table's headline; for partial fine-tuning at the K measured most), one decimal as in the
    paper, mean ± std where n > 1 when that keeps as few tables as the mean alone, best per column
    marked, rows sorted by the first column (highest first, rows without a value there last), the
    † mark of leaderboards/label_mark.py; split into several tables where one would be wider than
    SUMMARY_WIDTH, each then titled by what it holds."""
    rows = board.measured_rows
    picked: list[tuple[str, str, Column]] = []
    for (task, dataset, _p, _l), cols in groups(board).items():
        col = sort_column(task, [c for c in cols if any(c in r.cells for r in rows)], rows)
        if col is not None:
            picked.append((task, dataset, col))
    datasets_per_task = defaultdict(set)
    for task, dataset, _ in picked:
        datasets_per_task[task].add(dataset)
    tagged = any(len(d) > 1 for d in datasets_per_task.values())

    def header(task: str, dataset: str, col: Column) -> str:
        h = protocol_label(task, col.protocol)
        if task in PER_K_TASKS:
            h += f" K={format_blocks(col.blocks)}"
        h += f" {col.labels}" if col.labels else ""
        return h + (f" [{dataset_label(dataset)}]" if tagged else "")

    def text(cell, with_std: bool) -> str:
        return f"{cell.mean:.1f}" + (f" ± {cell.std:.1f}" if with_std and cell.std is not None else "")

    def build(part: list[tuple[str, str, Column]], key: str, with_std: bool, title: str = "Summary") -> View:
        headers = ["backbone", *(header(*p) for p in part)]
        view = View(key, title, headers, [False] + [True] * len(part))
        cols = [c for _, _, c in part]
        # highest first in the first column, rows without a value there last
        shown = sorted((r for r in rows if any(c in r.cells for c in cols)), key=by_value(cols[0]))
        best = mark_best({c: [(i, r.cells[c].mean) for i, r in enumerate(shown) if c in r.cells] for c in cols}, 1)
        for i, r in enumerate(shown):
            cells = [VCell((Part(text(r.cells[c], with_std), best.get((i, c), False)),), r.cells[c].mean,
                           group_id(r.backbone, c), f"{r.cells[c].text(interval=True)} (n={r.cells[c].n})",
                           note_mark(r.cells[c]))
                     if c in r.cells else VCell() for c in cols]
            view.rows.append(VRow(r.label, MEASURED, cells, r.backbone, family_label(r.family)))
        metrics = defaultdict(list)
        for task, dataset, col in part:
            metrics[METRIC_LABELS.get(col.metric, col.metric)].append(header(task, dataset, col))
        several = any(r.cells[c].n > 1 for r in shown for c in cols if c in r.cells)
        how = ("mean ± sample std over seeds where n > 1 (n, the 95% intervals and the other metrics in the "
               "per-task tables)" if with_std and several else
               "mean over runs (± std, the 95% intervals, n and the other metrics in the per-task tables)")
        view.caption.append(f"Each task's headline metric in %, {how}: "
                            + "; ".join(f"{m} ({', '.join(h)})" for m, h in metrics.items()) + ".")
        if any(c.protocol or c.labels for c in cols):
            view.caption.append("linear = the paper's single-lr probe; linear (swept) / logreg: chosen on a held-out "
                                "slice of the training set; N=… labels per class, F=… fraction of the labels.")
        if not tagged:
            on = defaultdict(list)
            for task, dataset, col in part:
                on[dataset_label(dataset)].append(header(task, dataset, col))
            view.caption.append("Dataset: " + "; ".join(f"{', '.join(h)} on {d}" if len(on) > 1 else d
                                                        for d, h in on.items()) + ".")
        view.caption.append(f"Rows: sorted by {headers[1]}, highest first; rows without a value there last.")
        view.caption += mark_notes(view)
        return view

    def titles(parts: list[list[tuple[str, str, Column]]]) -> list[str]:
        """One summary table: 'Summary'. Several: each named by what it holds, its headline
        metrics and their tasks ('Summary: top-1 (fine-tune, linear, k-NN)'), or by its columns
        where two would read the same."""
        def held(part, name) -> str:
            metrics = defaultdict(list)
            for task, dataset, col in part:
                names = metrics[METRIC_LABELS.get(col.metric, col.metric)]
                if name(task, dataset, col) not in names:
                    names.append(name(task, dataset, col))
            return "Summary: " + "; ".join(f"{m} ({', '.join(t)})" for m, t in metrics.items())
        if len(parts) == 1:
            return ["Summary"]
        out = [held(p, lambda task, _d, _c: TASK_LABELS.get(task, task)) for p in parts]
        if len(set(out)) < len(out):
            out = [held(p, header) for p in parts]
        return out

    def split(with_std: bool) -> list[list[tuple[str, str, Column]]]:
        parts, current = [], []
        for p in picked:
            if current and markdown_width(build([*current, p], "summary", with_std)) > SUMMARY_WIDTH:
                parts.append(current)
                current = [p]
            else:
                current.append(p)
        return parts + ([current] if current else [])

    parts, with_std = split(True), True
    plain = split(False)
    if len(plain) < len(parts):                     # ± std would cost a table: the mean alone
        parts, with_std = plain, False
    if len(parts) == 1:
        return [build(parts[0], "summary", with_std)]
    return [build(part, f"summary-{i}", with_std, title)
            for i, (part, title) in enumerate(zip(parts, titles(parts)), 1)]


COST_HEADERS = ("pretrain time", "transfer time", "peak mem (MB)", "pretrain img/s")


def cost_view(board: Leaderboard) -> View:
    view = View("cost", "Cost", ["backbone", "family", *COST_HEADERS], [False, False] + [True] * 4)
    for r in board.measured_rows:
        c = r.cost
        values = [c.pretrain_wall_s, c.transfer_wall_s, c.peak_mem_mb, c.pretrain_images_per_s] if c else [None] * 4
        texts = [format_duration(values[0]), format_duration(values[1]),
                 "" if values[2] is None else f"{values[2]:.0f}", "" if values[3] is None else f"{values[3]:.1f}"]
        cells = [VCell((Part(family_label(r.family)),))] + [
            VCell((Part(t),), v) for t, v in zip(texts, values)]
        view.rows.append(VRow(r.label, MEASURED, cells, r.backbone, family_label(r.family)))
    view.caption.append("pretrain time: sum over the backbone's pretrain-* runs; transfer time: sum over "
                        "the runs counted above; peak mem: max over both; pretrain img/s: mean "
                        "pretraining throughput.")
    return view
