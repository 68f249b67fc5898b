"""ViT -> FPN adapters: strides 4/8/16/32 (+ P6) and FPN channels for several image sizes and
patch sizes, the block groups of vit-fpn, padding to the canvas, and layer-wise lr decay
reaching the ViT but not the neck or the heads."""
import pytest
import torch

from maebench.backbones.vit import create_vit
from maebench.errors import MaebenchError
from maebench.tasks.coco.adapter import ViTDetBackbone
from maebench.tasks.pyramid import FeaturePyramid

SIZES = [(64, 64), (96, 96), (128, 128), (64, 96), (96, 32)]




def backbone(neck, patch=4, canvas=128, fpn_channels=32):
    torch.manual_seed(0)
    vit = create_vit("vit-micro", img_size=canvas, patch_size=patch)
    return ViTDetBackbone(vit, neck=neck, canvas=canvas, fpn_channels=fpn_channels).eval()


@pytest.mark.parametrize("patch, canvas, sizes", [(16, 128, SIZES), (8, 128, SIZES), (4, 64, [(64, 64), (32, 64)])])
@pytest.mark.parametrize("neck", ["vit-fpn", "simple-pyramid"])
def test_maps_have_strides_4_to_64_and_fpn_channels(neck, patch, canvas, sizes):
    bb = backbone(neck, patch, canvas)
    with torch.no_grad():
        for h, w in sizes:
            out = bb(torch.randn(2, 3, h, w))
            assert list(out) == ["0", "1", "2", "3", "pool"]
            for (name, m), stride in zip(out.items(), (4, 8, 16, 32, 64)):
                assert m.shape == (2, 32, -(-h // stride), -(-w // stride)), (neck, patch, h, w, name)


def test_neck_resampling_follows_the_official_layout():
    """p = 16: vit-fpn = 2 deconvs | 1 deconv | identity | max-pool, widths kept (MAE/BEiT);
    simple-pyramid halves the width per 2x upsampling (ViTDet)."""
    fpn = FeaturePyramid(96, 16, taps="groups", norm="layer")
    kinds = [[type(m).__name__ for m in (lvl if isinstance(lvl, torch.nn.Sequential) else [lvl])] for lvl in fpn.levels]
    assert kinds == [["ConvTranspose2d", "LayerNorm2d", "GELU", "ConvTranspose2d"], ["ConvTranspose2d"],
                     ["Identity"], ["MaxPool2d"]]
    assert fpn.out_channels == [96, 96, 96, 96]
    assert FeaturePyramid(96, 16, taps="last", norm="layer").out_channels == [24, 48, 96, 96]
    # patch 4 (vit-micro): the ViT already has stride 4, so only identity and max-pooling remain
    assert [type(m).__name__ for m in FeaturePyramid(96, 4, taps="groups").levels] == ["Identity", "MaxPool2d", "MaxPool2d", "MaxPool2d"]


def test_the_necks_tap_the_blocks_of_the_shared_rule():
    vit = create_vit("vit-micro", img_size=64, patch_size=4)
    depth = len(vit.blocks)
    assert ViTDetBackbone(vit, neck="vit-fpn", canvas=64).indices == [depth // 4 * (i + 1) - 1 for i in range(4)]
    vit = create_vit("vit-micro", img_size=64, patch_size=4)
    assert ViTDetBackbone(vit, neck="simple-pyramid", canvas=64).indices == [depth - 1]


def test_group_maps_are_the_block_outputs():
    """Map i of vit-fpn is exactly block i's output (no final norm), reshaped to the grid."""
    bb = backbone("vit-fpn", patch=4, canvas=64)
    x = torch.randn(1, 3, 64, 64)
    vit = bb.vit
    with torch.no_grad():
        maps = bb.vit_maps(x)
        t = vit.patch_embed(x)
        t = vit._pos_embed(t)
        for i, blk in enumerate(vit.blocks):
            t = blk(t)
            want = t[:, vit.num_prefix_tokens:].reshape(1, 16, 16, -1).permute(0, 3, 1, 2)
            torch.testing.assert_close(maps[i], want)


def test_smaller_inputs_are_padded_to_the_canvas_and_cropped_back():
    """A 64 x 96 image on a 128 canvas gives the same maps as the image zero-padded to 128 x 128
    by hand, cropped to the image's extent."""
    bb = backbone("simple-pyramid", patch=8, canvas=128)
    x = torch.randn(1, 3, 64, 96)
    padded = torch.zeros(1, 3, 128, 128)
    padded[..., :64, :96] = x
    with torch.no_grad():
        small, full = bb.vit_maps(x)[0], bb.vit_maps(padded)[0]
    torch.testing.assert_close(small, full[..., :8, :12])
    with pytest.raises(MaebenchError, match="larger than the 128 px"):
        bb.vit_maps(torch.randn(1, 3, 160, 64))


def test_patch_14_maps_are_resized_to_the_stride_16_grid_so_levels_sit_at_4_to_32():
    vit = create_vit("vit-micro", img_size=224, patch_size=14)
    bb = ViTDetBackbone(vit, neck="simple-pyramid", canvas=224).eval()
    x = torch.randn(1, 3, 224, 160)
    with torch.no_grad():
        maps = bb.vit_maps(x)
        levels = bb.neck(maps)
    assert maps[0].shape[-2:] == (14, 10)                      # 224 / 16, 160 / 16
    assert [tuple(m.shape[-2:]) for m in levels] == [(56, 40), (28, 20), (14, 10), (7, 5)]


def test_bad_patch_or_canvas_is_a_clear_error():
    with pytest.raises(MaebenchError, match="patch size from 1 to 64"):
        ViTDetBackbone(create_vit("vit-micro", img_size=256, patch_size=128), neck="vit-fpn", canvas=256)
    with pytest.raises(MaebenchError, match="multiple of 32 and of the patch size 14"):
        ViTDetBackbone(create_vit("vit-micro", img_size=112, patch_size=14), neck="vit-fpn", canvas=128)
    vit = create_vit("vit-micro", img_size=128, patch_size=4)
    with pytest.raises(MaebenchError, match="img_size=96"):
        ViTDetBackbone(vit, neck="vit-fpn", canvas=96)
    with pytest.raises(MaebenchError, match="multiple of 32"):
        ViTDetBackbone(create_vit("vit-micro", img_size=100, patch_size=4), neck="vit-fpn", canvas=100)


def test_layer_decay_scales_the_vit_only():
    from maebench import config
    from maebench.optim import param_groups
    from maebench.tasks.coco import check_config
    from maebench.tasks.coco.model import build_mask_rcnn

    cfg = check_config(config.load("coco", arch="vit-micro", sets=["img_size=64"]))
    vit = create_vit("vit-micro", img_size=64, patch_size=4)
    model = build_mask_rcnn(vit, num_classes=3, mean=(0.5,) * 3, std=(0.5,) * 3, cfg=cfg)
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.5, num_layers=4, vit_prefix="backbone.vit.")
    scale = {n: g["lr_scale"] for g in groups for n in g["names"]}
    assert scale["backbone.vit.patch_embed.proj.weight"] == 0.5 ** 5
    assert scale["backbone.vit.blocks.0.attn.qkv.weight"] == 0.5 ** 4
    assert scale["backbone.vit.blocks.3.mlp.fc2.weight"] == 0.5
    heads = [n for n in scale if not n.startswith("backbone.vit.")]
    assert any(n.startswith("backbone.fpn.") for n in heads) and any(n.startswith("roi_heads.mask") for n in heads)
    assert all(scale[n] == 1.0 for n in heads)
    # the unused final norm and head are gone, so every parameter takes part in the loss (DDP)
    assert not any(n.startswith(("backbone.vit.norm.", "backbone.vit.head.")) for n in scale)


def test_tap_norm_hands_the_neck_maps_of_one_scale():
    """With tap_norm each tapped map is LayerNormed over its channels first: the pyramid's output
    no longer depends on a tap's per-position scale and offset (a pretrained residual stream's),
    while without it the output follows them."""
    torch.manual_seed(0)
    maps = [torch.randn(2, 8, 16, 16) for _ in range(4)]
    scale = torch.rand(2, 1, 16, 16) * 9 + 1
    offset = torch.randn(2, 1, 16, 16) * 5
    moved = [m * scale + offset for m in maps]
    normed = FeaturePyramid(8, 4, taps="groups", tap_norm=True)
    for a, b in zip(normed(maps), normed(moved)):
        assert torch.allclose(a, b, atol=1e-4)
    last = FeaturePyramid(8, 4, taps="last", tap_norm=True)
    for a, b in zip(last(maps[-1:]), last(moved[-1:])):
        assert torch.allclose(a, b, atol=1e-4)
    raw = FeaturePyramid(8, 4, taps="groups")
    assert not torch.allclose(raw(maps)[0], raw(moved)[0], atol=1e-2)


def test_tap_norm_reaches_the_detector_from_the_protocol():
    """coco.yaml: raw taps in the paper protocol (the MAE/BEiT transfer code), normed taps in
    the vit-micro entry; `--set tap_norm=...` switches it."""
    from maebench import config
    from maebench.tasks.coco import check_config
    from maebench.tasks.coco.model import build_mask_rcnn

    def neck(arch, sets=()):
        cfg = check_config(config.load("coco", arch=arch, sets=["img_size=64", *sets]))
        vit = create_vit("vit-micro", img_size=64, patch_size=4)
        return build_mask_rcnn(vit, num_classes=3, mean=(0.5,) * 3, std=(0.5,) * 3, cfg=cfg).backbone.neck

    assert neck("vit-micro").tap_norms is not None
    assert neck("vit-micro", ["tap_norm=false"]).tap_norms is None
    assert neck("vit-base").tap_norms is None
