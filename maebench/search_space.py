"""A search's space and rules, checked: the protocol's `search:` table (maebench/config.py
`block`), its `by_arch` entry's and a --config file's keys over it, `--search-space KEY=V1,V2`
replacing one key, every value checked as `--set` checks it, the recipe's own value of each key
first; the held-out fraction, budget, rungs and pruner (maebench/search.py runs the trials)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import yaml

from maebench import config
from maebench.errors import UsageError
from maebench.runspec import RunSpec


@dataclass(frozen=True)
class Settings:
    """A protocol's `search:` table, checked, for one backbone."""
    protocol: str
    holdout: float                         # fraction of the training data held out for selection
    budget: float                          # trials' cost cap, in full-run equivalents
    reduction_factor: int                  # successive halving keeps the best 1 / this at each rung
    min_epochs: int                        # the first rung
    space: dict[str, list]                 # config key -> values, the recipe's own first
    pruner: str = "halving"                # PRUNERS

    def rungs(self, epochs: int) -> list[int]:
        """The epochs at which a trial is scored (and may stop), before its last: min_epochs x
        reduction_factor^k; none for the exhaustive grid."""
        if self.pruner == "none":
            return []
        return sorted({self.min_epochs * self.reduction_factor ** k for k in range(64)
                       if self.min_epochs * self.reduction_factor ** k < epochs})

    def optuna_pruner(self):
        """Optuna's pruner for this setting (module docstring)."""
        import optuna
        if self.pruner == "halving":
            return optuna.pruners.SuccessiveHalvingPruner(min_resource=self.min_epochs,
                                                          reduction_factor=self.reduction_factor)
        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
        return optuna.pruners.NopPruner()

    def points(self) -> list[dict[str, Any]]:
        """The grid in trial order: the first point is the recipe's own value of every key."""
        keys = list(self.space)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.space[k] for k in keys))]

    def as_config(self, seed: int, *, joint: bool = False) -> dict[str, Any]:
        """The row's config key `search`: what was searched, on which held-out part, how."""
        out = {"space": {k: list(v) for k, v in self.space.items()}, "holdout": self.holdout, "seed": seed}
        if joint:
            return {**out, "pruner": "none: every point scored in one pass"}
        return {**out, "budget": self.budget, "pruner": PRUNERS[self.pruner].format(s=self)}


# how a trained search stops poor trials (`search.pruner`), as the row's config records it
PRUNERS = {
    "halving": "successive halving (optuna), reduction {s.reduction_factor}, first rung {s.min_epochs} epoch(s)",
    "median": "median stopping (optuna), at epochs {s.min_epochs} x {s.reduction_factor}^k",
    "none": "none: every point trained to the end (the exhaustive grid)",
}


def as_set(key: str, value: Any) -> str:
    """A `--set` item for one value (YAML flow style, so lists and null survive)."""
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def settings(spec: RunSpec, arch: str, base_cfg: dict, *, own_first: bool = True) -> Settings:
    """The protocol's search table with --search-space, --search-budget (and linprobe's --holdout)
    applied; every value checked as `--set` checks it (unknown key, wrong type, out of range: a
    usage error naming it). `own_first`: the recipe's own value of each key goes first."""
    protocol = spec.program.protocol
    where = f"maebench/protocols/{protocol}.yaml" + (f" (or {spec.config_file})" if spec.config_file else "")
    block = config.search_block(protocol, config_file=spec.config_file, arch=arch)
    space = dict(block.get("space") or {})
    for item in spec.search_space:
        key, values = _parse_space_item(item)
        space[key] = values
    if not space:
        raise UsageError(f"--search: {where} has no `search: space:` for --task {spec.program.name}; "
                         "give one with --search-space KEY=V1,V2,...")
    for key, values in space.items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"search space key '{key}' must list at least one value, got {values!r}")
        for v in values:
            config.load(protocol, config_file=spec.config_file, arch=arch, sets=[*spec.sets, as_set(key, v)])
        space[key] = _own_first(values, config.get(base_cfg, key) if own_first else object())
    budget = spec.search_budget if spec.search_budget is not None else block.get("budget", 3.0)
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        budget = -1.0
    if not budget > 0:
        raise UsageError(f"--search-budget must be a positive number of full-run equivalents, got {budget!r}")
    from maebench.data.heldout import check_fraction
    if spec.options.get("holdout") is not None:
        block["holdout"] = spec.options["holdout"]          # linprobe's --holdout
    holdout = check_fraction(block.get("holdout", 0.2), "--holdout" if spec.options.get("holdout") is not None
                             else f"search.holdout in {where}")
    rf, me = block.get("reduction_factor", 3), block.get("min_epochs", 1)
    if isinstance(rf, bool) or not isinstance(rf, int) or rf < 2:
        raise UsageError(f"search.reduction_factor in {where} must be a whole number >= 2, got {rf!r}")
    if isinstance(me, bool) or not isinstance(me, int) or me < 1:
        raise UsageError(f"search.min_epochs in {where} must be a whole number >= 1, got {me!r}")
    pruner = block.get("pruner", "halving")
    if pruner not in PRUNERS:
        from maebench.errors import unknown
        raise unknown(f"search.pruner in {where}", pruner, PRUNERS)
    return Settings(protocol, holdout, budget, rf, me, space, pruner)


def _parse_space_item(item: str) -> tuple[str, list]:
    """'lr_scale=0.5,1,2' -> ('lr_scale', [0.5, 1, 2]); each value read as YAML."""
    if "=" not in item:
        raise UsageError(f"--search-space expects KEY=V1,V2,..., got '{item}'")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not raw.strip():
        raise UsageError(f"--search-space key '{key}' lists no value")
    values = []
    for part in raw.split(","):
        if not part.strip():
            raise UsageError(f"--search-space key '{key}' has an empty value in '{raw}'")
        try:
            values.append(yaml.safe_load(part))
        except yaml.YAMLError:
            values.append(part)
    return key, values


def _own_first(values: list, own: Any) -> list:
    """The values without repeats, the recipe's own value (if listed) first."""
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    if own in out:
        out.remove(own)
        out.insert(0, own)
    return out
