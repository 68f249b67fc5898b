"""torch.distributed under torchrun, and the same code single-process.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them everything here is a no-op, so
every training command runs unchanged with `python -m maebench ...` and
`torchrun --nproc-per-node N -m maebench ...`.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def init(device: str | None = None, *, deterministic: bool = False) -> torch.device:
    """Start the process group when launched by torchrun; return this process's device.
    `deterministic` (--deterministic) asks torch for deterministic algorithms."""
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    want_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        from maebench.errors import UsageError
        raise UsageError("--device cuda asked for, but no CUDA device is available")
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over processes, in place (a no-op single-process)."""
    if is_dist():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (a one-element list single-process)."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class ShardSampler(torch.utils.data.Sampler):
    """Evaluation sharding without padding: rank r takes indices r, r+W, r+2W, ...

    DistributedSampler pads the last batch with repeated samples, which would count some
    images twice in a metric; this sampler visits every index exactly once across ranks.
    """

    def __init__(self, n: int):
        self.indices = list(range(rank(), n, world_size()))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()
