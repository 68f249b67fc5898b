"""`maebench demo`: the MAE paper's comparison in miniature, on the fashion world.

Five vit-micro backbones -- MAE with the normalised-pixel target, MAE with the pixel target,
MoCo v3, supervised (trained on all 60k labels) and scratch (random init) -- are pretrained on
the 60k Fashion-MNIST training images and transferred to the fashion world's tasks: low-label
fine-tuning (100 labels per class), the partial fine-tuning curve (Fig. 9), linear probing,
k-NN, COCO-style detection / instance segmentation and ADE20K-style semantic segmentation. The
recipes are the protocols' `vit-micro` entries (chosen in docs/cpu-recipes.md); this file only
says which stages run.

Every stage is a literal `maebench` command line, run in this process and printed before it
runs, so any stage can be copied and run alone. Everything is written under
$MAEBENCH_HOME/demo/<full|quick>[-mae-Nep]/ (or --out): the results store, the stage ledger, report.md,
the leaderboard and figures; the source tree is never written. A second run reuses the stages
that finished with the same recipe (the stage ledger keeps a hash of each stage's protocol file
and of the stages it needs), so a changed recipe reruns its stages and those downstream of
them; --fresh reruns everything.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from maebench.backbones.pretraining import METHODS
from maebench.tasks.table import TASKS

# The backbones compared: key -> (pretraining command, or None for the random-init scratch ViT).
PRETRAIN = {
    "mae-norm-pixel": ["--method", "mae", "--target", "norm-pixel"],
    "mae-pixel": ["--method", "mae", "--target", "pixel"],
    "mocov3": ["--method", "mocov3"],
    "supervised": ["--method", "supervised"],
    "scratch": None,
}
assert all(cmd is None or cmd[1] in METHODS for cmd in PRETRAIN.values())
SCRATCH = "scratch-vit-micro"

# Task options of the demo's comparison (what is measured, not how: recipes live in the protocols).
TASK_ARGS = {
    "finetune": ["--labels-per-class", "100"],                 # low-label fine-tuning
    "partial": ["--labels-per-class", "100"],                  # the same labels, last K blocks tuned
    "linprobe": ["--cached-features", "--labels-per-class", "1000"],
    "knn": ["--labels-per-class", "1000"],
}
PARTIAL_K = ("0", "0.5", "1", "2")       # K = all is the fine-tuning row (partial.yaml = finetune.yaml)
PARTIAL_BACKBONES = ("mae-norm-pixel", "mocov3")
DATA_KIND = {"coco": "coco", "ade20k": "ade20k"}

# Seconds each stage takes in one of two lanes (one torch thread each, side by side) on an idle
# 2-core machine (docs/cpu-recipes.md): the ETA and the budget rule read them. Keyed by stage
# kind, then backbone where they differ.
ESTIMATE = {
    "data": 15, "visualize": 10, "leaderboard": 15,
    "pretrain": {"mae-norm-pixel": 130, "mae-pixel": 120, "mocov3": 615, "supervised": 265},
    "finetune": 58, "partial": 42, "linprobe": 54, "knn": 8, "coco": 190, "ade20k": 68,
}
# (task, backbone) pairs the full demo leaves out to stay within 25 minutes on 2 cores; the
# report says so in their cells. `maebench demo --all` runs them too.
LEFT_OUT = {("coco", "mae-pixel"), ("ade20k", "mae-pixel"), ("coco", "mocov3"), ("ade20k", "mocov3")}

QUICK_WORLD = ["--train-per-class", "100", "--val-per-class", "20", "--coco-train-images", "16",
               "--coco-val-images", "8", "--ade-train-images", "16", "--ade-val-images", "8"]
QUICK_EPOCHS = {"pretrain": "1", "finetune": "2", "partial": "1", "linprobe": "2", "coco": "1", "ade20k": "2"}
QUICK_TASK_ARGS = {"finetune": ["--labels-per-class", "20"], "partial": ["--labels-per-class", "30"],  # K=0: batch 256
                   "linprobe": ["--cached-features"], "knn": []}


@dataclass
class Stage:
    label: str
    argv: list[str]
    kind: str
    backbone: str | None = None
    seed: int | None = None
    estimate: float = 0.0
    extra: dict = field(default_factory=dict)
    needs: tuple[str, ...] = ()          # labels of the stages that must finish first


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="a reduced fashion world and 1-2 epochs per stage: every stage runs, in a few minutes")
    p.add_argument("--fresh", action="store_true", help="rerun every stage instead of reusing finished ones")
    p.add_argument("--out", metavar="DIR",
                   help="where the demo writes (default: $MAEBENCH_HOME/demo/full or demo/quick; "
                        "with --mae-epochs N, demo/full-mae-Nep)")
    p.add_argument("--seeds", default=None, metavar="S[,S...]",
                   help="seeds of the transfer runs; several give mean ± std (default 0)")
    p.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)   # older spelling of --seeds S
    p.add_argument("--all", action="store_true",
                   help="also run the stages the full demo leaves out for time (about 8 minutes more)")
    p.add_argument("--report-only", action="store_true",
                   help="run no stage: write report.md and the leaderboard from the stages finished so far")
    p.add_argument("--fashion-dir", metavar="DIR",
                   help="directory with the Fashion-MNIST IDX files (default: the Debian package's)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="stages run at a time, each in its own process (default: one per free physical core)")
    p.add_argument("--mae-epochs", type=int, default=None, metavar="N",
                   help="MAE pretraining epochs for both MAE backbones (default: the protocol's, 1); about 2 min "
                        "per epoch each, 24 bring MAE level with scratch in detection (docs/cpu-recipes.md); "
                        "writes to demo/full-mae-Nep")


def _seeds(args: argparse.Namespace) -> list[int]:
    from maebench.errors import UsageError

    text = args.seeds if args.seeds is not None else str(args.seed if args.seed is not None else 0)
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds expects integers separated by commas, got '{text}'") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds expects distinct integers separated by commas, got '{text}'")
    return seeds


def _longer(key: str, mae_epochs: int | None) -> int | None:
    """The epochs --mae-epochs sets for this backbone's pretraining (MAE only), None otherwise."""
    return mae_epochs if PRETRAIN[key] is not None and PRETRAIN[key][1] == "mae" else None


