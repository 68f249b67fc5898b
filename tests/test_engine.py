"""The shared training loop: exact resume, signals, non-finite losses, atomic checkpoints."""
import os
import signal

import pytest
import torch
import torch.nn as nn

from maebench.engine import Interrupted, NonFiniteLoss, fit
from maebench.errors import MaebenchError
from maebench.optim import lr_at, param_groups
from loop_config import loop_cfg


class Noisy(torch.utils.data.Dataset):
    """A learnable toy set whose __getitem__ draws random noise: resume must replay it exactly."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(128, 8, generator=g)
        self.y = (self.x.sum(1) > 0).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + 0.01 * torch.randn(8), self.y[i]


class Trap:
    """loss_fn that crashes or signals itself at a chosen call, like a killed or preempted job."""

    def __init__(self, at=None, how="crash", nan_at=None):
        self.calls, self.at, self.how, self.nan_at = 0, at, how, nan_at

    def __call__(self, model, batch, device):
        self.calls += 1
        if self.calls == self.at:
            if self.how == "crash":
                raise RuntimeError("killed")
            os.kill(os.getpid(), signal.SIGTERM)
        x, y = batch
        loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
        if self.calls == self.nan_at:
            loss = loss * float("nan")
        return loss, {"acc": (model(x).argmax(1) == y).float().mean()}


def train(out_dir, loss_fn, resume=False, accum=1, workers=0):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 2))
    cfg = loop_cfg(epochs=3, batch_size=16, accum_iter=accum, base_lr=0.5, warmup_epochs=1,
                   weight_decay=0.05, num_workers=workers, log_every=3)
    return fit(model, Noisy(), loss_fn, cfg, out_dir=out_dir, device=torch.device("cpu"), resume=resume,
               param_groups=param_groups(model, weight_decay=0.05), log=lambda s: None)


def max_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("accum, workers", [(1, 0), (2, 2)])
def test_crash_then_resume_equals_uninterrupted(tmp_path, accum, workers):
    ref = train(tmp_path / "ref", Trap(), accum=accum, workers=workers)
    with pytest.raises(RuntimeError):
        train(tmp_path / "run", Trap(at=20, how="crash"), accum=accum, workers=workers)  # dies in epoch 3
    resumed = train(tmp_path / "run", Trap(), resume=True, accum=accum, workers=workers)
    assert max_diff(ref.model, resumed.model) <= 1e-6
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in ref.history], abs=1e-6)


def test_sigterm_mid_epoch_checkpoints_and_resume_is_exact(tmp_path):
    ref = train(tmp_path / "ref", Trap())
    with pytest.raises(Interrupted) as e:
        train(tmp_path / "run", Trap(at=11, how="signal"))      # epoch 2, step 3 of 8
    assert e.value.resumable and e.value.exit_code != 0 and "--resume" in str(e.value)
    ck = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)
    assert (ck["epoch"], ck["step_in_epoch"]) == (1, 3)
    resumed = train(tmp_path / "run", Trap(), resume=True)
    assert max_diff(ref.model, resumed.model) <= 1e-6


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    train(tmp_path / "ref", Trap())  # warm-up import paths
    good = tmp_path / "run" / "checkpoint.pth"
    with pytest.raises(NonFiniteLoss, match=r"non-finite at step 10 "):
        train(tmp_path / "run", Trap(nan_at=11))
    ck = torch.load(good, weights_only=True)
    assert ck["epoch"] == 1 and all(torch.isfinite(v).all() for v in ck["model"].values())


def test_unwritable_output_is_one_clear_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")                     # works even as root, unlike chmod
    with pytest.raises(MaebenchError, match="cannot write checkpoint .*not-a-dir"):
        train(blocker / "run", Trap())


def test_full_disk_keeps_previous_checkpoint_intact(tmp_path, monkeypatch):
    import errno
    import maebench.torch_io as ckpt
    train(tmp_path / "run", Trap())
    before = (tmp_path / "run" / "checkpoint.pth").read_bytes()
    real_save = torch.save

    def full_disk(obj, f):
        real_save(obj, f)                      # bytes go out, then the disk fills up
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    with pytest.raises(MaebenchError, match="No space left on device; the previous checkpoint is intact"):
        train(tmp_path / "run", Trap())
    assert (tmp_path / "run" / "checkpoint.pth").read_bytes() == before
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["checkpoint.pth"]   # no temp files left


def test_batch_must_divide_over_processes_and_accumulation(tmp_path):
    model = nn.Linear(8, 2)
    with pytest.raises(MaebenchError, match="not divisible"):
        fit(model, Noisy(), Trap(), loop_cfg(epochs=1, batch_size=10, accum_iter=3, lr=0.1),
            out_dir=tmp_path, device=torch.device("cpu"))


def test_schedule_follows_warmup_and_cosine_formula():
    kw = dict(lr=1.0, min_lr=0.0, warmup_steps=10, total_steps=110)
    assert lr_at(5, **kw) == pytest.approx(0.5)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.5)         # half-way through the cosine
    assert lr_at(110, **kw) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(60, schedule="step", milestones=(0.4,), **kw) == pytest.approx(0.1)
    assert lr_at(60, schedule="poly", **kw) == pytest.approx(0.5)


def test_no_weight_decay_on_norms_biases_tokens_and_position_embeddings():
    from maebench.backbones.vit import create_vit
    vit = create_vit("vit-micro", img_size=16)
    groups = param_groups(vit, weight_decay=0.05)
    no_decay = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert {"cls_token", "pos_embed", "blocks.0.norm1.weight", "blocks.0.attn.qkv.bias"} <= no_decay
    assert "blocks.0.attn.qkv.weight" not in no_decay and "patch_embed.proj.weight" not in no_decay


def test_the_loop_refuses_a_config_that_lacks_a_key_it_reads(tmp_path):
    cfg = loop_cfg(epochs=1, batch_size=16, lr=0.1)
    del cfg["warmup_epochs"]
    with pytest.raises(MaebenchError, match="lacks warmup_epochs"):
        fit(nn.Linear(8, 2), Noisy(), Trap(), cfg, out_dir=tmp_path, device=torch.device("cpu"))


@pytest.mark.parametrize("accum", [1, 2])
def test_on_step_runs_once_before_every_optimizer_step_with_the_total(tmp_path, accum):
    seen = []
    cfg = loop_cfg(epochs=2, batch_size=32, accum_iter=accum, lr=0.1, num_workers=0)
    fit(nn.Linear(8, 2), Noisy(), Trap(), cfg, out_dir=tmp_path, device=torch.device("cpu"),
        on_step=lambda step, total: seen.append((step, total)), log=lambda s: None)
    assert seen == [(s, 8) for s in range(8)]             # 128 images / 32 per step x 2 epochs


def test_the_micro_batch_is_chosen_before_the_loop_recorded_and_logged_once(tmp_path):
    sizes, lines = [], []

    def loss_fn(model, batch, device):
        sizes.append(len(batch[0]))
        return nn.functional.cross_entropy(model(batch[0]), batch[1]), {}

    cfg = loop_cfg(epochs=2, batch_size=16, micro_batch=4, lr=0.1, num_workers=0)
    result = fit(nn.Linear(8, 2), Noisy(), loss_fn, cfg, out_dir=tmp_path, device=torch.device("cpu"),
                 log=lines.append)
    assert (result.micro_batch, result.accum_iter) == (4, 4)
    assert result.threads == torch.get_num_threads()
    assert sizes == [4] * (2 * 128 // 4)                  # every forward, both epochs
    plan = [s for s in lines if "micro-batch 4 x accum_iter 4 x 1 process(es) = batch 16" in s]
    assert len(plan) == 1 and f"{result.threads} torch thread(s)" in plan[0]


def test_peak_lr_scales_the_base_lr_by_batch_over_256_unless_lr_is_given():
    from maebench.lr_rule import peak_lr
    assert peak_lr(1.5e-4, 4096) == pytest.approx(2.4e-3)          # the MAE pretraining recipe
    assert peak_lr(1.5e-4, 4096, lr=0.01) == 0.01
    with pytest.raises(MaebenchError, match="neither 'lr' nor 'base_lr'"):
        peak_lr(None, 256)
