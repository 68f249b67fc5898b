"""How the training loop spreads a model over torchrun's processes: `strategy` ddp or fsdp.

ddp   every process holds the whole model, gradients and optimizer state; DDP all-reduces the
      gradients (torch.nn.parallel.DistributedDataParallel).
fsdp  PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`), each transformer block then the
      root: every process holds 1/world of the parameters, gradients and optimizer state, and
      all-gathers a block's weights just for its forward and backward.

Single-process both are no-ops. FSDP2 replaces each parameter by a new DTensor parameter in
place, so the optimizer groups (built on the unwrapped model) are pointed at the sharded
parameters by name (`wrap` does it, in the callers' own group lists, so that no reference
keeps the full weights alive). What FSDP needs besides: the weight EMA kept as full weights
and updated from gathered ones (`ema_update`), a full unsharded copy for evaluation and for the
returned model (`unsharded`), gradient sync only on an accumulation group's last micro-batch
(`no_sync`), and rank 0's buffers (BatchNorm statistics) broadcast before every forward, as
DDP does.
"""
from __future__ import annotations

import contextlib
import copy
import weakref

import torch
import torch.nn as nn

from maebench import distributed as dist
from maebench.errors import unknown

STRATEGIES = ("ddp", "fsdp")
_SKELETONS: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


def check(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise unknown("strategy", strategy, STRATEGIES)
    return strategy


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def wrap(model: nn.Module, strategy: str, device: torch.device, find_unused_parameters: bool,
         groups: list[dict] = ()) -> nn.Module:
    """The model as the loop trains it: under torchrun DDP-wrapped, or sharded in place by FSDP2
    (then `groups`' params are replaced by the sharded ones); itself single-process."""
    check(strategy)
    if not dist.is_dist():
        return model
    if strategy == "ddp":
        device_ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                                   find_unused_parameters=find_unused_parameters)
    names = {id(p): n for n, p in model.named_parameters()}
    _SKELETONS[model] = _skeleton(model)
    _shard(model, device, find_unused_parameters)
    now = dict(model.named_parameters())
    for g in groups:
        g["params"][:] = [now[names[id(p)]] for p in g["params"]]
    return model


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks: the members of every ModuleList / Sequential named `*blocks`
    (timm ViTs, BEiT, EVA, the MAE encoder and decoder, ViTDet)."""
    out = []
    for name, m in model.named_modules():
        if name.split(".")[-1].endswith("blocks") and isinstance(m, (nn.ModuleList, nn.Sequential)):
            out += list(m)
    return out


def _shard(model: nn.Module, device: torch.device, find_unused_parameters: bool) -> None:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.device_mesh import init_device_mesh
    mesh = init_device_mesh(device.type, (dist.world_size(),))
    for block in _blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if find_unused_parameters:           # FSDP2's counterpart: zero gradients for what a rank's backward missed
        model.set_reduce_scatter_unused_params(True)
    if any(True for _ in model.buffers()):
        model.register_forward_pre_hook(lambda m, _: broadcast_buffers(m))


def _skeleton(model: nn.Module) -> nn.Module:
    """A copy of the unsharded model with its parameters on the meta device (no memory) and its
    buffers real: `unsharded` fills it with the gathered weights."""
    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in model.parameters()}
    return copy.deepcopy(model, memo)


def unsharded(model: nn.Module) -> nn.Module:
    """The model with full weights: itself unless sharded, else a fresh unsharded copy filled
    with the gathered parameters (collective: every process gets the whole model)."""
    if not is_sharded(model):
        return model
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    full = copy.deepcopy(_SKELETONS[model])
    full.load_state_dict(state, assign=True)
    return full.train(model.training)


def broadcast_buffers(model: nn.Module) -> None:
    """Every process takes rank 0's buffers (BatchNorm running statistics)."""
    if dist.is_dist():
        for b in model.buffers():
            torch.distributed.broadcast(b, src=0)


def no_sync(train_model: nn.Module):
    """A context without gradient synchronisation (an accumulation group's earlier micro-batches)."""
    if is_sharded(train_model):
        return _fsdp_no_sync(train_model)
    return train_model.no_sync() if dist.is_dist() else contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


@torch.no_grad()
def ema_update(ema, model: nn.Module, step: int) -> None:
    """timm ModelEmaV3's update; from a sharded model, one gathered tensor at a time into the
    EMA's full weights (the EMA stays a whole copy on every process)."""
    if not is_sharded(model):
        ema.update(model, step=step)
        return
    weight, state = 1.0 - ema.get_decay(step), model.state_dict()
    for k, e in ema.module.state_dict().items():
        v = state[k].full_tensor() if hasattr(state[k], "full_tensor") else state[k]
        if e.is_floating_point():
            e.lerp_(v.to(e.dtype), weight)
        else:
            e.copy_(v)