def backbone_name(key: str, quick: bool, mae_epochs: int | None = None) -> str:
    """demo-<key>, demo-quick-<key>; an MAE backbone pretrained for --mae-epochs N ends in -Nep."""
    if PRETRAIN[key] is None:
        return SCRATCH
    n = _longer(key, mae_epochs)
    return ("demo-quick-" if quick else "demo-") + key + (f"-{n}ep" if n else "")


def plan(world: Path, results: Path, seeds: list[int], quick: bool, run_all: bool,
         fashion_dir: str | None, mae_epochs: int | None = None) -> tuple[list[Stage], list[tuple[str, str]]]:
    """(stages to run, (task, backbone key) pairs left out for time); mae_epochs: the MAE
    pretrainings' epochs when not the protocol's."""
    common = ["--results", str(results)]
    data_argv = ["data", "prepare", "fashion", "--out", str(world), *(QUICK_WORLD if quick else [])]
    if fashion_dir:
        data_argv += ["--fashion-dir", fashion_dir]
    data = Stage("prepare the fashion world", data_argv, "data", estimate=ESTIMATE["data"])
    stages = [data]
    for key, cmd in PRETRAIN.items():
        if cmd is not None:
            n = _longer(key, mae_epochs)
            epochs = ["--epochs", str(n)] if n else ["--epochs", QUICK_EPOCHS["pretrain"]] if quick else []
            stages.append(Stage(f"pretrain {key}", ["pretrain", *cmd, "--arch", "vit-micro", "--data",
                                                    str(world / "classification"),
                                                    "--name", backbone_name(key, quick, mae_epochs),
                                                    *epochs, *common, "--seed", "0"],
                                "pretrain", key, estimate=ESTIMATE["pretrain"][key] * (n or 1), needs=(data.label,)))
    left_out = []
    for task in TASKS:
        for key in PRETRAIN:
            if task == "partial" and key not in PARTIAL_BACKBONES:
                continue
            if not quick and not run_all and (task, key) in LEFT_OUT:
                left_out.append((task, key))
                continue
            for k in (PARTIAL_K if task == "partial" else (None,)):
                for seed in seeds:
                    stages.append(_transfer(task, key, k, seed, world, common, quick, mae_epochs))
    root = Path(results).parent
    stages.append(Stage("MAE reconstructions of held-out test images",
                        ["visualize", "--backbone", backbone_name("mae-norm-pixel", quick, mae_epochs), "--images",
                         str(world / "classification" / "val"), "--per-folder", "1",       # one test image per class
                         "--out", str(root / "reconstructions"), "--grid", str(root / "reconstructions.png")],
                        "visualize", "mae-norm-pixel", estimate=ESTIMATE["visualize"]))
    return _with_needs(stages), left_out


