"""The one training loop, shared by pretraining (MAE, dVAE, supervised, MoCo v3) and the
transfer tasks (finetune, linprobe, partial, coco, ade20k). Read `fit` top to bottom.

A task hands `fit` a model, a training set and a `loss_fn(model, batch, device) -> (loss, logs)`;
`fit` owns the rest: the distributed sampler, the optimizer and its per-iteration schedule,
gradient accumulation, AMP, DDP, EMA, periodic evaluation, checkpoints and `--resume`
(maebench/checkpointer.py), SIGINT/SIGTERM and non-finite losses (maebench/signals.py), and the
progress line (maebench/progress.py). `on_step(step, total_steps)` runs before every optimizer
step, for schedules that live in the model (MoCo momentum, dVAE temperature).

Exact resume: every epoch reseeds the model RNGs and the data-loader workers from
(seed, epoch, rank), and the sampler shuffles from (seed, epoch); a checkpoint written between
two steps also stores the RNG states, so a resumed run replays the remaining steps bit for bit.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from maebench import distributed as dist
from maebench.amp import autocast, grad_scaler
from maebench.batching import micro_batch, steps_per_epoch
from maebench.checkpointer import Checkpointer, Resume, seed_everything, set_rng_state
from maebench.compiling import maybe_compile
from maebench.errors import MaebenchError, unknown
from maebench.flops import peak_memory_mb
from maebench.loading import train_loader
from maebench.microbatch import choose as choose_micro_batch
from maebench.optim import lr_at, param_groups as default_groups
from maebench.progress import Progress
from maebench.signals import StopFlag, agree

LossFn = Callable[[nn.Module, Any, torch.device], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


class Interrupted(MaebenchError):
    """SIGINT/SIGTERM: a checkpoint was written; the run can be continued with --resume."""
    exit_code = 130
    resumable = True


class NonFiniteLoss(MaebenchError):
    pass


@dataclass
class TrainConfig:
    """The protocol keys the loop reads. Their values live in maebench/protocols/<task>.yaml
    alone: a key missing from the config is an error, never a default invented here."""
    epochs: int
    batch_size: int                       # global: images per optimizer step, all processes
    accum_iter: int
    base_lr: float | None                 # lr = base_lr * batch_size / 256 ...
    lr: float | None                      # ... unless lr is given
    min_lr: float
    warmup_epochs: float
    schedule: str                         # cosine | poly | step | constant
    milestones: list                      # step schedule only: fractions of training
    optimizer: str                        # adamw | lars | sgd
    betas: list                           # adamw only
    momentum: float                       # lars / sgd only
    weight_decay: float                   # used when fit builds the groups itself
    clip_grad: float | None
    ema: float                            # EMA decay of the weights; 0 = off
    amp: bool                             # autocast on CUDA (bf16 where supported); never on CPU
    num_workers: int
    checkpoint_every: int                 # epochs
    eval_every: int                       # epochs; 0 = only at the end
    log_every: int                        # optimizer steps between progress-line updates
    micro_batch: int | None               # at most this many images per forward; null = chosen by memory
    compile: bool                         # torch.compile the step (maebench/compiling.py)
    tensor_loader: bool | None = None     # in-memory uint8 set, batched augmentation (maebench/loading.py);
                                          # only the protocols whose transform it serves have the key

    @classmethod
    def from_cfg(cls, cfg: dict) -> "TrainConfig":
        optional = {"base_lr", "lr", "milestones", "betas", "momentum", "tensor_loader"}    # checked below, where they apply
        missing = [f.name for f in fields(cls) if f.name not in cfg and f.name not in optional]
        needed = {"step": "milestones"}.get(cfg.get("schedule")), \
            {"adamw": "betas", "lars": "momentum", "sgd": "momentum"}.get(cfg.get("optimizer"))
        missing += [k for k in needed if k and k not in cfg]
        if "lr" not in cfg and "base_lr" not in cfg:
            missing.append("lr or base_lr")
        if missing:
            raise MaebenchError(f"the training config lacks {', '.join(missing)} (the protocol file "
                                "maebench/protocols/<task>.yaml holds every key the training loop reads)")
        return cls(**{f.name: cfg.get(f.name) for f in fields(cls)})

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
    images_per_s: float                   # optimizer steps only, evaluation excluded
    peak_mem_mb: float
    wall_s: float
    mfu: float | None                     # achieved FLOP/s / measured matmul peak


def build_optimizer(groups: list[dict], tc: TrainConfig) -> torch.optim.Optimizer:
    if tc.optimizer == "adamw":
        # fused AdamW is several times faster than the for-loop version, on CPU as on GPU
        return torch.optim.AdamW(groups, lr=tc.peak_lr(), betas=tuple(tc.betas), fused=True)
    if tc.optimizer == "lars":
        from timm.optim import Lars
        return Lars(groups, lr=tc.peak_lr(), momentum=tc.momentum)
    if tc.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=tc.peak_lr(), momentum=tc.momentum)
    raise unknown("optimizer", tc.optimizer, ("adamw", "lars", "sgd"))


def fit(model: nn.Module, train_set: Dataset, loss_fn: LossFn, cfg: dict | TrainConfig, *,
        out_dir: str | os.PathLike, device: torch.device, seed: int = 0,
        param_groups: list[dict] | None = None, collate_fn: Callable | None = None,
        evaluate: Callable[[nn.Module], dict] | None = None, resume: bool = False,
        flops_per_image: float | None = None, desc: str = "train", find_unused_parameters: bool = False,
        on_step: Callable[[int, int], None] | None = None, log: Callable[[str], None] = print) -> FitResult:
    tc = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_cfg(cfg)
    world, rank, t_start = dist.world_size(), dist.rank(), time.time()

    # ---- data: global batch = micro-batch x processes x accumulation steps -------------------
    micro = micro_batch(tc.batch_size, world, tc.accum_iter)
    steps = steps_per_epoch(len(train_set), world, micro, tc.accum_iter)
    if steps < 1:
        raise MaebenchError(f"the training set has {len(train_set)} samples, fewer than one batch of "
                            f"{tc.batch_size}: lower batch_size")
    micro, accum = choose_micro_batch(      # the machine's micro-batch; global batch kept via accum_iter
        batch_size=tc.batch_size, world=world, accum_iter=tc.accum_iter, model=model, train_set=train_set,
        requested=tc.micro_batch, loss_fn=loss_fn,
        collate_fn=collate_fn, device=device, amp=tc.amp, num_workers=tc.num_workers, optimizer=tc.optimizer, log=log)
    tc = replace(tc, accum_iter=accum)
    sampler, workers_gen, loader = train_loader(train_set, micro, tc, collate_fn, device, seed, log)   # maebench/loading.py
    total_steps = steps * tc.epochs

    # ---- model, optimizer, AMP, EMA, DDP, checkpoint ---------------------------------------------
    model.to(device)
    optimizer = build_optimizer(param_groups or default_groups(model, weight_decay=tc.weight_decay), tc)
    scaler = grad_scaler(device, tc.amp)
    ema = _ema(model, tc.ema)
    train_model = _ddp(model, device, find_unused_parameters)
    loss_fn = maybe_compile(loss_fn, tc.compile, log=log)          # maebench/compiling.py; eager when off or failing
    ckpt = Checkpointer(Path(out_dir) / "checkpoint.pth", model=model, optimizer=optimizer, scaler=scaler,
                        ema=ema, config=asdict(tc), seed=seed)
    start = ckpt.restore(log) if resume else Resume()
    history = start.history
    progress = Progress(desc=desc, epochs=tc.epochs, steps_per_epoch=steps, batch_size=tc.batch_size,
                        log_every=tc.log_every, device=device, flops_per_image=flops_per_image, log=log)

    # ---- the loop ----------------------------------------------------------------------------------
    with StopFlag() as stop, contextlib.closing(progress):
        for epoch in range(start.epoch, tc.epochs):
            sampler.set_epoch(epoch)
            workers_gen.manual_seed(seed * 100_003 + epoch)
            seed_everything(seed * 100_003 + epoch * 1009 + rank)
            train_model.train()
            skip = start.step * tc.accum_iter if epoch == start.epoch else 0     # mid-epoch resume
            sums = {k: v.to(device) for k, v in start.sums.items()} if skip and start.sums else {}
            counted_from = 0 if skip and start.sums is not None else skip       # first micro-step in sums
            first_bad = torch.full((), -1, dtype=torch.long, device=device)
            progress.start_epoch(epoch, skip // tc.accum_iter)
            it = iter(loader)
            for _ in range(skip):                                               # replay the sampler order
                next(it)
            if skip and start.rng is not None:
                set_rng_state(start.rng)
            for micro_step, batch in enumerate(it, start=skip):
                step = epoch * steps + micro_step // tc.accum_iter
                if micro_step % tc.accum_iter == 0:
                    lr = lr_at(step, lr=tc.peak_lr(), min_lr=tc.min_lr, warmup_steps=tc.warmup_epochs * steps,
                               total_steps=total_steps, schedule=tc.schedule, milestones=tuple(tc.milestones or ()))
                    for g in optimizer.param_groups:
                        g["lr"] = lr * g.get("lr_scale", 1.0)
                    if on_step is not None:
                        on_step(step, total_steps)
                last_micro = (micro_step + 1) % tc.accum_iter == 0
                sync = contextlib.nullcontext() if last_micro or not dist.is_dist() else train_model.no_sync()
                try:
                    with sync:
                        with autocast(device, tc.amp):
                            loss, logs = loss_fn(train_model, batch, device)
                        scaler.scale(loss / tc.accum_iter).backward()
                except torch.OutOfMemoryError:
                    raise MaebenchError(f"out of memory at step {step} with {micro} images per process: "
                                        "lower batch_size or raise accum_iter") from None
                first_bad = _accumulate(sums, first_bad, loss, logs, step)
                if not last_micro:
                    continue
                _optimizer_step(model, optimizer, scaler, tc.clip_grad)
                if ema is not None:
                    ema.update(model, step=step)
                done = micro_step // tc.accum_iter + 1
                at_log, signum = progress.step_done(done), stop.signum
                if dist.is_dist():      # agreed at the (common) log steps only
                    signum, first_bad = agree(signum, first_bad) if at_log else (None, first_bad)
                if at_log or signum is not None:
                    if int(first_bad) >= 0:
                        raise NonFiniteLoss(f"loss became non-finite at step {int(first_bad)} (epoch {epoch + 1}); "
                                            f"the last good checkpoint ({ckpt.path}) is intact")
                    n = done * tc.accum_iter - counted_from
                    progress.update({k: float(v) / n for k, v in sums.items()}, lr)
                if signum is not None:
                    ckpt.save(epoch, done, history, sums)
                    raise Interrupted(f"stopped by {signal.Signals(signum).name} at epoch {epoch + 1}, "
                                      f"step {done}; checkpoint {ckpt.path}; continue with --resume")
            n_micro = steps * tc.accum_iter - counted_from
            means = {k: float(dist.all_reduce_sum(v.clone())) / (n_micro * world) for k, v in sums.items()}
            history.append({"epoch": epoch + 1, **means})
            if evaluate is not None and tc.eval_every and (epoch + 1) % tc.eval_every == 0 and epoch + 1 < tc.epochs:
                metrics = _evaluate(evaluate, ema.module if ema is not None else model)
                history[-1].update({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
            progress.end_epoch(epoch, means)
            if (epoch + 1) % tc.checkpoint_every == 0 or epoch + 1 == tc.epochs:
                ckpt.save(epoch + 1, 0, history)
    final = ema.module if ema is not None else model
    metrics = _evaluate(evaluate, final) if evaluate is not None else {}
    return FitResult(model=final, metrics=metrics, history=history, images_per_s=progress.images_per_s,
                     peak_mem_mb=peak_memory_mb(device), wall_s=time.time() - t_start, mfu=progress.mfu)


def _ema(model: nn.Module, decay: float):
    """timm's weight EMA when decay > 0, else None."""
    if decay <= 0:
        return None
    from timm.utils import ModelEmaV3
    return ModelEmaV3(model, decay=decay)


