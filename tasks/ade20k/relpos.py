"""Relative position bias for a timm ViT at transfer time (BEiT style), initialised at zero.

The MAE paper turns relative position bias on only for the ADE20K transfer and starts it at
zero (A.4): every block's attention gets a learned table of one bias per head for each
relative offset (dy, dx) between two patches, plus three entries for [cls]->patch,
patch->[cls] and [cls]->[cls]; the bias is added to the attention logits. A zero table adds
nothing, so the pretrained model's output is unchanged at the start of fine-tuning.

`RelPosAttention` is a subclass of timm's Attention; `enable_relative_position_bias` turns a
ViT's existing attention modules into it in place, so parameter names and values stay those of
the checkpoint and the new tables sit at `blocks.N.attn.relative_position_bias_table` (layer N+1
for layer-wise lr decay, no weight decay: see maebench.optim). The table is sized for the
training crop's patch grid; another grid (whole-image inference on a differently shaped image)
uses the table resized bicubically, as BEiT does when it changes resolution.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Attention


def relative_position_index(grid: tuple[int, int], num_prefix_tokens: int = 1) -> torch.Tensor:
    """int64 [P + h*w, P + h*w]: row i, column j -> index into the table for the pair (i, j).

    Patch pairs use (dy + h - 1) * (2w - 1) + (dx + w - 1); the last three table entries are
    prefix->patch, patch->prefix and prefix->prefix (all prefix tokens share them)."""
    h, w = grid
    num_grid = (2 * h - 1) * (2 * w - 1)
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)  # [2, hw]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)   # [hw, hw, 2]: (dy, dx)
    patch_index = (rel[..., 0] + h - 1) * (2 * w - 1) + (rel[..., 1] + w - 1)
    p = num_prefix_tokens
    index = torch.empty(p + h * w, p + h * w, dtype=torch.long)
    index[p:, p:] = patch_index
    index[:p, p:] = num_grid          # prefix -> patch
    index[p:, :p] = num_grid + 1      # patch -> prefix
    index[:p, :p] = num_grid + 2      # prefix -> prefix
    return index


def resize_table(table: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """[(2h-1)(2w-1) + 3, heads] for grid `old` -> the same for grid `new` (bicubic on the offsets)."""
    if tuple(old) == tuple(new):
        return table
    heads = table.shape[1]
    grid_part = table[:-3].T.reshape(1, heads, 2 * old[0] - 1, 2 * old[1] - 1)
    grid_part = F.interpolate(grid_part, size=(2 * new[0] - 1, 2 * new[1] - 1), mode="bicubic",
                              align_corners=False)
    return torch.cat([grid_part.reshape(heads, -1).T, table[-3:]], dim=0)


class RelPosAttention(Attention):
    """timm Attention plus an additive per-head relative position bias on the logits.

    timm's Block calls attention with the tokens only, and a token count does not determine a
    non-square grid, so the backbone sets `grid` (patch rows, columns) before each forward."""

    relative_position_bias_table: nn.Parameter

    def _init_relative_position(self, window: tuple[int, int], num_prefix_tokens: int) -> None:
        self.window = tuple(window)
        self.grid = tuple(window)
        self.num_prefix_tokens = num_prefix_tokens
        num_entries = (2 * window[0] - 1) * (2 * window[1] - 1) + 3
        param = next(self.parameters())
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(num_entries, self.num_heads, device=param.device, dtype=param.dtype))
        self.register_buffer("relative_position_index",
                             relative_position_index(self.window, num_prefix_tokens).to(param.device),
                             persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """[1, heads, N, N] for the current grid."""
        if self.grid == self.window:
            table, index = self.relative_position_bias_table, self.relative_position_index
        else:
            table = resize_table(self.relative_position_bias_table, self.window, self.grid)
            index = relative_position_index(self.grid, self.num_prefix_tokens).to(table.device)
        n = index.shape[0]
        return table[index.view(-1)].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        # x: [B, N, C]; N must be prefix + grid tokens
        bias = self.relative_position_bias()
        if bias.shape[-1] != x.shape[1]:
            raise RuntimeError(f"relative position bias built for {bias.shape[-1]} tokens (grid {self.grid}), "
                               f"got {x.shape[1]}")
        if attn_mask is not None:
            bias = bias + attn_mask
        return super().forward(x, attn_mask=bias, **kwargs)   # SDPA adds a float mask to the logits


def enable_relative_position_bias(vit: nn.Module, window: tuple[int, int]) -> list[RelPosAttention]:
    """Turn every block's attention of a timm VisionTransformer into RelPosAttention, in place.

    In place (a class change, not a copy) so that the module keeps its own parameters, options
    (qk-norm, biases, fused attention) and state-dict keys whatever timm built. Returns them."""
    out = []
    for block in vit.blocks:
        attn = block.attn
        if not isinstance(attn, Attention):
            raise TypeError(f"relative position bias needs timm Attention blocks, got {type(attn).__name__}")
        if not isinstance(attn, RelPosAttention):
            attn.__class__ = RelPosAttention
            attn._init_relative_position(window, vit.num_prefix_tokens)
        out.append(attn)
    return out
