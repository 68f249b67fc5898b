"""The training loop's checkpoint: what it holds, and writing and reading it.

A checkpoint holds the model, optimizer, loss scaler and EMA weights, the epoch and the
optimizer step within it, the per-epoch history, every process's RNG states and, when written
mid-epoch, every process's sums of the logged values so far. With those, a resumed run replays
the remaining steps bit for bit (the loop reseeds per epoch and replays the sampler order).
Writing is collective (every process contributes its RNG state); rank 0 writes, atomically.
A strategy=fsdp run's checkpoint is the directory checkpoint.dcp/ instead, its model and
optimizer sharded (maebench/sharded_checkpoint.py), everything else the same.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from maebench import distributed as dist
from maebench import sharded_checkpoint, sharding
from maebench.torch_io import WriteError, load, save_atomic
from maebench.errors import MaebenchError


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def rng_snapshot() -> dict:
    """Every RNG this process draws from (torch, CUDA, numpy, python), to put back with `restore_rng`:
    a checkpoint's mid-epoch state, and the memory probe's trial steps that must leave no trace."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    # plain tensors and numbers only, so the checkpoint loads with weights_only=True
    state = {"torch": torch.get_rng_state(), "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Resume:
    """Where training starts: epoch, optimizer step in it, and this process's saved state."""
    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    rng: dict | None = None            # this process's RNG states at the step (mid-epoch only)
    sums: dict | None = None           # this process's logged sums of the epoch so far (mid-epoch only)


class Checkpointer:
    def __init__(self, path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, ema: Any, config: dict, seed: int, sharded: bool = False):
        self.sharded = sharded               # DCP directory checkpoint.dcp/ next to `path`
        self.path = Path(path).with_suffix(".dcp") if sharded else Path(path)
        self.model, self.optimizer, self.scaler, self.ema = model, optimizer, scaler, ema
        self.config, self.seed = config, seed

    def save(self, epoch: int, step_in_epoch: int, history: list[dict], sums: dict | None = None) -> None:
        """Collective. `step_in_epoch` > 0 marks a mid-epoch checkpoint, which keeps `sums`."""
        states = dist.all_gather_objects(rng_snapshot())
        partial = dist.all_gather_objects({k: v.detach().cpu() for k, v in sums.items()}) \
            if step_in_epoch and sums is not None else None
        ck = {"scaler": self.scaler.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch,
              "history": history, "rng": states, "config": self.config, "seed": self.seed}
        if self.ema is not None:
            ck["ema"] = self.ema.module.state_dict()
        if partial is not None:
            ck["epoch_sums"] = partial
        earlier = self.path.exists()
        try:
            if self.sharded:                 # collective; rank 0's buffers, as DDP's checkpoint
                sharding.broadcast_buffers(self.model)
                sharded_checkpoint.save(self.path, self.model, self.optimizer, ck)
            elif dist.is_main():
                save_atomic({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), **ck},
                            self.path)
        except WriteError as e:   # a full disk: one line; the earlier checkpoint stays, no temp file
            kept = "the previous checkpoint is intact" if earlier else "no earlier checkpoint of this run"
            raise MaebenchError(f"cannot write checkpoint {self.path}: {e.reason}; {kept}; {e.free} free in "
                                f"{self.path.parent}: make room, then run the same command with --resume") from None
        dist.barrier()

    def restore(self, log: Callable[[str], None]) -> Resume:
        """Load the checkpoint into the model, optimizer, scaler and EMA; where to continue."""
        where = sharded_checkpoint.found(self.path) if self.sharded else self.path if self.path.exists() else None
        if where is None:
            log(f"--resume: no checkpoint at {self.path}; starting from scratch")
            return Resume()
        rank = dist.rank()
        if self.sharded:
            ck = sharded_checkpoint.load(where, self.model, self.optimizer)
        else:
            ck = load(self.path)
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
        self.scaler.load_state_dict(ck["scaler"])
        if self.ema is not None and "ema" in ck:
            self.ema.module.load_state_dict(ck["ema"])
        partial = ck.get("epoch_sums")       # older checkpoints lack them: the epoch mean covers the rest
        log(f"resumed from {where} at epoch {ck['epoch']}, step {ck['step_in_epoch']}")
        return Resume(epoch=ck["epoch"], step=ck["step_in_epoch"], history=ck["history"],
                      rng=ck["rng"][rank] if rank < len(ck["rng"]) else None,
                      sums=partial[rank] if partial and rank < len(partial) else None)
