"""`maebench demo`: its options, checked here, and a call into maebench.demo (which says what
the demo runs). Imports happen inside `main` so `maebench --help` stays instant."""
from __future__ import annotations

import argparse

from maebench.errors import UsageError


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
    p.add_argument("--search", action="store_true",
                   help="search each transfer stage's recipe per backbone on held-out training data "
                        "(`maebench run --search`; about 60 min on 2 cores); writes to demo/full-search")
    p.add_argument("--mae-epochs", type=int, default=None, metavar="N",
                   help="MAE pretraining epochs for both MAE backbones (default: the protocol's, 1); about 2 min "
                        "per epoch each, 24 bring MAE level with scratch in detection (docs/cpu-recipes.md); "
                        "writes to demo/full-mae-Nep")
    from maebench.commands.launcher_options import add_launcher_options
    add_launcher_options(p)      # --jobs: stages at a time on this machine (one per physical core, one thread each)


def _seeds(args: argparse.Namespace) -> list[int]:
    text = args.seeds if args.seeds is not None else str(args.seed if args.seed is not None else 0)
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds expects integers separated by commas, got '{text}'") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds expects distinct integers separated by commas, got '{text}'")
    return seeds


def _mae_epochs(args: argparse.Namespace) -> int | None:
    if args.mae_epochs is not None and args.mae_epochs < 1:
        raise UsageError(f"--mae-epochs expects a positive number of epochs, got {args.mae_epochs}")
    return args.mae_epochs


def main(args: argparse.Namespace) -> int:
    from maebench.demo import run
    from maebench.commands.launcher_options import launcher_settings

    seeds, mae_epochs = _seeds(args), _mae_epochs(args)
    return run(quick=args.quick, seeds=seeds, out=args.out, fresh=args.fresh, run_all=args.all,
               report_only=args.report_only, fashion_dir=args.fashion_dir, launcher=launcher_settings(args),
               mae_epochs=mae_epochs, search=args.search)
