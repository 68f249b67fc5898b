"""Batch arithmetic, in one place: the per-process micro-batch that a global batch splits into,
and the optimizer steps an epoch holds as the training loop counts them."""
from __future__ import annotations

from maebench.errors import UsageError


def micro_batch(batch_size: int, world: int, accum_iter: int) -> int:
    """Images per process per forward: global batch = micro x processes x accumulation steps."""
    if batch_size % (world * accum_iter):
        raise UsageError(f"batch_size {batch_size} is not divisible by processes ({world}) x "
                         f"accum_iter ({accum_iter})")
    return batch_size // (world * accum_iter)


def steps_per_epoch(n_samples: int, world: int, micro: int, accum_iter: int) -> int:
    """Optimizer steps per epoch: a DistributedSampler with drop_last gives each process
    n // world samples, the loader keeps whole micro-batches, the loop whole accumulation groups."""
    return n_samples // world // micro // accum_iter
