"""`maebench grid FILE.yaml`: backbones x tasks x datasets x seeds as `maebench run` jobs, handed
to the launcher (maebench/launch/) -- lanes here, a job array per resource shape on SLURM.

    backbones: [mae-vit-b, mocov3-vit-b]     # registered or catalogued names
    tasks:                                   # task -> its `maebench run` options (or a list of tasks)
      finetune: [--labels-per-class, 100]
      linprobe: [--cached-features]
    datasets: [~/data/in1k]                  # optional: each job's --data (default: the task's own)
    seeds: [0, 1, 2]                         # optional (default [0])
    set: [num_workers=8]                     # optional: --set for every job
    results: grid.sqlite                     # optional: the jobs' results store

Everything is checked before anything runs: an unknown key, backbone, task or option is one line
naming the file and the entry (exit 2). Jobs whose run is done find their row and train nothing."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from maebench.errors import UsageError, did_you_mean
from maebench.launch.jobs import Job

KEYS = ("backbones", "tasks", "datasets", "seeds", "set", "results")


def read(path: str | Path) -> dict[str, Any]:
    from maebench.config import read_mapping
    data = read_mapping(path, "grid file", KEYS)
    for key in ("backbones", "tasks"):
        if not data.get(key):
            raise UsageError(f"{path}: `{key}` is missing or empty")
    return data


def plan(path: str | Path, settings) -> list[Job]:
    """The grid's jobs, every name and option checked."""
    from maebench.backbones.registry import entry, names
    from maebench.cli import build_parser
    from maebench.launch.settings import protocol_resources
    from maebench.tasks.table import TASKS
    data = read(path)
    tasks = data["tasks"] if isinstance(data["tasks"], dict) else {t: [] for t in _list(data, "tasks", path)}
    backbones, seeds = _list(data, "backbones", path), _list(data, "seeds", path, default=[0])
    datasets = _list(data, "datasets", path, default=[None])
    known = names()
    for b in backbones:
        if b not in known:
            raise UsageError(f"{path}: backbones: unknown backbone '{b}'{did_you_mean(str(b), known)}")
    parser = build_parser()
    common = [a for s in _list(data, "set", path, default=[]) for a in ("--set", str(s))]
    if data.get("results"):
        common += ["--results", str(Path(data["results"]).expanduser())]
    jobs = []
    for task, options in tasks.items():
        if task not in TASKS:
            raise UsageError(f"{path}: tasks: unknown task '{task}'{did_you_mean(str(task), TASKS)}")
        options = [str(o) for o in (options or [])]
        for b in backbones:
            resources = settings.resources(protocol_resources(TASKS[task].protocol, entry(b).arch))
            for d in datasets:
                for seed in seeds:
                    argv = ["run", "--task", task, "--backbone", str(b), *(["--data", str(Path(d).expanduser())] if d else []),
                            *options, *common, "--seed", str(seed)]
                    _check_options(parser, argv, path, task)
                    label = f"{task} {b}" + (f" on {Path(d).name}" if d and len(datasets) > 1 else "") + f" (seed {seed})"
                    jobs.append(Job(label, argv, resources=resources))
    return jobs


def _list(data: dict, key: str, path, default=None) -> list:
    value = data.get(key, default)
    if value is None:
        return default
    return value if isinstance(value, list) else [value]


def _check_options(parser, argv: list[str], path, task: str) -> None:
    """The job's command line parses as `maebench run` would parse it; else one line naming the task."""
    import contextlib
    import io
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit:
        reason = err.getvalue().strip().splitlines()[-1].split("error: ", 1)[-1]
        raise UsageError(f"{path}: tasks: {task}: {reason}") from None
    from maebench.commands.options import choose_program
    from maebench.tasks.table import TASKS
    try:
        choose_program(args, TASKS, task, "--task")
    except UsageError as e:
        raise UsageError(f"{path}: tasks: {task}: {e}") from None
