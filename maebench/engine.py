"""The one training loop, shared by pretraining (MAE, dVAE, supervised, MoCo v3) and the
transfer tasks (finetune, linprobe, partial, coco, ade20k). Read it top to bottom.

A task hands `fit` a model, a training set and a `loss_fn(model, batch, device) -> (loss, logs)`;
`fit` owns everything else: the distributed sampler, the optimizer and its per-iteration
schedule, gradient accumulation, AMP, DDP, EMA, periodic evaluation, atomic checkpoints,
`--resume`, SIGINT/SIGTERM, non-finite-loss and out-of-memory handling, and the progress line
(loss, lr, images/s and MFU against the matmul peak measured in the same run).

Exact resume: every epoch reseeds the model RNGs and the data-loader workers from
(seed, epoch, rank), and the sampler shuffles from (seed, epoch); a checkpoint written between
two steps also stores the RNG states, so a resumed run replays the remaining steps bit for bit.
"""
from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from maebench import distributed as dist
from maebench.checkpoint import save_atomic
from maebench.errors import MaebenchError
from maebench.flops import matmul_peak, peak_memory_mb
from maebench.optim import lr_at

LossFn = Callable[[nn.Module, Any, torch.device], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


class Interrupted(MaebenchError):
    """SIGINT/SIGTERM: a checkpoint was written; the run can be continued with --resume."""
    exit_code = 130
    resumable = True


class NonFiniteLoss(MaebenchError):
    pass


@dataclass
class TrainConfig:
    """The keys of a protocol config that the loop itself reads (see maebench/protocols/)."""
    epochs: int
    batch_size: int                       # global: images per optimizer step, all processes
    accum_iter: int = 1
    base_lr: float | None = None          # lr = base_lr * batch_size / 256 ...
    lr: float | None = None               # ... unless lr is given
    min_lr: float = 0.0
    warmup_epochs: float = 0.0
    schedule: str = "cosine"              # cosine | poly | step | constant
    milestones: list = field(default_factory=list)   # step schedule, fractions of training
    optimizer: str = "adamw"              # adamw | lars | sgd
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9
    weight_decay: float = 0.0             # used when fit builds the groups itself
    clip_grad: float | None = None
    ema: float = 0.0                      # EMA decay of the weights; 0 = off
    amp: bool = True                      # autocast on CUDA (bf16 where supported); never on CPU
    num_workers: int = 2
    checkpoint_every: int = 1             # epochs
    eval_every: int = 0                   # epochs; 0 = only at the end
    log_every: int = 10                   # optimizer steps between progress-line updates

    @classmethod
    def from_cfg(cls, cfg: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in names})

    def peak_lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        if self.base_lr is None:
            raise MaebenchError("config sets neither 'lr' nor 'base_lr'")
        return float(self.base_lr) * self.batch_size / 256


@dataclass
class FitResult:
    model: nn.Module                      # trained weights (the EMA weights when ema > 0)
    metrics: dict[str, Any]               # the final evaluation, if an evaluate fn was given
    history: list[dict[str, float]]       # one entry per epoch: mean of each logged value
    images_per_s: float
    peak_mem_mb: float
    wall_s: float
    mfu: float | None                     # achieved FLOP/s / measured matmul peak


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def _rng_state() -> dict:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    # plain tensors and numbers only, so the checkpoint loads with weights_only=True
    state = {"torch": torch.get_rng_state(), "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_optimizer(groups: list[dict], tc: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    lr = tc.peak_lr()
    if tc.optimizer == "adamw":
        # fused AdamW is several times faster than the for-loop version, on CPU as on GPU
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(tc.betas), fused=True)
    if tc.optimizer == "lars":
        from timm.optim import Lars
        return Lars(groups, lr=lr, momentum=tc.momentum)
    if tc.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=tc.momentum)
    from maebench.errors import unknown
    raise unknown("optimizer", tc.optimizer, ("adamw", "lars", "sgd"))


