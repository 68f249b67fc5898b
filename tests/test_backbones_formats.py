"""Each published checkpoint layout registers and yields the encoder outputs of the model it was built from."""
from __future__ import annotations

import pytest
import torch
from test_backbones_support import ARCH, DEPTH, DIM, HEADS, IMG, PATCH, features, home, images, mae_decoder, save, tiny_vit  # noqa: F401

from maebench.backbones import registry


def _register_and_compare(home, tmp_path, ckpt, source_model, *, expect_format, name="b", **kw):
    path = save(ckpt, tmp_path / f"{name}.pth")
    e = registry.register(name, path, **kw)
    assert e.format == expect_format
    model, e2 = registry.load(name)
    assert e2 == e
    torch.testing.assert_close(features(model, images()), features(source_model, images()))
    return e, model


def test_mae_encoder_only(home, tmp_path):
    src = tiny_vit()
    e, _ = _register_and_compare(home, tmp_path, {"model": src.state_dict()}, src, expect_format="mae")
    assert (e.arch, e.patch_size, e.img_size, e.family, e.has_decoder) == (ARCH, PATCH, IMG, "mae-norm-pixel", False)
    assert any("encoder-only" in n for n in e.conversion_notes)
    with pytest.raises(Exception, match="no MAE decoder"):
        registry.load_mae_state("b")


def test_mae_full_keeps_decoder(home, tmp_path):
    src, dec = tiny_vit(), mae_decoder()
    ckpt = {"model": {**src.state_dict(), **dec}, "epoch": 799}
    e, _ = _register_and_compare(home, tmp_path, ckpt, src, expect_format="mae-full")
    assert e.has_decoder
    full = registry.load_mae_state("b")
    for k, v in {**src.state_dict(), **dec}.items():
        torch.testing.assert_close(full[k], v, rtol=0, atol=0, msg=k)


def test_mae_format_forced_drops_decoder(home, tmp_path):
    src = tiny_vit()
    ckpt = {"model": {**src.state_dict(), **mae_decoder()}}
    e, _ = _register_and_compare(home, tmp_path, ckpt, src, expect_format="mae", fmt="mae")
    assert not e.has_decoder and any("mae-full" in n for n in e.conversion_notes)


def test_mocov3_base_encoder_only(home, tmp_path):
    src, twin = tiny_vit(seed=0), tiny_vit(seed=5)
    sd = {f"module.base_encoder.{k}": v for k, v in src.state_dict().items()}
    sd.update({f"module.momentum_encoder.{k}": v for k, v in twin.state_dict().items()})
    for enc in ("base_encoder", "momentum_encoder"):  # 3-layer projection MLP replacing the head
        sd.update({f"module.{enc}.head.0.weight": torch.randn(64, DIM), f"module.{enc}.head.1.weight": torch.ones(64),
                   f"module.{enc}.head.1.running_mean": torch.zeros(64),
                   f"module.{enc}.head.1.num_batches_tracked": torch.tensor(7),
                   f"module.{enc}.head.6.weight": torch.randn(32, 64)})
    sd.update({"module.predictor.0.weight": torch.randn(64, 32), "module.predictor.3.weight": torch.randn(32, 64)})
    ckpt = {"epoch": 300, "arch": "vit_base", "state_dict": sd,
            "optimizer": {"state": {}, "param_groups": [{"lr": 1.5e-4, "params": [0, 1]}]}, "scaler": {"scale": 65536.0}}
    e, _ = _register_and_compare(home, tmp_path, ckpt, src, expect_format="mocov3")
    assert e.family == "contrastive"
    note = " ".join(e.conversion_notes)
    assert "momentum encoder" in note and "projection head" in note and "predictor" in note


