"""`--neck vitdet` is ViTDet as published (detectron2 projects/ViTDet, mask_rcnn_vitdet_b): the
parameter count of every module equals detectron2's, windows are cut as a hand computation says,
the relative position bias is the decomposed one, layer decay groups blocks as
get_vit_lr_decay_rate does, and `maebench run --task coco --neck vitdet` completes on the
generated set."""
from functools import partial

import pytest
import torch

from maebench.cli import main
from maebench.results import ResultsStore
from maebench.tasks.coco.vitdet import (ViTDet, ViTDetEncoder, WindowAttention, global_blocks, load_rel_pos,
                                        rel_pos_lookup, window_partition, window_unpartition)

# Counted by hand from detectron2 @ 02b5c4e (configs/common/models/mask_rcnn_vitdet.py on top of
# mask_rcnn_fpn.py; modeling/backbone/vit.py ViT + SimpleFeaturePyramid; rpn.py StandardRPNHead;
# roi_heads/box_head.py FastRCNNConvFCHead; roi_heads/fast_rcnn.py FastRCNNOutputLayers;
# roi_heads/mask_head.py MaskRCNNConvUpsampleHead), 80 COCO classes, 1024 px, ViT-B/16:
DETECTRON2_VITDET_B = {
    # patch_embed 3*16*16*768+768 = 590,592; pos_embed (14*14+1)*768 = 151,296 (pretrain_img_size
    # 224, [cls] row kept); 12 blocks x 7,087,872 (2 LN 3,072, qkv 1,771,776, proj 590,592, fc1
    # 2,362,368, fc2 2,360,064); rel_pos_h + rel_pos_w: 8 window blocks x 2*27*64 = 27,648,
    # 4 global blocks x 2*127*64 = 65,024 (input_size 1024/16 = 64)
    "backbone": 85_889_024,
    # simfp_2: deconv 768->384 (1,180,032) + LN 768 + deconv 384->192 (295,104); simfp_3: deconv
    # 768->384 (1,180,032); simfp_4: -; simfp_5: max-pool; each level: 1x1 conv (bias=False)
    # in*256 + LN 512 + 3x3 conv 589,824 + LN 512, in = 192, 384, 768, 768 (540,672 + 4 x 590,848)
    "pyramid": 5_560_000,
    # conv_dims [-1, -1]: 2 x (3x3 conv 256->256 with bias) 1,180,160; objectness 256*3+3 = 771;
    # anchor deltas 256*12+12 = 3,084
    "rpn": 1_184_015,
    # conv_dims [256]*4 with LN (bias=False): 4 x 590,336; fc_dims [1024]: 12,544*1024+1024
    "box_head": 15_207_424,
    # conv_dims [256]*5 with LN: 4 convs 4 x 590,336 + deconv 256*256*4+256 = 262,400
    "mask_head": 2_623_744,
    # cls_score 1024*81+81 = 83,025; bbox_pred 1024*320+320 = 328,000 (class-specific, no background)
    "box_predictor": 411_025,
    # predictor 1x1 conv 256*80+80
    "mask_predictor": 20_560,
}


