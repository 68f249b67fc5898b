"""`maebench pretrain --method mae`: registration, official checkpoint layout, exact resume, errors."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from image_helpers import image_folder
from maebench.backbones import mae as mae_mod
from maebench import cli
from maebench.results import ResultsStore

NAME = "mae-test-micro"




def pretrain_args(data, out, *extra):
    return ["pretrain", "--method", "mae", "--arch", "vit-micro", "--data", str(data), "--img-size", "16",
            "--patch-size", "4", "--epochs", "2", "--batch-size", "4", "--name", NAME, "--out", str(out),
            "--deterministic", "--set", "decoder_embed_dim=32", "--set", "warmup_epochs=1",
            "--set", "log_every=1", *extra]


def test_pretrain_registers_an_official_layout_checkpoint_and_resume_is_exact(tmp_path, monkeypatch, capsys):
    from maebench.backbones import registry
    data = image_folder(tmp_path / "data")

    # an uninterrupted run
    assert cli.main(pretrain_args(data, tmp_path / "ref")) == 0
    ref = torch.load(tmp_path / "ref" / "final.pth", weights_only=True)
    meta = ref["maebench"]
    assert (meta["arch"], meta["patch_size"], meta["img_size"], meta["target"]) == ("vit-micro", 4, 16, "norm-pixel")
    assert meta["family"] == "mae-norm-pixel" and meta["decoder_embed_dim"] == 32
    keys = set(ref["model"])
    assert {"patch_embed.proj.weight", "blocks.3.attn.qkv.weight", "decoder_embed.weight",
            "decoder_blocks.1.mlp.fc2.weight", "decoder_pred.weight", "mask_token", "pos_embed",
            "decoder_pos_embed", "cls_token"} <= keys
    train_ck = torch.load(tmp_path / "ref" / "checkpoint.pth", weights_only=True)
    assert {"model", "optimizer", "epoch"} <= set(train_ck) and train_ck["epoch"] == 2

    e = registry.entry(NAME)
    assert (e.family, e.arch, e.patch_size, e.img_size, e.has_decoder) == ("mae-norm-pixel", "vit-micro", 4, 16, True)
    state = registry.load_mae_state(NAME)
    assert set(state) == keys and torch.equal(state["decoder_pred.weight"], ref["model"]["decoder_pred.weight"])
    rows = ResultsStore().rows(task="pretrain-mae")
    assert len(rows) == 1 and rows[0].backbone == NAME and np.isfinite(rows[0].metrics["loss"])
    assert rows[0].metrics["loss"] == pytest.approx(meta["loss_history"][-1])

    # the same command, stopped by SIGINT during the 7th of 8 steps, then resumed
    calls = {"n": 0}
    forward = mae_mod.MaskedAutoencoderViT.forward

    def interrupting_forward(self, *a, **kw):
        out = forward(self, *a, **kw)
        if torch.is_grad_enabled():                   # training steps only, not the FLOP count
            calls["n"] += 1
            if calls["n"] == 7:
                signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(mae_mod.MaskedAutoencoderViT, "forward", interrupting_forward)
    assert cli.main(pretrain_args(data, tmp_path / "run")) == 130
    assert "--resume" in capsys.readouterr().err
    assert not (tmp_path / "run" / "final.pth").exists()
    monkeypatch.setattr(mae_mod.MaskedAutoencoderViT, "forward", forward)
    assert cli.main(pretrain_args(data, tmp_path / "run", "--resume")) == 0
    resumed = torch.load(tmp_path / "run" / "final.pth", weights_only=True)
    for k, v in ref["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert resumed["maebench"]["loss_history"] == pytest.approx(meta["loss_history"], abs=1e-6)


def test_dvae_target_without_a_tokenizer_is_refused_before_any_row(tmp_path, capsys):
    data = image_folder(tmp_path / "data", n_per_class=2)
    assert cli.main(pretrain_args(data, tmp_path / "out", "--target", "dvae")) == 2
    err = capsys.readouterr().err.strip()
    assert "--target dvae needs a frozen tokenizer" in err and len(err.splitlines()) == 1
    assert ResultsStore().rows(status=None) == []


def test_bad_target_is_a_one_line_usage_error_from_the_command_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "maebench", "pretrain", "--method", "mae", "--arch", "vit-micro",
                        "--target", "pixels"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "MAEBENCH_HOME": str(tmp_path)})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == ["maebench: error: unknown target 'pixels' (did you mean: pixel, norm-pixel?)"], r.stderr
    assert not (tmp_path / "results.sqlite").exists()


def test_bad_masking_is_a_one_line_usage_error(tmp_path, capsys):
    assert cli.main(["pretrain", "--method", "mae", "--arch", "vit-micro", "--masking", "grd"]) == 2
    assert capsys.readouterr().err.strip() == "maebench: error: unknown masking 'grd' (did you mean: grid?)"
    assert cli.main(["pretrain", "--method", "mae", "--arch", "vit-micro", "--masking", "grid",
                     "--mask-ratio", "0.5"]) == 2
    assert "grid masking keeps one patch of every 2x2 cell" in capsys.readouterr().err
