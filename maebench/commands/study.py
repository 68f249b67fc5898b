"""`maebench study FILE.yaml`: an MAE ablation study as launcher jobs (maebench/study.py says the file's keys)."""
from __future__ import annotations

import argparse

from maebench.commands.launcher_options import add_launcher_options, launcher_settings
from maebench.commands.options import add_results_option


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.yaml", help="name, arch, data, base, variants / grid, protocols, seeds")
    p.add_argument("--dry-run", action="store_true", help="print the jobs' command lines, run nothing")
    add_results_option(p)
    add_launcher_options(p)


def main(args: argparse.Namespace) -> int:
    from maebench import launch, study
    from maebench.home import home_dir
    settings = launcher_settings(args)
    s = study.read(args.file)
    jobs = study.plan(s, settings, results=args.results)
    if args.dry_run:
        for job in jobs:
            print("maebench " + " ".join(job.argv) + (f"    # after: {', '.join(job.needs)}" if job.needs else ""))
        return 0
    print(f"study {s.name}: {len(s.variants)} variant(s) x {len(s.protocols)} protocol(s) x {len(s.seeds)} seed(s): "
          f"{len(jobs)} job(s)", flush=True)
    launch.launcher(settings, logs=home_dir() / "jobs" / f"study-{s.name}", lanes=settings.jobs).run(
        jobs, started=lambda job: print(f"[{jobs.index(job) + 1}/{len(jobs)}] {job.label}", flush=True),
        finished=lambda job, sec: print(f"    {job.label}: done ({sec:.0f} s)", flush=True))
    return 0