def _beit_layout(model) -> dict:
    """The published layout: persistent relative_position_index buffers, mask token, lm_head."""
    sd = dict(model.state_dict())
    for name, mod in model.named_modules():
        if getattr(mod, "relative_position_index", None) is not None:
            sd[f"{name}.relative_position_index"] = mod.relative_position_index
    sd["mask_token"] = torch.randn(1, 1, DIM)
    sd["lm_head.weight"], sd["lm_head.bias"] = torch.randn(100, DIM), torch.zeros(100)
    return sd


def test_beit_pretrain_shared_rel_pos_bias(home, tmp_path):
    from functools import partial
    from timm.models.beit import Beit
    torch.manual_seed(0)
    src = Beit(img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, qkv_bias=True,
               norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), init_values=0.1, use_abs_pos_emb=False,
               use_shared_rel_pos_bias=True, num_classes=0, global_pool="token").eval()  # pretraining model
    _randomise_beit(src)
    sd = _beit_layout(src)
    assert "rel_pos_bias.relative_position_bias_table" in sd and "blocks.0.attn.q_bias" in sd
    e, model = _register_and_compare(home, tmp_path, {"model": sd}, src, expect_format="beit")
    assert e.model == "beit" and e.family == "mae-token" and e.mean == (0.5, 0.5, 0.5)
    assert type(model).__name__ == "Beit" and model.pos_embed is None
    assert any("shared relative position bias" in n for n in e.conversion_notes)
    bigger, _ = registry.load("b", img_size=IMG + 2 * PATCH)  # tables resized to the 6x6 window
    table = bigger.blocks[0].attn.relative_position_bias_table
    assert table.shape == ((2 * 6 - 1) ** 2 + 3, HEADS)
    assert torch.equal(table[-3:], sd["rel_pos_bias.relative_position_bias_table"][-3:])  # [cls] entries kept
    assert features(bigger, images(size=IMG + 2 * PATCH)).shape == (2, 1 + 36, DIM)


def test_beit_finetuned_per_block_tables_and_head(home, tmp_path):
    from functools import partial
    from timm.models.beit import Beit
    torch.manual_seed(0)
    src = Beit(img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, qkv_bias=True, num_classes=10,
               norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), init_values=0.1, use_abs_pos_emb=True,
               use_rel_pos_bias=True, global_pool="avg").eval()
    _randomise_beit(src)
    path = save({"model": _beit_layout(src)}, tmp_path / "ft.pth")
    registry.register("ft", path)
    model, _ = registry.load("ft", num_classes=10, global_pool="avg")
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images()), src(images()))


def test_beit_without_rel_pos_becomes_plain_vit(home, tmp_path):
    """q_bias/v_bias -> qkv.bias = cat(q, 0, v); gamma_i -> ls{i}.gamma."""
    from functools import partial
    from timm.models.beit import Beit
    torch.manual_seed(0)
    src = Beit(img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, qkv_bias=True,
               norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), init_values=0.1, use_abs_pos_emb=True,
               num_classes=0, global_pool="token").eval()
    _randomise_beit(src)
    e, model = _register_and_compare(home, tmp_path, {"model": _beit_layout(src)}, src, expect_format="beit")
    assert e.model == "vit" and type(model).__name__ == "VisionTransformer"
    assert model.blocks[0].attn.qkv.bias[DIM:2 * DIM].abs().max() == 0


def _randomise_beit(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_bias", "v_bias", "relative_position_bias_table", "gamma_1", "gamma_2")):
                p.copy_(0.2 * torch.randn_like(p))


@pytest.mark.parametrize("prefix", ["", "module.", "backbone.", "encoder."])
def test_timm_flat_with_head_and_prefixes(home, tmp_path, prefix):
    src = tiny_vit(num_classes=10)
    sd = {prefix + k: v for k, v in src.state_dict().items()}
    e, _ = _register_and_compare(home, tmp_path, sd, src, expect_format="timm")
    assert e.family == "supervised"
    model, _ = registry.load("b", num_classes=10)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images()), src(images()))  # head kept
    fresh, _ = registry.load("b", num_classes=7)  # another class count: new head, same encoder
    assert fresh.head.weight.shape == (7, DIM)


