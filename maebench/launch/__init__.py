"""Every command that runs more than one job hands them to a launcher: the demo's stages,
`run --seeds`, `grid`, and one training run sent to a cluster.

A job is a literal `maebench` command line (printed, so that any job can be copied and run
alone), the labels of the jobs it needs, an estimate of its seconds (the heaviest ready job
starts first) and the resources one copy of it asks a cluster for. Two backends:

    local.py    N processes on this machine ("lanes"), heaviest ready job first
    slurm.py    submitit: job arrays, needs as SLURM dependencies, per-job resources,
                requeue with --resume on preemption or time-out (job.py runs inside the job)

settings.py reads the launcher options (`--launcher`, `--partition`, ...) and their defaults in
$MAEBENCH_HOME/launcher.yaml; resources.py a protocol's `resources:` table. Finished work is
reused as before: a job whose run is done finds its row and trains nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Resources:
    """One job's share of a cluster: `nodes` x `gpus_per_node` GPUs, one process (SLURM task) per
    GPU as torchrun would start them, or `tasks_per_node` processes (a CPU job's process group)."""
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: int | None = None             # per node; None: the partition's default
    time_min: int = 60
    tasks_per_node: int | None = None     # None: one per GPU (one on a CPU job)

    @property
    def processes_per_node(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)


@dataclass
class Job:
    label: str
    argv: list[str]                       # a `maebench` command line, without the program name
    needs: tuple[str, ...] = ()           # labels of the jobs that must finish first
    estimate: float = 0.0                 # seconds: the heaviest ready job starts first
    resources: Resources = field(default_factory=Resources)
    resumable: bool = True                # requeued after preemption: continues with --resume


def launcher(settings, *, logs, lanes: int | None = None):
    """The launcher the settings name (maebench/launch/settings.py): local lanes or SLURM."""
    if settings.launcher == "slurm":
        from maebench.launch.slurm import SlurmLauncher
        return SlurmLauncher(settings, folder=logs)
    from maebench.launch.local import LocalLauncher
    return LocalLauncher.choose(lanes, logs=logs)
