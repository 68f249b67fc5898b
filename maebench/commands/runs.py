"""`maebench runs list | show RUN_ID | clean`: the rows of a results store, one run in full, and
freeing the checkpoints of finished runs (maebench/commands/runs_disk.py).

`list` shows each run's age and its run directory's size on disk. `show` prints one row (task,
backbone, dataset, seed, status, metrics, config) and the loss and lr curves of its log.jsonl as a
PNG (maebench/runplot.py; in the run directory, or --plot FILE), and, for a run of
`--search` (maebench/search.py), every trial of its search: the point, its state, its held-out
score (and the score at each rung), epochs and cost, the chosen one marked, then the total cost
against the budget. Both read the store only (no torch); imports happen inside `main`."""
from __future__ import annotations

import argparse
import sys

from maebench.commands.options import add_results_option
from maebench.results import STATUSES


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    ls = sub.add_parser("list", help="every run, newest first: age, task, backbone, dataset, seed, status, "
                                     "headline metric, size of its run directory, run id")
    add_results_option(ls)
    ls.add_argument("--task", metavar="TASK", help="only runs of this task (e.g. finetune, pretrain-mae)")
    ls.add_argument("--backbone", metavar="NAME", help="only runs of this backbone")
    ls.add_argument("--status", choices=STATUSES, help="only runs with this status (default: every status)")
    show = sub.add_parser("show", help="one run: its task, backbone, dataset, seed, status, metrics and config, "
                                       "a PNG of its loss and lr curves; for a searched run, every trial of its "
                                       "search and the one chosen")
    show.add_argument("run_id", metavar="RUN_ID")
    add_results_option(show)
    show.add_argument("--plot", metavar="FILE.png",
                      help="where to write the loss and lr curves (default: curves.png in the run directory)")
    clean = sub.add_parser("clean", help="remove the training checkpoints (checkpoint.pth) of done runs, keeping "
                                         "final weights, logs and results; prints what it freed")
    add_results_option(clean)
    clean.add_argument("--dry-run", action="store_true", help="only list what would be removed")


def main(args: argparse.Namespace) -> int:
    return {"list": _list, "show": _show, "clean": _clean}[args.action](args)


def _clean(args) -> int:
    from maebench.commands.runs_disk import clean
    from maebench.leaderboards.stores import choose_store
    choice = choose_store(args.results)
    if choice.note:
        print(choice.note, file=sys.stderr)
    return clean(choice.store, dry_run=args.dry_run)


# ---- list -------------------------------------------------------------------------------------
def _headline(row) -> str:
    """'top1 80.00' (the task's headline metrics), 'loss 0.41' for pretraining; '' without metrics."""
    from maebench.tasks.table import TASKS
    names = TASKS[row.task].headline if row.task in TASKS else ("loss",)
    return ", ".join(f"{m} {_number(row.metrics[m])}" for m in names if _is_number(row.metrics.get(m)))


def _list(args) -> int:
    import time

    from tabulate import tabulate

    from maebench.errors import unknown
    from maebench.leaderboards.searched import is_searched
    from maebench.leaderboards.stores import choose_store
    choice = choose_store(args.results)
    if choice.note:
        print(choice.note, file=sys.stderr)
    store = choice.store
    every = store.rows(status=None)
    for kind, value, known in (("task", args.task, {r.task for r in every}),
                               ("backbone", args.backbone, {r.backbone for r in every})):
        if value is not None and value not in known:
            raise unknown(kind, value, known)
    rows = [r for r in reversed(every) if (args.task is None or r.task == args.task)
            and (args.backbone is None or r.backbone == args.backbone)
            and (args.status is None or r.status == args.status)]
    if not rows:
        print(f"no runs{' matching the filters' if every else ''} in {store.path}")
        return 0
    from maebench.commands.runs_disk import age_text, disk_size, size_text
    now = time.time()
    table = [[age_text(r.created, now), r.task, r.backbone, r.dataset or "", "" if r.seed is None else r.seed,
              r.status, _headline(r), "yes" if is_searched(r.config) else "",
              size_text(disk_size(r.out_dir) if r.out_dir else None), r.run_id] for r in rows]
    print(tabulate(table, headers=["age", "task", "backbone", "dataset", "seed", "status", "headline",
                                   "searched", "size", "run id"], disable_numparse=True,
                   colalign=("right", *["left"] * 7, "right", "left")))
    print(f"{len(rows)} run{'s' * (len(rows) != 1)} in {store.path}; `maebench runs show RUN_ID` shows one")
    return 0