def count(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.fixture(scope="module")
def vitdet_b():
    """maebench's Mask R-CNN with --neck vitdet on ViT-B/16 at 1024 px, 80 classes, built on the
    meta device (shapes only, no memory or init time)."""
    from maebench import config
    from maebench.backbones.vit import create_vit
    from maebench.tasks.coco import check_config
    from maebench.tasks.coco.model import build_mask_rcnn

    cfg = check_config(config.load("coco", arch="vit-base", flags={"neck": "vitdet"}))
    with torch.device("meta"):
        vit = create_vit("vit-base", img_size=224, drop_path_rate=0.1)
        return build_mask_rcnn(vit, num_classes=80, mean=(0.5,) * 3, std=(0.5,) * 3, cfg=cfg)


def test_vitdet_b_has_detectron2s_parameter_count_per_module(vitdet_b):
    rh = vitdet_b.roi_heads
    assert count(vitdet_b.backbone.vit) == DETECTRON2_VITDET_B["backbone"]
    assert count(vitdet_b.backbone.neck) == DETECTRON2_VITDET_B["pyramid"]
    assert count(vitdet_b.rpn.head) == DETECTRON2_VITDET_B["rpn"]
    assert count(rh.box_head) == DETECTRON2_VITDET_B["box_head"]
    # torchvision's MaskRCNNPredictor holds the deconvolution detectron2 counts in the mask head
    assert count(rh.mask_head, rh.mask_predictor.conv5_mask) == DETECTRON2_VITDET_B["mask_head"]
    # torchvision predicts a background row too: 4 more box outputs and 1 more mask channel
    assert count(rh.box_predictor) == DETECTRON2_VITDET_B["box_predictor"] + 1024 * 4 + 4
    assert count(rh.mask_predictor.mask_fcn_logits) == DETECTRON2_VITDET_B["mask_predictor"] + 256 + 1


def test_vitdet_b_windows_global_blocks_and_relative_tables(vitdet_b):
    enc = vitdet_b.backbone.vit
    assert [i for i, b in enumerate(enc.blocks) if b.window == 0] == [2, 5, 8, 11]
    assert {b.window for i, b in enumerate(enc.blocks) if i not in (2, 5, 8, 11)} == {14}
    for i, b in enumerate(enc.blocks):
        n = 127 if i in (2, 5, 8, 11) else 27
        assert b.attn.rel_pos_h.shape == b.attn.rel_pos_w.shape == (n, 64)
    assert enc.pos_embed.shape == (1, 197, 768)
    assert global_blocks(24) == [5, 11, 17, 23] and global_blocks(32) == [7, 15, 23, 31]


def test_layer_decay_groups_match_detectron2s_get_vit_lr_decay_rate(vitdet_b):
    from maebench import optim

    def detectron2_rate(name, rate=0.7, n=12):   # projects/ViTDet: get_vit_lr_decay_rate, re-typed
        layer = n + 1
        if name.startswith("backbone"):
            if ".pos_embed" in name or ".patch_embed" in name:
                layer = 0
            elif ".blocks." in name:
                layer = int(name[name.find(".blocks."):].split(".")[2]) + 1
        return rate ** (n + 1 - layer)

    for g in optim.param_groups(vitdet_b, weight_decay=0.1, layer_decay=0.7, num_layers=12, vit_prefix="backbone.vit."):
        for name in g["names"]:
            assert g["lr_scale"] == pytest.approx(detectron2_rate(name)), name


def test_window_partition_matches_a_hand_computation():
    x = torch.arange(15.).view(1, 3, 5, 1)          # rows 0-4, 5-9, 10-14
    windows, padded = window_partition(x, 2)        # padded to 4 x 6: 2 x 3 windows
    assert padded == (4, 6) and windows.shape == (6, 2, 2, 1)
    assert windows[0, ..., 0].tolist() == [[0, 1], [5, 6]]
    assert windows[1, ..., 0].tolist() == [[2, 3], [7, 8]]
    assert windows[2, ..., 0].tolist() == [[4, 0], [9, 0]]
    assert windows[4, ..., 0].tolist() == [[12, 13], [0, 0]]
    assert windows[5, ..., 0].tolist() == [[14, 0], [0, 0]]
    assert torch.equal(window_unpartition(windows, 2, padded, (3, 5)), x)


def test_window_attention_adds_the_decomposed_relative_bias():
    from maebench.backbones.vit import create_vit

    torch.manual_seed(0)
    attn = WindowAttention(create_vit("vit-micro", img_size=32).blocks[0].attn, (3, 4))
    with torch.no_grad():
        attn.rel_pos_h.normal_(), attn.rel_pos_w.normal_()
    x = torch.randn(2, 3, 4, 96)
    q, k, v = attn.qkv(x).view(2, 12, 3, 3, 32).unbind(2)          # [B, tokens, heads, d]
    logits = torch.einsum("bqnd,bknd->bnqk", q, k) / 32 ** 0.5
    for t in range(12):
        for s in range(12):
            (qh, qw), (kh, kw) = divmod(t, 4), divmod(s, 4)
            logits[:, :, t, s] += q[:, t] @ attn.rel_pos_h[qh - kh + 2] + q[:, t] @ attn.rel_pos_w[qw - kw + 3]
    want = attn.proj(torch.einsum("bnqk,bknd->bqnd", logits.softmax(-1), v).reshape(2, 3, 4, 96))
    assert torch.allclose(attn(x), want, atol=1e-5)


def test_relative_tables_from_a_checkpoint_are_resized_linearly_and_missing_ones_stay_zero():
    from maebench.backbones.vit import create_vit

    enc = ViTDetEncoder(create_vit("vit-micro", img_size=32), canvas=64, window=8, global_indices=[3])
    table = torch.linspace(0, 1, 7)[:, None].repeat(1, 32)        # a 4-token table, read into 8- and 16-token blocks
    assert load_rel_pos(enc, {"blocks.0.attn.rel_pos_h": table, "blocks.3.attn.rel_pos_w": table}) == 2
    assert enc.blocks[0].attn.rel_pos_h.shape == (15, 32) and enc.blocks[3].attn.rel_pos_w.shape == (31, 32)
    assert torch.allclose(enc.blocks[3].attn.rel_pos_w[[0, -1], 0], torch.tensor([0., 1.]))
    assert torch.all(enc.blocks[0].attn.rel_pos_h[1:] >= enc.blocks[0].attn.rel_pos_h[:-1])
    assert not enc.blocks[0].attn.rel_pos_w.any() and not enc.blocks[1].attn.rel_pos_h.any()
    assert rel_pos_lookup(torch.arange(5.)[:, None], 3)[..., 0].tolist() == [[2, 1, 0], [3, 2, 1], [4, 3, 2]]


def test_vitdet_backbone_maps_match_the_input_extent():
    from maebench.backbones.vit import create_vit

    model = ViTDet(create_vit("vit-micro", img_size=32), canvas=64, out_channels=16, window=8, global_indices=[3])
    out = model(torch.randn(2, 3, 48, 64))
    assert [tuple(m.shape[-2:]) for m in out.values()] == [(12, 16), (6, 8), (3, 4), (2, 2), (1, 1)]


def test_coco_runs_end_to_end_with_the_vitdet_neck_from_a_checkpoint_with_relative_tables(tmp_path, capsys):
    from maebench.backbones import registry
    from maebench.backbones.vit import create_vit
    from maebench.data import shapes

    shapes.prepare(tmp_path, shapes.ShapesOptions(coco_img_size=64, coco_train_images=4, coco_val_images=2),
                   kinds=("coco",))
    torch.manual_seed(0)
    state = create_vit("vit-micro", img_size=32, patch_size=4).state_dict()
    tables = {"blocks.0.attn.rel_pos_h": torch.randn(15, 32), "blocks.3.attn.rel_pos_w": torch.randn(15, 32)}
    torch.save({**state, **tables}, tmp_path / "micro.pth")            # a ViTDet / SAM-style checkpoint
    registry.register("micro", tmp_path / "micro.pth", arch="vit-micro", fmt="timm", img_size=32, patch_size=4)
    kept = registry.rel_pos_tables("micro")                            # kept apart from the plain ViT's keys
    assert kept.keys() == tables.keys() and all(torch.equal(kept[k], tables[k]) for k in tables)
    assert main(["run", "--task", "coco", "--backbone", "micro", "--data", str(tmp_path / "coco"), "--epochs", "1",
                 "--batch-size", "2", "--neck", "vitdet", "--set", "num_workers=0", "--set", "warmup_epochs=0",
                 "--set", "eval_batch_size=2"]) == 0
    assert "coco: 2 relative position tables from micro's checkpoint" in capsys.readouterr().out
    (row,) = ResultsStore().rows(task="coco")
    assert row.status == "done" and row.config["neck"] == "vitdet"
    assert row.config["vitdet"] == {"window_size": 8, "global_blocks": [1, 3], "decay_norms": False, "decay_pos_embed": False}
    assert {"bbox/AP", "segm/AP"} <= set(row.metrics)


def test_a_patch_that_is_not_a_power_of_two_is_resampled_to_the_nearest_one():
    from maebench.backbones.vit import create_vit

    vit = create_vit("vit-micro", img_size=36, patch_size=6)          # as ViT-H/14 -> 16 in ViTDet-H
    model = ViTDet(vit, canvas=64, out_channels=16, window=4, global_indices=[3])
    assert model.vit.patch_size == 8 and model.vit.patch_embed.proj.weight.shape[-2:] == (8, 8)
    assert model.vit.blocks[3].attn.rel_pos_h.shape[0] == 2 * 64 // 8 - 1
    out = model(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape[-2:]) for m in out.values()] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


