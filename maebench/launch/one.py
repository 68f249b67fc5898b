"""One training command sent to a cluster: `maebench pretrain|run ... --launcher slurm --nodes N
--gpus-per-node G` submits the same command line, without its launcher options, as one job of
N x G processes that form one process group (maebench/launch/job.py); the command waits for it,
as every launcher does. The run's row, lock and outputs are those of a local run."""
from __future__ import annotations

from maebench.launch import launcher
from maebench.launch.jobs import Job
from maebench.launch.settings import Settings, protocol_resources, strip


def submit(settings: Settings, argv: list[str], *, protocol: str, arch: str | None, label: str) -> int:
    """`argv`: the command line as typed; its launcher options are left out of the job's."""
    from maebench.home import home_dir
    job = Job(label, strip(argv), resources=settings.resources(protocol_resources(protocol, arch)))
    r = job.resources
    print(f"{label}: {r.nodes} node(s) x {r.processes_per_node} process(es), {r.gpus_per_node} GPU(s) per node, "
          f"{r.time_min} min", flush=True)
    launcher(settings, logs=home_dir() / "jobs").run(
        [job], finished=lambda j, seconds: print(f"{j.label}: done ({seconds:.0f} s)", flush=True))
    return 0
