"""Every task type takes a step on every timm-built family, through the builders the tasks use:
linprobe and k-NN on the family's probe feature, fine-tuning with layer decay from timm's own
parameter grouping, partial fine-tuning of the last block, a COCO Mask R-CNN step (patch 14 on the
simple pyramid, patch 16 on the A.3 neck) and an ADE20K UperNet step (relative position bias added
only to families without their own position scheme). Tiny models, one step each."""
import pytest
import torch
import torch.nn.functional as F

from maebench import cli, config, optim
from maebench.backbones import registry
from maebench.backbones import timm_family as tf
from timm_releases import FAMILIES, TIMM_ARGS, shared_beit_tables, source_model, write

ONE_FORMAT = [(fam, next(iter(writers))) for fam, (_, _, writers) in FAMILIES.items()]


@pytest.fixture
def backbone(request, tmp_path):
    family, fmt = request.param
    name, img, writers = FAMILIES[family]
    src = source_model(name, img)
    if family == "beit2":
        shared_beit_tables(src)
    path = tmp_path / "release.pth"
    write(path, writers[fmt](src.state_dict()))
    assert cli.main(["backbones", "register", "b", "--checkpoint", str(path), "--timm", name, *TIMM_ARGS,
                     "--img-size", str(img)]) == 0
    return family, registry.entry("b"), img


def images(n: int, side: int) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(0))


def sgd_step(params, loss) -> None:
    opt = torch.optim.SGD(params, lr=0.1)
    opt.zero_grad()
    loss.backward()
    opt.step()


@pytest.mark.parametrize("backbone", ONE_FORMAT, indirect=True, ids=[f for f, _ in ONE_FORMAT])
def test_every_task_type_takes_a_step(backbone):
    family, e, img = backbone
    from maebench.tasks import features
    from maebench.tasks.knn import knn_grid_counts
    from maebench.tasks.frozen_data import load_encoder
    from maebench.tasks.linprobe import LinearProbe, lars_groups, make_head

    x, y = images(4, img), torch.tensor([0, 1, 2, 0])
    # linprobe: the frozen encoder's probe feature -> BatchNorm + linear; only the head moves
    encoder = load_encoder("b", img, seed=0)
    probe = LinearProbe(encoder, make_head(features.feature_dim(encoder), 3, seed=0))
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    sgd_step(lars_groups(probe, 0.0), F.cross_entropy(probe.train()(x), y))
    assert not torch.equal(before["head.linear.weight"], probe.head.linear.weight)
    assert all(torch.equal(before[k], v) for k, v in probe.state_dict().items() if k.startswith("encoder."))
    # knn: weighted votes of the nearest training features
    with torch.no_grad():
        bank = features.cls_features(encoder, x)
    assert knn_grid_counts(bank, y, bank, y, 3, [(2, 0.07)])[(2, 0.07)].tolist()[:2] == [4, 4]

    # finetune: layer decay through timm's grouping (stem at layer 0, block i at i + 1, head last)
    from maebench.tasks.finetune import build_classifier, layer_decay_groups
    from maebench.tasks.partial import freeze
    cfg = {"img_size": img, "global_pool": "avg", "drop_path": 0.1, "weight_decay": 0.05, "layer_decay": 0.75}
    model = build_classifier("b", cfg, 3, seed=0)
    groups = layer_decay_groups(model, cfg)
    layer = {n: g["layer_id"] for g in groups for n in g["names"]}
    assert layer["patch_embed.proj.weight"] == 0 and layer["blocks.3.norm1.weight"] == 4 and layer["head.weight"] == 5
    if family in ("clip", "openclip"):
        assert layer["norm_pre.weight"] == 0            # CLIP's pre-norm belongs to the stem, as in timm
    sgd_step([{"params": g["params"], "lr": 0.1 * g["lr_scale"]} for g in groups],
             F.cross_entropy(model.train()(x), y))
    # partial: the last block, the norms and the head train; nothing before them
    model = build_classifier("b", cfg, 3, seed=0)
    trainable = freeze(model, 1)
    assert trainable and all(n.startswith(("blocks.3.", "head.", "fc_norm.", "norm.")) for n in trainable)
    sgd_step([p for p in model.parameters() if p.requires_grad], F.cross_entropy(model.train()(x), y))


def coco_cfg(patch: int) -> dict:
    side = 224 if patch == 14 else 64          # the canvas: a multiple of 32 and of the patch
    neck = "simple-pyramid" if patch == 14 else "vit-fpn"
    return config.load("coco", arch="vit-micro", sets=[f"img_size={side}", f"max_size={side}", f"min_size=[{side}]",
                                                       f"neck={neck}"])


@pytest.mark.parametrize("backbone", ONE_FORMAT, indirect=True, ids=[f for f, _ in ONE_FORMAT])
def test_a_coco_and_an_ade20k_step(backbone):
    family, e, img = backbone
    from maebench.tasks.ade20k import build_model, check_config
    from maebench.tasks.ade20k.model import segmentation_loss
    from maebench.tasks.ade20k.relpos import RelPosAttention
    from maebench.tasks.coco.model import build_mask_rcnn, canvas_size

    cfg = coco_cfg(e.patch_size)
    torch.manual_seed(0)
    vit, _ = registry.load("b", img_size=canvas_size(cfg))
    det = build_mask_rcnn(vit, num_classes=2, mean=e.mean, std=e.std, cfg=cfg).train()
    side = canvas_size(cfg)
    mask = torch.zeros(1, side, side, dtype=torch.uint8)
    mask[:, 8:40, 8:40] = 1
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1]), "masks": mask}
    losses = det([torch.rand(3, side, side)], [target])
    groups = optim.param_groups(det, weight_decay=0.05, layer_decay=0.75, num_layers=len(vit.blocks),
                                vit_prefix="backbone.vit.")
    sgd_step([{"params": g["params"], "lr": 0.01 * g["lr_scale"]} for g in groups], sum(losses.values()))

    crop = 4 * e.patch_size
    seg_cfg = check_config(config.load("ade20k", arch="vit-micro", sets=[f"crop_size={crop}", f"stride={crop}",
                                                                         "channels=16", "aux_channels=8"]), e.patch_size)
    seg, _ = build_model("b", seg_cfg, torch.device("cpu"))
    added = [isinstance(b.attn, RelPosAttention) for b in seg.backbone.vit.blocks]
    assert all(added) == (tf.FAMILIES[e.model_family].position == "absolute") and (all(added) or not any(added))
    logits, aux = seg.train()(images(2, crop))
    labels = torch.randint(0, seg_cfg["num_classes"], (2, crop, crop), generator=torch.Generator().manual_seed(0))
    loss, _ = segmentation_loss(logits, aux, labels, ignore_index=255)
    sgd_step([p for p in seg.parameters() if p.requires_grad], loss)


def test_catalogue_parameter_counts_and_depths_equal_timms_models():
    from maebench.backbones.catalogue import catalogue
    for name, c in catalogue().items():
        if c.get("model") == "timm":
            facts = tf.model_facts(tf.create(c["timm"], meta=True, num_classes=0))
            assert (c["params"], c["depth"], c["patch_size"]) == (facts["params"], facts["depth"], facts["patch_size"]), name
            assert c["model_family"] == tf.family_of_model(c["timm"]) and c["probe"] == tf.FAMILIES[c["model_family"]].probe
