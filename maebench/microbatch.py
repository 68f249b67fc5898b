"""The per-process micro-batch, chosen to fit the machine; the global batch stays the recipe's.

A protocol's batch_size is global (images per optimizer step, all processes). Each process
runs it as accum_iter micro-batches: global = micro x processes x accum_iter (`micro_batch`,
`steps_per_epoch`: the arithmetic the tasks check their batches with). The recipe's
split suits the hardware it was published on (ViTDet: 64 GPUs x 1 image); on one GPU or a CPU it
may not fit, and a process that outgrows the machine is killed by the kernel without a word.
So before the first optimizer step:

  - `--set micro_batch=N` fixes the micro-batch: at most N images per forward, the largest such
    number that divides the per-process batch;
  - on CUDA, the recipe's micro-batch is tried and halved on out-of-memory (as accelerate's
    find_executable_batch_size does), with one forward and backward per try;
  - on a CPU, short steps of 1 and 2 images are measured (peak resident memory, via
    /proc/self/clear_refs) and the largest micro-batch whose estimate -- fixed cost + per-image
    cost x images + optimizer state + loader workers -- fits in the memory actually available
    (the cgroup's limit, else MemAvailable; an address-space limit RLIMIT_AS too) is taken;
  - when not even one image fits, the command stops before training, in one line naming the
    memory it would need and the flags that lower it.

`plan` makes the choice once, before the training loop, which never changes it (engine.fit
records it in its FitResult). One log line says what was chosen and why. The trial steps leave no trace: the RNG states and
the model's buffers are restored and the gradients cleared, so a run is the same with or without
them. Gradient accumulation gives the update of the whole batch (tests/test_microbatch.py).
"""
from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Any, Callable

import torch

from maebench import distributed as dist
from maebench.checkpointer import restore_rng, rng_snapshot
from maebench.errors import MaebenchError, UsageError

HEADROOM = 0.85          # use at most this share of what is available
WORKER_BASE = 300 << 20  # a loader worker's own memory before it holds a batch (estimate)
PREFETCH = 2             # batches a worker keeps ready (DataLoader's prefetch_factor)
ACTIVATION_FACTOR = 4096 # bound on a training step's memory per byte of input (ViT estimate: 200-800)


# ---- the arithmetic: global batch = micro-batch x processes x accum_iter ---------------------------
def micro_batch(batch_size: int, world: int, accum_iter: int) -> int:
    """Images per process per forward in the recipe's split of the global batch."""
    if batch_size % (world * accum_iter):
        raise UsageError(f"batch_size {batch_size} is not divisible by processes ({world}) x "
                         f"accum_iter ({accum_iter})")
    return batch_size // (world * accum_iter)


def steps_per_epoch(n_samples: int, world: int, micro: int, accum_iter: int) -> int:
    """Optimizer steps per epoch: a DistributedSampler with drop_last gives each process
    n // world samples, the loader keeps whole micro-batches, the loop whole accumulation groups."""
    return n_samples // world // micro // accum_iter


def gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


# ---- what the machine has ------------------------------------------------------------------------
def _status(field: str) -> int:
    """A /proc/self/status value in bytes (VmRSS, VmHWM, VmSize); 0 where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def available() -> tuple[int, int | None, str]:
    """(bytes this process may still add to its resident memory, bytes it may still add to its
    address space or None, where the first number comes from)."""
    total = None
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:]}
    total = info.get("MemTotal")
    free, source = info.get("MemAvailable", 0), "MemAvailable"
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and (total is None or limit < total):
            if limit - usage < free:
                free, source = max(0, limit - usage), "cgroup memory limit"
            break
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    room_as = None if soft == resource.RLIM_INFINITY else max(0, soft - _status("VmSize"))
    if room_as is not None and room_as < free:
        source = "RLIMIT_AS"
    return free, room_as, source


def _trim() -> None:
    """Give freed heap memory back to the system (glibc), so that resident memory is live memory
    and a trial step's growth is not hidden by memory an earlier step freed."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_of(fn: Callable[[], Any]) -> int:
    """The peak resident memory (bytes) of this process while fn() runs."""
    _trim()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                 # resets VmHWM to the current VmRSS (Linux >= 4.0)
    except OSError:
        pass
    fn()
    return max(_status("VmHWM"), _status("VmRSS"))


# ---- trial steps that leave no trace ---------------------------------------------------------------
class Trial:
    """Forward + backward of the first n training samples, as the loop runs them."""

    def __init__(self, model, train_set, loss_fn, collate_fn, device, amp: bool):
        self.model, self.train_set, self.loss_fn, self.device, self.amp = model, train_set, loss_fn, device, amp
        self.collate = collate_fn or torch.utils.data.default_collate

    def __call__(self, n: int) -> None:
        from maebench.amp import autocast
        batch = self.collate([self.train_set[i % len(self.train_set)] for i in range(n)])
        with autocast(self.device, self.amp):
            loss, _ = self.loss_fn(self.model, batch, self.device)
        loss.backward()
        del loss
        self.model.zero_grad(set_to_none=True)

    def __enter__(self):
        self.rng, self.mode = rng_snapshot(), self.model.training
        self.buffers = [b.detach().clone() for b in self.model.buffers()]
        self.model.to(self.device).train()
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for b, saved in zip(self.model.buffers(), self.buffers):
                b.copy_(saved)
        self.model.zero_grad(set_to_none=True)
        self.model.train(self.mode)
        restore_rng(self.rng)
        return False


