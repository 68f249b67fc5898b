"""`maebench leaderboard`: the results store as comparison tables (and figures).

Tables: a summary (backbone x headline metric of each task), one table per task and dataset
(like the paper's Tables 3-5 and Fig. 9) and a cost table; see maebench.leaderboards. This
module only parses options; imports happen inside `main` so `--help` stays instant."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maebench.commands.options import add_results_option
from maebench.tasks.table import TASKS

_FORMATS = ("github", "markdown", "terminal", "latex", "html", "csv", "json")
_VIEWS = ("all", "tasks", "summary", "cost")


def _names(values: list[str] | None) -> list[str] | None:
    """Accept `--task a --task b`, `--task a b` and `--task a,b`."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_results_option(p)
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="per task, dataset and recipe: backbone A minus B paired over their shared seeds, "
                        "with each one's mean ± std and a 95%% Student-t interval")
    p.add_argument("--task", "--tasks", dest="tasks", nargs="+", action="extend", metavar="TASK",
                   help=f"only these tasks ({', '.join(TASKS)}); default: every task with results")
    p.add_argument("--dataset", "--datasets", dest="datasets", nargs="+", action="extend", metavar="NAME",
                   help="only results on these datasets (e.g. shapes, imagenet)")
    p.add_argument("--backbones", nargs="+", action="extend", metavar="NAME",
                   help="only these backbones (a,b or a b)")
    p.add_argument("--no-paper", action="store_true",
                   help="leave out the paper's reference rows and the differences from them")
    p.add_argument("--tables", choices=_VIEWS, default="all",
                   help="which tables: all (default: summary, one per task and dataset, cost), "
                        "tasks, summary or cost")
    p.add_argument("--format", choices=_FORMATS, default=None,
                   help="github (= markdown), terminal (plain text fitted to the terminal's width), latex "
                        "(booktabs), html (one page), csv / json (long: one row per run and metric). "
                        "Default: from the --out suffix (.md .tex .html .csv .json .txt), else terminal "
                        "on a terminal and github otherwise")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--figures", metavar="DIR",
                   help="write PNG figures to DIR (a bar chart per task and dataset, the partial "
                        "fine-tuning curve over K, a mask-ratio sweep); html embeds them")


def main(args: argparse.Namespace) -> int:
    if args.compare:
        from maebench.leaderboards.compare import compare_text
        from maebench.results import ResultsStore
        text = compare_text(ResultsStore(args.results), *args.compare, tasks=_names(args.tasks), fmt=args.format,
                            out=args.out)
        if args.out:
            Path(args.out).write_text(text)
            print(f"wrote {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    from maebench.leaderboards.render import format_for, write_board
    from maebench.leaderboards.stores import choose_store
    from maebench.leaderboards.board import build_leaderboard

    fmt = args.format
    if fmt is None and not args.out and sys.stdout.isatty():
        fmt = "terminal"
    fmt = format_for(args.out, fmt)      # a bad format fails before reading the store
    choice = choose_store(args.results)
    if choice.note:
        print(choice.note, file=sys.stderr)
    board = build_leaderboard(choice.store, tasks=_names(args.tasks), datasets=_names(args.datasets),
                              backbones=_names(args.backbones), include_paper=not args.no_paper)
    text = write_board(board, args.out, fmt, args.figures, which=args.tables)
    if args.out and not board.empty:
        print(f"wrote {args.out}" + (f" and figures in {args.figures}" if args.figures else ""),
              file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
