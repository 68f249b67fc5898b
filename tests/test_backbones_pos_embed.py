"""Position-embedding interpolation: 14x14 -> 16x16 keeps [cls], is exact when nothing changes,
and is plain bicubic interpolation of the grid; `load` applies it for the task's image size."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from test_backbones_support import IMG, PATCH, home, save, tiny_vit  # noqa: F401

from maebench.backbones import registry
from maebench.backbones.build import fit_pos_embed
from maebench.backbones.pos_embed import resize_pos_embed


def _independent_bicubic(grid_tokens: torch.Tensor, old: int, new: int) -> torch.Tensor:
    """[1, old*old, D] -> [1, new*new, D], written out separately from maebench.backbones/pos_embed.py."""
    d = grid_tokens.shape[-1]
    img = grid_tokens[0].T.reshape(1, d, old, old)  # channels first, row-major grid
    out = F.interpolate(img, size=(new, new), mode="bicubic", align_corners=False)
    return out.reshape(d, new * new).T.unsqueeze(0)


def test_14_to_16_keeps_cls_and_matches_bicubic():
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 14 * 14, 32)
    out = resize_pos_embed(pos, (16, 16), antialias=False)
    assert out.shape == (1, 1 + 16 * 16, 32)
    assert torch.equal(out[:, :1], pos[:, :1])
    torch.testing.assert_close(out[:, 1:], _independent_bicubic(pos[:, 1:], 14, 16))


def test_same_grid_is_exact_identity():
    pos = torch.randn(1, 1 + 14 * 14, 32)
    assert torch.equal(resize_pos_embed(pos, (14, 14), antialias=False), pos)
    assert torch.equal(fit_pos_embed(pos, (14, 14), 1), pos)


def test_patch_only_embeddings_have_no_prefix():
    """DeiT III style: every row is a grid cell."""
    pos = torch.randn(1, 14 * 14, 8)
    torch.testing.assert_close(fit_pos_embed(pos, (16, 16), 0), _independent_bicubic(pos, 14, 16))


def test_load_resizes_to_the_task_grid(home, tmp_path):
    src = tiny_vit()
    registry.register("p", save({"model": src.state_dict()}, tmp_path / "p.pth"))
    same, _ = registry.load("p")
    assert torch.equal(same.pos_embed, src.pos_embed)
    bigger, _ = registry.load("p", img_size=IMG + 2 * PATCH)  # 4x4 -> 6x6 grid
    assert bigger.pos_embed.shape[1] == 1 + 36
    assert torch.equal(bigger.pos_embed[:, :1], src.pos_embed[:, :1])
    torch.testing.assert_close(bigger.pos_embed[:, 1:], _independent_bicubic(src.pos_embed[:, 1:].detach(), 4, 6))


def _official_mae_interpolate_pos_embed(pos_embed_checkpoint: torch.Tensor, num_patches: int,
                                        num_extra_tokens: int) -> torch.Tensor:
    """facebookresearch/mae util/pos_embed.py `interpolate_pos_embed`, written out as released."""
    embedding_size = pos_embed_checkpoint.shape[-1]
    orig_size = int((pos_embed_checkpoint.shape[-2] - num_extra_tokens) ** 0.5)
    new_size = int(num_patches ** 0.5)
    extra_tokens = pos_embed_checkpoint[:, :num_extra_tokens]
    pos_tokens = pos_embed_checkpoint[:, num_extra_tokens:]
    pos_tokens = pos_tokens.reshape(-1, orig_size, orig_size, embedding_size).permute(0, 3, 1, 2)
    pos_tokens = torch.nn.functional.interpolate(pos_tokens, size=(new_size, new_size), mode='bicubic',
                                                 align_corners=False)
    pos_tokens = pos_tokens.permute(0, 2, 3, 1).flatten(1, 2)
    return torch.cat((extra_tokens, pos_tokens), dim=1)


def test_checkpoint_resizing_is_the_official_mae_interpolation_bit_for_bit():
    """Official checkpoints loaded at another size get exactly the official MAE code's pos_embed
    (bicubic, align_corners=False, no antialias), shrinking and growing."""
    torch.manual_seed(0)
    for old, new in ((14, 16), (14, 7), (16, 14)):
        pos = torch.randn(1, 1 + old * old, 32)
        want = _official_mae_interpolate_pos_embed(pos, new * new, 1)
        assert torch.equal(fit_pos_embed(pos, (new, new), 1), want)
        assert torch.equal(resize_pos_embed(pos, (new, new), antialias=False), want)
    assert not torch.equal(resize_pos_embed(pos, (7, 7), antialias=True),
                           _official_mae_interpolate_pos_embed(pos, 49, 1))