def _sample_bytes(sample: Any) -> int:
    if torch.is_tensor(sample):
        return sample.numel() * sample.element_size()
    if isinstance(sample, dict):
        return sum(_sample_bytes(v) for v in sample.values())
    if isinstance(sample, (list, tuple)):
        return sum(_sample_bytes(v) for v in sample)
    return 0


def _one_value_per_channel(e: BaseException) -> bool:
    """BatchNorm's refusal to train on one value per channel (a 1-image batch through a pooled or
    1-d BatchNorm, e.g. a linear probe's or a pyramid-pooling head's)."""
    return isinstance(e, ValueError) and "Expected more than 1 value per channel" in str(e)


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(e, RuntimeError) and ("can't allocate memory" in str(e) or "out of memory" in str(e)))


# ---- the choice ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """How this process runs the global batch, fixed before the first step and never changed in the
    loop: micro_batch images per forward, accum_iter forwards per optimizer step."""
    micro_batch: int
    accum_iter: int
    steps_per_epoch: int


def plan(*, batch_size: int, world: int, accum_iter: int, train_set, **probe) -> Plan:
    """Check that an epoch holds a step, then choose the micro-batch (`choose`, which takes `probe`).
    Steps per epoch do not depend on the split: only the per-process batch micro x accum_iter counts."""
    steps = steps_per_epoch(len(train_set), world, micro_batch(batch_size, world, accum_iter), accum_iter)
    if steps < 1:
        raise MaebenchError(f"the training set has {len(train_set)} samples, fewer than one batch of "
                            f"{batch_size}: lower batch_size")
    m, accum = choose(batch_size=batch_size, world=world, accum_iter=accum_iter, train_set=train_set, **probe)
    return Plan(micro_batch=m, accum_iter=accum, steps_per_epoch=steps)


def choose(*, batch_size: int, world: int, accum_iter: int, requested: int | None, model, train_set,
           loss_fn, collate_fn, device, amp: bool, num_workers: int, optimizer: str,
           log: Callable[[str], None] = print) -> tuple[int, int]:
    """(micro-batch, accum_iter) for this process; see the module docstring."""
    recipe = micro_batch(batch_size, world, accum_iter)
    per_process = recipe * accum_iter
    if requested is not None:           # at most `requested` images per forward: the largest divisor
        m = max(d for d in range(1, min(requested, per_process) + 1) if per_process % d == 0)
        why = "" if m == requested else (f", the largest that divides the {per_process} images per process "
                                         f"and is at most micro_batch {requested}")
        log(f"micro-batch {m} per process, accum_iter {per_process // m} (config key micro_batch{why}; "
            f"global batch {batch_size} kept)")
        return m, per_process // m
    sizes = [m for m in range(recipe, 0, -1) if per_process % m == 0]
    try:
        with Trial(model, train_set, loss_fn, collate_fn, device, amp) as trial:
            found = _plain(trial, recipe, num_workers, optimizer, device)
            if any(f is None for f in dist.all_gather_objects(found)):   # trial steps in step on every rank
                found = None
            if found is None:
                found = (_on_cuda(trial, sizes, device) if device.type == "cuda"
                         else _on_cpu(trial, sizes, num_workers, optimizer))
        answer = found
    except MaebenchError as e:
        answer = (None, str(e))
    except Exception as e:  # noqa: BLE001 - running out of memory while preparing a trial step
        if not _out_of_memory(e):
            raise
        free, room_as, source = available() if device.type != "cuda" else (0, None, str(device))
        answer = (None, f"not enough memory to train: preparing a trial step could not allocate its memory "
                        f"({gb(free if room_as is None else min(free, room_as))} available, {source}); lower the "
                        "image size (--set img_size=...) or the loader workers (--set num_workers=0)")
    answers = dist.all_gather_objects(answer)          # every process takes the smallest that fits
    refused = [why for m, why in answers if m is None]
    if refused:
        raise MaebenchError(refused[0])
    m, why = min(answers, key=lambda a: a[0])
    if m != recipe:
        bn = any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in model.modules())
        caveat = "; BatchNorm now sees micro-batches, so the update differs from the recipe's" if bn else ""
        log(f"micro-batch {m} per process, accum_iter {per_process // m} (global batch {batch_size} kept; the "
            f"recipe's {recipe} per process {why}{caveat}); --set micro_batch=N overrides")
    else:
        log(f"micro-batch {m} per process, accum_iter {per_process // m}, as the recipe: {why}; "
            "--set micro_batch=N overrides")
    return m, per_process // m


def _plain(trial: Trial, recipe: int, num_workers: int, optimizer: str, device) -> tuple[int, str] | None:
    """(recipe, why) without a trial step when a generous bound on its memory -- parameters,
    gradients, optimizer state, and ACTIVATION_FACTOR x the input bytes per image (a ViT step
    holds a few hundred times its input) -- stays under a tenth of what is free; else None."""
    sample = _sample_bytes(trial.train_set[0])
    params = sum(p.numel() * p.element_size() for p in trial.model.parameters())
    bound = params * 4 + recipe * sample * ACTIVATION_FACTOR + num_workers * (WORKER_BASE + PREFETCH * recipe * sample)
    if device.type == "cuda":
        room, source = torch.cuda.mem_get_info(device)[0], f"free on {device}"
    else:
        free, room_as, source = available()
        room = free if room_as is None else min(free, room_as)
    if bound > room / 10:
        return None
    return recipe, f"at most ~{gb(bound)} of the {gb(room)} available ({source})"


def _on_cuda(trial: Trial, sizes: list[int], device) -> tuple[int, str]:
    """Try the sizes largest first; under DDP the processes agree after each try (a size fits
    when it fits on every GPU)."""
    for m in sizes:
        try:
            trial(m)
            fits = True
        except Exception as e:  # noqa: BLE001 - only out-of-memory is handled here
            if not (_out_of_memory(e) or _one_value_per_channel(e)):
                raise
            fits = False
            trial.model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
        if all(dist.all_gather_objects(fits)):
            return m, (f"fit on {device}" if m == sizes[0] else f"ran out of GPU memory; {m} fit")
    free = torch.cuda.mem_get_info(device)[1]
    raise MaebenchError(f"not enough GPU memory to train: one image per step runs out of the {gb(free)} of {device}; "
                        "lower the image size (--set img_size=...) or use a larger GPU")


def _on_cpu(trial: Trial, sizes: list[int], num_workers: int, optimizer: str) -> tuple[int, str]:
    free, room_as, source = available()
    params = sum(p.numel() * p.element_size() for p in trial.model.parameters() if p.requires_grad)
    state = params * {"adamw": 2, "lars": 1, "sgd": 1}.get(optimizer, 2)      # optimizer state, made at step 1
    per_worker_sample = _sample_bytes(trial.train_set[0]) if num_workers else 0
    _trim()
    rss0 = _status("VmRSS")
    low = 1                             # the smallest micro-batch the model trains on
    try:
        try:
            p_low = peak_rss_of(lambda: trial(1)) - rss0
        except Exception as e:  # noqa: BLE001 - a model that cannot train on one image: BatchNorm over
            # a single value per channel, mixup / cutmix pairing images; a 2-image step shows which
            if _out_of_memory(e) or sizes[0] < 2:
                raise
            low = 2
            p_low = peak_rss_of(lambda: trial(2)) - rss0
        p_high = peak_rss_of(lambda: trial(2 * low)) - rss0 if sizes[0] >= 2 * low else p_low
    except Exception as e:  # noqa: BLE001 - only running out of memory is handled here
        if not _out_of_memory(e):
            raise
        raise MaebenchError(f"not enough memory to train: a step of {low} image(s) could not allocate its memory "
                            f"({gb(free if room_as is None else min(free, room_as))} available, {source}); lower "
                            "the image size (--set img_size=...) or the loader workers (--set num_workers=0)") from None
    per_image = max(p_high - p_low, 0) / low
    p1 = p_low - (low - 1) * per_image
    sizes = [m for m in sizes if m % low == 0]      # pairs stay pairs (mixup), BatchNorm sees >= 2

    def need(m: int) -> tuple[int, int]:
        own = int(p1 + (m - 1) * per_image + state)
        return own, own + num_workers * (WORKER_BASE + PREFETCH * m * per_worker_sample)

    def worker(m: int) -> int:          # a forked worker has the parent's address space and room
        return WORKER_BASE + PREFETCH * m * per_worker_sample if num_workers else 0

    for m in sizes:
        own, total = need(m)
        if total <= HEADROOM * free and (room_as is None or max(own, worker(m)) <= HEADROOM * room_as):
            workers = f" and {num_workers} loader workers" if num_workers else ""
            said = (f"a step of {m} images needs ~{gb(total)} (with optimizer state{workers}) of the "
                    f"{gb(free if room_as is None else min(free, room_as))} available ({source})")
            if m == sizes[0]:
                return m, said
            return m, f"would need ~{gb(need(sizes[0])[1])}; {said}"
    own, total = need(low)
    workers = f", {num_workers} loader workers ~{gb(total - own)}" if num_workers else ""
    raise MaebenchError(f"not enough memory to train: {low} image(s) per step need ~{gb(total)} (1 image ~{gb(p1)}, "
                        f"optimizer state ~{gb(state)}{workers}) but {gb(free if room_as is None else min(free, room_as))} "
                        f"is available ({source}); lower the image size (--set img_size=...) or the loader workers "
                        "(--set num_workers=0)")
