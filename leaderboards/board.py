"""ResultsStore -> Leaderboard, the data every format renders: one row per backbone, its cells
keyed by column (task, metric, dataset, K), "(paper)" rows from reference.yaml, and its cost.
leaderboards.views turns it into the tables people read.

Only runs with status 'done' count, the newest one per recipe and seed. Cost columns summarise a backbone's runs as follows:
pretrain time = sum of wall time of its `pretrain-*` runs; transfer time = sum of wall time of
the runs counted in this table; peak memory = max over both; pretrain img/s = mean throughput
of its pretraining runs (transfer throughputs differ per task, so they are not averaged)."""
from __future__ import annotations

import re
import shlex
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from maebench.leaderboards import families, label_mark
from maebench.leaderboards.columns import (PAPER_DATASETS, PER_K_TASKS, PROTOCOL_NOTES, SEARCHED_PROTOCOLS,
                                           TASK_METRICS, TASKS, Column, canonical_dataset, labels_of, parse_blocks,
                                           protocol_of)
from maebench.leaderboards.reference import Reference, default_reference
from maebench.leaderboards.stats import INTERVAL_TEXT, Cell, finite
from maebench.errors import unknown
from maebench.results import ResultsStore, Row, newest_done

MEASURED, PAPER = "measured", "paper"
ARCH_ORDER = ("vit-tiny", "vit-small", "vit-base", "vit-large", "vit-huge")


@dataclass
class Cost:
    pretrain_wall_s: float | None
    transfer_wall_s: float | None
    peak_mem_mb: float | None
    pretrain_images_per_s: float | None


@dataclass
class BoardRow:
    kind: str                      # MEASURED or PAPER
    label: str                     # backbone name, or "MAE ViT-L (paper)"
    family: str
    arch: str | None
    cells: dict[Column, Cell] = field(default_factory=dict)
    backbone: str | None = None    # measured rows only
    cost: Cost | None = None
    runs: list[Row] = field(default_factory=list)          # the transfer runs counted
    pretrain_runs: list[Row] = field(default_factory=list)
    mask_ratio: float | None = None                        # from its pretrain-mae run's config
    targets: set = field(default_factory=set)              # paper entries its deltas refer to
    method: str = ""                                       # paper rows: the method, for ordering

    def sort_key(self) -> tuple:
        """Family, then measured before paper rows; paper rows by method, then size."""
        arch_i = ARCH_ORDER.index(self.arch) if self.arch in ARCH_ORDER else len(ARCH_ORDER)
        return (families.family_sort_key(self.family), self.kind != MEASURED, self.method, arch_i, self.label)


@dataclass
class Leaderboard:
    columns: list[Column]
    rows: list[BoardRow]
    results_path: str
    include_paper: bool
    reference: Reference | None
    ignored: dict[str, int]        # status -> runs not counted because not 'done'
    filters: str = ""              # "tasks=...; backbones=..." when the board was restricted
    filter_args: str = ""          # the same as command-line options ("--task knn --no-paper")

    @property
    def measured_rows(self) -> list[BoardRow]:
        return [r for r in self.rows if r.kind == MEASURED]

    @property
    def empty(self) -> bool:
        return not self.measured_rows

    def empty_message(self) -> str:
        """Why there is nothing to show, and commands (each one runs as printed) that fix it."""
        ignored = ", ".join(f"{n} {s}" for s, n in sorted(self.ignored.items()))
        extra = f" (not counted: {ignored})" if ignored else ""
        where = f" matching {self.filters}" if self.filters else ""
        results = f"--results {shlex.quote(self.results_path)}"
        if self.filters:
            hint = f"To see every result there: `maebench leaderboard {results}`."
        else:
            hint = ("To fill a store: `maebench demo --quick` (a few minutes on a CPU; then plain "
                    "`maebench leaderboard` shows its store), or `maebench run --help` for one task.")
        return f"No finished transfer runs{where} in {self.results_path}{extra}. {hint}"

    def notes(self) -> list[str]:
        """Plain-text footnotes saying how the numbers were made (every format prints them)."""
        ignored = ", ".join(f"{n} {s}" for s, n in sorted(self.ignored.items()))
        out = ["Cells: mean ± sample standard deviation over seeds when n > 1, the value alone when "
               "n = 1 (n = finished runs; a repeated run of the same recipe and seed replaces the "
               "earlier one); only runs with status 'done' count"
               + (f" (not counted: {ignored})." if ignored else "."),
               f"[lo, hi] after a cell: its {INTERVAL_TEXT} (mean ± t(0.975, n−1) · std / √n, as "
               "`maebench leaderboard --compare` gives), shown where n > 1.",
               "One table per task, dataset, protocol and label budget: results on different datasets, "
               "with different protocols (linear probing: the paper's single lr, the swept grid, logreg), "
               "recipe values searched per backbone (`--search`), or different low-label settings (N labels per "
               "class, a fraction F of the labels) are never "
               "merged or compared; rows are sorted by the task's headline metric, the best measured value "
               "of each column is marked."]
        protocols = sorted({c.protocol for r in self.measured_rows for c in r.cells if c.protocol})
        out += [f"{PROTOCOL_NOTES[p][:1].upper()}{PROTOCOL_NOTES[p][1:]}." for p in protocols if p in PROTOCOL_NOTES]
        sources = sorted({c.reference_source for r in self.rows for c in r.cells.values()
                          if c.reference_source}, key=natural)
        if self.include_paper and self.reference is not None and sources:
            out.append(f"(paper) rows: {self.reference.citation}. Sources: {'; '.join(sources)}. "
                       "They appear only in tables on the paper's own datasets "
                       f"({', '.join(PAPER_DATASETS.values())}).")
            out.append("Δ = measured mean − paper number, with the same task, metric and K, for the paper's "
                       "own protocol on all labels only (never a swept, logreg, searched or low-label result), against "
                       "the paper row the backbone's registry entry names, else the one of the same "
                       "pretraining family and ViT size.")
        out.append("Cost: pretrain time = sum over the backbone's pretrain-* runs; transfer time = "
                   "sum over the runs counted here; peak mem = max over both; pretrain img/s = mean "
                   "pretraining throughput.")
        return out


