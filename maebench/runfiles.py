"""What a run leaves in its run directory besides checkpoints and weights (rank 0 only):

    config.yaml    written when the run starts (atomically): the run id, task, backbone,
                   dataset, seed, the resolved config (the results row's), the command line,
                   the maebench / torch / timm / python versions, the host and the start time
    log.jsonl      the training log and the final metrics (maebench/runlog.py)
    stdout.log     this process's output while the run is tracked (stdout and stderr, teed:
                   they still reach the terminal); progress-bar redraws (writes holding a
                   carriage return) go to the terminal only. A run that resumes appends.
    tensorboard/   event files, with --tensorboard or MAEBENCH_TENSORBOARD=1

`recording(...)` does all of it around one run; the runner uses it inside `tracked_run`.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from maebench import distributed as dist

CONFIG_FILE = "config.yaml"
STDOUT_FILE = "stdout.log"


def versions() -> dict[str, str]:
    from importlib import metadata
    out = {}
    for pkg in ("maebench", "torch", "timm"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    out["python"] = sys.version.split()[0]
    return out


def write_config(out_dir: str | os.PathLike, *, run_id: str, task: str, backbone: str, dataset: str | None,
                 seed: int | None, config: dict, resume: bool) -> Path:
    """config.yaml, atomically (a temporary file, then rename). Returns its path."""
    import shlex
    import socket

    import yaml
    doc: dict[str, Any] = {
        "run_id": run_id, "task": task, "backbone": backbone, "dataset": dataset, "seed": seed,
        "command": shlex.join(sys.argv), "versions": versions(), "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed": bool(resume),
        "config": _plain(config),
    }
    path = Path(out_dir) / CONFIG_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110))
    os.replace(tmp, path)
    return path


def _plain(v: Any) -> Any:
    """Only what YAML's safe dumper writes: tuples as lists, anything unknown as its str."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


class _Tee:
    """A text stream that writes to `stream` and to `file` (carriage-return redraws to `stream` only)."""

    def __init__(self, stream, file):
        self._stream, self._file = stream, file

    def write(self, text: str) -> int:
        n = self._stream.write(text)
        if "\r" not in text and not self._file.closed:
            self._file.write(text)
            self._file.flush()
        return n

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str):      # isatty, fileno, encoding, ... of the real stream
        return getattr(self._stream, name)


@contextmanager
def tee_output(path: str | os.PathLike) -> Iterator[None]:
    """sys.stdout and sys.stderr also into `path` (appended) until the block ends; an exception
    leaving the block is written there as `maebench: error: ...` (the command prints it after)."""
    old_out, old_err = sys.stdout, sys.stderr
    with open(path, "a", buffering=1) as f:
        f.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}\n")
        sys.stdout, sys.stderr = _Tee(old_out, f), _Tee(old_err, f)
        try:
            yield
        except BaseException as e:
            f.write(f"maebench: error: {type(e).__name__}: {e}\n")
            raise
        finally:
            sys.stdout, sys.stderr = old_out, old_err


@contextmanager
def recording(run, *, task: str, backbone: str, dataset: str | None, seed: int | None, config: dict,
              resume: bool, tensorboard: bool) -> Iterator[Any]:
    """Around one tracked run: config.yaml at the start, stdout.log throughout; yields the
    run's RunLog on rank 0 (None on the other ranks, which write nothing)."""
    if not dist.is_main():
        yield None
        return
    from maebench.runlog import RunLog
    write_config(run.out_dir, run_id=run.run_id, task=task, backbone=backbone, dataset=dataset, seed=seed,
                 config=config, resume=resume)
    log = RunLog(run.out_dir, tensorboard=tensorboard)
    try:
        with tee_output(Path(run.out_dir) / STDOUT_FILE):
            yield log
    finally:
        log.close()