# ---- show -------------------------------------------------------------------------------------
def _find(run_id: str, results: str | None):
    """(store, row) of `run_id` (or of the one run id it begins): in --results, else in the default
    store, then in the stores maebench knows (the demo's). An unknown id is a usage error naming it."""
    from pathlib import Path

    from maebench.errors import MaebenchError, UsageError, did_you_mean
    from maebench.home import known_stores
    from maebench.results import ResultsStore
    if results:
        path = Path(results).expanduser()
        if not path.is_file():
            raise MaebenchError(f"--results {path}: no such results store")
        stores = [ResultsStore(path)]
    else:
        stores = [ResultsStore(None)]
        stores += [ResultsStore(p) for p, _ in known_stores() if Path(p).resolve() != stores[0].path.resolve()]
    ids = []
    for store in stores:
        rows = store.rows(status=None)
        exact = [r for r in rows if r.run_id == run_id]
        prefix = [r for r in rows if r.run_id.startswith(run_id)] if len(run_id) >= 6 else []
        if exact or len(prefix) == 1:
            return store, (exact or prefix)[0]
        ids += [r.run_id for r in rows]
    where = " or ".join(str(s.path) for s in stores)
    if not ids:
        raise UsageError(f"unknown run id '{run_id}': no runs in {where}")
    hint = did_you_mean(run_id, ids) or "; `maebench runs list` lists them"
    raise UsageError(f"unknown run id '{run_id}' in {where}{hint}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(v, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _metrics_text(metrics: dict) -> str:
    """'top1 80.00, top5 95.00, per_class_iou [150 values]' (the search record aside)."""
    parts = []
    for k, v in metrics.items():
        if _is_number(v):
            parts.append(f"{k} {_number(v)}")
        elif isinstance(v, list):
            parts.append(f"{k} [{len(v)} values]")
        elif isinstance(v, str):
            parts.append(f"{k} {v}")
    return ", ".join(parts) or "-"


def _show(args) -> int:
    import time
    store, row = _find(args.run_id, args.results)
    lines = [("run", row.run_id), ("results", str(store.path)), ("task", row.task), ("backbone", row.backbone),
             ("dataset", row.dataset or "-"), ("seed", "-" if row.seed is None else str(row.seed)),
             ("status", row.status), ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.created))),
             ("metrics", _metrics_text(row.metrics) if row.status == "done" else "-")]
    if row.error:
        lines.append(("error", row.error))
    if row.wall_time_s is not None:
        lines.append(("wall time", f"{row.wall_time_s:.1f} s"
                      + (f", peak memory {row.peak_mem_mb:.0f} MB" if row.peak_mem_mb is not None else "")))
    if row.out_dir:
        lines.append(("run directory", row.out_dir))
    lines += _config_lines(row.config)
    record = row.metrics.get("search")
    config = row.config.get("search")
    if isinstance(config, dict) and config:
        lines += _search_lines(config, record if isinstance(record, dict) else None)
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k + ':':<{width + 1}} {v}")
    if isinstance(record, dict) and isinstance(record.get("trials"), list):
        print()
        print(trials_text(row.config, row.metrics, record))
    elif isinstance(config, dict) and config:
        print("\n(no trials recorded: the run did not finish)")
    _plot(row, args.plot)
    return 0


def _config_lines(config: dict) -> list[tuple[str, str]]:
    """The row's config, flattened: 'lr 0.002, aug.mixup 0.8, ...' (the backbone record and search aside)."""
    def flat(d: dict, prefix: str = ""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k} {v}"
    items = {k: v for k, v in config.items() if not k.startswith(("backbone_", "tag_")) and k != "search"}
    return [("config", ", ".join(flat(items)) or "-")]


def _plot(row, plot: str | None) -> None:
    """The curves of the run's log.jsonl as a PNG; says where, or why there is none."""
    from pathlib import Path

    from maebench.runlog import LOG_FILE
    log = Path(row.out_dir) / LOG_FILE if row.out_dir else None
    if log is None or not log.is_file():
        if plot:
            from maebench.errors import MaebenchError
            raise MaebenchError(f"--plot {plot}: run {row.run_id} has no {LOG_FILE} to plot"
                                + (f" in {row.out_dir}" if row.out_dir else ""))
        print(f"\n(no {LOG_FILE} in the run directory: no curves)")
        return
    from maebench import runlog
    if not any(r.get("kind") in ("step", "epoch") for r in runlog.read(log)):
        print(f"\n({LOG_FILE} holds the final metrics only: the run trained no network, no curves)")
        return
    from maebench.runplot import plot_curves
    out = plot_curves(log, plot or Path(row.out_dir) / "curves.png", title=f"{row.run_id} ({row.task}, {row.backbone})")
    print(f"\ncurves (loss, lr): {out}")


