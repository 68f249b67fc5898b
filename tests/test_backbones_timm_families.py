"""Conformance of the timm-built families (DINOv2 with and without registers, CLIP, OpenCLIP,
SigLIP, EVA-02, DeiT III, BEiT v2): a tiny random model of each, saved in the key layouts its
releases use (tests/timm_releases.py), registered through the CLI with --timm, gives the source
timm model's features to 1e-5, and takes one step of every task type; a file that contradicts
--timm is one error line and registers nothing."""
import pytest
import torch

from maebench import cli
from maebench.backbones import registry
from maebench.backbones import timm_family as tf
from timm_releases import FAMILIES, TIMM_ARGS, shared_beit_tables, source_model, write

CASES = [(fam, fmt) for fam, (_, _, writers) in FAMILIES.items() for fmt in writers]


def make_release(tmp_path, family: str, fmt: str):
    name, img, writers = FAMILIES[family]
    src = source_model(name, img)
    if family == "beit2":
        shared_beit_tables(src)
    path = tmp_path / ("model.safetensors" if fmt == "timm" else f"{family}-{fmt}.pth")
    write(path, writers[fmt](src.state_dict()))
    return src, path, name, img


def register(path, name, img, backbone="b", extra=()) -> int:
    trust = ["--trust-checkpoint"] if path.name.endswith("openai-jit.pth") else []   # TorchScript runs code
    return cli.main(["backbones", "register", backbone, "--checkpoint", str(path), "--timm", name, *TIMM_ARGS,
                     "--img-size", str(img), *trust, *extra])


def documented_feature(src, family: str, x: torch.Tensor) -> torch.Tensor:
    """Each family's probe feature computed by hand on the source model."""
    tokens = src.forward_features(x)
    if family.startswith("dinov2"):
        return torch.cat([tokens[:, 0], tokens[:, src.num_prefix_tokens:].mean(1)], dim=1)
    return src.forward_head(tokens, pre_logits=True)


@pytest.mark.parametrize("family,fmt", CASES)
def test_a_release_file_registered_with_timm_gives_the_timm_models_features(family, fmt, tmp_path, capsys):
    src, path, name, img = make_release(tmp_path, family, fmt)
    assert register(path, name, img) == 0
    e = registry.entry("b")
    layout = "openai-clip" if fmt == "openai-jit" else fmt
    assert (e.model, e.timm, e.format, e.patch_size, e.img_size) == ("timm", name, layout, src.patch_embed.patch_size[0], img)
    assert e.model_family == tf.family_of_model(name) and e.family == tf.FAMILIES[e.model_family].family
    assert e.conversion.endswith("checkpoint_filter_fn") or "adapt_layer_scale=True" in e.conversion
    assert list(e.mean) == list(src.pretrained_cfg["mean"])
    model, _ = registry.load("b", img_size=img, global_pool="probe")
    x = torch.randn(2, 3, img, img, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model.eval().forward_features(x) - src.forward_features(x)).abs().max() <= 1e-5
        feat = tf.probe_features(model, x)
        assert feat.shape[1] == tf.probe_dim(model)
        assert (feat - documented_feature(src, family, x)).abs().max() <= 1e-5
    assert "registered b" in capsys.readouterr().out


def test_a_torchscript_archive_needs_trust_and_a_maebench_weights_file_registers_again(tmp_path, capsys):
    _, path, name, img = make_release(tmp_path, "clip", "openai-jit")
    rc = cli.main(["backbones", "register", "b", "--checkpoint", str(path), "--timm", name, *TIMM_ARGS])
    err = capsys.readouterr().err
    assert rc == 1 and "TorchScript archive" in err and "--trust-checkpoint" in err and "b" not in registry.names()
    assert register(path, name, img) == 0
    e = registry.entry("b")
    assert cli.main(["backbones", "register", "copy", "--checkpoint", str(e.weights)]) == 0     # no --timm needed
    c = registry.entry("copy")
    assert (c.timm, c.timm_kwargs, c.img_size, c.probe) == (e.timm, e.timm_kwargs, e.img_size, e.probe)


def test_register_tokens_are_left_out_of_dinov2s_patch_mean(tmp_path):
    src, path, name, img = make_release(tmp_path, "dinov2-reg4", "dinov2")
    assert register(path, name, img) == 0
    model, _ = registry.load("b", img_size=img, global_pool="probe")
    assert model.num_prefix_tokens == 5 and model.probe_feature == "cls+avg"
    x = torch.randn(1, 3, img, img)
    with torch.no_grad():
        tokens = model.forward_features(x)
        patches_only = tokens[:, 5:].mean(1)
        assert torch.allclose(tf.probe_features(model, x)[:, 32:], patches_only)
        assert not torch.allclose(patches_only, tokens[:, 1:].mean(1))


def test_a_recognised_release_registers_without_timm_naming_its_model(tmp_path, capsys):
    name, img = "vit_small_patch14_reg4_dinov2", 56
    import timm
    big = timm.create_model(name, pretrained=False, img_size=img)       # ViT-S/14 dims: a release size
    from timm_releases import dinov2_original
    path = tmp_path / "dinov2_vits14_reg4_pretrain.pth"
    torch.save(dinov2_original(big.state_dict()), path)
    assert cli.main(["backbones", "register", "d", "--checkpoint", str(path), "--img-size", "56"]) == 0
    assert registry.entry("d").timm == name
    assert f"timm {name}" in capsys.readouterr().out


