"""`maebench demo`: the whole benchmark end to end on the embedded data.

Every stage is a literal `maebench` command line, run in this process (torch is imported once)
and printed before it runs, so a user can copy any stage and run it alone. The demo keeps its
own results store and stage ledger under $MAEBENCH_HOME/demo/; a second run skips the stages
that finished (their results rows are still there) unless --fresh is given.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from maebench.tasks.table import TASKS

# The backbones the demo compares: name -> the command that pretrains it (None: catalogued).
PRETRAIN = {
    "demo-mae-norm-pixel": ["pretrain", "--method", "mae", "--target", "norm-pixel"],
    "demo-mae-pixel": ["pretrain", "--method", "mae", "--target", "pixel"],
    "demo-supervised": ["pretrain", "--method", "supervised"],
    "demo-mocov3": ["pretrain", "--method", "mocov3"],
    "scratch-vit-micro": None,
}

# Every task of the task table runs on every backbone, with these task options.
TASK_OPTIONS = {
    "linprobe": ["--cached-features"],
    "finetune": ["--labels-per-class", "20"],
    "partial": ["--blocks", "0,0.5,1,2"],
}

# CPU-scale learning rates for the tiny models and batches (the paper's lr rules assume
# batches of 1024-16384; at a batch of 32-64 they give learning rates too small to move a
# 0.5M-parameter ViT in a few hundred steps). Everything else is each protocol's default.
CPU_RECIPE = {
    "mae": ["base_lr=4e-3", "warmup_epochs=1"],            # lr = 4e-3 * 64 / 256 = 1e-3
    "supervised": ["lr=1e-3", "warmup_epochs=1"],
    "mocov3": ["lr=1e-3", "warmup_epochs=1"],
    "linprobe": ["lr=0.1", "warmup_epochs=1"],
    "finetune": ["lr=1e-3", "warmup_epochs=1", "aug.mixup=0", "aug.cutmix=0"],
    "partial": ["lr=1e-3", "warmup_epochs=1", "aug.mixup=0", "aug.cutmix=0"],
}

# (epochs, global batch) per stage: the full demo (<= 20 min on 2 cores) and --quick (<= 3 min).
SCHEDULE = {
    "full": {"pretrain": (10, 64), "linprobe": (30, 64), "finetune": (15, 32), "partial": (8, 32),
             "knn": (None, 64), "coco": (8, 8), "ade20k": (15, 8)},
    "quick": {"pretrain": (2, 32), "linprobe": (3, 32), "finetune": (2, 16), "partial": (1, 16),
              "knn": (None, 32), "coco": (1, 4), "ade20k": (2, 4)},
}
# --quick also shrinks the generated data (per class / per split image counts).
QUICK_DATA = ["--train-per-class", "20", "--val-per-class", "10", "--coco-train-images", "8",
              "--coco-val-images", "8", "--ade-train-images", "8", "--ade-val-images", "8"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a smaller run (about 3 minutes on 2 cores)")
    p.add_argument("--fresh", action="store_true", help="rerun every stage instead of reusing finished ones")
    p.add_argument("--out", metavar="FILE.md",
                   help="leaderboard file (default: leaderboards/demo.md in the maebench source tree)")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage (default 0)")


def _stage_plan(mode: str, data: Path, results: Path, seed: int) -> list[tuple[str, list[str]]]:
    sched = SCHEDULE[mode]
    common = ["--results", str(results), "--seed", str(seed), "--set", "num_workers=0"]
    plan = []
    for name, cmd in PRETRAIN.items():
        if cmd is not None:
            method = cmd[cmd.index("--method") + 1]
            plan.append((f"pretrain {name}", [*cmd, "--arch", "vit-micro", "--data", str(data / "classification"),
                                              "--name", name, *_budget(sched["pretrain"]), *common,
                                              *_sets(CPU_RECIPE.get(method, []))]))
    for name in PRETRAIN:
        for task in TASKS:
            opts = TASK_OPTIONS.get(task, [])
            if task == "partial" and mode == "quick":
                opts = ["--blocks", "1"]
            argv = ["run", "--task", task, "--backbone", name, "--data", str(data / _data_kind(task)), *opts,
                    *_budget(sched[task]), *common, *_sets(CPU_RECIPE.get(task, []))]
            plan.append((f"{task} {name}", argv))
    return plan


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def _budget(epochs_batch: tuple[int | None, int]) -> list[str]:
    epochs, batch = epochs_batch
    return (["--epochs", str(epochs)] if epochs else []) + ["--batch-size", str(batch)]


def _data_kind(task: str) -> str:
    return {"coco": "coco", "ade20k": "ade20k"}.get(task, "classification")


def main(args: argparse.Namespace) -> int:
    from maebench.cli import main as maebench
    from maebench.errors import MaebenchError
    from maebench.home import home_dir

    mode = "quick" if args.quick else "full"
    root = home_dir() / "demo" / mode
    if args.fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    results, ledger_path = root / "results.sqlite", root / "stages.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
    t_demo = time.time()

    data = root / "data"
    if not (data / "classification").exists():
        _run(maebench, ["data", "prepare", "shapes", "--out", str(data), *(QUICK_DATA if args.quick else [])])

    plan = _stage_plan(mode, data, results, args.seed)
    for i, (label, argv) in enumerate(plan, 1):
        key = " ".join(argv)
        if ledger.get(key) == "done":
            print(f"[{i}/{len(plan)}] {label}: done earlier, reused")
            continue
        print(f"[{i}/{len(plan)}] {label}")
        t0 = time.time()
        code = _run(maebench, argv)
        if code != 0:
            raise MaebenchError(f"demo stage '{label}' failed (exit {code}); rerun `maebench demo` to resume from it")
        ledger[key] = "done"
        ledger_path.write_text(json.dumps(ledger, indent=1))
        print(f"    {label}: {_summary(results, argv)} ({time.time() - t0:.0f} s)")

    out = Path(args.out) if args.out else Path(__file__).resolve().parents[2] / "leaderboards" / "demo.md"
    recon = _reconstruction_figure(maebench, out.parent / "figures" / "demo" / "reconstructions", data)
    _render(results, out, mode, time.time() - t_demo, recon)
    print(f"demo finished in {(time.time() - t_demo) / 60:.1f} min; leaderboard: {out}")
    return 0


def _run(maebench, argv: list[str]) -> int:
    print("  $ maebench " + " ".join(argv), flush=True)
    return maebench(argv)


def _summary(results: Path, argv: list[str]) -> str:
    """One line per finished run: the newest row's headline metrics."""
    from maebench.results import ResultsStore
    rows = ResultsStore(results).rows()
    if not rows:
        return "no result row"
    row = max(rows, key=lambda r: r.created)
    shown = {k: v for k, v in row.metrics.items() if isinstance(v, (int, float))}
    keys = [k for k in ("top1", "bbox/AP", "segm/AP", "mIoU", "loss") if k in shown] or list(shown)[:3]
    return ", ".join(f"{k} {shown[k]:.2f}" for k in keys)


