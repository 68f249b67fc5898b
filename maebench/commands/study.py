"""`maebench study table1|mask-ratio|FILE.yaml`: an MAE ablation study through the launcher
(maebench/study/ says the file's keys and what is written)."""
from __future__ import annotations

import argparse
import os
import shlex
import sys

from maebench.commands.launcher_options import add_launcher_options, launcher_settings
from maebench.commands.options import add_results_option


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="table1|mask-ratio|FILE.yaml",
                   help="a built-in study (table1: the paper's Table 1 a-f; mask-ratio: its Figure 5) or a study file")
    p.add_argument("--only", metavar="NAME[,NAME]", type=lambda t: [x.strip() for x in t.split(",")],
                   help="run and report only these ablation tables or variants (with the base), e.g. "
                        "--only 'mask sampling' or --only mask-ratio-0.5,mask-ratio-0.9")
    p.add_argument("--quick", action="store_true",
                   help="the demo's quick world and epochs: a few minutes, for a look at the pipeline, not at the findings")
    p.add_argument("--data", metavar="DIR", help="pretrain and score on this ImageFolder instead of the study's data")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="pretrain_set",
                   help="a pretraining config key for every variant, under the study's own keys (repeatable)")
    p.add_argument("--transfer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config key for every transfer run (repeatable)")
    p.add_argument("--seeds", metavar="S[,S]", type=lambda t: tuple(int(x) for x in t.split(",")),
                   help="score every variant at these seeds (mean ± std in the tables), instead of the study's")
    p.add_argument("--search", action="store_true",
                   help="every transfer run chooses its recipe per backbone on held-out training data (`run --search`)")
    p.add_argument("--out", metavar="DIR", help="the study's directory (default: $MAEBENCH_HOME/study/<name>[-quick])")
    p.add_argument("--fresh", action="store_true", help="delete the study's directory first (nothing is reused)")
    p.add_argument("--report-only", action="store_true", help="write the report from the rows there are, run nothing")
    p.add_argument("--dry-run", action="store_true", help="print the stages' command lines, run nothing")
    p.add_argument("--fashion-dir", metavar="DIR", help="Fashion-MNIST's IDX files (default: Debian's package)")
    add_results_option(p)
    add_launcher_options(p)


def main(args: argparse.Namespace) -> int:
    from maebench import study
    from maebench.study import driver, plan, studyfile
    builtin = args.file in study.BUILTIN
    if not builtin and not os.path.exists(args.file):
        from maebench.errors import UsageError, did_you_mean
        raise UsageError(f"no study file {args.file} and no built-in study of that name (built-in: "
                         f"{', '.join(study.BUILTIN)}){did_you_mean(args.file, study.BUILTIN)}")
    s = study.read(study.builtin_path(args.file) if builtin else args.file, builtin=builtin)
    if args.only:
        s = studyfile.only(s, args.only)
    if args.data:
        s = studyfile.with_data(s, args.data)
    if args.seeds:
        from dataclasses import replace
        s = replace(s, seeds=args.seeds)
    settings = launcher_settings(args)
    if args.dry_run:
        from pathlib import Path
        for stage in plan.plan(s, Path(args.results or "results.sqlite"), quick=args.quick,
                               pretrain_sets=args.pretrain_set, transfer_sets=args.transfer_set,
                               fashion_dir=args.fashion_dir, search=args.search):
            print("maebench " + " ".join(stage.argv) + (f"    # after: {', '.join(stage.needs)}" if stage.needs else ""))
        return 0
    return driver.run(s, quick=args.quick, out=args.out, results=args.results, fresh=args.fresh,
                      report_only=args.report_only, launcher=settings, pretrain_sets=args.pretrain_set,
                      transfer_sets=args.transfer_set, fashion_dir=args.fashion_dir, search=args.search,
                      command="maebench " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["study"] else "maebench study")