@pytest.mark.parametrize("family,fmt,timm_name,args,found", [
    ("dinov2", "dinov2", "eva02_base_patch14_224", TIMM_ARGS, "reads as DINOv2"),          # wrong family
    ("clip", "openai-clip", "vit_base_patch16_clip_224.openai", [], "found CLIP (OpenAI) width 32, depth 4"),
    ("deit3", "deit3", "deit3_base_patch16_224", [*TIMM_ARGS, "--timm-arg", "depth=6"], "missing blocks.4"),
])
def test_a_checkpoint_contradicting_timm_is_one_error_line_and_nothing_is_registered(
        family, fmt, timm_name, args, found, tmp_path, capsys):
    _, path, _, img = make_release(tmp_path, family, fmt)
    rc = cli.main(["backbones", "register", "b", "--checkpoint", str(path), "--timm", timm_name, *args,
                   "--img-size", str(img)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and found in err and "nothing registered" in err
    assert "b" not in registry.names()


def test_a_catalogue_name_keeps_its_timm_model(tmp_path, capsys):
    _, path, name, img = make_release(tmp_path, "dinov2", "dinov2")
    assert cli.main(["backbones", "register", "dinov2-vit-b14", "--checkpoint", str(path), "--timm", name]) == 2
    assert "catalogued as vit_base_patch14_dinov2, not timm vit_small_patch14_dinov2" in capsys.readouterr().err


def test_backbones_show_and_list_name_the_family_probe_and_conversion(tmp_path, capsys):
    _, path, name, img = make_release(tmp_path, "siglip", "openclip-timm")
    assert register(path, name, img, extra=["--mean", "0.4,0.5,0.6"]) == 0       # flags override timm's config
    assert registry.entry("b").mean == (0.4, 0.5, 0.6) and registry.entry("b").std == (0.5, 0.5, 0.5)
    capsys.readouterr()
    assert cli.main(["backbones", "show", "b"]) == 0
    out = capsys.readouterr().out
    assert "image-text (SigLIP)" in out and "probe feature:  map" in out
    assert "timm.models.vision_transformer.checkpoint_filter_fn" in out
    assert cli.main(["backbones", "list"]) == 0
    listing = capsys.readouterr().out
    assert "dinov2-vit-s14-reg4" in listing and "self-distillation (DINOv2)" in listing


def test_visualize_refuses_a_non_mae_family_in_one_line(tmp_path, capsys):
    _, path, name, img = make_release(tmp_path, "eva02", "eva02")
    assert register(path, name, img) == 0
    (tmp_path / "imgs").mkdir()
    assert cli.main(["visualize", "--backbone", "b", "--images", str(tmp_path / "imgs")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a masked autoencoder" in err


def test_a_deit3_release_read_by_todays_format_names_the_timm_model_it_could_use():
    from maebench.backbones.timm_register import suggestion
    fake = {"patch_embed.proj.weight": torch.zeros(768, 3, 16, 16), "pos_embed": torch.zeros(1, 196, 768),
            **{f"blocks.{i}.gamma_1": torch.zeros(768) for i in range(12)}}
    (note,) = suggestion({"model": fake}, "deit_3_base_224_1k.pth")
    assert "DeiT III" in note and "--timm deit3_base_patch16_224" in note
    assert suggestion({"model": {"patch_embed.proj.weight": torch.zeros(96, 3, 4, 4)}}, "micro.pth") == []


def test_patch_size_flag_resamples_a_patch_14_release_to_16_through_timms_filter(tmp_path):
    _, path, name, _ = make_release(tmp_path, "eva02", "eva02")
    assert register(path, name, 64, extra=["--patch-size", "16"]) == 0
    e = registry.entry("b")
    assert (e.patch_size, e.img_size) == (16, 64) and "16" in str(e.timm_kwargs["patch_size"])
    model, _ = registry.load("b", img_size=64, global_pool="probe")
    assert model.patch_embed.proj.weight.shape[-1] == 16
    assert tf.probe_features(model, torch.randn(1, 3, 64, 64)).shape == (1, 32)


@pytest.mark.parametrize("family", ["dinov2-reg4", "deit3"])
def test_a_timm_family_at_another_size_gets_timms_antialiased_resampling(family, tmp_path):
    """maebench.backbones.pos_embed resizes timm families' pos_embed as timm's own filter would
    (resample_abs_pos_embed, antialiased), shrinking and growing; [cls]/register rows as timm counts them."""
    from timm.layers import resample_abs_pos_embed
    src, path, name, img = make_release(tmp_path, family, "dinov2" if family.startswith("dinov2") else family)
    assert register(path, name, img) == 0
    stored = registry.load("b", img_size=img)[0].pos_embed.detach()
    patch = src.patch_embed.patch_size[0]
    for side in (img - 2 * patch, img + 2 * patch):
        model, _ = registry.load("b", img_size=side)
        prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
        want = resample_abs_pos_embed(stored, [side // patch] * 2, num_prefix_tokens=prefix, antialias=True)
        assert torch.equal(model.pos_embed.detach(), want)
