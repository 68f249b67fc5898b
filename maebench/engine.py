"""The one training loop, shared by pretraining (MAE, dVAE, supervised, MoCo v3) and the
transfer tasks (finetune, linprobe, partial, coco, ade20k), in the shape of the official MAE
engine_pretrain.py: `fit` sets up, runs `train_one_epoch` per epoch, evaluates and checkpoints.

A task hands `fit` a model, a training set and a `loss_fn(model, batch, device) -> (loss, logs)`;
`fit` owns the rest: the micro-batch (chosen before the loop, maebench/microbatch.py), the
distributed sampler and loader (maebench/dataloaders.py), the optimizer and its per-iteration
schedule, gradient accumulation, AMP, DDP or FSDP (maebench/sharding.py), EMA, periodic evaluation, checkpoints and `--resume`
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
from maebench import grad_ckpt, microbatch, optim, sharding
from maebench.amp import autocast, grad_scaler
from maebench.checkpointer import Checkpointer, Resume, restore_rng, seed_everything
from maebench.compiling import maybe_compile
from maebench.errors import MaebenchError, unknown
from maebench.flops import peak_memory_mb
from maebench.lr_rule import config_peak_lr
from maebench.dataloaders import train_loader
from maebench.optim import lr_at            # looked up here at every step: tests wrap engine.lr_at
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
    tensor_loader: bool | None = None     # in-memory uint8 set, batched augmentation (maebench/dataloaders.py);
                                          # only the protocols whose transform it serves have the key
    lr_scale: float | None = None         # x the peak lr: the searched lr grid (maebench/search.py); only
                                          # the protocols with a search space over it have the key
    strategy: str | None = None           # ddp | fsdp under torchrun (maebench/sharding.py); null = ddp
    grad_checkpointing: bool | None = None  # recompute the blocks in the backward (maebench/grad_ckpt.py)

    @classmethod
    def from_cfg(cls, cfg: dict) -> "TrainConfig":
        optional = {"base_lr", "lr", "milestones", "betas", "momentum", "tensor_loader", "lr_scale",  # checked below
                    "strategy", "grad_checkpointing"}
        missing = [f.name for f in fields(cls) if f.name not in cfg and f.name not in optional]
        needed = {"step": "milestones"}.get(cfg.get("schedule")), \
            {"adamw": "betas", "lars": "momentum", "sgd": "momentum"}.get(cfg.get("optimizer"))
        missing += [k for k in needed if k and k not in cfg]
        if "lr" not in cfg and "base_lr" not in cfg:
            missing.append("lr or base_lr")
        if missing:
            raise MaebenchError(f"the training config lacks {', '.join(missing)} (the protocol file "
                                "maebench/protocols/<task>.yaml holds every key the training loop reads)")
        sharding.check(cfg.get("strategy") or "ddp")
        return cls(**{f.name: cfg.get(f.name) for f in fields(cls)})

    def peak_lr(self) -> float:
        return config_peak_lr(vars(self))


@dataclass
class FitResult:
    model: nn.Module                      # trained weights (the EMA weights when ema > 0)
    metrics: dict[str, Any]               # the final evaluation, if an evaluate fn was given
    history: list[dict[str, float]]       # one entry per epoch: mean of each logged value
    images_per_s: float                   # optimizer steps only, evaluation excluded
    peak_mem_mb: float
    wall_s: float
    mfu: float | None                     # achieved FLOP/s / measured matmul peak
    micro_batch: int                      # images per forward per process, chosen before the loop
    accum_iter: int                       # forwards per optimizer step: batch = micro x processes x accum
    threads: int                          # torch intra-op threads per process


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
        on_step: Callable[[int, int], None] | None = None, log: Callable[[str], None] = print,
        run_log: Any = None) -> FitResult:
    """`run_log`: rank 0's maebench.runlog.RunLog, fed by the progress line (log.jsonl, TensorBoard)."""
    tc = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_cfg(cfg)
    t_start = time.time()
    if tc.grad_checkpointing:                           # before the memory probe, which then measures it
        grad_ckpt.enable(model)
    # the machine's micro-batch, chosen here once for the whole run; accum_iter keeps the global batch
    plan = microbatch.plan(
        batch_size=tc.batch_size, world=dist.world_size(), accum_iter=tc.accum_iter, requested=tc.micro_batch,
        model=model, train_set=train_set, loss_fn=loss_fn, collate_fn=collate_fn, device=device, amp=tc.amp,
        num_workers=tc.num_workers, optimizer=tc.optimizer, log=log)
    tc = replace(tc, accum_iter=plan.accum_iter)
    sampler, workers_gen, loader = train_loader(train_set, plan.micro_batch, tc, collate_fn, device, seed, log)
    threads = torch.get_num_threads()                   # as train_loader set them (dataloaders.choose_threads)
    if dist.is_main():
        log(f"{desc}: micro-batch {plan.micro_batch} x accum_iter {plan.accum_iter} x {dist.world_size()} "
            f"process(es) = batch {tc.batch_size}; {threads} torch thread(s) per process")
    loop = _setup(model, loss_fn, tc, plan, out_dir=out_dir, device=device, seed=seed,
                  param_groups=param_groups, find_unused_parameters=find_unused_parameters,
                  flops_per_image=flops_per_image, desc=desc, on_step=on_step, log=log, run_log=run_log)
    start = loop.ckpt.restore(log) if resume else Resume()
    history = start.history

    with StopFlag() as stop, contextlib.closing(loop.progress):
        for epoch in range(start.epoch, tc.epochs):
            _reseed(sampler, workers_gen, seed, epoch)
            means = train_one_epoch(loop, loader, epoch, start, stop, history)
            history.append({"epoch": epoch + 1, **means})
            if evaluate is not None and _eval_due(tc, epoch):
                metrics = _evaluate(evaluate, loop.final_model)
                history[-1].update({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
            loop.progress.end_epoch(epoch, means, history[-1])
            if (epoch + 1) % tc.checkpoint_every == 0 or epoch + 1 == tc.epochs:
                loop.ckpt.save(epoch + 1, 0, history)

    metrics = _evaluate(evaluate, loop.final_model) if evaluate is not None else {}
    return FitResult(model=sharding.unsharded(loop.final_model), metrics=metrics, history=history,
                     images_per_s=loop.progress.images_per_s, peak_mem_mb=peak_memory_mb(device),
                     wall_s=time.time() - t_start, mfu=loop.progress.mfu, micro_batch=plan.micro_batch,
                     accum_iter=plan.accum_iter, threads=threads)


def train_one_epoch(loop: Loop, loader, epoch: int, start: Resume, stop: StopFlag,
                    history: list[dict]) -> dict[str, float]:
    """One epoch of optimizer steps -- from `start`'s step when it resumes this epoch mid-way -- and
    the epoch's mean of every logged value over all processes. Raises NonFiniteLoss, and after a
    checkpoint Interrupted on SIGINT/SIGTERM."""
    accum, steps = loop.tc.accum_iter, loop.plan.steps_per_epoch
    loop.train_model.train()
    sums, skip = EpochSums.at(start, epoch, accum, loop.device)
    loop.progress.start_epoch(epoch, skip // accum)
    for micro_step, batch in enumerate(_batches_from(loader, skip, start.rng), start=skip):
        step = epoch * steps + micro_step // accum
        if micro_step % accum == 0:
            lr = _begin_step(loop, step)
        last_micro = (micro_step + 1) % accum == 0
        loss, logs = _forward_backward(loop, batch, step, last_micro=last_micro)
        sums.add(loss, logs, step)
        if not last_micro:
            continue
        loop.progress.grad_norm = _optimizer_step(loop.model, loop.optimizer, loop.scaler, loop.tc.clip_grad)
        if loop.ema is not None:
            sharding.ema_update(loop.ema, loop.model, step)
        _check_in(loop, stop, sums, epoch, micro_step // accum + 1, lr, history)
    return sums.epoch_means(steps * accum)


# ---- set-up ----------------------------------------------------------------------------------------
@dataclass
class Loop:
    """What every step touches, built once before the first epoch."""
    tc: TrainConfig                       # accum_iter as the plan chose it
    plan: microbatch.Plan
    model: nn.Module                      # the weights the checkpoint holds (sharded in place under FSDP)
    train_model: nn.Module                # the model as the loss sees it: DDP-wrapped or FSDP-sharded under torchrun
    loss_fn: LossFn                       # compiled when the config says so (maebench/compiling.py)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: Any                              # timm's ModelEmaV3, or None
    ckpt: Checkpointer
    progress: Progress
    device: torch.device
    on_step: Callable[[int, int], None] | None

    @property
    def total_steps(self) -> int:
        return self.plan.steps_per_epoch * self.tc.epochs

    @property
    def final_model(self) -> nn.Module:
        """The model `fit` evaluates and returns: the EMA weights when ema > 0 (whole, also under FSDP)."""
        return self.ema.module if self.ema is not None else self.model


def _setup(model: nn.Module, loss_fn: LossFn, tc: TrainConfig, plan: microbatch.Plan, *, out_dir, device,
           seed: int, param_groups, find_unused_parameters: bool, flops_per_image, desc: str, on_step,
           log: Callable[[str], None], run_log: Any = None) -> Loop:
    """Model on the device, EMA (whole weights), DDP or FSDP, then the optimizer (on the sharded
    parameters under FSDP), loss scaler, the (compiled) step, checkpointer, progress."""
    model.to(device)
    groups = param_groups or optim.param_groups(model, weight_decay=tc.weight_decay)
    ema = _ema(model, tc.ema)
    if run_log is not None:                             # the lr scales and parameter count, before sharding
        run_log.bind(groups)
    strategy = tc.strategy or "ddp"
    train_model = sharding.wrap(model, strategy, device, find_unused_parameters, groups)
    optimizer = build_optimizer(groups, tc)
    scaler = grad_scaler(device, tc.amp)
    step_fn = maybe_compile(loss_fn, tc.compile, log=log)           # eager when off or failing
    ckpt = Checkpointer(Path(out_dir) / "checkpoint.pth", model=model, optimizer=optimizer, scaler=scaler,
                        ema=ema, config=asdict(tc), seed=seed, sharded=strategy == "fsdp")
    progress = Progress(desc=desc, epochs=tc.epochs, steps_per_epoch=plan.steps_per_epoch,
                        batch_size=tc.batch_size, log_every=tc.log_every, device=device,
                        flops_per_image=flops_per_image, log=log, run_log=run_log)
    return Loop(tc=tc, plan=plan, model=model, train_model=train_model, loss_fn=step_fn, optimizer=optimizer,
                scaler=scaler, ema=ema, ckpt=ckpt, progress=progress, device=device, on_step=on_step)


# ---- one epoch ---------------------------------------------------------------------------------
def _reseed(sampler, workers_gen: torch.Generator, seed: int, epoch: int) -> None:
    """The epoch's shuffle, loader-worker and model RNGs from (seed, epoch, rank) alone: exact resume."""
    sampler.set_epoch(epoch)
    workers_gen.manual_seed(seed * 100_003 + epoch)
    seed_everything(seed * 100_003 + epoch * 1009 + dist.rank())


def _batches_from(loader, skip: int, rng: dict | None):
    """The epoch's micro-batches from micro-step `skip` on. Resuming mid-epoch draws the skipped
    ones (the sampler order and the workers' draws replay), then puts back the saved RNG states."""
    it = iter(loader)
    for _ in range(skip):
        next(it)
    if skip and rng is not None:
        restore_rng(rng)
    return it


class EpochSums:
    """The epoch's logged values, summed on the device (no sync per step) from micro-step
    `counted_from` on, and the first step whose loss was not finite (-1: none)."""

    def __init__(self, device: torch.device, sums: dict[str, torch.Tensor], counted_from: int):
        self.sums, self.counted_from = sums, counted_from
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    @classmethod
    def at(cls, start: Resume, epoch: int, accum: int, device: torch.device) -> "tuple[EpochSums, int]":
        """(the sums, micro-steps to skip): a mid-epoch resume continues the checkpoint's sums;
        an older checkpoint without them counts from the resumed step."""
        skip = start.step * accum if epoch == start.epoch else 0
        sums = {k: v.to(device) for k, v in start.sums.items()} if skip and start.sums else {}
        counted_from = 0 if skip and start.sums is not None else skip
        return cls(device, sums, counted_from), skip

    def add(self, loss: torch.Tensor, logs: dict, step: int) -> None:
        device = self.first_bad.device
        bad = ~torch.isfinite(loss.detach())
        for k, v in {"loss": loss, **logs}.items():
            v = v.detach().float() if torch.is_tensor(v) else torch.tensor(float(v))
            self.sums[k] = self.sums.get(k, torch.zeros((), device=device)) + v.to(device)
        self.first_bad = torch.where(bad & (self.first_bad < 0), torch.full_like(self.first_bad, step),
                                     self.first_bad)

    def means(self, micro_steps: int) -> dict[str, float]:
        """This process's means after `micro_steps` micro-steps of the epoch."""
        n = micro_steps - self.counted_from
        return {k: float(v) / n for k, v in self.sums.items()}

    def epoch_means(self, micro_steps: int) -> dict[str, float]:
        """The means over all processes (collective)."""
        n = (micro_steps - self.counted_from) * dist.world_size()
        return {k: float(dist.all_reduce_sum(v.clone())) / n for k, v in self.sums.items()}


# ---- one optimizer step ----------------------------------------------------------------------------
def _begin_step(loop: Loop, step: int) -> float:
    """The schedule's lr at this optimizer step, set in every group (x its lr_scale); then on_step."""
    tc = loop.tc
    lr = lr_at(step, lr=tc.peak_lr(), min_lr=tc.min_lr, total_steps=loop.total_steps,
               warmup_steps=tc.warmup_epochs * loop.plan.steps_per_epoch, schedule=tc.schedule,
               milestones=tuple(tc.milestones or ()))
    for g in loop.optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    if loop.on_step is not None:
        loop.on_step(step, loop.total_steps)
    return lr


def _forward_backward(loop: Loop, batch, step: int, *, last_micro: bool):
    """One micro-batch: forward under autocast, backward of loss / accum_iter. Under DDP / FSDP the
    gradients are all-reduced / reduce-scattered on an optimizer step's last micro-batch only."""
    sync = contextlib.nullcontext() if last_micro else sharding.no_sync(loop.train_model)
    try:
        with sync:
            with autocast(loop.device, loop.tc.amp):
                loss, logs = loop.loss_fn(loop.train_model, batch, loop.device)
            loop.scaler.scale(loss / loop.tc.accum_iter).backward()
    except torch.OutOfMemoryError:
        raise MaebenchError(f"out of memory at step {step} with {loop.plan.micro_batch} images per process: "
                            "lower batch_size or raise accum_iter") from None
    return loss, logs


def _check_in(loop: Loop, stop: StopFlag, sums: EpochSums, epoch: int, done: int, lr: float,
              history: list[dict]) -> None:
    """After optimizer step `done` of the epoch: at a log step, stop on a non-finite loss and show
    the running means; on SIGINT/SIGTERM, checkpoint and stop. Under DDP the processes agree on
    both at the log steps (the same on all), so that all stop at the same step."""
    at_log, signum = loop.progress.step_done(done, lr), stop.signum
    if dist.is_dist():
        signum, sums.first_bad = agree(signum, sums.first_bad) if at_log else (None, sums.first_bad)
    if at_log or signum is not None:
        if int(sums.first_bad) >= 0:
            raise NonFiniteLoss(f"loss became non-finite at step {int(sums.first_bad)} (epoch {epoch + 1}); "
                                f"the last good checkpoint ({loop.ckpt.path}) is intact")
        loop.progress.update(sums.means(done * loop.tc.accum_iter), lr)
    if signum is not None:
        loop.ckpt.save(epoch, done, history, sums.sums)
        raise Interrupted(f"stopped by {signal.Signals(signum).name} at epoch {epoch + 1}, "
                          f"step {done}; checkpoint {loop.ckpt.path}; continue with --resume")


# ---- parts -------------------------------------------------------------------------------------
def _ema(model: nn.Module, decay: float):
    """timm's weight EMA when decay > 0, else None."""
    if decay <= 0:
        return None
    from timm.utils import ModelEmaV3
    return ModelEmaV3(model, decay=decay)


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                    clip_grad: float | None) -> torch.Tensor | None:
    """Returns the gradient norm before clipping (a device tensor, not synced) when clip_grad is set."""
    norm = None
    if clip_grad:                         # the norm is computed only when something clips
        scaler.unscale_(optimizer)
        norm = nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return norm


def _eval_due(tc: TrainConfig, epoch: int) -> bool:
    """Every eval_every epochs (0: never), but not after the last: fit's final evaluation follows it."""
    return bool(tc.eval_every) and (epoch + 1) % tc.eval_every == 0 and epoch + 1 < tc.epochs


def _evaluate(evaluate: Callable[[nn.Module], dict], model: nn.Module) -> dict:
    """Under DDP each process's BatchNorm running statistics drift apart (DDP broadcasts buffers
    only at the start of a forward, and without SyncBatchNorm each process then updates its own):
    give every process rank 0's, the ones the checkpoint keeps, so that a sharded evaluation
    scores the saved model. Under FSDP it evaluates a gathered, unsharded copy."""
    sharding.broadcast_buffers(model)
    return evaluate(sharding.unsharded(model))
