"""`maebench run ... --seeds 0,1,2`: the same run once per seed (each its own row; frozen-feature
tasks reuse one feature-cache entry when the backbone's weights do not depend on the seed),
then, per recipe and headline metric, the mean, sample std and 95 % Student-t interval over
the seeds, printed and written as JSON next to the runs.

With --search, the search runs once, at the first seed, and every seed retrains that choice (the
rows say so: metrics search.reused_from_seed): a program that trains one network per point
searches before the first seed's run; the linear probe's and k-NN's joint searches inside the
first seed's run, whose choice is then the later seeds' one-point space. Partial's K = 0 (the
linear probe inside a partial command) searches at every seed."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

from maebench.errors import UsageError


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip() != ""]
    except ValueError:
        raise UsageError(f"--seeds expects whole numbers separated by commas, got '{text}'") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UsageError(f"--seeds expects distinct whole numbers >= 0, got '{text}'")
    return seeds


def run_seeds(spec, seeds: list[int], args) -> int:
    """Run `spec` once per seed (each under --out/seed-S when --out is given) as launcher jobs
    (maebench/launch/: one at a time here unless --jobs says, or on SLURM), then summarise.
    A job is this command line with --seed-job S; with --search, the later seeds' jobs need
    the first seed's, whose search they reuse."""
    if args.seed_job is not None:
        if args.seed_job not in seeds:
            raise UsageError(f"--seed-job {args.seed_job} is not one of --seeds {','.join(map(str, seeds))}")
        _seed_runs(spec, seeds, only=args.seed_job)
        return 0
    from maebench import launch
    from maebench.backbones.registry import entry
    from maebench.home import home_dir
    from maebench.commands.launcher_options import launcher_settings
    from maebench.launch.settings import protocol_resources, strip
    settings = launcher_settings(args)
    arch = entry(spec.backbone).arch if spec.backbone else None
    resources = settings.resources(protocol_resources(spec.program.protocol, arch))
    first = f"seed {seeds[0]}"
    jobs = [launch.Job(f"seed {seed}", [*strip(args.argv), "--seed-job", str(seed)], resources=resources,
                       needs=(first,) if spec.search and seed != seeds[0] else ()) for seed in seeds]
    tag = hashlib.sha256(json.dumps(jobs[0].argv).encode()).hexdigest()[:10]
    runner = launch.launcher(settings, logs=home_dir() / "jobs" / f"seeds-{spec.program.name}-{tag}",
                             lanes=settings.jobs or 1)
    runner.run(jobs, started=lambda job: print(f"== {job.label} ({jobs.index(job) + 1}/{len(jobs)})", flush=True))
    with contextlib.redirect_stdout(io.StringIO()):      # every seed is done now: this finds their rows
        run_ids = _seed_runs(spec.replace(force=False, resume=False), seeds)
    return _summarise(spec, seeds, run_ids)


def _seed_runs(spec, seeds: list[int], only: int | None = None) -> set[str]:
    """Run every seed (`only`: that seed alone) in this process; the run ids of their rows."""
    from maebench import runner, search
    from maebench.results import ResultsStore
    task = spec.program
    run_ids: set[str] = set()                     # this command's rows, run now or found done
    finals, chosen = None, None
    if spec.search and not task.joint_search:
        print(f"== search at seed {seeds[0]}, its choice reused for every seed")
        finals = search.final_specs(spec.replace(seed=seeds[0], out=None), runner.run_recipe)
    for seed in seeds:
        # --seed-job S: seed S alone, after the first seed's run when S reuses its joint search
        if only is not None and seed != only and not (seed == seeds[0] and spec.search and finals is None):
            continue
        out = str(Path(spec.out) / f"seed-{seed}") if spec.out else None
        if finals is None:
            this = spec.replace(seed=seed, out=out)
            outcomes = runner.execute(this if chosen is None else search.reuse_joint(this, *chosen))
            run_ids.update(o.run_id for o in outcomes)
            if spec.search and chosen is None:       # a joint search: its first seed's choice, for the others
                (row,) = ResultsStore(spec.results).rows(run_id=outcomes[0].run_id)[-1:]
                chosen = (row.config["search"], row.metrics["search"])
            continue
        for f in finals:
            f_out = str(Path(out) / f"blocks-{f.options['blocks']}") if out and len(finals) > 1 else out
            one = search.reuse(f, seed=seed, out=f_out)
            run_ids.update(o.run_id for o in runner.execute(one))
    return run_ids


def _summarise(spec, seeds: list[int], run_ids: set[str]) -> int:
    """Per recipe and headline metric: mean, sample std and 95 % interval over the seeds."""
    from maebench.home import runs_dir
    from maebench.leaderboards.compare import INTERVAL, Summary
    from maebench.results import ResultsStore, by_recipe
    task = spec.program
    rows = [r for r in ResultsStore(spec.results).rows(task=task.row_task, backbone=spec.backbone)
            if r.run_id in run_ids and r.seed in seeds]
    groups = by_recipe(rows)                        # newest per recipe and seed
    summary = []
    for cfg_key, per_seed in groups.items():
        got = [per_seed[s] for s in seeds if s in per_seed]
        for metric in task.headline:
            vals = [r.metrics.get(metric) for r in got]
            if not vals or any(not isinstance(v, (int, float)) for v in vals):
                continue
            s = Summary([float(v) for v in vals])
            summary.append({"task": task.name, "backbone": spec.backbone, "dataset": got[0].dataset,
                            "metric": metric, "seeds": [r.seed for r in got], "run_ids": [r.run_id for r in got],
                            **s.as_dict()})
            lo_hi = f"{INTERVAL} interval [{s.interval[0]:.2f}, {s.interval[1]:.2f}]" if s.interval else "no interval"
            std = f" ± {s.std:.2f} (sample std)" if s.std is not None else ""
            print(f"seeds {','.join(str(r.seed) for r in got)}: {task.name} {metric} {s.mean:.2f}{std}, "
                  f"{lo_hi}, n={s.n}")
    if summary:
        tag = hashlib.sha256(json.dumps([r["run_ids"] for r in summary]).encode()).hexdigest()[:10]
        path = runs_dir() / f"seeds-{task.name}-{spec.backbone}-{tag}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"interval": INTERVAL, "summaries": summary}, indent=1))
        print(f"seed summary: {path}")
    return 0