def test_bad_vitdet_settings_and_models_are_refused_in_one_line():
    from maebench import config
    from maebench.backbones.build import build_model
    from maebench.errors import MaebenchError, UsageError
    from maebench.tasks.coco import check_config

    for key, value in (("window_size", -1), ("global_blocks", "last")):
        cfg = config.load("coco", arch="vit-micro", flags={"neck": "vitdet"})
        cfg["vitdet"][key] = value
        with pytest.raises(UsageError, match=f"vitdet.{key}"):
            check_config(cfg)
    beit = build_model("beit", "vit-micro", img_size=32, patch_size=4)
    with pytest.raises(MaebenchError, match="plain ViT"):
        ViTDet(beit, canvas=64)


def test_rois_are_pooled_as_roialignv2_on_the_level_of_their_size():
    from torchvision.ops import roi_align

    from maebench.tasks.coco.vitdet import AlignedRoIPool

    torch.manual_seed(0)
    feats = {str(i): torch.randn(1, 2, 256 // s, 256 // s) for i, s in enumerate((4, 8, 16, 32))}
    boxes = [torch.tensor([[10., 10., 40., 40.], [0., 0., 250., 250.], [20., 30., 130., 150.]])]
    out = AlignedRoIPool(7)(feats, boxes, [(256, 256)])
    # sqrt(area) 30, 250, ~115 -> floor(4 + log2(s / 224)) = 1 -> 2, 4, 3 (clamped to 2..5)
    for box, level, stride in ((0, "0", 4), (1, "2", 16), (2, "1", 8)):
        rois = torch.cat([torch.zeros(1, 1), boxes[0][box:box + 1]], dim=1)
        want = roi_align(feats[level], rois, (7, 7), spatial_scale=1 / stride, sampling_ratio=0, aligned=True)
        assert torch.allclose(out[box:box + 1], want)


# ---- optimizer groups: detectron2's get_default_optimizer_params under the ViTDet configs -------
def _vitdet_micro(neck="vitdet"):
    """A tiny Mask R-CNN (vit-micro, 4 blocks, patch 4, 64 px canvas) with `neck`, on the meta device."""
    from maebench import config
    from maebench.backbones.vit import create_vit
    from maebench.tasks.coco import check_config
    from maebench.tasks.coco.model import build_mask_rcnn

    cfg = check_config(config.load("coco", arch="vit-micro", flags={"neck": neck}))
    with torch.device("meta"):
        vit = create_vit("vit-micro", img_size=32 if neck == "vitdet" else 64, patch_size=4)
        return build_mask_rcnn(vit, num_classes=3, mean=(0.5,) * 3, std=(0.5,) * 3, cfg=cfg)


def _detectron2_table(model, *, rate: float, size: str) -> dict[str, tuple[float, float]]:
    """name -> (lr scale, weight decay), from detectron2's stated rules alone (not maebench's code):
    - lr: get_vit_lr_decay_rate (re-typed below) with 4 layers;
    - weight decay 0.1 (configs/common/optim.py AdamW) on every parameter, biases included
      (bias_lr_factor 1, weight_decay_bias None), except, for B and L only: parameters of torch.nn
      norm modules (weight_decay_norm=0) and `pos_embed` (overrides). In detectron2's ViTDet Mask
      R-CNN the only torch.nn norm modules are the ViT blocks' norm1 / norm2 (vit.py Block,
      norm_layer=nn.LayerNorm; patch_embed has none): the simple feature pyramid and the
      conv_norm="LN" heads use detectron2.layers.LayerNorm, which is no torch.nn norm, so they
      are decayed. H (mask_rcnn_vitdet_h_75ep.py: weight_decay_norm=None, overrides={}) decays all."""
    import re

    def lr(name, n=4):
        layer = n + 1
        if name.startswith("backbone"):
            if ".pos_embed" in name or ".patch_embed" in name:
                layer = 0
            elif ".blocks." in name and ".residual." not in name:
                layer = int(name[name.find(".blocks."):].split(".")[2]) + 1
        return rate ** (n + 1 - layer)

    def wd(name):
        if size == "h":
            return 0.1
        exempt = re.fullmatch(r"backbone\.vit\.blocks\.\d+\.norm[12]\.(weight|bias)", name) or name == "backbone.vit.pos_embed"
        return 0.0 if exempt else 0.1

    return {name: (lr(name), wd(name)) for name, _ in model.named_parameters()}


@pytest.mark.parametrize("arch,size,rate", [("vit-base", "b", 0.7), ("vit-large", "l", 0.8), ("vit-huge", "h", 0.9)])
def test_vitdet_groups_are_detectron2s_per_parameter(arch, size, rate):
    """The B / L / H configs' optimizer settings (coco.yaml by_arch) on a tiny ViTDet model: every
    parameter's (lr scale, weight decay) equals the table derived from detectron2's rules."""
    from maebench import config
    from maebench.tasks.coco import check_config, param_groups

    model = _vitdet_micro()
    cfg = check_config(config.load("coco", arch=arch, flags={"neck": "vitdet"}))
    got = {}
    for g in param_groups(model, cfg, num_layers=4):
        for name in g["names"]:
            assert name not in got, name
            got[name] = (g["lr_scale"], g["weight_decay"])
    want = _detectron2_table(model, rate=rate, size=size)
    assert got.keys() == want.keys()
    for name, (scale, decay) in want.items():
        assert got[name][0] == pytest.approx(scale), name
        assert got[name][1] == decay, name
    # what the MAE/BEiT rule got wrong: biases, the pyramid's and heads' LayerNorms, rel_pos decayed
    for name in ("backbone.vit.blocks.0.attn.qkv.bias", "backbone.neck.levels.0.1.bias",
                 "backbone.vit.blocks.0.attn.rel_pos_h", "rpn.head.cls_logits.bias"):
        assert got[name][1] == 0.1, name
    ln = [n for n in got if n.startswith(("backbone.neck.", "roi_heads.box_head.", "roi_heads.mask_head."))
          and n in dict(model.named_parameters()) and dict(model.named_parameters())[n].ndim == 1]
    assert ln and all(got[n][1] == 0.1 for n in ln)
    assert got["backbone.vit.blocks.0.norm1.weight"][1] == (0.1 if size == "h" else 0.0)
    assert got["backbone.vit.pos_embed"][1] == (0.1 if size == "h" else 0.0)


def test_detectron2_rule_by_module_type():
    """Norm types in detectron2's list (BatchNorm, GroupNorm, nn.LayerNorm) take weight_decay_norm;
    a channels-first LayerNorm2d named in not_norms, convs, linears and their biases take weight_decay."""
    from maebench import optim
    from maebench.tasks.pyramid import LayerNorm2d

    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.GroupNorm(2, 4),
                                LayerNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 3),
                                torch.nn.LayerNorm(3))
    wd = {n: g["weight_decay"] for g in optim.detectron2_param_groups(model, weight_decay=0.1, weight_decay_norm=0.0,
                                                                       not_norms=(LayerNorm2d,)) for n in g["names"]}
    assert wd == {"0.weight": 0.1, "0.bias": 0.1, "1.weight": 0.0, "1.bias": 0.0, "2.weight": 0.0, "2.bias": 0.0,
                  "3.weight": 0.1, "3.bias": 0.1, "5.weight": 0.1, "5.bias": 0.1, "6.weight": 0.0, "6.bias": 0.0}
    wd_none = {n: g["weight_decay"] for g in optim.detectron2_param_groups(model, weight_decay=0.1, weight_decay_norm=None)
               for n in g["names"]}
    assert set(wd_none.values()) == {0.1}


def test_other_necks_keep_the_mae_transfer_rule():
    """vit-fpn / simple-pyramid: every 1-D tensor (biases, norms) and pos_embed undecayed, as MAE/BEiT."""
    from maebench import config
    from maebench.tasks.coco import check_config, param_groups

    model = _vitdet_micro("simple-pyramid")
    cfg = check_config(config.load("coco", arch="vit-base", flags={"neck": "simple-pyramid"}))
    shapes = dict(model.named_parameters())
    for g in param_groups(model, cfg, num_layers=4):
        for name in g["names"]:
            exempt = shapes[name].ndim == 1 or name.endswith(("pos_embed", "cls_token"))
            assert g["weight_decay"] == (0.0 if exempt else 0.1), name