def _with_needs(stages: list[Stage]) -> list[Stage]:
    """A stage on a pretrained backbone waits for its pretraining (the others for the data);
    k-NN waits for the linear probe of the same backbone and seed, whose cached features it reads."""
    by = {(s.kind, s.backbone, s.seed): s.label for s in stages}
    for s in stages:
        if s.kind in ("data", "pretrain"):
            continue
        first = by.get(("pretrain", s.backbone, None), stages[0].label)
        probe = by.get(("linprobe", s.backbone, s.seed)) if s.kind == "knn" else None
        s.needs = (first,) + ((probe,) if probe else ())
    return stages


def recipe_hashes(stages: list[Stage]) -> dict[str, str]:
    """label -> a hash of the stage's argv, its protocol file and the hashes of the stages it
    needs: the stage ledger's record that a finished stage is still the stage planned now."""
    from maebench.config import PROTOCOL_DIR

    hashes: dict[str, str] = {}
    for s in stages:                                   # needs come first (plan's order)
        h = hashlib.sha256(" ".join(s.argv).encode())
        protocol = (f"pretrain_{s.argv[s.argv.index('--method') + 1]}" if s.kind == "pretrain"
                    else TASKS[s.kind].protocol if s.kind in TASKS else None)
        if protocol:
            h.update((PROTOCOL_DIR / f"{protocol}.yaml").read_bytes())
        for label in s.needs:
            h.update(hashes[label].encode())
        hashes[s.label] = h.hexdigest()[:16]
    return hashes


def _transfer(task: str, key: str, k: str | None, seed: int, world: Path, common: list[str], quick: bool,
              mae_epochs: int | None) -> Stage:
    opts = list((QUICK_TASK_ARGS if quick else TASK_ARGS).get(task, []))
    if k is not None:
        opts += ["--blocks", k]
    if quick and task in QUICK_EPOCHS:
        opts += ["--epochs", QUICK_EPOCHS[task]]
    argv = ["run", "--task", task, "--backbone", backbone_name(key, quick, mae_epochs), "--data",
            str(world / DATA_KIND.get(task, "classification")), *opts, *common, "--seed", str(seed)]
    swept = task == "linprobe" and "--no-sweep" not in opts and {"--cached-features", "--sweep"} & set(opts)
    label = f"{task}{' (swept)' if swept else ''}{'' if k is None else ' K=' + k} {key} (seed {seed})"
    return Stage(label, argv, task, key, seed, float(ESTIMATE[task]), {"blocks": k})


