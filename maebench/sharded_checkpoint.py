"""The checkpoint of a strategy=fsdp run: a directory `checkpoint.dcp/` instead of checkpoint.pth.

    checkpoint.dcp/.metadata, __<rank>_0.distcp   model + optimizer, torch.distributed.checkpoint
                                                 (DCP): each process writes its own shards
    checkpoint.dcp/extra.pth                     the rest of the checkpoint (epoch, step, history,
                                                 RNG states, sums, scaler, EMA, config, seed), rank 0

Model and optimizer go through `torch.distributed.checkpoint.state_dict.get_state_dict` /
`set_state_dict` (parameter names as keys, optimizer state by parameter name), so a directory
written by N processes loads into M: DCP reshards on load, and without a process group (one
process, unsharded model) it reads every shard into the full tensors.

Written atomically: every process writes into checkpoint.dcp.tmp/, then after a barrier rank 0
moves the old directory aside (checkpoint.dcp.old/), renames the new one into place and removes
the old; a crash between those two renames leaves checkpoint.dcp.old/, which `load` then reads.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from maebench import distributed as dist
from maebench.errors import MaebenchError
from maebench.torch_io import load as load_file, save_atomic

EXTRA = "extra.pth"


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _old(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def found(path: Path) -> Path | None:
    """The checkpoint directory to read: `path`, or the one a crash mid-rename left aside."""
    return next((p for p in (path, _old(path)) if p.is_dir()), None)


def save(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, extra: dict) -> None:
    """Collective: model and optimizer shards from every process, `extra` from rank 0."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    tmp = _tmp(path)
    if dist.is_main():
        shutil.rmtree(tmp, ignore_errors=True)          # a crashed earlier write
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(tmp))
    if dist.is_main():
        save_atomic(extra, tmp / EXTRA)
    dist.barrier()
    if dist.is_main():
        if path.exists():
            shutil.rmtree(_old(path), ignore_errors=True)
            os.replace(path, _old(path))
        os.replace(tmp, path)
        shutil.rmtree(_old(path), ignore_errors=True)


def check_complete(path: Path) -> None:
    """One line naming the first file the directory lacks: its metadata, a shard or extra.pth."""
    from torch.distributed.checkpoint import FileSystemReader
    if not (path / ".metadata").is_file():
        raise MaebenchError(f"sharded checkpoint {path} is incomplete: it lacks {path / '.metadata'}")
    storage = FileSystemReader(str(path)).read_metadata().storage_data
    for name in sorted({info.relative_path for info in storage.values()}) + [EXTRA]:
        if not (path / name).is_file():
            raise MaebenchError(f"sharded checkpoint {path} is incomplete: it lacks {path / name}")


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Read model and optimizer into place (resharded to this run's processes); returns extra.pth."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    check_complete(path)
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    return load_file(path / EXTRA)
