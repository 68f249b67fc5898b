"""The ADE20K model: zero-init relative position bias, the neck's strides, layer decay of the new
tables, and a tiny model that overfits a few images through engine.fit."""
import numpy as np
import torch
from loop_config import loop_cfg

from maebench.backbones.vit import create_vit
from maebench import engine, optim
from maebench.data.shapes_ade20k import render
from maebench.tasks.ade20k.evaluate import evaluate
from maebench.tasks.ade20k.model import UperNetSegmentor, segmentation_loss
from maebench.tasks.pyramid import FeaturePyramid, tap_indices
from maebench.tasks.ade20k.relpos import RelPosAttention, enable_relative_position_bias, relative_position_index




def micro_vit(img_size=32, patch_size=4, **kw):
    torch.manual_seed(0)
    vit = create_vit("vit-micro", img_size=img_size, patch_size=patch_size, dynamic_img_size=True, **kw)
    return vit.eval()


def test_zero_initialised_relative_position_bias_leaves_the_backbone_output_unchanged():
    vit = micro_vit()
    x = torch.randn(2, 3, 32, 32)
    before = vit.forward_intermediates(x, intermediates_only=True)
    attns = enable_relative_position_bias(vit, window=(8, 8))
    assert all(isinstance(a, RelPosAttention) for a in attns)
    assert all(not a.relative_position_bias_table.detach().any() for a in attns)
    after = vit.forward_intermediates(x, intermediates_only=True)
    for b, a in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with torch.no_grad():                       # ... and the bias does reach the logits once learned
        attns[0].relative_position_bias_table.normal_(std=1.0)
    assert not torch.allclose(vit.forward_intermediates(x, intermediates_only=True)[0], after[0], atol=1e-3)


def test_checkpoint_keys_are_kept_and_the_tables_decay_with_their_block():
    vit = micro_vit()
    keys = set(vit.state_dict())
    model = UperNetSegmentor(vit, num_classes=3, window=(8, 8), channels=16, aux_channels=8)
    vit_keys = {k[len("backbone.vit."):] for k in model.state_dict() if k.startswith("backbone.vit.")}
    assert keys - {"norm.weight", "norm.bias"} <= vit_keys            # final norm pruned: unused by the neck
    groups = optim.param_groups(model, weight_decay=0.05, layer_decay=0.5, num_layers=4, vit_prefix="backbone.vit.")
    by_name = {n: g for g in groups for n in g["names"]}
    table = by_name["backbone.vit.blocks.1.attn.relative_position_bias_table"]
    assert table["lr_scale"] == 0.5 ** (4 + 1 - 2) and table["weight_decay"] == 0.0
    assert by_name["decode_head.classifier.1.weight"]["lr_scale"] == 1.0


def test_relative_position_index_layout():
    idx = relative_position_index((2, 3))
    n_grid = 3 * 5
    assert idx.shape == (7, 7)
    assert idx[0, 1:].eq(n_grid).all() and idx[1:, 0].eq(n_grid + 1).all() and idx[0, 0] == n_grid + 2
    assert idx[1:, 1:].diagonal().eq(1 * 5 + 2).all()     # offset (0, 0) for every patch
    assert len(idx[1:, 1:].unique()) == n_grid            # every (dy, dx) in the 2x3 grid occurs


def test_neck_gives_strides_4_to_32_for_patch_16_and_nearest_powers_for_others():
    assert tap_indices(12) == [2, 5, 8, 11] and tap_indices(4) == [0, 1, 2, 3]
    neck = FeaturePyramid(96, 16, norm="batch")
    assert neck.strides == [4, 8, 16, 32]
    outs = neck([torch.randn(1, 96, 8, 8)] * 4)
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4]
    assert FeaturePyramid(8, 14, norm="batch").factors == [4, 2, 1, 0.5]
    assert FeaturePyramid(8, 4, norm="batch").factors == [1, 0.5, 0.25, 0.125]


def test_model_predicts_at_any_size_with_the_table_resized():
    model = UperNetSegmentor(micro_vit(), num_classes=5, window=(8, 8), channels=16, aux_channels=8).eval()
    logits, aux = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 5, 8, 8) and aux is None
    assert model.predict(torch.randn(1, 3, 30, 45)).shape == (1, 5, 30, 45)   # padded to 32x48, grid 8x12


def _tiny_set(n=4, size=32):
    """n generated (image, label) pairs at `size` px, normalised like the task does."""
    out = []
    for i in range(n):
        img, raw = render(0, "train", i, size)
        x = (torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1) / 255 - 0.5) / 0.25
        y = torch.from_numpy(np.where(raw == 0, 255, raw.astype(np.int64) - 1))
        out.append((x, y))
    return out


def test_a_tiny_model_overfits_a_few_images(tmp_path):
    data = _tiny_set()
    model = UperNetSegmentor(micro_vit(), num_classes=8, window=(8, 8), channels=64, aux_channels=16, dropout=0.0)

    def score(m):
        return evaluate(m, data, num_classes=8, ignore_index=255, device=torch.device("cpu"), mode="whole")

    before = score(model)["mIoU"]

    def loss_fn(m, batch, device):
        logits, aux = m(batch[0])
        return segmentation_loss(logits, aux, batch[1], ignore_index=255)

    # one batch of the same 4 images per epoch; a constant high lr memorises them fastest
    cfg = loop_cfg(epochs=80, batch_size=4, lr=1e-2, warmup_epochs=0, schedule="constant",
                   num_workers=0, checkpoint_every=1000, log_every=1000, amp=False)
    groups = optim.param_groups(model, weight_decay=0.0)
    result = engine.fit(model, data, loss_fn, cfg, out_dir=tmp_path, device=torch.device("cpu"),
                        param_groups=groups, evaluate=score, log=lambda *_: None)
    after = result.metrics["mIoU"]
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]
    assert before < 10 and after > before + 30, (before, after)   # measured: 2.1 -> 50.5