def main(args: argparse.Namespace) -> int:
    from maebench.cli import main as maebench
    from maebench.commands import demo_lanes, demo_report
    from maebench.errors import MaebenchError
    from maebench.home import data_dir, home_dir

    mode = "quick" if args.quick else "full"
    seeds = _seeds(args)
    mae_epochs = _mae_epochs(args)
    if mae_epochs is not None:
        mode += f"-mae-{mae_epochs}ep"
    root = Path(args.out).expanduser().resolve() if args.out else home_dir() / "demo" / mode
    _refuse_source_tree(root)
    if args.fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    results, ledger_path = root / "results.sqlite", root / "stages.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
    world = data_dir() / ("fashion-quick" if args.quick else "fashion")
    stages, left_out = plan(world, results, seeds, args.quick, args.all, args.fashion_dir, mae_epochs)
    recipe = recipe_hashes(stages)
    t_demo, load_start = time.time(), os.getloadavg()
    todo = []
    for i, stage in enumerate([] if args.report_only else stages, 1):
        if stage.kind != "data" and ledger.get(" ".join(stage.argv)) == recipe[stage.label]:
            print(f"[{i}/{len(stages)}] {stage.label}: done earlier, reused", flush=True)
        else:
            todo.append((i, stage))
    if todo:
        lanes, threads = demo_lanes.choose_lanes(args.jobs)
        progress = demo_report.Progress([s for _, s in todo], lanes)

        def started(i: int, stage: Stage) -> None:
            print(f"[{i}/{len(stages)}] {stage.label}  ({progress.eta_text(stage)})", flush=True)
            if lanes == 1:
                print("  $ maebench " + " ".join(stage.argv), flush=True)

        def finished(stage: Stage, seconds: float) -> None:
            progress.done(stage, seconds)
            ledger[" ".join(stage.argv)] = recipe[stage.label]
            ledger_path.write_text(json.dumps(ledger, indent=1))
            shown = "" if stage.kind in ("data", "visualize") else demo_report.newest_summary(
                results, None if stage.kind == "pretrain" else stage.kind,
                backbone_name(stage.backbone, args.quick, mae_epochs), seed=stage.seed, blocks=stage.extra.get("blocks"))
            print(f"    {stage.label}: {shown + ' ' if shown else 'done '}({seconds:.0f} s)", flush=True)

        def prepare(stage: Stage) -> None:
            if stage.kind == "visualize":            # a fresh set of reconstructions
                shutil.rmtree(root / "reconstructions", ignore_errors=True)

        try:
            demo_lanes.run(todo, lanes=lanes, threads=threads, logs=root / "logs",
                           started=started, finished=finished, prepare=prepare)
        except MaebenchError as e:
            raise MaebenchError(f"{e}; rerun `maebench demo{' --quick' if args.quick else ''}` "
                                f"to resume from it") from None

    stale = demo_report.superseded(results)
    if stale:
        from maebench.results import ResultsStore
        ResultsStore(results).remove(stale)
        print(f"  removed {len(stale)} result row(s) of earlier recipes, replaced by the stages rerun above")
    command = "maebench demo" + (" --quick" if args.quick else "") + (" --all" if args.all else "") + \
        (f" --seeds {','.join(map(str, seeds))}" if seeds != [0] else "") + \
        (f" --mae-epochs {mae_epochs}" if mae_epochs is not None else "")
    _leaderboard(maebench, results, root)
    report = demo_report.write_report(root, results, command=command, quick=args.quick, seeds=seeds,
                                      left_out=left_out, names={k: backbone_name(k, args.quick, mae_epochs) for k in PRETRAIN},
                                      seconds=None if args.report_only else time.time() - t_demo,
                                      load=(load_start, os.getloadavg()),
                                      estimates={t: ESTIMATE[t] for t in ("coco", "ade20k")}, mae_epochs=mae_epochs)
    print(report.summary_text)
    print(f"demo finished in {(time.time() - t_demo) / 60:.1f} min; report: {root / 'report.md'}")
    return 0


def _mae_epochs(args: argparse.Namespace) -> int | None:
    from maebench.errors import UsageError

    if args.mae_epochs is not None and args.mae_epochs < 1:
        raise UsageError(f"--mae-epochs expects a positive number of epochs, got {args.mae_epochs}")
    return args.mae_epochs


def _refuse_source_tree(root: Path) -> None:
    """The demo writes results, never into the maebench checkout (git status stays clean)."""
    from maebench.errors import UsageError

    source = Path(__file__).resolve().parents[2]
    if (source / ".git").exists() and (root == source or source in root.parents):
        raise UsageError(f"--out {root} is inside the maebench source tree {source}; choose a directory outside it")


def _run(maebench, argv: list[str]) -> int:
    print("  $ maebench " + " ".join(argv), flush=True)
    return maebench(argv)


def _leaderboard(maebench, results: Path, root: Path) -> None:
    """The leaderboard as `maebench leaderboard` renders it (markdown, html, figures)."""
    for name in ("leaderboard.md", "leaderboard.html"):
        try:
            code = _run(maebench, ["leaderboard", "--results", str(results), "--out", str(root / name),
                                   "--figures", str(root / "figures")])
        except Exception as e:  # the report below does not depend on it
            code = f"{type(e).__name__}: {e}"
        if code != 0:
            print(f"  leaderboard {name} not written ({code})", flush=True)
