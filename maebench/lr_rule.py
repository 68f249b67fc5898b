"""The peak learning rate a config trains at. Torch-free: the training loop and the linear probe's
sweep train with it, and the leaderboard states it for a searched row without importing torch."""
from __future__ import annotations

from typing import Any


def peak_lr(base_lr: float | None, batch_size: int, lr: float | None = None) -> float:
    """The peak learning rate: `lr` when given, else base_lr x batch_size / 256, the MAE recipe's
    linear scaling rule (He et al. 2022, appendix A; main_pretrain.py / main_finetune.py /
    main_linprobe.py: `args.lr = args.blr * eff_batch_size / 256`), so a protocol's base_lr
    holds at any global batch."""
    if lr is not None:
        return float(lr)
    if base_lr is None:
        from maebench.errors import MaebenchError
        raise MaebenchError("config sets neither 'lr' nor 'base_lr'")
    return float(base_lr) * batch_size / 256


def config_peak_lr(cfg: dict[str, Any]) -> float:
    """`peak_lr` of a config's lr, base_lr and batch_size, times its `lr_scale` (the searched lr
    grid, maebench/search.py; 1 where the protocol has none)."""
    scale = cfg.get("lr_scale")
    return peak_lr(cfg.get("base_lr"), cfg["batch_size"], cfg.get("lr")) * (1.0 if scale is None else float(scale))
