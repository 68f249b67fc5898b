"""The training loop's loader, and the thread and worker counts it runs with, chosen for the
machine and printed once per process.

- Torch threads: the machine's physical cores shared among the processes torchrun started on
  it (LOCAL_WORLD_SIZE); MAEBENCH_THREADS or OMP_NUM_THREADS, when set, win. Never the machine's
  load: the thread count changes a kernel's reduction order, so a count read from how busy the
  machine happened to be would change a run's numbers. On a shared machine, where OpenMP
  threads waiting for a core another job holds cost more than they bring (benchmarks/threads.py),
  set MAEBENCH_THREADS (the demo's lanes do).
- Loader workers: the protocol's num_workers, at most the physical cores per process (a 2-core
  machine gains nothing from 10 decoding processes). The count depends on the machine, not on
  its load, so a run resumed on the same machine draws the same augmentation as the original.
- The tensor loader (maebench/data/tensor_loader.py) when the protocol's `tensor_loader` is on
  and the set and transform allow it: no workers, the batch augmented on the training device.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

_CHOSEN: int | None = None         # the count, once chosen: fixed for the process


def physical_cores() -> int:
    """Distinct (physical id, core id) pairs this process may run on; os.cpu_count() otherwise."""
    try:
        allowed = os.sched_getaffinity(0)
        cores, cpu, phys = set(), None, "0"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (x.strip() for x in line.partition(":"))
            if key == "processor":
                cpu = int(value)
            elif key == "physical id":
                phys = value
            elif key == "core id" and cpu in allowed:
                cores.add((phys, value))
        if cores:
            return len(cores)
        return len(allowed)
    except (OSError, AttributeError, ValueError):
        return os.cpu_count() or 1


def choose_threads(log: Callable[[str], None] = print) -> int:
    """Set and return torch's intra-op thread count (once per process; see the module text)."""
    global _CHOSEN
    if _CHOSEN is not None:
        return _CHOSEN
    cores = physical_cores()
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    forced = os.environ.get("MAEBENCH_THREADS") or os.environ.get("OMP_NUM_THREADS")
    if forced:
        threads, why = max(1, int(forced)), "set in the environment"
    else:
        threads, why = max(1, cores // local), f"{cores} physical cores, {local} process(es)"
    torch.set_num_threads(threads)
    _CHOSEN = threads
    from maebench import distributed as dist
    if dist.is_main():
        log(f"threads: {threads} torch thread(s) per process ({why})")
    return threads


def workers_for(requested: int) -> int:
    """The protocol's worker count, at most the physical cores per process."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(int(requested), physical_cores() // local))


def train_loader(train_set, batch_size: int, tc, collate_fn, device: torch.device, seed: int,
                 log: Callable[[str], None] = print):
    """(sampler, loader generator, loader): the engine's DistributedSampler (shuffled from seed,
    whole batches), the generator the engine reseeds every epoch, and the tensor loader where it
    applies and is on, else a DataLoader; one line says which."""
    from torch.utils.data import DistributedSampler

    from maebench import distributed as dist

    choose_threads(log)
    sampler = DistributedSampler(train_set, num_replicas=dist.world_size(), rank=dist.rank(), shuffle=True,
                                 seed=seed, drop_last=True)
    generator = torch.Generator()
    return sampler, generator, _loader(train_set, batch_size, sampler, generator, tc, collate_fn, device, log)


def _loader(train_set, batch_size, sampler, generator, tc, collate_fn, device, log):
    from maebench import distributed as dist
    from maebench.data import tensor_loader as tl

    why = "tensor_loader is off" if not getattr(tc, "tensor_loader", None) else tl.supported(train_set, collate_fn)
    if why is None:
        decoded = tl.decode(train_set, log=log if dist.is_main() else (lambda _: None))
        if decoded is not None:
            if dist.is_main():
                log(f"loader: tensor loader ({len(train_set)} images in memory, augmented in batches on {device.type})")
            return tl.TensorLoader(*decoded, tl.augmentation_of(train_set.transform), sampler=sampler,
                                   batch_size=batch_size, generator=generator, device=device)
        why = "images of different sizes, or over the memory budget"
    workers = workers_for(tc.num_workers)
    if dist.is_main():
        log(f"loader: DataLoader with {workers} worker(s) (protocol {tc.num_workers}, "
            f"{physical_cores()} physical cores; tensor loader not used: {why})")
    return DataLoader(train_set, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate_fn, drop_last=True, generator=generator,
                      pin_memory=device.type == "cuda")
