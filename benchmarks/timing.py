"""Timing one workload the same way everywhere: warm-up, timed repeats, median, peak memory.

On a shared 2-core machine one slow step (another process took the core) is common, so a
workload is summarised by the median of its timed repeats, and every throughput is set against
the fp32 matmul peak measured in the same run (`PeakTracker`), never against a datasheet.

    peak = PeakTracker(); peak.sample()
    t = time_step(fwd_bwd, opt_step, warmup=1, steps=3)    # -> StepTiming
    t.median_s, t.compute_s, t.optimizer_s, t.peak_rss_mb, t.rss_growth_mb
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pretrain_speed import _PeakMemory  # noqa: E402  (VmHWM reset; CUDA peak)


def rss_mb() -> float:
    """Resident set size of this process now (Linux VmRSS), MiB; 0 where unknown."""
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return 0.0


def release_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the OS (glibc malloc_trim), so that
    the resident set measured next is what is live now, not what earlier work left cached."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def sync(device) -> None:
    import torch
    if getattr(device, "type", device) == "cuda":
        torch.cuda.synchronize()


class PeakTracker:
    """The fp32 matmul peak (maebench.flops.matmul_peak), sampled at several points of a run.

    The best sample is the reference for every "% of peak"; the spread of the samples shows how
    much the machine's load moved during the run."""

    def __init__(self, device="cpu", seconds: float = 1.0):
        self.device, self.seconds, self.samples = device, seconds, []

    def sample(self) -> float:
        from maebench.flops import matmul_peak
        self.samples.append(matmul_peak(self.device, seconds=self.seconds))
        return self.samples[-1]

    @property
    def best(self) -> float:
        return max(self.samples) if self.samples else self.sample()

    def share(self, flop_per_s: float) -> float:
        return flop_per_s / self.best


@dataclass
class StepTiming:
    """Seconds per call of a workload: `times` = whole step of each timed repeat."""
    times: list[float]
    compute: list[float] = field(default_factory=list)     # forward (+ backward)
    optimizer: list[float] = field(default_factory=list)   # optimizer step + zero_grad
    peak_rss_mb: float = 0.0        # process peak resident set during the timed repeats (GPU: allocator peak)
    rss_before_mb: float = 0.0      # resident set (GPU: allocated) just before them: model, optimizer state, batch

    @property
    def median_s(self) -> float:
        return statistics.median(self.times)

    @property
    def min_s(self) -> float:
        return min(self.times)

    @property
    def compute_s(self) -> float:
        return statistics.median(self.compute) if self.compute else self.median_s

    @property
    def optimizer_s(self) -> float:
        return statistics.median(self.optimizer) if self.optimizer else 0.0

    @property
    def rss_growth_mb(self) -> float:
        """Peak minus the resident set before (taken after release_memory): what one step's
        activations, gradients and temporaries add to the process."""
        return max(0.0, self.peak_rss_mb - self.rss_before_mb)


def time_step(compute: Callable[[], object], optimizer_step: Callable[[], object] | None = None, *,
              warmup: int = 1, steps: int = 3, device="cpu") -> StepTiming:
    """Run compute (+ optimizer_step) `warmup` times untimed, then `steps` times timed."""
    import torch
    dev = torch.device(device)
    for _ in range(warmup):
        compute()
        if optimizer_step is not None:
            optimizer_step()
    out = StepTiming(times=[])
    release_memory()
    out.rss_before_mb = torch.cuda.memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else rss_mb()
    with _PeakMemory(dev) as mem:
        for _ in range(steps):
            sync(dev)
            t0 = time.perf_counter()
            compute()
            sync(dev)
            t1 = time.perf_counter()
            if optimizer_step is not None:
                optimizer_step()
                sync(dev)
            t2 = time.perf_counter()
            out.times.append(t2 - t0)
            out.compute.append(t1 - t0)
            out.optimizer.append(t2 - t1)
    out.peak_rss_mb = mem.mb
    return out


class SavedForBackward:
    """Inside `with`: every distinct storage autograd saves for backward, parameters excluded
    (`add` counts one more tensor, e.g. a block input a checkpoint keeps by reference); `bytes`."""

    def __init__(self, model):
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.seen: dict[int, int] = {}

    def add(self, t):
        s = t.untyped_storage()
        if s.data_ptr() not in self.params:
            self.seen[s.data_ptr()] = s.nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self.seen.values())

    def __enter__(self):
        from torch.autograd.graph import saved_tensors_hooks
        self._hooks = saved_tensors_hooks(self.add, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


@dataclass
class StepCost:
    """What one call costs, counted rather than timed (independent of the machine's load)."""
    flops: int                      # matmuls and convolutions, torch.utils.flop_counter
    saved_activation_mb: float      # tensors autograd kept for backward (parameters excluded)
    state_mb: float                 # parameters + their gradients + AdamW's two moments (fp32)


def count_cost(compute: Callable[[], object], model) -> StepCost:
    """FLOPs and memory of one forward + backward, from one untimed call of `compute`.

    Process RSS says little about a step on CPU (the allocator keeps freed memory, and the
    Python/torch runtime is in it), so the step's own memory is counted: every distinct storage
    autograd saves for backward, plus 4 x the trainable parameters (weights, gradients, AdamW
    exp_avg and exp_avg_sq) and 1 x the frozen ones."""
    from maebench.flops import count_flops

    saved = SavedForBackward(model)

    def run():
        with saved:
            compute()

    flops = count_flops(run)
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return StepCost(flops=flops, saved_activation_mb=saved.bytes / 2 ** 20,
                    state_mb=(4 * trainable + frozen + buffers) / 2 ** 20)
