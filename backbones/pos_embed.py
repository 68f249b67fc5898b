"""Fixed 2-D sin-cos position embeddings (MAE) and position-embedding resizing.

Shapes: a position-embedding tensor is [1, num_prefix + H*W, D]; the prefix tokens ([cls])
are carried over unchanged and the H x W grid part is resized bicubically. `resize_pos_embed` is
the one resizer: every caller states `antialias` (False: the official MAE `interpolate_pos_embed`,
bit for bit; True: what timm's `resample_abs_pos_embed` does for timm's own families).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _sincos_1d(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """pos: [M] -> [M, embed_dim]: half sines, half cosines over geometric frequencies."""
    assert embed_dim % 2 == 0
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int | tuple[int, int],
                            cls_token: bool = False) -> np.ndarray:
    """[(1 if cls_token) + H*W, embed_dim]; the [cls] row is all zeros, as in the MAE release."""
    gh, gw = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    grid_w, grid_h = np.meshgrid(np.arange(gw, dtype=np.float64), np.arange(gh, dtype=np.float64))
    # first half of the channels encode the column (w), second half the row (h), as released
    emb = np.concatenate([_sincos_1d(embed_dim // 2, grid_w), _sincos_1d(embed_dim // 2, grid_h)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
    return emb.astype(np.float32)


def resize_pos_embed(pos_embed: torch.Tensor, new_grid: tuple[int, int],
                     num_prefix_tokens: int = 1, old_grid: tuple[int, int] | None = None, *,
                     antialias: bool) -> torch.Tensor:
    """Resize [1, P + h*w, D] to [1, P + H*W, D] (bicubic, align_corners=False); returns the
    input unchanged when the grid matches."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n = grid.shape[1]
    if old_grid is None:
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(f"cannot infer a square grid from {n} position embeddings")
        old_grid = (side, side)
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    d = grid.shape[-1]
    grid = grid.reshape(1, old_grid[0], old_grid[1], d).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=False, antialias=antialias)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], d).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)
