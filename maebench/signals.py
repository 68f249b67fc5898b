"""Stopping a training loop cleanly: SIGINT/SIGTERM/SIGUSR2 become a flag checked between steps, and
under DDP the processes agree on a stop and on a non-finite loss before acting on either. SIGUSR2
is the warning SLURM sends ahead of a time limit or preemption (maebench/launch/job.py)."""
from __future__ import annotations

import signal
import threading
from typing import Any

import torch


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
received: list[int] = []          # every stop signal this process's training loops caught


class StopFlag:
    """Turns SIGINT/SIGTERM/SIGUSR2 into `self.signum`, checked between steps (main thread only)."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum
        received.append(signum)

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def agree(signum: int | None, first_bad: torch.Tensor) -> "tuple[int | None, torch.Tensor]":
    """(any process's signal, the earliest non-finite step of any process), in one all_reduce.

    Saving a checkpoint is collective, so every process must stop at the same step, also when a
    signal reached them at different steps (or only some of them), and all must see a non-finite
    loss on any of them."""
    never = torch.iinfo(torch.long).max
    t = torch.stack([torch.tensor(signum or 0, device=first_bad.device),
                     -torch.where(first_bad < 0, torch.full_like(first_bad, never), first_bad)])
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    bad = -t[1]
    return (int(t[0]) or None), torch.where(bad == never, torch.full_like(bad, -1), bad)
