"""What runs inside a submitted job: one `maebench` command line, in every task of the job.

A job of several tasks (nodes x processes per node) forms one process group, as the official
MAE's submitit scripts do: rank, world size, master address and port come from SLURM's
variables through submitit's TorchDistributedEnvironment, exported as the RANK / WORLD_SIZE /
MASTER_ADDR / MASTER_PORT / LOCAL_RANK that torchrun would set, so maebench.distributed starts
the group exactly as under torchrun.

Preemption and time-out: SLURM sends SIGUSR2 ahead of the end (submitit's --signal=USR2@90).
While a run trains, the loop turns it into a checkpoint at the next step (maebench/signals.py)
and the command ends with exit 130; this job then hands the signal on to submitit, which calls
`checkpoint` (the same command with --resume) and requeues the job. A signal outside the loop
(data loading, evaluation) goes to submitit at once: the requeued job resumes from the last
checkpoint the loop wrote.
"""
from __future__ import annotations

import os
import signal

import submitit

IN_JOB = "MAEBENCH_IN_JOB"      # set inside a submitted job: its commands run here (maebench/launch/settings.py)


class Command(submitit.helpers.Checkpointable):
    def __init__(self, argv: list[str], resumable: bool = True):
        self.argv, self.resumable = list(argv), resumable

    def __call__(self) -> int:
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        from maebench import signals
        from maebench.cli import main
        os.environ[IN_JOB] = "1"                    # never submits again from inside the job
        code = main(self.argv)
        if code == 130 and env.global_rank != 0:     # the group stopped together; rank 0 requeues or fails
            return code
        if code == 130 and signal.SIGUSR2 in signals.received:
            signal.raise_signal(signal.SIGUSR2)      # checkpointed by the loop: submitit requeues the job
        if code != 0:
            raise RuntimeError(f"maebench {' '.join(self.argv)} exited with code {code}")
        return code

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """The requeued job: the same command, continuing from the run's checkpoint."""
        argv = self.argv + (["--resume"] if self.resumable and "--resume" not in self.argv else [])
        return submitit.helpers.DelayedSubmission(Command(argv, self.resumable))
