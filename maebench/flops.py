"""FLOP counting and the matmul peak that MFU is measured against.

These machines' throughput varies with load, so a utilisation figure is only honest when the
peak is measured in the same run as the step it rates.
"""
from __future__ import annotations

import time
from typing import Callable

import torch


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn` (matmuls and convolutions, as torch.utils.flop_counter counts)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                n: int = 1024, seconds: float = 0.3) -> float:
    """Measured FLOP/s of a square matmul on `device` (best of a short burst)."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    deadline = time.perf_counter() + seconds
    for _ in range(3):  # warm-up
        a @ b
    while True:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        best = max(best, 4 * 2 * n ** 3 / dt)
        if time.perf_counter() > deadline:
            return best


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocator peak on GPU, max RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
