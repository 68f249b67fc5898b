"""The local launcher: jobs as `maebench` subprocesses on this machine, several at a time ("lanes").

At the demo's scale (a 96-d, 4-block ViT on 32 px images) one process gains little from a
second torch thread: the matmuls are too small to split well (benchmarks/demo_lanes.py measures
it). Two single-thread processes keep both cores busy instead. A job starts once the jobs it
needs have finished (a transfer run needs its backbone's pretraining; the demo's k-NN waits for
the linear probe of the same backbone and seed, whose cached features it reads), the heaviest
ready job first (its own estimate plus those of the jobs waiting for it). With one lane a job's
output streams to the terminal; with more, each job writes <logs>/<NN>-<label>.log and the
terminal shows one line per start and end.
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

from maebench.launch.jobs import Job


def choose_lanes(requested: int | None, log: Callable[[str], None] = print) -> tuple[int, int]:
    """(lanes, torch threads per job): one single-thread lane per physical core unless --jobs
    says. Never from how busy the machine is: a job's thread count changes its reduction order
    and so its numbers, which must be a function of the command and the machine alone (on a busy
    machine the jobs are slower, not different)."""
    from maebench.dataloaders import physical_cores
    cores = physical_cores()
    lanes, why = (max(1, requested), "--jobs") if requested is not None else (cores, f"{cores} physical cores")
    threads = max(1, cores // lanes)
    log(f"local launcher: {lanes} job(s) at a time, {threads} torch thread(s) each ({why}); --jobs N overrides")
    return lanes, threads


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    log: Path | None
    t0: float


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", label).strip("_")


class LocalLauncher:
    def __init__(self, lanes: int, threads: int, logs: Path):
        self.lanes, self.threads, self.logs = lanes, threads, Path(logs)

    @classmethod
    def choose(cls, requested: int | None, *, logs: Path, log: Callable[[str], None] = print) -> "LocalLauncher":
        """One lane per physical core, or `requested` (--jobs) lanes."""
        return cls(*choose_lanes(requested, log), logs)

    def run(self, jobs: list[Job], *, started: Callable[[Job], None] = lambda job: None,
            finished: Callable[[Job, float], None] = lambda job, seconds: None,
            prepare: Callable[[Job], None] = lambda job: None) -> None:
        """Run every job; a job's `needs` names the labels it waits for (labels not in `jobs` count
        as done). Raises MaebenchError after the first failure, once the jobs already running have
        ended (their results stay recorded); what needs the failed job never starts."""
        from maebench.errors import MaebenchError

        waiting = dict(enumerate(jobs, 1))
        pending = {j.label for j in jobs}
        weight = {j.label: j.estimate for j in jobs}      # its own estimate + those of the jobs waiting for it
        for j in jobs:
            for need in j.needs:
                if need in weight:
                    weight[need] += j.estimate
        running: list[_Running] = []
        failed: list[tuple[Job, int, Path | None]] = []
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if not (os.environ.get("MAEBENCH_THREADS") or os.environ.get("OMP_NUM_THREADS")):
            env["MAEBENCH_THREADS"] = str(self.threads)
        if self.lanes > 1:
            self.logs.mkdir(parents=True, exist_ok=True)
        try:
            while waiting or running:
                ready = [(i, j) for i, j in waiting.items() if not (set(j.needs) & pending)]
                while ready and len(running) < self.lanes and not failed:
                    i, job = max(ready, key=lambda item: weight[item[1].label])
                    ready.remove((i, job))
                    del waiting[i]
                    prepare(job)
                    started(job)
                    running.append(self._start(i, job, env))
                if failed and not running:
                    break
                if not running:
                    if waiting:           # nothing ready and nothing running: a need that can never be met
                        raise MaebenchError(f"jobs wait for jobs that are not planned: "
                                            f"{sorted({n for j in waiting.values() for n in j.needs} & pending)}")
                    break
                time.sleep(0.2)
                for r in list(running):
                    code = r.proc.poll()
                    if code is None:
                        continue
                    running.remove(r)
                    pending.discard(r.job.label)
                    if code == 0:
                        finished(r.job, time.time() - r.t0)
                    else:
                        failed.append((r.job, code, r.log))
                        if running:
                            print(f"  job '{r.job.label}' failed (exit {code}); waiting for "
                                  f"{len(running)} running job(s) to end", flush=True)
        except BaseException:
            for r in running:            # Ctrl-C or an error here: stop the children (they checkpoint on SIGTERM)
                r.proc.terminate()
            for r in running:
                r.proc.wait()
            raise
        if failed:
            job, code, log = failed[0]
            if log and log.is_file():                       # the end of its log, then the one-line error
                for line in log.read_text(errors="replace").splitlines()[-15:]:
                    print("    " + line, flush=True)
            raise MaebenchError(f"job '{job.label}' failed (exit {code})" + (f"; its log: {log}" if log else ""))

    def _start(self, i: int, job: Job, env: dict) -> _Running:
        log = self.logs / f"{i:02d}-{slug(job.label)}.log" if self.lanes > 1 else None
        out = open(log, "w") if log else None
        proc = subprocess.Popen([sys.executable, "-m", "maebench", *job.argv], env=env,
                                stdout=out or None, stderr=subprocess.STDOUT if out else None)
        if out:
            out.close()
        return _Running(job, proc, log, time.time())
