"""The option values the MAE accepts, with no torch import, so that a command refuses a typo
(`--target pixels`, `--masking grd`) at once, before loading torch."""
from __future__ import annotations

from maebench.errors import UsageError, unknown

# dvae: the self-trained, CPU-scale dVAE (`pretrain --method dvae`); token: a tokenizer file of any
# kind backbones/tokenizers.py reads (DALL-E's dVAE as in the paper, BEiT v2 VQ-KD, or a maebench dVAE)
TARGETS = ("pixel", "norm-pixel", "pca", "dvae", "token")
TOKEN_TARGETS = ("dvae", "token")
FAMILY = {"pixel": "mae-pixel", "norm-pixel": "mae-norm-pixel", "pca": "mae-pca", "dvae": "mae-token", "token": "mae-token"}   # registry families
MASKINGS = ("random", "block", "grid")


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise unknown("target", target, TARGETS)


def check_masking(strategy: str, mask_ratio: float) -> None:
    """Refuse an unknown strategy or a ratio the strategy cannot produce."""
    if strategy not in MASKINGS:
        raise unknown("masking", strategy, MASKINGS)
    if not 0.0 <= mask_ratio < 1.0:
        raise UsageError(f"mask_ratio must lie in [0, 1), got {mask_ratio}")
    if strategy == "grid" and abs(mask_ratio - 0.75) > 1e-9:
        raise UsageError(f"grid masking keeps one patch of every 2x2 cell, i.e. mask_ratio 0.75; "
                         f"got mask_ratio {mask_ratio}")
