"""The leaderboard for machines, in long format: one record per run and metric (and one per
paper number shown), numbers as numbers. `pandas.read_csv(...)` / `pandas.read_json(...)` give
one DataFrame with the same columns from either format:

    kind, backbone, family, arch, task, dataset, k, protocol, labels, metric, value, seed, run_id,
    config_hash, wall_time_s, peak_mem_mb, images_per_s, n, mean, std, ci95_low, ci95_high,
    interval, paper_value, paper_source

`kind` is 'measured' for a run's metric and 'paper' for a number of the MAE paper (then the
run fields are empty and `value` is the paper's). A measured record carries the paper number
its cell is compared with (`paper_value`), so Δ = mean(value) - paper_value per cell.

`protocol` (empty = the task's own, 'sweep', 'logreg', 'searched', 'searched-logreg') and `labels` (empty = all, 'N=10' per
class, 'F=0.1' of the labels) are part of the cell, as task, dataset, k and metric are: group by all of
them. `n`, `mean`, `std` (sample) and `ci95_low` / `ci95_high` (the 95 % Student-t interval of
the mean, named in `interval`) summarise the cell a measured record belongs to, repeated on each
of its records (empty for one run)."""
from __future__ import annotations

import csv
import io
import json

from maebench.leaderboards.stats import INTERVAL
from maebench.leaderboards.board import PAPER, Leaderboard

FIELDS = ("kind", "backbone", "family", "arch", "task", "dataset", "k", "protocol", "labels", "metric", "value",
          "seed", "run_id", "config_hash", "wall_time_s", "peak_mem_mb", "images_per_s", "n", "mean", "std",
          "ci95_low", "ci95_high", "interval", "paper_value", "paper_source")


def records(board: Leaderboard) -> list[dict]:
    out = []
    for row in board.rows:
        runs = {r.run_id: r for r in row.runs}
        for col, cell in sorted(row.cells.items(), key=lambda kv: kv[0].sort_key()):
            base = {"backbone": row.label, "family": row.family, "arch": row.arch, "task": col.task,
                    "dataset": col.dataset, "k": col.blocks, "protocol": col.protocol or None, "labels": col.labels or None,
                    "metric": col.metric}
            if row.kind == PAPER:
                out.append({f: None for f in FIELDS} | base | {
                    "kind": PAPER, "value": cell.mean, "paper_value": cell.mean,
                    "paper_source": cell.reference_source})
                continue
            iv = cell.interval
            stats = {"n": cell.n, "mean": cell.mean, "std": cell.std, "ci95_low": iv[0] if iv else None,
                     "ci95_high": iv[1] if iv else None, "interval": INTERVAL if iv else None}
            for run_id, value in zip(cell.run_ids, cell.values):
                run = runs[run_id]
                out.append(base | stats | {
                    "kind": row.kind, "value": value, "seed": run.seed, "run_id": run_id,
                    "config_hash": run.config_hash, "wall_time_s": run.wall_time_s,
                    "peak_mem_mb": run.peak_mem_mb, "images_per_s": run.images_per_s,
                    "paper_value": cell.reference, "paper_source": cell.reference_source})
    return [{f: r.get(f) for f in FIELDS} for r in out]


def to_csv(board: Leaderboard) -> str:
    """Blank = no value; floats written exactly (repr)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for rec in records(board):
        writer.writerow({k: "" if v is None else repr(v) if isinstance(v, float) else v for k, v in rec.items()})
    return buf.getvalue()


def to_json(board: Leaderboard) -> str:
    """A JSON array of records (null = no value)."""
    return json.dumps(records(board), indent=1, ensure_ascii=False) + "\n"
