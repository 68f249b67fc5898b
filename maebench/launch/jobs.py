"""What a launcher runs: a job (a `maebench` command line, what it needs, its estimate) and the
share of a cluster one job asks for."""
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
