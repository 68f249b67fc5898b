"""The one ViT pyramid (tasks/pyramid.py) shared by COCO and ADE20K: its tap rule for every
depth, and outputs equal to those the two former per-task pyramids gave (recorded before they
were merged: same seeds, same tiny ViTs)."""
import pytest
import timm
import torch

from maebench.errors import MaebenchError
from maebench.tasks.ade20k.model import ViTFeatures
from maebench.tasks.coco.adapter import ViTDetBackbone
from maebench.tasks.pyramid import FeaturePyramid, tap_indices

# depth -> taps: floor(depth * (i + 1) / 4) - 1; the official ViT-B/L/H taps where 4 | depth
TAPS = {4: [0, 1, 2, 3], 5: [0, 1, 2, 4], 6: [0, 2, 3, 5], 7: [0, 2, 4, 6], 8: [1, 3, 5, 7],
        9: [1, 3, 5, 8], 10: [1, 4, 6, 9], 11: [1, 4, 7, 10], 12: [2, 5, 8, 11], 13: [2, 5, 8, 12],
        14: [2, 6, 9, 13], 15: [2, 6, 10, 14], 16: [3, 7, 11, 15], 17: [3, 7, 11, 16],
        18: [3, 8, 12, 17], 19: [3, 8, 13, 18], 20: [4, 9, 14, 19], 21: [4, 9, 14, 20],
        22: [4, 10, 15, 21], 23: [4, 10, 16, 22], 24: [5, 11, 17, 23], 25: [5, 11, 17, 24],
        26: [5, 12, 18, 25], 27: [5, 12, 19, 26], 28: [6, 13, 20, 27], 29: [6, 13, 20, 28],
        30: [6, 14, 21, 29], 31: [6, 14, 22, 30], 32: [7, 15, 23, 31]}


@pytest.mark.parametrize("depth", sorted(TAPS))
def test_group_taps_are_the_last_block_of_four_groups(depth):
    assert tap_indices(depth, "groups") == TAPS[depth]
    assert tap_indices(depth, "last") == [depth - 1]


def test_fewer_than_four_blocks_cannot_feed_four_groups():
    with pytest.raises(MaebenchError, match="only 3 blocks"):
        tap_indices(3)


# (sum, sum of |x|) of each level, float64, recorded from the per-task pyramids before the merge
RECORDED = {
    (12, "vit-fpn"): ([-98.138977, 28.353095, 18.577007, 153.001586], [2502.947458, 563.388515, 461.812359, 156.082784]),
    (12, "simple-pyramid"): ([-243.142812, 34.43929, 18.224828, 153.001586], [991.235808, 405.72921, 463.574856, 156.082784]),
    (12, "ade20k"): ([69.502151, 28.353095, 18.577007, 153.001586], [717.681095, 563.388515, 461.812359, 156.082784]),
    (24, "vit-fpn"): ([-98.16045, 27.057931, 18.624202, 149.74522], [2504.239487, 561.47908, 460.283964, 153.142115]),
    (24, "simple-pyramid"): ([-240.081794, 35.21083, 17.205112, 149.74522], [989.269824, 400.433195, 460.201637, 153.142115]),
    (24, "ade20k"): ([69.4605, 27.057931, 18.624202, 149.74522], [717.071175, 561.47908, 460.283964, 153.142115]),
}


def _vit(depth):
    torch.manual_seed(0)
    return timm.create_model("vit_base_patch16_224", pretrained=False, img_size=64, patch_size=16, embed_dim=32,
                             depth=depth, num_heads=2, num_classes=0)


@pytest.mark.parametrize("depth, neck", sorted(RECORDED))
def test_outputs_equal_the_former_per_task_pyramids(depth, neck):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    vit = _vit(depth)
    torch.manual_seed(2)
    with torch.no_grad():
        if neck == "ade20k":
            maps = FeaturePyramid(32, 16, taps="groups", norm="batch").eval()(
                ViTFeatures(vit, rel_pos_bias=False, window=(4, 4))(x))
        else:
            bb = ViTDetBackbone(vit, neck=neck, canvas=64, fpn_channels=16).eval()
            maps = bb.neck(bb.vit_maps(x))
    sums, abs_sums = RECORDED[(depth, neck)]
    assert [round(float(m.double().sum()), 3) for m in maps] == pytest.approx([round(v, 3) for v in sums], abs=2e-3)
    assert [float(m.double().abs().sum()) for m in maps] == pytest.approx(abs_sums, rel=1e-5)
