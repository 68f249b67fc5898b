"""MAE reconstruction figures (the paper's Fig. 2-4): original, masked input, reconstruction,
and reconstruction with the visible patches pasted back.

`reconstruct` works in the model's normalised input space and returns images in [0, 1];
`save_grid` lays rows of panels out as one PNG (matplotlib, Agg backend).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

PANELS = ("original", "masked", "reconstruction", "reconstruction + visible")


@torch.no_grad()
def reconstruct(model, imgs: torch.Tensor, *, mean: Sequence[float], std: Sequence[float],
                mask_ratio: float = 0.75, noise: torch.Tensor | None = None,
                tokenizer=None) -> dict[str, torch.Tensor]:
    """imgs: [N, C, H, W], normalised with mean/std -> {panel: [N, C, H, W] in [0, 1]}.

    Norm-pixel predictions are per-patch normalised values; each patch is de-normalised with
    the mean and std of its own target patch (the original image's), the same statistics
    the loss normalised it with. A token-target model predicts codebook indices; the most
    likely index of every patch is decoded to pixels by the dVAE `tokenizer`.
    """
    model.eval()
    latent, mask, ids_restore = model.forward_encoder(imgs, mask_ratio, noise)
    pred = model.forward_decoder(latent, ids_restore)            # [N, L, out]
    p, c = model.patch_size, model.in_chans
    grid = tuple(model.patch_embed.grid_size)

    if model.target == "dvae":
        if tokenizer is None:
            from maebench.errors import MaebenchError
            raise MaebenchError("this MAE predicts dVAE tokens: its reconstructions need the tokenizer "
                                "it was trained with (--tokenizer NAME|FILE)")
        pix = tokenizer.to(imgs.device).decode(pred.argmax(-1), grid)  # [N, C, h*f, w*f]
        if pix.shape[-2:] != imgs.shape[-2:]:
            pix = F.interpolate(pix, size=imgs.shape[-2:], mode="bilinear", align_corners=False)
        rec = model.patchify(pix)
    elif model.norm_pix_loss:
        target = model.patchify(imgs)
        mu = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        rec = pred * (var + 1.e-6) ** .5 + mu
    else:
        rec = pred

    rec = model.unpatchify(rec, grid)                             # [N, C, H, W]
    m = model.unpatchify(mask.unsqueeze(-1).repeat(1, 1, p * p * c), grid)  # 1 = removed
    # removed patches become 0 in the normalised space, i.e. the dataset's mean colour
    panels = {"original": imgs, "masked": imgs * (1 - m), "reconstruction": rec,
              "reconstruction + visible": imgs * (1 - m) + rec * m}
    mean_t = torch.tensor(mean, device=imgs.device, dtype=imgs.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=imgs.device, dtype=imgs.dtype).view(1, -1, 1, 1)
    return {k: (v * std_t + mean_t).clamp(0, 1) for k, v in panels.items()}


def to_numpy(img: torch.Tensor) -> np.ndarray:
    """[C, H, W] in [0, 1] -> [H, W, 3] (grey images repeated to RGB) for imshow."""
    arr = img.detach().float().cpu().permute(1, 2, 0).numpy()
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def save_grid(rows: Sequence[Sequence[np.ndarray]], path: str | os.PathLike, *,
              column_titles: Sequence[str] = PANELS, title: str | None = None,
              groups_per_row: int = 1, cell_inches: float = 1.6) -> None:
    """rows: each a list of panels ([H, W, 3] arrays). `groups_per_row` > 1 puts several rows of
    panels side by side (a compact grid for many images)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(column_titles)
    n_lines = (len(rows) + groups_per_row - 1) // groups_per_row
    n_cols = k * groups_per_row
    height = cell_inches * n_lines + (0.4 if title else 0.0)
    fig, axes = plt.subplots(n_lines, n_cols, figsize=(cell_inches * n_cols, height), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, panels in enumerate(rows):
        line, group = divmod(i, groups_per_row)
        for j, img in enumerate(panels):
            ax = axes[line, group * k + j]
            ax.imshow(img, interpolation="nearest")
            if line == 0:
                ax.set_title(column_titles[j], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.4 / height if title else 0.0)))   # room for the title
    fig.savefig(path, dpi=100)
    plt.close(fig)