def test_safetensors_file(home, tmp_path):
    from safetensors.torch import save_file
    src = tiny_vit()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    e = registry.register("st", path)
    assert e.format == "timm"
    model, _ = registry.load("st")
    torch.testing.assert_close(features(model, images()), features(src, images()))


def test_deit_wrapped_with_head(home, tmp_path):
    src = tiny_vit(num_classes=10)
    e, _ = _register_and_compare(home, tmp_path, {"model": src.state_dict()}, src, expect_format="deit")
    assert any("head kept (10 classes)" in n for n in e.conversion_notes)


def test_deit_distilled_drops_dist_token(home, tmp_path):
    src = tiny_vit(num_classes=10)
    sd = dict(src.state_dict())
    cls_pos, grid_pos = sd["pos_embed"][:, :1], sd["pos_embed"][:, 1:]
    sd["pos_embed"] = torch.cat([cls_pos, torch.randn(1, 1, DIM), grid_pos], dim=1)  # [cls, dist, patches]
    sd["dist_token"] = torch.randn(1, 1, DIM)
    sd["head_dist.weight"], sd["head_dist.bias"] = torch.randn(10, DIM), torch.zeros(10)
    e, _ = _register_and_compare(home, tmp_path, {"model": sd}, src, expect_format="deit")
    assert any("distillation token" in n for n in e.conversion_notes)


def test_deit3_layer_scale_and_no_class_position(home, tmp_path):
    src = tiny_vit(init_values=1e-6, no_embed_class=True)
    sd = {k.replace("ls1.gamma", "gamma_1").replace("ls2.gamma", "gamma_2"): v for k, v in src.state_dict().items()}
    assert sd["pos_embed"].shape[1] == (IMG // PATCH) ** 2 and "blocks.0.gamma_1" in sd
    e, _ = _register_and_compare(home, tmp_path, {"model": sd}, src, expect_format="deit")
    assert e.vit_kwargs == {"init_values": 1e-6, "no_embed_class": True}


@pytest.mark.parametrize("layout", ["mae-full", "flat"])
def test_maebench_metadata_registers_without_arch(home, tmp_path, layout):
    src = tiny_vit()
    meta = {"arch": ARCH, "patch_size": PATCH, "img_size": IMG, "family": "mae-pixel", "paper": ["pixel/vit-b"]}
    if layout == "mae-full":
        ckpt = {"model": {**src.state_dict(), **mae_decoder()}, "maebench": meta}
    else:
        ckpt = {**src.state_dict(), "maebench": meta}
    e, _ = _register_and_compare(home, tmp_path, ckpt, src, expect_format="maebench")
    assert e.family == "mae-pixel" and e.has_decoder == (layout == "mae-full") and e.paper == ["pixel/vit-b"]


def test_canonical_file_reregisters_elsewhere(home, tmp_path):
    """A maebench weights file is itself a maebench checkpoint (decoder and options kept)."""
    src = tiny_vit()
    registry.register("a", save({"model": {**src.state_dict(), **mae_decoder()}}, tmp_path / "a.pth"))
    e = registry.register("copy", registry.entry("a").weights)
    assert e.format == "maebench" and e.has_decoder and e.arch == ARCH
    torch.testing.assert_close(registry.load_mae_state("copy")["decoder_pred.weight"], mae_decoder()["decoder_pred.weight"])


def test_explicit_format_that_does_not_fit_is_refused(home, tmp_path):
    path = save({"model": tiny_vit().state_dict()}, tmp_path / "m.pth")
    for fmt, words in [("mocov3", "not a MoCo v3"), ("beit", "not a BEiT"), ("mae-full", "no MAE decoder")]:
        with pytest.raises(Exception, match=words):
            registry.register("x", path, fmt=fmt)