def _autocast(device: torch.device, enabled: bool):
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()   # CPUs here lack native bf16: fp32 only
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@contextlib.contextmanager
def _bar_closed_on_exit(current: Callable[[], Any]):
    """Close the progress bar however the loop ends, so that an error or interrupt message
    starts on a clean line instead of after a half-drawn bar."""
    try:
        yield
    finally:
        bar = current()
        if bar is not None:
            bar.close()


def _rank0_buffers(model: nn.Module) -> None:
    """Under DDP each process's BatchNorm running statistics drift apart (DDP broadcasts buffers
    only at the start of a forward, and without SyncBatchNorm each process then updates its own):
    give every process rank 0's, the ones the checkpoint keeps, so that a sharded evaluation
    scores the saved model."""
    if dist.is_dist():
        for b in model.buffers():
            torch.distributed.broadcast(b, src=0)


def _agree(signum: int | None, first_bad: torch.Tensor) -> "tuple[int | None, torch.Tensor]":
    """(any process's signal, the earliest non-finite step of any process), in one all_reduce."""
    never = torch.iinfo(torch.long).max
    t = torch.stack([torch.tensor(signum or 0, device=first_bad.device),
                     -torch.where(first_bad < 0, torch.full_like(first_bad, never), first_bad)])
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    bad = -t[1]
    return (int(t[0]) or None), torch.where(bad == never, torch.full_like(bad, -1), bad)


