"""The tables people read, built from a Leaderboard: one per (task, dataset), like the paper's
Tables 3-5 and Fig. 9; a summary (backbone x headline metric of each task); a cost table.

Each is a View (leaderboards/view_model.py). The formats (markdown, terminal, latex, html) only
choose the markup, so every format shows the same tables."""
from __future__ import annotations

import re
import shlex

from maebench.leaderboards import searched
from maebench.leaderboards.columns import (METRIC_LABELS, PAPER_DATASETS, PER_K_TASKS, PROTOCOL_NOTES,
                                           SEARCHED_PROTOCOLS, Column, dataset_label, format_blocks, labels_label,
                                           parse_blocks, protocol_label)
from maebench.leaderboards.families import family_label
from maebench.leaderboards.stats import INTERVAL_TEXT, delta_text, interval_text
from maebench.leaderboards.summary import cost_view, summary_views
from maebench.leaderboards.board import MEASURED, PAPER, BoardRow, Leaderboard, natural
from maebench.leaderboards.view_model import (Part, VCell, View, VRow, by_value, group_id, groups, mark_best,
                                              mark_notes, markdown_width, note_mark, sort_column)
from maebench.tasks.table import TASKS as TASK_TABLE

MAX_COLUMNS = 12      # a per-task table never has more columns than this
MAX_WIDTH = 160       # characters of a per-task table's markdown line


def group_title(task: str, dataset: str, protocol: str = "", labels: str = "") -> str:
    """'linear · ImageNet-1K', 'linear (swept) · shapes · N=10 labels/class'."""
    title = f"{protocol_label(task, protocol)} · {dataset_label(dataset)}"
    return title + (f" · {labels_label(labels)}" if labels else "")


def _view_key(task: str, dataset: str, protocol: str = "", labels: str = "") -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(x for x in (task, dataset, protocol, labels) if x))


def _n_text(ns: list[int]) -> str:
    return "" if not ns else str(ns[0]) if ns[0] == ns[-1] else f"{ns[0]}-{ns[-1]}"


def _chosen(row: BoardRow, cols: list[Column]) -> VCell:
    """What a searched row's runs chose (leaderboards/searched.py `chosen_text`): one text when
    every run chose the same, else each distinct choice after the runs (K, seed) that made it."""
    ids = {rid for c in cols if c in row.cells for rid in row.cells[c].run_ids}
    runs = sorted((r for r in row.runs if r.run_id in ids),
                  key=lambda r: (parse_blocks(r.config.get("blocks")) or 0.0, r.seed or 0))
    seeds = len({r.seed for r in runs}) > 1
    texts: dict[str, list[str]] = {}
    for r in runs:
        who = [f"K={format_blocks(parse_blocks(r.config.get('blocks')))}"] if r.task in PER_K_TASKS else []
        who += [f"seed {r.seed}"] if seeds else []
        texts.setdefault(searched.chosen_text(r.config, r.metrics), []).append(" ".join(who))
    texts.pop("", None)
    if len(texts) <= 1:
        text = next(iter(texts), "")
    else:
        text = "; ".join(f"{', '.join(who)}: {t}" for t, who in texts.items())
    return VCell((Part(text),), title="; ".join(f"{r.run_id} (seed {r.seed})" for r in runs))


