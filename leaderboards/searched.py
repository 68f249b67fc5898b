"""Searched results (`maebench run --search`, maebench/search.py): how a row is recognised, the §
mark its cells carry in every table, and what its search chose.

A row is searched when its config holds a non-empty `search` table (the space, the held-out
fraction, the budget, the seed, the pruner). Its recipe values were chosen per backbone on a
held-out part of the training data: a different measurement from the protocol's fixed recipe,
so it never shares a cell with an unsearched row (columns.py `protocol_of`) and is never
compared with the paper. The choice and every trial are in the row's metrics `search`.

Nothing here imports torch (maebench/lr_rule.py, the rule the training loop uses, is torch-free)."""
from __future__ import annotations

import math
from typing import Any

MARK = "§"
NOTE = (f"{MARK} = searched (`--search`): recipe values chosen per backbone on a held-out part of the training "
        "data, not the paper's fixed recipe; never compared with the paper.")
LR_KEYS = ("lr", "base_lr", "batch_size", "lr_scale")     # what the effective peak lr is made of


def is_searched(config: dict) -> bool:
    """Whether a run's config records a search (a non-empty `search` table)."""
    search = config.get("search") if isinstance(config, dict) else None
    return isinstance(search, dict) and bool(search)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def effective_lr(config: dict, params: dict | None = None) -> float | None:
    """The peak lr a run trained with (maebench/lr_rule.py `config_peak_lr`); `params` (a trial's
    point) replace the config's values. None when the config names no lr (k-NN) or a value is not
    a number."""
    from maebench.lr_rule import config_peak_lr
    cfg = {**config, **(params or {})}
    values = {k: cfg.get(k) for k in LR_KEYS}
    if any(v is not None and _number(v) is None for v in values.values()):
        return None
    if values["batch_size"] is None or (values["lr"] is None and values["base_lr"] is None):
        return None
    return config_peak_lr(values)


def chosen(config: dict, metrics: dict) -> dict[str, Any]:
    """The values the search chose: metrics `search.chosen`, else the config's own values of the
    space's keys."""
    record = metrics.get("search") if isinstance(metrics, dict) else None
    if isinstance(record, dict) and isinstance(record.get("chosen"), dict):
        return dict(record["chosen"])
    space = (config.get("search") or {}).get("space") or {}
    from maebench.config import get
    return {k: get(config, k) for k in space} if isinstance(space, dict) else {}


def value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


def lr_text(lr: float | None) -> str:
    return "" if lr is None else f"{lr:.3g}"


def chosen_text(config: dict, metrics: dict) -> str:
    """'lr 0.0003 (x2), global_pool=avg': the peak lr trained with (its chosen lr_scale in
    brackets), then every other chosen value; '' for an unsearched row."""
    if not is_searched(config):
        return ""
    picked = chosen(config, metrics)
    parts = []
    lr = effective_lr(config)
    if lr is not None:
        scale = picked.get("lr_scale")
        parts.append(f"lr {lr_text(lr)}" + (f" (x{value_text(scale)})" if scale is not None else ""))
    parts += [f"{k}={value_text(v)}" for k, v in picked.items()
              if not (k == "lr_scale" or (lr is not None and k in ("lr", "base_lr")))]
    return ", ".join(parts)
