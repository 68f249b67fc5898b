"""`maebench run --task T --backbone NAME`: one transfer task on one backbone.

Tasks, and the options each takes, come from the task table (maebench/tasks/table.py). Every
task's options are listed here so that `maebench run --help` documents them all; one given to a
task that does not take it is a usage error, never silently ignored."""
from __future__ import annotations

import argparse
import hashlib

from maebench.commands.options import add_training_options, choose_program, run_spec
from maebench.commands.launcher_options import add_launcher_options, launcher_settings
from maebench.errors import UsageError
from maebench.tasks.table import TASKS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, metavar="TASK",
                   help="; ".join(f"{t.name}: {t.summary}" for t in TASKS.values()))
    p.add_argument("--backbone", metavar="NAME", help="registered or catalogued backbone name")
    p.add_argument("--data", metavar="DIR", help="dataset directory (default: the embedded generated set)")
    add_training_options(p)
    c = p.add_argument_group("classification (finetune, linprobe, partial, knn)")
    c.add_argument("--blocks", metavar="K[,K...]",
                   help="partial: tune the last K blocks (0.5 = last block's MLP only); a list sweeps")
    c.add_argument("--labels-per-class", type=int, metavar="N", help="low-label transfer: N labels per class")
    c.add_argument("--label-fraction", type=float, metavar="F", help="low-label transfer: fraction of labels")
    c.add_argument("--cached-features", action="store_true", default=None,
                   help="linprobe/knn: run the frozen encoder once per image and train on stored features")
    c.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=None,
                   help="linprobe: train an lr x weight-decay x input grid of heads on cached features, choose "
                        "on a held-out slice of the training set (default with --cached-features; "
                        "--no-sweep: the paper's single lr)")
    c.add_argument("--holdout", type=float, metavar="F",
                   help="linprobe sweep / logreg: fraction of the training set held out for selection (0.1)")
    c.add_argument("--head", choices=["linear", "logreg"],
                   help="linprobe: BN + linear head (LARS), or L-BFGS logistic regression with C swept")
    q = p.add_argument_group("search (every task; maebench/search.py)")
    q.add_argument("--search", action="store_true",
                   help="choose the protocol's `search:` space (lr, pooled feature, layer decay, ...) for this "
                        "backbone on a held-out part of the training data, retrain the choice on all of it, score once")
    q.add_argument("--search-space", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="replace (or add) one key of the search space (repeatable); values checked as --set checks them")
    q.add_argument("--search-reuse", action="store_true",
                   help="score the best trial's model (trained on the training data less the held-out part) on the "
                        "reported split instead of retraining the choice on all of it")
    q.add_argument("--search-budget", type=float, metavar="B",
                   help="cap the trials' cost at B full-run equivalents (default: the protocol's search.budget)")
    q.add_argument("--search-workers", type=int, metavar="W",
                   help="run the trials as W launcher jobs sharing the search's journal (locally: --jobs at a time; "
                        "or on SLURM), then retrain the choice here")
    q.add_argument("--search-worker", type=_worker, metavar="I/W",
                   help="one of those jobs: trials I, I+W, I+2W, ... of the grid, no final run")
    p.add_argument("--seeds", metavar="S[,S...]",
                   help="run once per seed (e.g. 0,1,2), each a launcher job, and print mean, std and a 95%% t "
                        "interval over them")
    p.add_argument("--seed-job", type=int, metavar="S",
                   help="one job of a --seeds command: run seed S of them alone, no summary (the launcher's jobs)")
    add_launcher_options(p)
    d = p.add_argument_group("coco")
    d.add_argument("--neck", choices=["vit-fpn", "simple-pyramid", "vitdet"],
                   help="ViT-to-FPN adapter (vitdet: ViTDet as published, window attention + its heads)")
    d.add_argument("--train-json", metavar="FILE", help="COCO-format training annotations")
    d.add_argument("--val-json", metavar="FILE", help="COCO-format validation annotations")
    d.add_argument("--images", metavar="DIR", help="image directory for --train-json/--val-json")
    d.add_argument("--eval-predictions", metavar="FILE.json",
                   help="re-score a saved COCO results file against the dataset (no model is built)")
    s = p.add_argument_group("ade20k")
    s.add_argument("--num-classes", type=int, help="number of classes of a custom segmentation set")
    s.add_argument("--ignore-index", type=int, help="label value ignored by loss and metrics (e.g. 255)")
    s.add_argument("--reduce-zero-label", action=argparse.BooleanOptionalAction, default=None,
                   help="map label 0 to ignore and 1..K to 0..K-1 (ADE20K convention)")