class _SignalFlag:
    """Turns SIGINT/SIGTERM into a flag checked between steps (main thread only)."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        import threading
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def fit(model: nn.Module, train_set: Dataset, loss_fn: LossFn, cfg: dict | TrainConfig, *,
        out_dir: str | os.PathLike, device: torch.device, seed: int = 0,
        param_groups: list[dict] | None = None, collate_fn: Callable | None = None,
        evaluate: Callable[[nn.Module], dict] | None = None, resume: bool = False,
        flops_per_image: float | None = None, desc: str = "train",
        find_unused_parameters: bool = False, log: Callable[[str], None] = print) -> FitResult:
    tc = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_cfg(cfg)
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint.pth"
    world, rank = dist.world_size(), dist.rank()

    # ---- data: global batch = micro-batch x processes x accumulation steps -------------
    if tc.batch_size % (world * tc.accum_iter):
        raise MaebenchError(f"batch_size {tc.batch_size} is not divisible by processes ({world}) "
                            f"x accum_iter ({tc.accum_iter})")
    micro = tc.batch_size // (world * tc.accum_iter)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                 seed=seed, drop_last=True)
    if len(sampler) < micro * tc.accum_iter:
        raise MaebenchError(f"the training set has {len(train_set)} samples, fewer than one batch of "
                            f"{tc.batch_size}: lower batch_size")
    workers_gen = torch.Generator()
    loader = DataLoader(train_set, batch_size=micro, sampler=sampler, num_workers=tc.num_workers,
                        collate_fn=collate_fn, drop_last=True, generator=workers_gen,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    steps_per_epoch = len(loader) // tc.accum_iter
    total_steps = steps_per_epoch * tc.epochs

    # ---- model, optimizer, AMP, EMA, DDP ------------------------------------------------
    model.to(device)
    groups = param_groups
    if groups is None:
        from maebench.optim import param_groups as make_groups
        groups = make_groups(model, weight_decay=tc.weight_decay)
    optimizer = build_optimizer(groups, tc, device)
    use_amp = tc.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    ema = None
    if tc.ema > 0:
        from timm.utils import ModelEmaV3
        ema = ModelEmaV3(model, decay=tc.ema)
    train_model = model
    if dist.is_dist():
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters)

    # ---- resume -------------------------------------------------------------------------
    start_epoch, start_step, history, resumed_rng, resumed_sums = 0, 0, [], None, None
    if resume and ckpt_path.exists():
        from maebench.checkpoint import load
        ck = load(ckpt_path)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        if ema is not None and "ema" in ck:
            ema.module.load_state_dict(ck["ema"])
        start_epoch, start_step, history = ck["epoch"], ck["step_in_epoch"], ck["history"]
        resumed_rng = ck["rng"][rank] if rank < len(ck["rng"]) else None
        # logged sums of the steps already taken in the interrupted epoch, so that its mean
        # covers the whole epoch (older checkpoints lack them: the mean covers the rest)
        partial = ck.get("epoch_sums")
        resumed_sums = partial[rank] if partial and rank < len(partial) else None
        log(f"resumed from {ckpt_path} at epoch {start_epoch}, step {start_step}")
    elif resume:
        log(f"--resume: no checkpoint at {ckpt_path}; starting from scratch")

    def save(epoch: int, step_in_epoch: int) -> None:
        states = dist.all_gather_objects(_rng_state())
        partial = dist.all_gather_objects({k: v.detach().cpu() for k, v in sums.items()}) if step_in_epoch else None
        if dist.is_main():
            ck = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "scaler": scaler.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch,
                  "history": history, "rng": states, "config": asdict(tc), "seed": seed}
            if ema is not None:
                ck["ema"] = ema.module.state_dict()
            if partial is not None:
                ck["epoch_sums"] = partial
            try:
                save_atomic(ck, ckpt_path)
            except OSError as e:
                raise MaebenchError(f"cannot write checkpoint {ckpt_path}: {e.strerror or e}; "
                                    "the previous checkpoint is intact") from None
        dist.barrier()

    # ---- the loop -------------------------------------------------------------------------
    peak = matmul_peak(device)
    flops_per_step = 3 * flops_per_image * tc.batch_size if flops_per_image else None  # fwd + bwd
    base_lr = tc.peak_lr()
    images, train_time, metrics = 0, 0.0, {}
    t_start = time.time()
    progress = None
    with _SignalFlag() as stop, _bar_closed_on_exit(lambda: progress):
        for epoch in range(start_epoch, tc.epochs):
            sampler.set_epoch(epoch)
            workers_gen.manual_seed(seed * 100_003 + epoch)
            _seed_everything(seed * 100_003 + epoch * 1009 + rank)
            train_model.train()
            skip = start_step * tc.accum_iter if epoch == start_epoch else 0
            sums: dict[str, torch.Tensor] = {}
            if skip and resumed_sums is not None:
                sums = {k: v.to(device) for k, v in resumed_sums.items()}
            counted_from = 0 if skip and resumed_sums is not None else skip   # first micro-step in sums
            first_bad = torch.full((), -1, dtype=torch.long, device=device)
            if dist.is_main():
                from tqdm import tqdm
                progress = tqdm(total=steps_per_epoch, initial=skip // tc.accum_iter,
                                desc=f"{desc} {epoch + 1}/{tc.epochs}", dynamic_ncols=True, leave=False,
                                disable=None)   # a bar on a terminal; logs get the per-epoch line
            t_log, n_log = time.perf_counter(), 0
            it = iter(loader)
            for _ in range(skip):            # mid-epoch resume: replay the sampler order
                next(it)
            if skip and resumed_rng is not None:
                _set_rng_state(resumed_rng)
            for micro_step, batch in enumerate(it, start=skip):
                step = epoch * steps_per_epoch + micro_step // tc.accum_iter
                last_micro = (micro_step + 1) % tc.accum_iter == 0
                if micro_step % tc.accum_iter == 0:
                    lr = lr_at(step, lr=base_lr, min_lr=tc.min_lr, warmup_steps=tc.warmup_epochs * steps_per_epoch,
                               total_steps=total_steps, schedule=tc.schedule, milestones=tuple(tc.milestones))
                    for g in optimizer.param_groups:
                        g["lr"] = lr * g.get("lr_scale", 1.0)
                sync = contextlib.nullcontext() if last_micro or not dist.is_dist() else train_model.no_sync()
                try:
                    with sync:
                        with _autocast(device, use_amp):
                            loss, logs = loss_fn(train_model, batch, device)
                        scaler.scale(loss / tc.accum_iter).backward()
                except torch.OutOfMemoryError:
                    raise MaebenchError(f"out of memory at step {step} with {micro} images per process: "
                                        "lower batch_size or raise accum_iter") from None
                bad = ~torch.isfinite(loss.detach())
                first_bad = torch.where(bad & (first_bad < 0), torch.full_like(first_bad, step), first_bad)
                for k, v in {"loss": loss, **logs}.items():
                    v = v.detach().float() if torch.is_tensor(v) else torch.tensor(float(v))
                    sums[k] = sums.get(k, torch.zeros((), device=device)) + v.to(device)
                if not last_micro:
                    continue
                if tc.clip_grad:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update(model, step=step)
                n_log += 1
                images += tc.batch_size
                done_in_epoch = micro_step // tc.accum_iter + 1
                at_log = n_log == tc.log_every or done_in_epoch == steps_per_epoch
                signum = stop.signum
                if dist.is_dist():
                    # save() is collective: every process must stop at the same step, also when
                    # the signal reached them at different steps (or only some of them), and all
                    # must see a non-finite loss on any of them; agreed at the (common) log steps
                    signum, first_bad = _agree(signum, first_bad) if at_log else (None, first_bad)
                if at_log or signum is not None:
                    if int(first_bad) >= 0:
                        raise NonFiniteLoss(f"loss became non-finite at step {int(first_bad)} (epoch {epoch + 1}); "
                                            f"the last good checkpoint ({ckpt_path}) is intact")
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    dt = time.perf_counter() - t_log
                    train_time += dt
                    ips = n_log * tc.batch_size / dt
                    if progress is not None:
                        post = {k: f"{float(v) / (done_in_epoch * tc.accum_iter - counted_from):.4f}" for k, v in sums.items()}
                        post.update(lr=f"{lr:.2e}", img_s=f"{ips:.1f}")
                        if flops_per_step:
                            post["mfu"] = f"{100 * flops_per_step * n_log / dt / world / peak:.1f}%"
                        progress.set_postfix(post, refresh=False)
                        progress.update(n_log)
                    t_log, n_log = time.perf_counter(), 0
                if signum is not None:
                    save(epoch, done_in_epoch)
                    raise Interrupted(f"stopped by {signal.Signals(signum).name} at epoch {epoch + 1}, "
                                      f"step {done_in_epoch}; checkpoint {ckpt_path}; continue with --resume")
            if progress is not None:
                progress.close()
            n_micro = steps_per_epoch * tc.accum_iter - counted_from
            epoch_means = {k: float(dist.all_reduce_sum(v.clone())) / (n_micro * world) for k, v in sums.items()}
            history.append({"epoch": epoch + 1, **epoch_means})
            if evaluate is not None and tc.eval_every and (epoch + 1) % tc.eval_every == 0 and epoch + 1 < tc.epochs:
                _rank0_buffers(ema.module if ema is not None else model)
                metrics = evaluate(ema.module if ema is not None else model)
                history[-1].update({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
            if dist.is_main():
                shown = " ".join(f"{k}={v:.4f}" for k, v in epoch_means.items())
                log(f"{desc} epoch {epoch + 1}/{tc.epochs}: {shown}")
            if (epoch + 1) % tc.checkpoint_every == 0 or epoch + 1 == tc.epochs:
                save(epoch + 1, 0)
    final = ema.module if ema is not None else model
    if evaluate is not None:
        _rank0_buffers(final)
        metrics = evaluate(final)
    ips = images / train_time if train_time > 0 else 0.0
    mfu = (flops_per_step / tc.batch_size * ips / world / peak) if flops_per_step and ips else None
    return FitResult(model=final, metrics=metrics, history=history, images_per_s=ips,
                     peak_mem_mb=peak_memory_mb(device), wall_s=time.time() - t_start, mfu=mfu)
