"""The launcher settings, their defaults in $MAEBENCH_HOME/launcher.yaml (keys: the options' names
with underscores; the options: maebench/commands/launcher_options.py), and a protocol's
`resources:` table: what one job asks a cluster for. Order: protocol <- launcher.yaml <- flags."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from maebench.errors import UsageError, did_you_mean
from maebench.launch.jobs import Resources

# option -> takes a value; `strip` removes them from a command line handed to a job
OPTIONS = {"--launcher": True, "--jobs": True, "--partition": True, "--account": True, "--qos": True,
           "--constraint": True, "--nodes": True, "--gpus-per-node": True, "--gpus-per-job": True,
           "--cpus-per-task": True, "--tasks-per-node": True, "--mem-gb": True, "--time": True, "--launcher-dir": True}


@dataclass(frozen=True)
class Settings:
    launcher: str = "local"               # local | slurm
    jobs: int | None = None               # local: jobs at a time (default: one per physical core)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int | None = None              # None: the protocol's resources
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    tasks_per_node: int | None = None
    mem_gb: int | None = None
    time: str | None = None               # minutes, or H:MM[:SS]
    launcher_dir: str | None = None       # submitit's job files and logs (default: under $MAEBENCH_HOME/jobs)

    def resources(self, base: Resources) -> Resources:
        """`base` (a protocol's resources) with the flags and launcher.yaml values that are set."""
        given = {k: getattr(self, k) for k in ("nodes", "gpus_per_node", "cpus_per_task", "tasks_per_node", "mem_gb")
                 if getattr(self, k) is not None}
        if self.time is not None:
            given["time_min"] = parse_minutes(self.time, "--time")
        return replace(base, **given)


def load(flags: dict[str, Any], home_file: Path | None = None) -> Settings:
    """launcher.yaml's values, then the options given (`flags`: option name -> value or None)."""
    from maebench.home import home_dir
    path = home_file or home_dir() / "launcher.yaml"
    base = _file_settings(path) if path.is_file() else {}
    s = Settings(**{**base, **{k: v for k, v in flags.items() if v is not None}})
    if os.environ.get("MAEBENCH_IN_JOB"):      # inside a submitted job (maebench/launch/job.py): run here
        s = replace(s, launcher="local")
    if s.launcher not in ("local", "slurm"):
        raise UsageError(f"{path}: launcher '{s.launcher}' is not local or slurm")
    if s.time is not None:
        parse_minutes(s.time, "--time")
    return s


def _file_settings(path: Path) -> dict[str, Any]:
    from maebench.config import read_mapping
    data = read_mapping(path, "launcher settings file", [f.name for f in fields(Settings)])
    return {k: (str(v) if k == "time" else v) for k, v in data.items()}


def parse_minutes(text: str, where: str) -> int:
    """'90' -> 90; '1:30' / '1:30:00' -> 90 (hours:minutes[:seconds], seconds rounded up)."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    m = re.fullmatch(r"(\d+):(\d\d)(?::(\d\d))?", text)
    if not m:
        raise UsageError(f"{where}: expected minutes or H:MM[:SS], got '{text}'")
    return int(m[1]) * 60 + int(m[2]) + (1 if m[3] and int(m[3]) else 0)


def protocol_resources(protocol: str, arch: str | None) -> Resources:
    """A protocol's `resources:` table, its by_arch entry's keys over it."""
    from maebench import config
    block = config.block("resources", protocol, arch=arch)
    names = [f.name for f in fields(Resources)]
    for key in block:
        if key not in names:
            raise UsageError(f"maebench/protocols/{protocol}.yaml: unknown resources key '{key}'{did_you_mean(key, names)}")
    return Resources(**block)


def strip(argv: list[str], options: dict[str, bool] = OPTIONS) -> list[str]:
    """A command line without `options` (option -> takes a value; default: the launcher
    options), in either spelling (--opt V, --opt=V): what each job runs."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in options:
            skip = options[name] and "=" not in a
            continue
        out.append(a)
    return out
