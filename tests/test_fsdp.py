"""strategy=fsdp (FSDP2), its DCP checkpoints, and grad_checkpointing, on CPU with gloo.

Two processes are spawned as in tests/test_distributed.py; one group runs every 2-process fit:
  - ddp / fsdp: the same 3 optimizer steps (layer-decay groups, clip_grad, gradient
    accumulation over 2 micro-batches) under each strategy;
  - whole / first: an uninterrupted 2-epoch FSDP run with EMA, and a 1-epoch run of the same
    recipe whose sharded checkpoint (checkpoint.dcp/) a single process then resumes.
Losses are written per rank and per call of the loss, so each optimizer step's loss is known.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from maebench.errors import MaebenchError, UsageError
from loop_config import loop_cfg

class Images(torch.utils.data.Dataset):
    """Fixed random 16 px images with 3 labels (no augmentation, so every run sees the same)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return torch.randn(3, 16, 16, generator=g), torch.tensor(i % 3)


def tiny_vit() -> nn.Module:
    from maebench.backbones.vit import create_vit
    torch.manual_seed(0)                        # the same initial weights in every process and run
    return create_vit("vit-micro", img_size=16, patch_size=4, num_classes=3, global_pool="avg")


def groups(model):
    from maebench.optim import param_groups
    return param_groups(model, weight_decay=0.05, layer_decay=0.75, num_layers=len(model.blocks))


class Recorder:
    """The loss function; appends each forward's loss to `losses`, and whether the model it was
    given had sharded (DTensor) parameters to `sharded`."""

    def __init__(self):
        self.losses: list[float] = []
        self.sharded: set[bool] = set()

    def __call__(self, model, batch, device):
        self.sharded.add(any(hasattr(p, "full_tensor") for p in model.parameters()))
        x, y = batch
        loss = nn.functional.cross_entropy(model(x), y)
        self.losses.append(loss.item())
        return loss, {}


def fit_tiny(out_dir, *, strategy, epochs, batch_size, micro_batch, images=32, ema=0.0, resume=False, lr=1e-3,
             **keys):
    from maebench.engine import fit
    model, loss = tiny_vit(), Recorder()
    cfg = loop_cfg(epochs=epochs, batch_size=batch_size, micro_batch=micro_batch, lr=lr, schedule="constant",
                   weight_decay=0.05, clip_grad=0.05, ema=ema, amp=False, num_workers=0, log_every=1,
                   strategy=strategy, **keys)
    result = fit(model, Images(images), loss, cfg, out_dir=out_dir, device=torch.device("cpu"), seed=3,
                 param_groups=groups(model), resume=resume, log=lambda *_: None)
    return result, loss.losses + [loss.sharded == {True}]


def _worker(rank: int, out: str) -> None:
    import torch.distributed as tdist
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=2)
    # SGD, whose step is proportional to the clipped gradient (AdamW's hardly changes when all of a
    # step's gradients are scaled alike, so it would hide a clip computed from one shard's norm)
    step = dict(epochs=1, batch_size=16, micro_batch=4, images=48, optimizer="sgd", lr=0.05)
    runs = {   # 2 processes x micro-batch 4 x accum 2 = 16 a step: 3 steps of 48 images ...
        "ddp": dict(strategy="ddp", **step),
        "fsdp": dict(strategy="fsdp", **step),
        # ... 2 processes x micro-batch 4 = 8 a step, 4 steps an epoch, with EMA
        "whole": dict(strategy="fsdp", epochs=2, batch_size=8, micro_batch=4, ema=0.5),
        "first": dict(strategy="fsdp", epochs=1, batch_size=8, micro_batch=4, ema=0.5),
    }
    for name, kw in runs.items():
        result, losses = fit_tiny(f"{out}/{name}", **kw)
        Path(f"{out}/{name}.{rank}.json").write_text(json.dumps(losses))
        if rank == 0:
            torch.save(result.model.state_dict(), f"{out}/{name}.pth")
    tdist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    ctx = torch.multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(r, str(out))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, "the processes hung"
    assert [p.exitcode for p in procs] == [0, 0]
    return out


def losses(out: Path, name: str, rank: int, sharded: bool = True) -> list[float]:
    """Every forward's loss of the run on that rank; checks that its model was (un)sharded."""
    *values, was_sharded = json.loads((out / f"{name}.{rank}.json").read_text())
    assert was_sharded == sharded, (name, rank)
    return values


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_fsdp_steps_equal_ddp_steps(runs):
    """3 SGD steps (layer decay, clip_grad 0.05 clipping every step, 2 accumulated micro-batches): the
    loss of every forward on every rank, and the final weights, match DDP's within 1e-5."""
    for rank in range(2):
        ddp, fsdp = losses(runs, "ddp", rank, sharded=False), losses(runs, "fsdp", rank)
        assert len(ddp) == len(fsdp) == 6                     # 3 steps x 2 micro-batches
        assert fsdp == pytest.approx(ddp, abs=1e-5)
        assert len(set(ddp)) == len(ddp)                      # the weights did move between steps
    ddp_w, fsdp_w = torch.load(runs / "ddp.pth"), torch.load(runs / "fsdp.pth")
    assert all(not hasattr(v, "full_tensor") for v in fsdp_w.values())   # fit returned whole weights
    assert max_diff(ddp_w, fsdp_w) <= 1e-5
    assert max_diff(ddp_w, tiny_vit().state_dict()) > 1e-3   # and they trained


