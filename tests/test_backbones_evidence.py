"""Registration believes what the checkpoint says about itself: MAE's saved `args.norm_pix_loss`,
BEiT's and MoCo v3's own markers and an MAE decoder decide the family; a --format, --family or
catalogue claim that contradicts the file is refused in one line naming both; read errors are
complete sentences naming the command-line flag."""
from __future__ import annotations

import argparse

import pytest
import torch
from test_backbones_support import DIM, home, mae_decoder, save, tiny_vit  # noqa: F401

from maebench.backbones import registry
from maebench.errors import MaebenchError, UsageError


def mae_training_checkpoint(norm_pix_loss: bool) -> dict:
    """The layout of facebookresearch/mae's checkpoint-N.pth: model (+ decoder), optimizer, epoch, args."""
    args = argparse.Namespace(model="mae_vit_base_patch16", norm_pix_loss=norm_pix_loss, mask_ratio=0.75, blr=1.5e-4)
    return {"model": {**tiny_vit().state_dict(), **mae_decoder()}, "optimizer": {}, "epoch": 399, "args": args}


@pytest.mark.parametrize("norm_pix_loss, family", [(False, "mae-pixel"), (True, "mae-norm-pixel")])
def test_an_mae_training_checkpoint_is_registered_under_the_loss_its_args_name(home, tmp_path, norm_pix_loss, family):
    e = registry.register("m", save(mae_training_checkpoint(norm_pix_loss), tmp_path / "checkpoint-399.pth"))
    assert (e.family, e.format, e.has_decoder) == (family, "mae-full", True)


def test_a_family_claim_the_args_contradict_is_refused_naming_both(home, tmp_path):
    path = save(mae_training_checkpoint(False), tmp_path / "checkpoint-399.pth")
    with pytest.raises(UsageError) as e:
        registry.register("m", path, family="mae-norm-pixel")
    assert str(e.value) == (f"{path}: its training args say norm_pix_loss=False, so its family is mae-pixel, "
                            "not mae-norm-pixel as --family says; drop that claim, or register another file.")
    assert "m" not in registry.names()


def test_without_args_an_mae_file_is_norm_pixel_with_a_note_saying_it_was_assumed(home, tmp_path):
    e = registry.register("m", save({"model": {**tiny_vit().state_dict(), **mae_decoder()}}, tmp_path / "m.pth"))
    assert e.family == "mae-norm-pixel"
    assert any("assumed" in n and "--family mae-pixel" in n for n in e.conversion_notes)


def test_an_mae_decoder_rules_out_a_supervised_family(home, tmp_path):
    path = save({"model": {**tiny_vit().state_dict(), **mae_decoder()}}, tmp_path / "m.pth")
    with pytest.raises(UsageError, match=r"it has an MAE decoder .* so its family is mae-pixel or mae-norm-pixel "
                                         r"or mae-pca or mae-token, not supervised as --family says"):
        registry.register("m", path, family="supervised")


def test_beit_training_args_mean_token_targets(home, tmp_path):
    args = argparse.Namespace(model="beit_base_patch16_224_8k_vocab", discrete_vae_type="dall-e")
    e = registry.register("b", save({"model": tiny_vit().state_dict(), "args": args}, tmp_path / "b.pth"),
                          fmt="mae")
    assert e.family == "mae-token"


def test_a_moco_v3_checkpoint_is_contrastive_whatever_is_claimed(home, tmp_path):
    sd = {f"module.base_encoder.{k}": v for k, v in tiny_vit().state_dict().items()}
    path = save({"epoch": 300, "arch": "vit_base", "state_dict": sd}, tmp_path / "moco.pth.tar")
    with pytest.raises(UsageError, match=r"it is a MoCo v3 checkpoint \(arch vit_base\), so its family is contrastive, "
                                         "not supervised as --family says"):
        registry.register("c", path, family="supervised")
    assert registry.register("c", path).family == "contrastive"


def test_format_mae_on_a_timm_file_with_a_head_is_refused_naming_both(home, tmp_path):
    state = tiny_vit(num_classes=10).state_dict()
    assert "head.weight" in state
    path = save(state, tmp_path / "timm.pth")
    with pytest.raises(UsageError) as e:
        registry.register("t", path, fmt="mae")
    assert str(e.value) == (f"{path}: --format mae contradicts the file, which reads as timm (it has a classifier "
                            "head, which MAE pretraining files do not), so it is not an encoder-only MAE checkpoint; "
                            "drop --format to read it as timm.")
    assert registry.register("t", path).format == "timm"


def test_format_timm_on_a_full_mae_file_is_refused(home, tmp_path):
    path = save({"model": {**tiny_vit().state_dict(), **mae_decoder()}}, tmp_path / "m.pth")
    with pytest.raises(UsageError, match=r"--format timm contradicts the file, which reads as mae-full \(it has an MAE "
                                         r"decoder"):
        registry.register("m", path, fmt="timm")


def test_read_errors_are_whole_sentences_that_name_the_flag(home, tmp_path):
    whole = save({"model": tiny_vit().state_dict()}, tmp_path / "whole.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(MaebenchError) as e:
        registry.register("x", cut)
    text = str(e.value)
    assert text.startswith(f"{cut}: cannot read checkpoint, truncated or corrupt (RuntimeError: ") and text.endswith(").")
    assert text[:-2].endswith(("directory", "error")) and "\n" not in text

    path = save({"model": tiny_vit().state_dict(), "opt": torch.optim.SGD([torch.zeros(1)], lr=0.1)},
                tmp_path / "pickled.pth")
    with pytest.raises(MaebenchError) as e:
        registry.register("p", path)
    assert str(e.value).endswith("if you trust its source, pass --trust-checkpoint.") and "trust=True" not in str(e.value)