def natural(text: str) -> tuple:
    """'Table 3' before 'Table 12'."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def config_get(cfg: dict[str, Any], key: str) -> Any:
    """cfg[key], also when the config is nested one level ('aug.mixup') or flattened."""
    if key in cfg:
        return cfg[key]
    if "." in key:
        head, tail = key.split(".", 1)
        sub = cfg.get(head)
        return sub.get(tail) if isinstance(sub, dict) else None
    for value in cfg.values():
        if isinstance(value, dict) and key in value:
            return value[key]
    return None


def _column(row: Row, metric: str) -> Column:
    blocks = parse_blocks(config_get(row.config, "blocks")) if row.task in PER_K_TASKS else None
    return Column(row.task, metric, canonical_dataset(row.dataset), blocks, protocol_of(row.task, row.config),
                  labels_of(row.config))


def _sum(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) if vals else None


def _cost(runs: Sequence[Row], pretrain_runs: Sequence[Row]) -> Cost:
    peaks = [r.peak_mem_mb for r in (*runs, *pretrain_runs) if r.peak_mem_mb is not None]
    ips = [r.images_per_s for r in pretrain_runs if r.images_per_s is not None]
    return Cost(pretrain_wall_s=_sum(r.wall_time_s for r in pretrain_runs),
                transfer_wall_s=_sum(r.wall_time_s for r in runs),
                peak_mem_mb=max(peaks) if peaks else None,
                pretrain_images_per_s=statistics.fmean(ips) if ips else None)


def _mask_ratio(pretrain_runs: Sequence[Row]) -> float | None:
    for run in reversed(pretrain_runs):          # newest first
        if run.task == "pretrain-mae":
            value = finite(config_get(run.config, "mask_ratio"))
            if value is not None:
                return value
    return None


def _measured_row(name: str, runs: list[Row], pretrain_runs: list[Row], lookup: Callable,
                  reference: Reference | None) -> BoardRow:
    info = lookup(name, [r.config for r in (*runs, *pretrain_runs)])
    row = BoardRow(MEASURED, name, info.family, info.arch, backbone=name, runs=runs,
                   pretrain_runs=pretrain_runs, cost=_cost(runs, pretrain_runs),
                   mask_ratio=_mask_ratio(pretrain_runs))
    for run in runs:
        for metric in TASK_METRICS[run.task]:
            value = finite(run.metrics.get(metric))
            if value is None:
                continue
            cell = row.cells.setdefault(_column(run, metric), Cell([]))
            cell.values.append(value)
            cell.run_ids.append(run.run_id)
    pretrained_on = label_mark.pretraining_datasets(pretrain_runs)
    for col, cell in row.cells.items():
        cell.seen_all_labels = label_mark.seen_all_labels(info.family, col.task, col.dataset, pretrained_on)
        cell.searched = col.protocol in SEARCHED_PROTOCOLS
    if reference is not None:
        for col, cell in row.cells.items():
            target = (reference.delta_target(info.family, info.arch, col, info.paper)
                      if col.is_paper_dataset and col.is_paper_protocol else None)
            if target is not None:
                cell.reference, cell.reference_source = target.value, target.citation
                row.targets.add(target)
    return row


def _paper_key(e) -> tuple:
    return (e.family, e.method, e.arch, e.variant)


def _paper_rows(reference: Reference, measured: list[BoardRow]) -> list[BoardRow]:
    """Paper rows for the families on the board and for every row a delta refers to, with the
    paper's numbers in the columns that were measured (same task, dataset, metric and K) only:
    a paper row never brings a table or a column of its own."""
    measured_columns = {c for r in measured for c in r.cells}
    families_on_board = {r.family for r in measured}
    referenced = {_paper_key(e) for r in measured for e in r.targets}
    rows: dict[tuple, BoardRow] = {}
    for e in reference.leaderboard_entries():
        if e.lb_column not in measured_columns:
            continue
        if e.family not in families_on_board and _paper_key(e) not in referenced:
            continue
        row = rows.setdefault(_paper_key(e), BoardRow(PAPER, e.row_label, e.family, e.arch, method=e.method))
        row.cells[e.lb_column] = Cell([e.value], reference_source=e.citation, paper=True)
    return list(rows.values())


def _check_filters(tasks: Sequence[str] | None, backbones: Sequence[str] | None,
                   datasets: Sequence[str] | None, done: list[Row]) -> None:
    for t in tasks or ():
        if t not in TASKS:
            raise unknown("task", t, TASKS)
    known_backbones = {r.backbone for r in done if r.task in TASKS}
    for b in backbones or ():
        if b not in known_backbones:
            raise unknown("backbone (no finished runs)", b, known_backbones)
    known_datasets = {canonical_dataset(r.dataset) for r in done if r.task in TASKS}
    for d in datasets or ():
        if canonical_dataset(d) not in known_datasets:
            raise unknown("dataset (no finished runs)", d, sorted(known_datasets))


def _filter_args(tasks, datasets, backbones, include_paper) -> str:
    parts = [f"--task {','.join(tasks)}" if tasks else "", f"--dataset {','.join(datasets)}" if datasets else "",
             f"--backbones {','.join(backbones)}" if backbones else "", "" if include_paper else "--no-paper"]
    return " ".join(p for p in parts if p)


def build_leaderboard(store: ResultsStore, *, tasks: Sequence[str] | None = None,
                      backbones: Sequence[str] | None = None, include_paper: bool = True,
                      datasets: Sequence[str] | None = None, reference: Reference | None = None,
                      lookup: Callable = families.lookup) -> Leaderboard:
    """The leaderboard of `store`, optionally restricted to some tasks, datasets (any name of a
    paper dataset, e.g. 'ImageNet-1K' or 'imagenet') and backbones."""
    all_runs = store.rows(status=None)
    done = [r for r in all_runs if r.status == "done"]
    _check_filters(tasks, backbones, datasets, done)
    reference = (reference or default_reference()) if include_paper else None
    wanted_datasets = {canonical_dataset(d) for d in datasets} if datasets else None

    def wanted(r: Row) -> bool:
        return (r.task in TASKS and (tasks is None or r.task in tasks)
                and (backbones is None or r.backbone in backbones)
                and (wanted_datasets is None or canonical_dataset(r.dataset) in wanted_datasets))

    transfer = [r for r in newest_done(done) if wanted(r)]
    ignored = Counter(r.status for r in all_runs if r.status != "done" and wanted(r))
    by_backbone: dict[str, list[Row]] = defaultdict(list)
    for r in transfer:
        by_backbone[r.backbone].append(r)
    pretrain: dict[str, list[Row]] = defaultdict(list)
    for r in done:
        if r.task.startswith("pretrain-"):
            pretrain[r.backbone].append(r)

    rows = [_measured_row(name, runs, pretrain[name], lookup, reference)
            for name, runs in by_backbone.items()]
    rows = [r for r in rows if r.cells]
    if reference is not None and rows:
        rows += _paper_rows(reference, rows)
    columns = sorted({c for r in rows for c in r.cells}, key=Column.sort_key)
    rows.sort(key=BoardRow.sort_key)
    filters = "; ".join(f"{k}={','.join(v)}" for k, v in
                        (("tasks", tasks), ("datasets", datasets), ("backbones", backbones)) if v)
    return Leaderboard(columns=columns, rows=rows, results_path=str(store.path),
                       include_paper=include_paper, reference=reference, ignored=dict(ignored),
                       filters=filters, filter_args=_filter_args(tasks, datasets, backbones, include_paper))
