"""`maebench leaderboard`: the results store as comparison tables (and figures).

The work is in `leaderboards.render.write_leaderboard`, which `maebench demo` calls too;
this module only parses options. Imports happen inside `main` so `--help` stays instant."""
from __future__ import annotations

import argparse
import sys

from maebench.commands.common import add_results_option

_TASKS = ("finetune", "linprobe", "partial", "knn", "coco", "ade20k")
_FORMATS = ("github", "latex", "html", "csv", "json")


def _names(values: list[str] | None) -> list[str] | None:
    """Accept both `--tasks a b` and `--tasks a,b`."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_results_option(p)
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="per task, dataset and recipe: backbone A minus B paired over their shared seeds, "
                        "with each one's mean ± std and a 95%% Student-t interval")
    p.add_argument("--tasks", nargs="+", metavar="TASK",
                   help=f"only these tasks ({', '.join(_TASKS)}); default: every task with results")
    p.add_argument("--backbones", nargs="+", metavar="NAME", help="only these backbones")
    p.add_argument("--format", choices=_FORMATS, default=None,
                   help="output format (default: from the --out suffix .md/.tex/.html/.csv/.json, else github)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--no-paper", action="store_true",
                   help="leave out the paper's reference rows and the differences from them")
    p.add_argument("--figures", metavar="DIR",
                   help="write PNG figures to DIR (partial fine-tuning curve, mask-ratio sweep, "
                        "a bar chart per task); html embeds them")


def main(args: argparse.Namespace) -> int:
    if getattr(args, "compare", None):
        from maebench.leaderboards.compare import main as compare_main
        return compare_main(args)
    from maebench.leaderboards.render import format_for, write_board
    from maebench.leaderboards.table import build_leaderboard
    from maebench.results import ResultsStore

    format_for(args.out, args.format)      # a bad format fails before reading the store
    board = build_leaderboard(ResultsStore(args.results), tasks=_names(args.tasks),
                              backbones=_names(args.backbones), include_paper=not args.no_paper)
    text = write_board(board, args.out, args.format, args.figures)
    if args.out and not board.empty:
        print(f"wrote {args.out}" + (f" and figures in {args.figures}" if args.figures else ""),
              file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