def _render(results: Path, out: Path, mode: str, seconds: float, recon: list[Path]) -> None:
    import os
    import platform

    from maebench.leaderboards.figures import write_figures
    from maebench.leaderboards.render import write_board
    from maebench.leaderboards.table import build_leaderboard
    from maebench.results import ResultsStore

    board = build_leaderboard(ResultsStore(results))
    figs = write_figures(board, out.parent / "figures" / "demo")
    text = write_board(board, out, "github", figures=figs)
    write_board(board, out.with_suffix(".html"), "html", figures=[*figs, *recon])
    command = "maebench demo" + (" --quick" if mode == "quick" else "")
    rows = ResultsStore(results).rows()
    run_minutes = sum(r.wall_time_s or 0 for r in rows) / 60
    header = (f"Produced by `{command}` on {platform.machine()} with {os.cpu_count()} CPU cores, "
              f"{time.strftime('%Y-%m-%d')}: {len(rows)} runs taking {run_minutes:.1f} min of wall time "
              f"(this invocation: {seconds / 60:.1f} min; stages finished earlier are reused).\n\n"
              "Tiny ViTs (vit-micro, 0.5M parameters) pretrained for a few epochs on the embedded "
              "generated *shapes* sets (1,000 training images): these numbers show every stage of the "
              "harness running end to end, not what the methods can do. At this scale no backbone learns "
              "the ten shape classes (top-1 near the 10% chance level) and COCO AP stays near 0; ADE20K "
              "mIoU comes from the large background classes. For a real-data comparison see the README "
              "(Fashion-MNIST: MAE vs scratch).\n\n")
    recon_md = "".join(f"\n![MAE reconstruction]({p.relative_to(out.parent).as_posix()})\n" for p in recon)
    out.write_text(header + text + ("\n## MAE reconstructions (original, masked, reconstruction, "
                                    "reconstruction + visible)\n" + recon_md if recon else ""))
    print(text)


def _reconstruction_figure(maebench, out_dir: Path, data: Path) -> list[Path]:
    images = sorted((data / "classification" / "val").glob("*/*"))[:: 10][:4]
    sample = out_dir / "recon-input"
    sample.mkdir(parents=True, exist_ok=True)
    for p in images:
        shutil.copy(p, sample / p.name)
    _run(maebench, ["visualize", "--backbone", "demo-mae-norm-pixel", "--images", str(sample),
                    "--out", str(out_dir)])
    shutil.rmtree(sample)
    return [out_dir / p.name for p in images]