def task_view(board: Leaderboard, task: str, dataset: str, cols: list[Column], protocol: str = "",
              labels: str = "") -> list[View]:
    """One per-task table: measured rows sorted by the headline metric, then the paper's rows on
    the paper's datasets (its own protocol on all labels only); n as a column only where rows
    differ; 95 % intervals inline and Δ columns while they fit (the intervals that do not fit
    follow in a second table of the same rows and columns)."""
    measured = [r for r in board.measured_rows if any(c in r.cells for c in cols)]
    if not measured:
        return []
    cols = [c for c in cols if any(c in r.cells for r in measured)]
    sort_col = sort_column(task, cols, measured)
    measured.sort(key=by_value(sort_col))
    paper = []
    if dataset in PAPER_DATASETS and not protocol and not labels:
        paper = sorted((r for r in board.rows if r.kind == PAPER and any(c in r.cells for c in cols)),
                       key=by_value(sort_col))
    best = mark_best({c: [(i, r.cells[c].mean) for i, r in enumerate(measured) if c in r.cells] for c in cols})
    ns = [sorted({r.cells[c].n for c in cols if c in r.cells}) for r in measured]
    shared_n = ns[0] if all(n == ns[0] for n in ns) and len(ns[0]) == 1 else None
    deltas = [c for c in cols if any(c in r.cells and r.cells[c].reference is not None for r in measured)]
    deltas.sort(key=lambda c: c != sort_col)        # the sorted-by column's Δ is the last to go
    with_ci = [c for c in cols if any(c in r.cells and r.cells[c].interval for r in measured)]
    key, title = _view_key(task, dataset, protocol, labels), group_title(task, dataset, protocol, labels)
    chosen = [_chosen(r, cols) for r in measured] if protocol in SEARCHED_PROTOCOLS else None

    def build(delta_cols: list[Column], ci_cols: list[Column]) -> View:
        headers = ["backbone", *(c.short_header for c in cols), *(["chosen"] if chosen else []),
                   *([] if shared_n else ["n"]),
                   *(f"Δ {c.short_header}" for c in delta_cols)]
        view = View(key, title, headers, [False] + [True] * (len(headers) - 1))
        if chosen:
            view.numeric[1 + len(cols)] = False
        for i, r in enumerate(measured):
            cells = []
            for c in cols:
                cell = r.cells.get(c)
                cells.append(VCell() if cell is None else VCell(
                    (Part(cell.text(interval=c in ci_cols), best.get((i, c), False)),), cell.mean,
                    group_id(r.backbone, c),
                    f"{cell.n} run{'s' * (cell.n != 1)}"
                    + (f"; 95% t interval {interval_text(cell.interval)}" if cell.interval else "")
                    + (f"; paper {cell.reference:.1f} ({cell.reference_source})" if cell.reference is not None else ""),
                    note_mark(cell)))
            if chosen:
                cells.append(chosen[i])
            if not shared_n:
                cells.append(VCell((Part(_n_text(ns[i])),), float(ns[i][-1])))
            for c in delta_cols:
                d = r.cells[c].delta if c in r.cells else None
                cells.append(VCell((Part(delta_text(d)),), d,
                                   title=r.cells[c].reference_source or "" if c in r.cells else ""))
            view.rows.append(VRow(r.label, MEASURED, cells, r.backbone, family_label(r.family)))
        blank = len(headers) - 1 - len(cols)
        for r in paper:
            cells = [VCell((Part(r.cells[c].text()),), r.cells[c].mean, title=r.cells[c].reference_source or "")
                     if c in r.cells else VCell() for c in cols]
            view.rows.append(VRow(r.label, PAPER, cells + [VCell() for _ in range(blank)],
                                  family=family_label(r.family)))
        return view

    # what goes while the table is too wide: the other columns' Δ (right first), their intervals
    # (right first), then the sorted-by column's Δ and its interval
    drops = ([("Δ", c) for c in reversed(deltas) if c != sort_col] + [("ci", c) for c in reversed(with_ci) if c != sort_col]
             + [("Δ", c) for c in deltas if c == sort_col] + [("ci", c) for c in with_ci if c == sort_col])
    kept, kept_ci = list(deltas), list(with_ci)
    view = build(kept, kept_ci)
    for kind, c in drops:
        if len(view.headers) <= MAX_COLUMNS and markdown_width(view) <= MAX_WIDTH:
            break
        (kept if kind == "Δ" else kept_ci).remove(c)
        view = build(kept, kept_ci)
    spec = TASK_TABLE.get(task)
    # the task table's summary describes its own protocol: another protocol's note replaces it
    about = spec.summary[:1].upper() + spec.summary[1:] + ". " if spec and spec.summary and not protocol else ""
    view.caption.append(about + _units(task, cols))
    if protocol in PROTOCOL_NOTES:
        view.caption.append(f"{PROTOCOL_NOTES[protocol][:1].upper()}{PROTOCOL_NOTES[protocol][1:]}.")
    if chosen:
        view.caption.append("chosen: the values the search chose; lr = the peak lr the run trained with (lr, else "
                            "base_lr x batch size / 256, times the chosen lr_scale in brackets).")
    if labels:
        view.caption.append(f"Low-label: {labels_label(labels)} of the training set, drawn from each run's seed "
                            "(never merged with other label budgets or compared with the paper).")
    if shared_n:
        view.caption.append(f"n = {shared_n[0]} run{'s' * (shared_n[0] != 1)} per cell.")
    if kept_ci:
        view.caption.append(f"[lo, hi]: the {INTERVAL_TEXT}.")
    if task in PER_K_TASKS and sort_col is not None:
        view.caption.append(f"K = the number of last blocks tuned (0.5: the last block's MLP); sorted by "
                            f"K={format_blocks(sort_col.blocks)}.")
    view.caption += mark_notes(view)
    if paper:
        sources = sorted({r.cells[c].reference_source for r in paper for c in cols
                          if c in r.cells and r.cells[c].reference_source}, key=natural)
        view.caption.append(f"(paper) rows: the MAE paper's {', '.join(sources)}.")
    if len(kept) < len(deltas):
        left = ", ".join(c.short_header for c in deltas if c not in kept)
        view.caption.append(f"Δ for {left} left out to fit the width; `maebench leaderboard --results "
                            f"{shlex.quote(board.results_path)} --format csv` has every paper number.")
    dropped_ci = [c for c in with_ci if c not in kept_ci]
    if not dropped_ci:
        return [view]
    view.caption.append(f"The 95% intervals of {', '.join(c.short_header for c in dropped_ci)} are in the "
                        "next table (no room here).")
    ci = View(f"{key}-ci", f"{title} · 95% intervals", ["backbone", *(c.short_header for c in dropped_ci)],
              [False] + [True] * len(dropped_ci))
    for r in measured:
        ci.rows.append(VRow(r.label, MEASURED, [
            VCell((Part(interval_text(r.cells[c].interval) if c in r.cells else ""),),
                  r.cells[c].mean if c in r.cells else None, group_id(r.backbone, c) if c in r.cells else None,
                  note_mark=note_mark(r.cells[c]) if c in r.cells else "")
            for c in dropped_ci], r.backbone, family_label(r.family)))
    ci.caption.append(f"The {INTERVAL_TEXT} of each cell of the table above (n > 1 only), in %.")
    ci.caption += mark_notes(ci)
    return [view, ci]


def _units(task: str, cols: list[Column]) -> str:
    metrics = dict.fromkeys(METRIC_LABELS.get(c.metric, c.metric) for c in cols)
    return f"{', '.join(metrics)} in %."


def task_views(board: Leaderboard) -> list[View]:
    return [v for (task, dataset, protocol, labels), cols in groups(board).items()
            for v in task_view(board, task, dataset, cols, protocol, labels)]


VIEWS = ("all", "tasks", "summary", "cost")


def views_for(board: Leaderboard, which: str = "all") -> list[View]:
    """Summary, then the per-task tables, then cost ('all'), or one kind of them."""
    out = []
    if which in ("all", "summary"):
        out += summary_views(board)
    if which in ("all", "tasks"):
        out += task_views(board)
    if which in ("all", "cost"):
        out.append(cost_view(board))
    return out
