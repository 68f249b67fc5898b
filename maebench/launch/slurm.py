"""The SLURM launcher, through submitit: every job becomes a SLURM job (jobs that need the same
jobs and ask for the same resources: one job array), a job's needs become `afterok` dependencies
(`kill-on-invalid-dep`: what needs a failed job is cancelled, never run), its resources come from
its protocol's `resources:` table and the launcher options. The command waits for the jobs
(submitit polls sacct) and reports each as it ends; a failed job names its log. Ctrl-C leaves
submitted jobs running and prints the `scancel` line.

submitit's local executor runs the same submissions on this machine (the tests): it has no
dependencies, so there a job is submitted once the jobs it needs have finished."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable

from maebench.errors import MaebenchError, UsageError
from maebench.launch.jobs import Job, Resources
from maebench.launch.job import Command


class SlurmLauncher:
    def __init__(self, settings, *, folder: Path, executor: Any = None, poll_s: float = 10.0):
        """`executor`: a submitit executor to use instead of a SlurmExecutor (the tests pass
        submitit's LocalExecutor)."""
        import submitit
        if executor is None and shutil.which("sbatch") is None:
            raise UsageError("--launcher slurm: `sbatch` is not on the PATH (no SLURM on this machine); run on a "
                             "SLURM login node, or use the local launcher (--launcher local, the default)")
        self.settings = settings
        self.folder = Path(settings.launcher_dir or folder).expanduser()
        self.executor = executor or submitit.SlurmExecutor(folder=self.folder / "%j")
        self.dependencies = isinstance(self.executor, submitit.SlurmExecutor)
        self._initial = dict(self.executor.parameters)      # update_parameters accumulates: reset per group
        self.poll_s = poll_s if self.dependencies else 0.5

    def parameters(self, r: Resources, dependency: str | None) -> dict[str, Any]:
        """submitit's parameters for one submission (SlurmExecutor's names; the local executor's)."""
        s = self.settings
        if not self.dependencies:
            return {"timeout_min": r.time_min, "tasks_per_node": r.processes_per_node, "gpus_per_node": r.gpus_per_node}
        p = {"job_name": "maebench", "nodes": r.nodes, "ntasks_per_node": r.processes_per_node,
             "cpus_per_task": r.cpus_per_task, "time": r.time_min, "signal_delay_s": 120,
             "stderr_to_stdout": True, "additional_parameters": {"kill-on-invalid-dep": "yes"}}
        if r.gpus_per_node:
            p["gpus_per_node"] = r.gpus_per_node
        if r.mem_gb:
            p["mem"] = f"{r.mem_gb}GB"
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(s, key):
                p[key] = getattr(s, key)
        if dependency:
            p["dependency"] = dependency
        return p

    def run(self, jobs: list[Job], *, started: Callable[[Job], None] = lambda job: None,
            finished: Callable[[Job, float], None] = lambda job, seconds: None,
            prepare: Callable[[Job], None] = lambda job: None) -> None:
        by_label = {j.label: j for j in jobs}
        pending = dict(by_label)                      # not yet submitted
        submitted: dict[str, Any] = {}                # label -> submitit job
        t0: dict[str, float] = {}
        ended: set[str] = set()
        done: set[str] = set()
        failed: list[tuple[Job, Any]] = []
        try:
            while True:
                if not failed:
                    self._submit_ready(pending, submitted, done, t0, started, prepare)
                for label, sj in submitted.items():
                    if label in ended or not sj.done():
                        continue
                    ended.add(label)
                    job = by_label[label]
                    if sj.exception() is None:
                        done.add(label)
                        finished(job, time.time() - t0[label])
                    else:
                        failed.append((job, sj))
                running = len(submitted) - len(ended)
                if failed and (self.dependencies or not running):
                    break                     # SLURM cancels what needs a failed job (kill-on-invalid-dep)
                if not running and not failed:
                    if not pending:
                        break
                    if not any(self._ready(j, pending, submitted, done) for j in pending.values()):
                        raise MaebenchError(f"jobs wait for jobs that are not planned: "
                                            f"{sorted({n for j in pending.values() for n in j.needs} - done)}")
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            live = [sj.job_id for label, sj in submitted.items() if label not in ended]
            if live and self.dependencies:
                print(f"maebench: submitted jobs keep running; to stop them: scancel {' '.join(live)}", flush=True)
            raise
        if failed:
            job, sj = failed[0]
            text = "".join(p.read_text(errors="replace") for p in (sj.paths.stdout, sj.paths.stderr) if p.is_file())
            lines = text.splitlines()             # its own error line, else the end of its log; then ours
            for line in [ln for ln in lines if ln.startswith("maebench: error")] or lines[-15:]:
                print("    " + line, flush=True)
            raise MaebenchError(f"job '{job.label}' failed (SLURM job {sj.job_id}, {sj.state}); "
                                f"its log: {sj.paths.stdout}")

    def submit_all(self, jobs: list[Job]) -> dict[str, Any]:
        """SLURM: submit every job now, needs as dependencies, and return them by label without
        waiting (what `run` does first; `sbatch` scripts can be read under the job folder)."""
        submitted: dict[str, Any] = {}
        self._submit_ready({j.label: j for j in jobs}, submitted, set(), {}, lambda job: None, lambda job: None)
        return submitted

    def _ready(self, job: Job, pending, submitted, done) -> bool:
        """SLURM: once every job it needs is submitted (they become dependencies); the local
        executor: once they have finished. Labels not planned here count as done."""
        return all(n in done or (self.dependencies and n in submitted) or (n not in pending and n not in submitted)
                   for n in job.needs)

    def _submit_ready(self, pending, submitted, done, t0, started, prepare) -> None:
        """Submit every ready job; jobs with the same dependencies and resources as one array."""
        while True:
            ready = [j for j in pending.values() if self._ready(j, pending, submitted, done)]
            if not ready:
                return
            groups: dict[tuple, list[Job]] = {}
            for j in ready:
                deps = tuple(sorted(submitted[n].job_id for n in j.needs if n in submitted and n not in done))
                groups.setdefault((deps, j.resources), []).append(j)
            for (deps, resources), group in groups.items():
                self.executor.parameters = dict(self._initial)
                self.executor.update_parameters(**self.parameters(
                    resources, "afterok:" + ":".join(deps) if deps and self.dependencies else None))
                for j in group:
                    prepare(j)
                with self.executor.batch():
                    futures = [self.executor.submit(Command(j.argv, j.resumable)) for j in group]
                for j, sj in zip(group, futures):
                    submitted[j.label], t0[j.label] = sj, time.time()
                    del pending[j.label]
                    started(j)
                    print(f"  submitted '{j.label}': job {sj.job_id}, log {sj.paths.stdout}", flush=True)
            if not self.dependencies:
                return