def test_sharded_checkpoint_resumes_in_one_process(runs, tmp_path):
    """A 2-process FSDP run's checkpoint after epoch 1, resumed by one process at the same global
    batch (micro-batch 4 x accum 2 there): each step of epoch 2 sees the same 8 images as the
    2-process run's (DistributedSampler deals rank r the permutation's r-th of every 2), so its
    loss and the final EMA weights equal the uninterrupted 2-process run's."""
    ckpt = runs / "first" / "checkpoint.dcp"
    assert sorted(p.name for p in ckpt.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp", "extra.pth"]
    assert not (runs / "first" / "checkpoint.pth").exists()
    assert sorted(p.name for p in (runs / "first").iterdir()) == ["checkpoint.dcp"]   # no temp directory left
    work = tmp_path / "first"
    shutil.copytree(runs / "first", work)
    result, resumed = fit_tiny(work, strategy="fsdp", epochs=2, batch_size=8, micro_batch=4, ema=0.5, resume=True)
    resumed = resumed[:-1]                                                # single process: a no-op wrap
    w0, w1 = losses(runs, "whole", 0), losses(runs, "whole", 1)
    whole_epoch2 = [(a + b) / 2 for a, b in zip(w0[4:], w1[4:])]          # mean over the 2 ranks per step
    one = [(a + b) / 2 for a, b in zip(resumed[0::2], resumed[1::2])]    # mean over the 2 micro-batches
    assert len(one) == len(whole_epoch2) == 4
    assert one == pytest.approx(whole_epoch2, abs=1e-5)
    assert max_diff(result.model.state_dict(), torch.load(runs / "whole.pth")) <= 1e-5
    assert [h["epoch"] for h in result.history] == [1, 2]                 # history came back too


def test_missing_shard_is_one_line_naming_the_file(runs, tmp_path):
    work = tmp_path / "first"
    shutil.copytree(runs / "first", work)
    (work / "checkpoint.dcp" / "__1_0.distcp").unlink()
    with pytest.raises(MaebenchError) as e:
        fit_tiny(work, strategy="fsdp", epochs=2, batch_size=8, micro_batch=4, ema=0.5, resume=True)
    msg = str(e.value)
    assert "\n" not in msg and str(work / "checkpoint.dcp" / "__1_0.distcp") in msg, msg


def test_unknown_strategy_is_one_line():
    from maebench import config
    with pytest.raises(UsageError) as e:
        config.load("finetune", sets=["strategy=bogus"])
    msg = str(e.value)
    assert "\n" not in msg and "'strategy'" in msg and "bogus" in msg and "ddp, fsdp" in msg, msg
    with pytest.raises(UsageError, match="unknown strategy 'bogus'"):
        fit_tiny("unused", strategy="bogus", epochs=1, batch_size=8, micro_batch=4)


def test_pretrain_protocols_have_no_strategy():
    """Only the transfer protocols that train the ViT end to end take strategy=fsdp."""
    from maebench import config
    for protocol in ("finetune", "partial", "coco", "ade20k"):
        assert config.load(protocol)["strategy"] == "ddp"
        assert config.load(protocol)["grad_checkpointing"] is False
    with pytest.raises(UsageError, match="unknown config key 'strategy'"):
        config.load("pretrain_mae", sets=["strategy=fsdp"])


# ---- grad_checkpointing ---------------------------------------------------------------------------
def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for the backward while `fn` runs."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def loss_and_grads(model, x, y):
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    return loss, grads


@pytest.mark.parametrize("kind", ["vit", "mae"])
def test_grad_checkpointing_same_loss_and_grads_less_saved(kind):
    from maebench import grad_ckpt
    if kind == "vit":
        make = tiny_vit
        step = lambda m, x: loss_and_grads(m, x, torch.tensor([0, 1]))            # noqa: E731
    else:
        from maebench.backbones.mae import create_mae

        def make():
            torch.manual_seed(0)
            return create_mae("vit-micro", img_size=16, patch_size=4, decoder_embed_dim=32, decoder_depth=2,
                              decoder_num_heads=2)

        def step(m, x):
            loss = m(x, noise=torch.rand(2, 16, generator=torch.Generator().manual_seed(1)))[0]
            return loss, torch.autograd.grad(loss, [p for p in m.parameters() if p.requires_grad])
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    plain, ckpt = make(), make()
    assert grad_ckpt.enable(ckpt) == 1 and ckpt.grad_checkpointing and not plain.grad_checkpointing
    (l0, g0), (l1, g1) = step(plain, x), step(ckpt, x)
    assert abs(l0.item() - l1.item()) <= 1e-6
    assert max((a - b).abs().max().item() for a, b in zip(g0, g1)) <= 1e-6
    assert saved_bytes(lambda: step(ckpt, x)) < 0.5 * saved_bytes(lambda: step(plain, x))


def test_fit_with_grad_checkpointing_sets_timm_flag_and_trains_the_same(tmp_path):
    run = dict(strategy="ddp", epochs=1, batch_size=8, micro_batch=4)
    a, la = fit_tiny(tmp_path / "a", **run)
    b, lb = fit_tiny(tmp_path / "b", grad_checkpointing=True, **run)
    assert b.model.grad_checkpointing is True and a.model.grad_checkpointing is False
    assert lb[:-1] == pytest.approx(la[:-1], abs=1e-6)
    assert max_diff(a.model.state_dict(), b.model.state_dict()) <= 1e-6


def test_grad_checkpointing_on_a_model_without_the_switch_is_one_line():
    from maebench import grad_ckpt
    with pytest.raises(MaebenchError, match="^grad_checkpointing=true: Sequential has no part"):
        grad_ckpt.enable(nn.Sequential(nn.Linear(2, 2)))