def main(args: argparse.Namespace) -> int:
    task = choose_program(args, TASKS, args.task, "--task")
    if getattr(args, "labels_per_class", None) is not None and getattr(args, "label_fraction", None) is not None:
        raise UsageError("give at most one of --labels-per-class and --label-fraction")
    if task.name == "coco" and args.eval_predictions:     # re-scores a file: no run, no model, no torch
        from maebench.tasks.coco.rescore import rescore
        return rescore(args.eval_predictions, data=args.data, backbone=args.backbone, results=args.results,
                       train_json=args.train_json, val_json=args.val_json, images=args.images)
    spec = run_spec(args, task, backbone=args.backbone)
    if (args.search_space or args.search_budget is not None) and not args.search and task.name != "linprobe":
        raise UsageError("--search-space and --search-budget apply with --search")   # linprobe: its sweep
    if args.search_reuse and (not args.search or task.joint_search or args.seeds):
        raise UsageError("--search-reuse applies with --search, to a task that trains one model per trial "
                         "(finetune, partial, coco, ade20k), at one seed")
    if (args.search_workers is not None or args.search_worker is not None) and (not args.search or task.joint_search
                                                                               or args.seeds or args.search_reuse):
        raise UsageError("--search-workers and --search-worker apply with --search, to a task that trains one model "
                         "per trial (finetune, partial, coco, ade20k), at one seed, without --search-reuse")
    if args.seed_job is not None and not args.seeds:
        raise UsageError("--seed-job applies with --seeds")
    if args.seeds:
        from maebench.commands.run_seeds import parse_seeds, run_seeds
        return run_seeds(spec, parse_seeds(args.seeds), args)
    if (settings := launcher_settings(args)).launcher == "slurm":
        from maebench.backbones.registry import entry
        from maebench.launch.one import submit
        return submit(settings, args.argv, protocol=task.protocol, arch=entry(args.backbone).arch if args.backbone else None,
                      label=f"{task.name} {args.backbone}")
    if (args.search_workers or 0) > 1 and args.search_worker is None:
        _search_workers(args, task, args.search_workers)
    from maebench import runner
    runner.execute(spec)
    return 0


def _worker(text: str) -> tuple[int, int]:
    try:
        i, w = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/W (e.g. 0/4), got '{text}'") from None
    if not 0 <= i < w:
        raise argparse.ArgumentTypeError(f"expected 0 <= I < W, got '{text}'")
    return i, w


def _search_workers(args: argparse.Namespace, task, workers: int) -> None:
    """The search's trials as `workers` launcher jobs: this command line with --search-worker I/W."""
    from maebench import launch
    from maebench.backbones.registry import entry
    from maebench.home import home_dir
    from maebench.launch.settings import OPTIONS, protocol_resources, strip
    settings = launcher_settings(args)
    resources = settings.resources(protocol_resources(task.protocol, entry(args.backbone).arch if args.backbone else None))
    argv = strip(args.argv, {**OPTIONS, "--search-workers": True})      # a worker never starts workers
    jobs = [launch.Job(f"search worker {i}/{workers}", [*argv, "--search-worker", f"{i}/{workers}"], resources=resources)
            for i in range(workers)]
    tag = hashlib.sha256(" ".join(argv).encode()).hexdigest()[:10]
    launch.launcher(settings, logs=home_dir() / "jobs" / f"search-{task.name}-{tag}", lanes=settings.jobs).run(
        jobs, started=lambda job: print(f"== {job.label}", flush=True))
