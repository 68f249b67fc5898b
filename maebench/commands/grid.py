"""`maebench grid FILE.yaml`: a grid of `maebench run` jobs (maebench/grid.py says the file's keys)."""
from __future__ import annotations

import argparse

from maebench.commands.launcher_options import add_launcher_options, launcher_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.yaml", help="backbones, tasks (with options), datasets, seeds, set, results")
    p.add_argument("--dry-run", action="store_true", help="print the jobs' command lines, run nothing")
    add_launcher_options(p)


def main(args: argparse.Namespace) -> int:
    import hashlib
    from pathlib import Path

    from maebench import grid, launch
    from maebench.home import home_dir
    settings = launcher_settings(args)
    jobs = grid.plan(args.file, settings)
    if args.dry_run:
        for job in jobs:
            print("maebench " + " ".join(job.argv))
        return 0
    tag = hashlib.sha256(str(Path(args.file).resolve()).encode()).hexdigest()[:8]
    runner = launch.launcher(settings, logs=home_dir() / "jobs" / f"grid-{Path(args.file).stem}-{tag}",
                             lanes=settings.jobs)
    print(f"grid {args.file}: {len(jobs)} job(s)", flush=True)
    runner.run(jobs, started=lambda job: print(f"[{jobs.index(job) + 1}/{len(jobs)}] {job.label}", flush=True),
               finished=lambda job, s: print(f"    {job.label}: done ({s:.0f} s)", flush=True))
    results = next((j.argv[j.argv.index("--results") + 1] for j in jobs if "--results" in j.argv), None)
    print(f"grid finished: {len(jobs)} job(s); the table: maebench leaderboard" + (f" --results {results}" if results else ""))
    return 0
