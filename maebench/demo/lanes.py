"""Runs the demo's stages as `maebench` subprocesses, several at a time ("lanes").

At the demo's scale (a 96-d, 4-block ViT on 32 px images) one process gains little from a
second torch thread: the matmuls are too small to split well (benchmarks/demo_lanes.py measures
it). Two single-thread processes keep both cores busy instead. A stage starts once the stages it
needs have finished (a transfer run needs its backbone's pretraining; k-NN waits for the linear
probe of the same backbone and seed, whose cached features it reads), the heaviest ready stage
first (its own estimate plus those of the stages waiting for it). With one lane a stage's output streams to the terminal; with more, each stage writes
logs/<label>.log under the demo's directory and the terminal shows one line per start and end.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


def choose_lanes(requested: int | None, log: Callable[[str], None] = print) -> tuple[int, int]:
    """(lanes, torch threads per stage): one single-thread lane per physical core unless --jobs
    says. Never from how busy the machine is: a stage's thread count changes its reduction order
    and so its numbers, which must be a function of the command and the machine alone (on a busy
    machine the demo is slower, not different)."""
    from maebench.dataloaders import physical_cores
    cores = physical_cores()
    lanes, why = (max(1, requested), "--jobs") if requested is not None else (cores, f"{cores} physical cores")
    threads = max(1, cores // lanes)
    log(f"demo: {lanes} stage(s) at a time, {threads} torch thread(s) each ({why}); --jobs N overrides")
    return lanes, threads


@dataclass
class _Running:
    stage: object
    proc: subprocess.Popen
    log: Path | None
    t0: float


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", label).strip("_")


def run(todo: list[tuple[int, object]], *, lanes: int, threads: int, logs: Path,
        started: Callable[[int, object], None], finished: Callable[[object, float], None],
        prepare: Callable[[object], None] = lambda stage: None) -> None:
    """Run every (index, stage) of `todo`; a stage's `needs` names the labels it waits for
    (labels not in `todo` count as done). Raises MaebenchError after the first failure, once
    the stages already running have ended (their results stay recorded)."""
    from maebench.errors import MaebenchError

    waiting = dict(todo)
    pending = {s.label for s in waiting.values()}
    # a stage's weight: its own estimate plus those of the stages waiting for it, so that the data
    # stage and MoCo v3's pretraining start before shorter stages that nothing waits for
    weight = {s.label: s.estimate for s in waiting.values()}
    for s in waiting.values():
        for need in s.needs:
            if need in weight:
                weight[need] += s.estimate
    running: list[_Running] = []
    failed: list[tuple[object, int, Path | None]] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if not (os.environ.get("MAEBENCH_THREADS") or os.environ.get("OMP_NUM_THREADS")):
        env["MAEBENCH_THREADS"] = str(threads)
    if lanes > 1:
        logs.mkdir(parents=True, exist_ok=True)
    try:
        while waiting or running:
            ready = [(i, s) for i, s in waiting.items() if not (set(s.needs) & pending)]
            while ready and len(running) < lanes and not failed:
                i, stage = max(ready, key=lambda item: weight[item[1].label])
                ready.remove((i, stage))
                del waiting[i]
                prepare(stage)
                started(i, stage)
                log = logs / f"{i:02d}-{_slug(stage.label)}.log" if lanes > 1 else None
                out = open(log, "w") if log else None
                cmd = [sys.executable, "-m", "maebench", *stage.argv]
                proc = subprocess.Popen(cmd, env=env, stdout=out or None, stderr=subprocess.STDOUT if out else None)
                if out:
                    out.close()
                running.append(_Running(stage, proc, log, time.time()))
            if failed and not running:
                break
            if not running:
                if waiting:           # nothing ready and nothing running: a need that can never be met
                    raise MaebenchError(f"demo stages wait for stages that are not planned: "
                                        f"{sorted({n for s in waiting.values() for n in s.needs} & pending)}")
                break
            time.sleep(0.2)
            for job in list(running):
                code = job.proc.poll()
                if code is None:
                    continue
                running.remove(job)
                pending.discard(job.stage.label)
                if code == 0:
                    finished(job.stage, time.time() - job.t0)
                else:
                    failed.append((job.stage, code, job.log))
                    if running:
                        print(f"  stage '{job.stage.label}' failed (exit {code}); waiting for "
                              f"{len(running)} running stage(s) to end", flush=True)
    except BaseException:
        for job in running:            # Ctrl-C or an error here: stop the children (they checkpoint on SIGTERM)
            job.proc.terminate()
        for job in running:
            job.proc.wait()
        raise
    if failed:
        stage, code, log = failed[0]
        if log and log.is_file():                       # the end of its log, then the one-line error
            for line in log.read_text(errors="replace").splitlines()[-15:]:
                print("    " + line, flush=True)
        raise MaebenchError(f"demo stage '{stage.label}' failed (exit {code})"
                            + (f"; its log: {log}" if log else ""))
