"""Mask R-CNN (torchvision: RPN, RoIAlign box and mask heads) on a ViT backbone + FPN neck.

Sizes come from the protocol's `model.*` keys (maebench/protocols/coco.yaml): the paper-scale
defaults are torchvision's / detectron2's (FPN 256 channels, 1024-d box MLP, 256-d mask convs,
256 RPN and 512 RoI samples per image); the vit-micro CPU recipe shrinks them (64 channels,
64 samples), which with 64 px images brings a 4-image step to about 0.3 s on one core.
`--neck vitdet` swaps in ViTDet's heads (mask_rcnn_vitdet.py): a 2-conv RPN head, a 4conv1fc box
head and a 4-conv mask head with LayerNorm after each conv (convs without bias).
"""
from __future__ import annotations

import torch.nn as nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead

from maebench.tasks.coco.adapter import ViTDetBackbone
from maebench.tasks.coco.vitdet import AlignedRoIPool, ViTDet, layer_norm_2d

# protocol key -> MaskRCNN keyword, passed through unchanged
_PASS_THROUGH = ("rpn_batch_size_per_image", "rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train",
                 "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test", "box_batch_size_per_image",
                 "box_detections_per_img", "box_score_thresh")


def canvas_size(cfg: dict) -> int:
    """Side of the square the ViT sees: the LSJ crop, or max_size rounded up to a multiple of 32."""
    side = cfg["img_size"] if cfg["aug"]["mode"] == "lsj" else cfg["max_size"]
    return -(-int(side) // 32) * 32


def transform_sizes(cfg: dict) -> tuple[tuple[int, ...], int]:
    """(min_size, max_size) for GeneralizedRCNNTransform. LSJ: min = max = img_size, so a
    training crop (already img_size square) is left alone and a test image is resized to
    longest side img_size (ViTDet's test resize); resize mode: the classic multi-scale shorter
    side (picked at random per batch in training, the last value in testing) capped at max_size."""
    if cfg["aug"]["mode"] == "lsj":
        return (int(cfg["img_size"]),), int(cfg["img_size"])
    sizes = cfg["min_size"] if isinstance(cfg["min_size"], list) else [cfg["min_size"]]
    return tuple(int(s) for s in sizes), int(cfg["max_size"])


def build_mask_rcnn(vit: nn.Module, *, num_classes: int, mean, std, cfg: dict) -> MaskRCNN:
    """Mask R-CNN for `num_classes` object classes (background is added here) on `vit`.

    `mean`/`std` are the backbone's catalogue normalisation: GeneralizedRCNNTransform applies
    them to [0, 1] images, so detection sees inputs distributed as in pretraining."""
    m = cfg["model"]
    rep, mask_dim = m["representation_size"], m["mask_head_dim"]
    if cfg["neck"] == "vitdet":     # mask_rcnn_vitdet.py: 2-conv RPN, 4conv1fc box head, LN in the convs
        backbone = ViTDet(vit, canvas=canvas_size(cfg), out_channels=m["fpn_channels"],
                          window=cfg["vitdet"]["window_size"], global_indices=cfg["vitdet"]["global_blocks"])
        ch = backbone.out_channels
        heads = dict(rpn_conv_depth=2, box_head=FastRCNNConvFCHead((ch, 7, 7), [ch] * 4, [rep], norm_layer=layer_norm_2d),
                     mask_head=MaskRCNNHeads(ch, [mask_dim] * 4, dilation=1, norm_layer=layer_norm_2d),
                     box_roi_pool=AlignedRoIPool(7), mask_roi_pool=AlignedRoIPool(14))
    else:
        backbone = ViTDetBackbone(vit, neck=cfg["neck"], canvas=canvas_size(cfg), fpn_channels=m["fpn_channels"],
                                  tap_norm=cfg["tap_norm"])
        ch = backbone.out_channels
        heads = dict(rpn_conv_depth=1, box_head=TwoMLPHead(ch * 7 * 7, rep),   # RoIAlign 7x7 -> 2 FC layers
                     mask_head=MaskRCNNHeads(ch, [mask_dim] * 4, dilation=1),   # 4 convs on 14x14 RoIs
                     box_roi_pool=None, mask_roi_pool=None)                     # torchvision's MultiScaleRoIAlign
    anchors = AnchorGenerator(sizes=tuple((int(s),) for s in m["anchor_sizes"]),   # one size per level
                              aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    min_size, max_size = transform_sizes(cfg)
    return MaskRCNN(
        backbone, num_classes=None, min_size=min_size, max_size=max_size,
        image_mean=list(mean), image_std=list(std), rpn_anchor_generator=anchors,
        rpn_head=RPNHead(ch, anchors.num_anchors_per_location()[0], conv_depth=heads["rpn_conv_depth"]),
        box_roi_pool=heads["box_roi_pool"], box_head=heads["box_head"],
        box_predictor=FastRCNNPredictor(rep, num_classes + 1), mask_roi_pool=heads["mask_roi_pool"],
        mask_head=heads["mask_head"], mask_predictor=MaskRCNNPredictor(mask_dim, mask_dim, num_classes + 1),
        **{k: m[k] for k in _PASS_THROUGH})
