"""What every config value may be: its type and range, checked when the config is loaded.

A rule belongs to a key's last name (`aug.mixup` and `mixup` share one), so one table covers
every protocol. A value that breaks its rule is a UsageError (exit 2) naming the key, the value,
what is expected and where the value came from, before any model, file or results row exists:
`--set drop_path=2.5` stops here rather than inside the model ten seconds later. Keys whose
protocol default is null (`lr`, `img_size`, ...) may stay null; a key without a rule keeps only
the type check of config._assign (the type of its default).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from maebench.errors import UsageError


def _is_num(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Rule:
    expect: str                          # "a number > 0", completing "expects ..."
    ok: Callable[[Any], bool]
    whole: bool = False                  # a number that is stored as an int


def num(lo=None, hi=None, *, lo_open=False, hi_open=False, whole=False) -> Rule:
    def ok(v) -> bool:
        if not _is_num(v) or (whole and float(v) != int(v)):
            return False
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return not (hi is not None and (v >= hi if hi_open else v > hi))
    kind = "a whole number" if whole else "a number"
    if lo is not None and hi is not None:
        where = f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    elif lo is not None:
        where = f"{'>' if lo_open else '>='} {lo}"
    else:
        where = ""
    return Rule(f"{kind} {where}".strip(), ok, whole)


def numbers_list(n: int | None, item: Rule, what: str) -> Rule:
    return Rule(what, lambda v: isinstance(v, list) and (n is None or len(v) == n) and all(item.ok(x) for x in v))


def low_high() -> Rule:
    return Rule("[low, high] with 0 < low <= high", lambda v: isinstance(v, list) and len(v) == 2
                and all(_is_num(x) for x in v) and 0 < v[0] <= v[1])


POSITIVE, NON_NEGATIVE = num(0, lo_open=True), num(0)
PROBABILITY, BELOW_ONE = num(0, 1), num(0, 1, hi_open=True)
UNIT = num(0, 1, lo_open=True)                            # (0, 1]
COUNT, COUNT0 = num(1, whole=True), num(0, whole=True)    # >= 1, >= 0

RULES: dict[str, Rule] = {
    # schedule and optimiser
    "lr": POSITIVE, "base_lr": POSITIVE, "lr_scale": POSITIVE, "min_lr": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
    "warmup_epochs": NON_NEGATIVE, "epochs": COUNT, "batch_size": COUNT, "accum_iter": COUNT,
    "micro_batch": COUNT, "eval_batch_size": COUNT, "layer_decay": UNIT, "clip_grad": POSITIVE,
    "momentum": PROBABILITY, "ema": BELOW_ONE, "betas": numbers_list(2, BELOW_ONE, "2 numbers in [0, 1)"),
    "milestones": numbers_list(None, UNIT, "fractions of training in (0, 1]"),
    # regularisation and augmentation
    "drop_path": BELOW_ONE, "dropout": BELOW_ONE, "label_smoothing": BELOW_ONE, "mask_ratio": num(0, 1, lo_open=True,
                                                                                                 hi_open=True),
    "mixup": NON_NEGATIVE, "cutmix": NON_NEGATIVE, "reprob": PROBABILITY, "mixup_prob": PROBABILITY,
    "mixup_switch_prob": PROBABILITY, "hflip": PROBABILITY, "flip": PROBABILITY, "color_jitter_prob": PROBABILITY,
    "grayscale_prob": PROBABILITY, "blur_prob": numbers_list(2, PROBABILITY, "2 probabilities in [0, 1]"),
    "solarize_prob": numbers_list(2, PROBABILITY, "2 probabilities in [0, 1]"), "crop_min": UNIT,
    "scale": low_high(), "crop_scale": low_high(), "ratio_range": low_high(), "scale_range": low_high(),
    "blur_sigma": low_high(), "cat_max_ratio": UNIT, "eval_crop_pct": UNIT, "aux_weight": UNIT,
    "mean": numbers_list(3, num(0, 1), "3 numbers in [0, 1]"), "std": numbers_list(3, POSITIVE, "3 numbers > 0"),
    # sizes and counts
    "img_size": COUNT, "patch_size": COUNT, "crop_size": COUNT, "stride": COUNT, "max_size": COUNT,
    "num_workers": COUNT0, "checkpoint_every": COUNT0, "eval_every": COUNT0, "log_every": COUNT,
    "num_classes": COUNT, "labels_per_class": COUNT, "label_fraction": UNIT, "k": COUNT, "query_chunk": COUNT,
    "temperature": POSITIVE, "blocks": NON_NEGATIVE, "channels": COUNT, "aux_channels": COUNT,
    "decoder_embed_dim": COUNT, "decoder_depth": COUNT, "decoder_num_heads": COUNT, "mlp_ratio": POSITIVE,
    "dim": COUNT, "mlp_dim": COUNT, "vocab_size": COUNT, "downsample": COUNT, "hidden": COUNT, "code_dim": COUNT,
    "num_resblocks": COUNT, "tau_start": POSITIVE, "tau_end": POSITIVE, "anneal_fraction": PROBABILITY,
    "kl_weight": NON_NEGATIVE, "box_score_thresh": PROBABILITY, "num_workers_min": COUNT,
    # how the loop spreads the model over processes (maebench/sharding.py)
    "strategy": Rule("one of ddp, fsdp", lambda v: v in ("ddp", "fsdp")),
}


def check(key: str, value: Any, source: str, nullable: bool) -> Any:
    """`value` as stored (a numeric string read as a number, a whole float as an int), or a
    one-line UsageError naming the key, the value, the expectation and the source."""
    rule = RULES.get(key.rsplit(".", 1)[-1])
    if rule is None or (value is None and nullable):
        return value
    if isinstance(value, str):          # YAML 1.1 reads '3e-3' (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if not rule.ok(value):
        nothing = " (or null)" if nullable else ""
        raise UsageError(f"config key '{key}' in {source} expects {rule.expect}{nothing}, got {value!r}")
    if rule.whole:
        value = int(value)
    return value
