"""How an MAE train step's time grows with image size and mask ratio.

The encoder runs on the K = round(L * (1 - ratio)) visible patches (+ [cls]); the decoder on
all L patches (+ [cls]). So the step time should follow K (the encoder's share) plus a term in
L (the decoder's), not L alone. For each cell of an (image size x mask ratio) grid: one train
step (forward, backward, fused AdamW) timed (the fastest of a few steps: a grid of small
differences is where one interrupted step would mislead most), its FLOPs counted, and time
per visible token printed. A least-squares fit  s/step = a * K + b * (L + 1) + c  (per-batch tokens) over the
grid then says how much of the time each side explains (R^2 of the fit).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class Cell:
    img_size: int
    mask_ratio: float
    patches: int          # L
    visible: int          # K
    gflop: float          # forward + backward, one step
    step_s: float         # fastest timed step: the cost without other jobs' interference
    batch_size: int

    @property
    def ms_per_visible_token(self) -> float:
        """Step time per visible token of the batch (ms)."""
        return 1000 * self.step_s / (self.visible * self.batch_size)


def measure(arch: str = "vit-base", img_sizes=(64, 96, 128), ratios=(0.5, 0.75, 0.9), batch_size: int = 4,
            steps: int = 3, warmup: int = 1, device="cpu", log=print) -> list[Cell]:
    import torch

    from maebench.backbones.mae import create_mae
    from maebench.backbones.masking import num_keep
    from benchmarks.timing import count_cost, time_step
    from maebench.optim import param_groups

    dev = torch.device(device)
    cells = []
    for size in img_sizes:
        torch.manual_seed(0)
        model = create_mae(arch, img_size=size, target="norm-pixel").to(dev)
        opt = torch.optim.AdamW(param_groups(model, weight_decay=0.05), lr=1e-4, betas=(0.9, 0.95), fused=True)
        x = torch.randn(batch_size, 3, size, size, device=dev)
        L = model.patch_embed.num_patches
        for r in ratios:
            def compute(r=r):
                loss, _, _ = model(x, mask_ratio=r)
                loss.backward()

            def step():
                opt.step()
                opt.zero_grad(set_to_none=True)
            flops = count_cost(compute, model).flops
            step()
            t = time_step(compute, step, warmup=warmup, steps=steps, device=dev)
            cell = Cell(size, r, L, num_keep(L, r), flops / 1e9, t.min_s, batch_size)
            log(f"  {size} px, mask {r}: {cell.step_s:.3f} s/step, {cell.visible} of {L} patches visible")
            cells.append(cell)
        del model, opt
    return cells


def fit(cells: list[Cell]) -> dict:
    """Least squares s/step = a*K*B + b*(L+1)*B + c; returns a, b (s per token), c (s) and R^2."""
    import numpy as np
    A = np.array([[c.visible * c.batch_size, (c.patches + 1) * c.batch_size, 1.0] for c in cells])
    y = np.array([c.step_s for c in cells])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    pred = A @ coef
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum()) or 1e-30
    # the same fit with visible tokens only, and with FLOPs only, for comparison
    r2 = {}
    for name, cols in (("visible tokens only", A[:, [0, 2]]), ("all tokens only", A[:, [1, 2]]),
                       ("FLOPs only", np.array([[c.gflop, 1.0] for c in cells]))):
        k, *_ = np.linalg.lstsq(cols, y, rcond=None)
        r2[name] = 1 - float(((y - cols @ k) ** 2).sum()) / ss_tot
    return {"per_visible_token_s": float(coef[0]), "per_token_decoder_s": float(coef[1]), "const_s": float(coef[2]),
            "r2": 1 - ss_res / ss_tot, "r2_alternatives": r2}
