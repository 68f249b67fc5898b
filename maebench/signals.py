"""Stopping a training loop cleanly: SIGINT/SIGTERM become a flag checked between steps, and under
DDP the processes agree on a stop and on a non-finite loss before acting on either."""
from __future__ import annotations

import signal
import threading
from typing import Any

import torch


class StopFlag:
    """Turns SIGINT/SIGTERM into `self.signum`, checked between steps (main thread only)."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

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