def _search_lines(config: dict, record: dict | None) -> list[tuple[str, str]]:
    from maebench.leaderboards.searched import value_text
    space = config.get("space") or {}
    space_text = "; ".join(f"{k}: {', '.join(value_text(v) for v in vs)}" for k, vs in space.items()) or "-"
    holdout = config.get("holdout")
    out = [("search space", space_text),
           ("selected on", f"{'a held-out part' if holdout is None else f'a held-out {holdout:g}'} of the training data"
                           + (f", by {record['metric']}" if record and record.get("metric") else "")),
           ("search", ", ".join(x for x in (
               f"budget {config['budget']:g} full-run equivalents" if _is_number(config.get("budget")) else "",
               f"seed {config['seed']}" if config.get("seed") is not None else "",
               str(config.get("pruner") or "")) if x))]
    if record and record.get("reused_from_seed") is not None:
        out.append(("reused", f"the search of seed {record['reused_from_seed']}"))
    if record and record.get("dir"):
        out.append(("search directory", str(record["dir"])))
    return out


def trials_text(config: dict, metrics: dict, record: dict) -> str:
    """Every trial of a search (the chosen one marked '*'), then what was chosen and what it cost."""
    from tabulate import tabulate

    from maebench.leaderboards.searched import LR_KEYS, effective_lr, lr_text, value_text
    trials = [t for t in record["trials"] if isinstance(t, dict)]
    keys = list(dict.fromkeys(k for t in trials for k in (t.get("params") or {})))
    with_lr = any(k in LR_KEYS for k in keys) and effective_lr(config) is not None
    chosen = record.get("chosen")
    pick = next((i for i, t in enumerate(trials) if t.get("state") == "complete" and t.get("params") == chosen), None)
    metric = record.get("metric") or "score"
    table = []
    for i, t in enumerate(trials):
        params = t.get("params") or {}
        scores = t.get("scores") or {}
        by_epoch = ", ".join(f"{e}: {_number(s)}" for e, s in scores.items() if _is_number(s))
        table.append(["*" if i == pick else "", i, *(value_text(params[k]) if k in params else "" for k in keys),
                      *([lr_text(effective_lr(config, params))] if with_lr else []), t.get("state", "?"),
                      _number(t["score"]) if _is_number(t.get("score")) else "-", by_epoch or "-",
                      t.get("epochs", ""), _number(t["cost"]) if _is_number(t.get("cost")) else "",
                      t.get("run_id") or "-"])
    headers = ["", "#", *keys, *(["lr"] if with_lr else []), "state", f"held-out {metric}", "by epoch", "epochs",
               "cost", "trial run"]
    right = {"#", "lr", f"held-out {metric}", "epochs", "cost"}
    lines = [f"trials ({len(trials)}):", tabulate(table, headers=headers, disable_numparse=True,
                                                   colalign=["right" if h in right else "left" for h in headers])]
    if pick is not None or chosen:
        final = metrics.get(metric)
        lines.append(f"* chosen: {', '.join(f'{k}={value_text(v)}' for k, v in (chosen or {}).items())}"
                     + (f" (held-out {metric} {_number(record['score'])})" if _is_number(record.get("score")) else "")
                     + "; retrained on all of the training data and scored once"
                     + (f": {metric} {_number(final)}" if _is_number(final) else ""))
    counts = ", ".join(f"{record[k]} {k}" for k in ("completed", "pruned", "skipped") if _is_number(record.get(k)))
    cost, budget = record.get("cost"), record.get("budget")
    total = f"total cost {_number(cost)}" if _is_number(cost) else "total cost ?"
    total += f" of a budget of {_number(budget)}" if _is_number(budget) else ""
    total += " full-run equivalents (a trial: epochs trained / the recipe's epochs x the share of the data it fit on)"
    extra = [counts] if counts else []
    if _is_number(record.get("wall_s")):
        extra.append(f"{record['wall_s']:.1f} s")
    if record.get("joint"):
        extra.append("every point scored in one pass")
    lines.append(total + (f"; {'; '.join(extra)}" if extra else ""))
    return "\n".join(lines)