def _ddp(model: nn.Module, device: torch.device, find_unused_parameters: bool) -> nn.Module:
    """The model as the loop trains it: DDP-wrapped under torchrun, itself otherwise."""
    if not dist.is_dist():
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                               find_unused_parameters=find_unused_parameters)


def _accumulate(sums: dict[str, torch.Tensor], first_bad: torch.Tensor, loss: torch.Tensor,
                logs: dict, step: int) -> torch.Tensor:
    """Add the micro-step's logged values to the epoch's sums (on the device: no sync per step);
    return the first non-finite step so far (-1: none)."""
    bad = ~torch.isfinite(loss.detach())
    for k, v in {"loss": loss, **logs}.items():
        v = v.detach().float() if torch.is_tensor(v) else torch.tensor(float(v))
        sums[k] = sums.get(k, torch.zeros((), device=first_bad.device)) + v.to(first_bad.device)
    return torch.where(bad & (first_bad < 0), torch.full_like(first_bad, step), first_bad)


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                    clip_grad: float | None) -> None:
    if clip_grad:                         # the norm is computed only when something clips
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def _evaluate(evaluate: Callable[[nn.Module], dict], model: nn.Module) -> dict:
    """Under DDP each process's BatchNorm running statistics drift apart (DDP broadcasts buffers
    only at the start of a forward, and without SyncBatchNorm each process then updates its own):
    give every process rank 0's, the ones the checkpoint keeps, so that a sharded evaluation
    scores the saved model."""
    if dist.is_dist():
        for b in model.buffers():
            torch.distributed.broadcast(b, src=0)
    return evaluate(model)
