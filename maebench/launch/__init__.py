"""Every command that runs more than one job hands them to a launcher: the demo's stages,
`run --seeds`, `grid`, and one training run sent to a cluster.

A job is a literal `maebench` command line (printed, so that any job can be copied and run
alone), the labels of the jobs it needs, an estimate of its seconds (the heaviest ready job
starts first) and the resources one copy of it asks a cluster for. Two backends:

    local.py    N processes on this machine ("lanes"), heaviest ready job first
    slurm.py    submitit: job arrays, needs as SLURM dependencies, per-job resources,
                requeue with --resume on preemption or time-out (job.py runs inside the job)

jobs.py holds `Job` and `Resources`; settings.py the launcher settings, their defaults in
$MAEBENCH_HOME/launcher.yaml and a protocol's `resources:` table (the options themselves:
maebench/commands/launcher_options.py); one.py sends one training command to a cluster. Finished work is
reused as before: a job whose run is done finds its row and trains nothing.
"""
from __future__ import annotations

from maebench.launch.jobs import Job, Resources

__all__ = ["Job", "Resources", "launcher"]


def launcher(settings, *, logs, lanes: int | None = None):
    """The launcher the settings name (maebench/launch/settings.py): local lanes or SLURM."""
    if settings.launcher == "slurm":
        from maebench.launch.slurm import SlurmLauncher
        return SlurmLauncher(settings, folder=logs)
    from maebench.launch.local import LocalLauncher
    return LocalLauncher.choose(lanes, logs=logs)
