"""The one configuration mechanism: protocol defaults <- YAML file <- command-line flags <- --set.

Each task's paper defaults live in one file, `maebench/protocols/<protocol>.yaml`, readable in
one place. A protocol file may hold a `by_arch:` table of per-model-size defaults (e.g. the
ViT-B fine-tuning recipe differs from ViT-L's); the entry for the run's architecture is merged
first. Keys may nest one level (`aug.mixup`), addressed on the command line as
`--set aug.mixup=0.8`. A key that the protocol does not define is an error naming the key and
where it came from, so a typo never silently runs the default recipe.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from maebench.errors import MaebenchError, UsageError, did_you_mean

PROTOCOL_DIR = Path(__file__).parent / "protocols"

# Range checks applied to any key of this name, in any protocol.
_NON_NEGATIVE = {"lr", "base_lr", "min_lr", "weight_decay", "warmup_epochs", "drop_path",
                 "label_smoothing", "mixup", "cutmix", "reprob", "clip_grad", "momentum"}
_POSITIVE = {"epochs", "batch_size", "accum_iter", "img_size", "num_workers_min"}
_OPEN_UNIT = {"mask_ratio"}          # strictly between 0 and 1
_UNIT = {"layer_decay", "label_fraction", "aux_weight"}   # in (0, 1]


def protocols() -> list[str]:
    return sorted(p.stem for p in PROTOCOL_DIR.glob("*.yaml"))


def protocol_defaults(protocol: str) -> dict[str, Any]:
    path = PROTOCOL_DIR / f"{protocol}.yaml"
    if not path.is_file():
        raise UsageError(f"unknown protocol '{protocol}'{did_you_mean(protocol, protocols())}")
    return yaml.safe_load(path.read_text()) or {}


def parse_set(item: str) -> tuple[str, Any]:
    """'a.b=1e-3' -> ('a.b', 0.001); the value is read as YAML (numbers, lists, true/false)."""
    if "=" not in item:
        raise UsageError(f"--set expects key=value, got '{item}'")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "by_arch":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _assign(cfg: dict, key: str, value: Any, source: str) -> None:
    known = _flatten(cfg)
    if key not in known:
        if isinstance(value, dict):       # a whole sub-table from a YAML file
            for k, v in value.items():
                _assign(cfg, f"{key}.{k}", v, source)
            return
        raise UsageError(f"unknown config key '{key}' in {source}{did_you_mean(key, known)}")
    default = known[key]
    if isinstance(default, bool) and not isinstance(value, bool):
        raise UsageError(f"config key '{key}' in {source} expects true/false, got {value!r}")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, str):          # YAML 1.1 reads '3e-3' (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"config key '{key}' in {source} expects a number, got {value!r}")
        if isinstance(default, float):
            value = float(value)
        elif float(value) != int(value):
            raise UsageError(f"config key '{key}' in {source} expects an integer, got {value!r}")
        else:
            value = int(value)
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value


def _check_ranges(cfg: dict) -> None:
    for key, value in _flatten(cfg).items():
        leaf = key.rsplit(".", 1)[-1]
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if leaf in _NON_NEGATIVE and value < 0:
            raise UsageError(f"config key '{key}' must be >= 0, got {value}")
        if leaf in _POSITIVE and value <= 0:
            raise UsageError(f"config key '{key}' must be > 0, got {value}")
        if leaf in _OPEN_UNIT and not 0 < value < 1:
            raise UsageError(f"config key '{key}' must lie strictly between 0 and 1, got {value}")
        if leaf in _UNIT and not 0 < value <= 1:
            raise UsageError(f"config key '{key}' must lie in (0, 1], got {value}")


def load(protocol: str, *, config_file: str | Path | None = None, sets: list[str] = (),
         flags: dict[str, Any] | None = None, arch: str | None = None) -> dict[str, Any]:
    """The effective config of one run. `flags` are named CLI options (None = not given)."""
    defaults = protocol_defaults(protocol)
    by_arch = defaults.pop("by_arch", {}) or {}
    cfg = copy.deepcopy(defaults)
    if arch and arch in by_arch:
        for k, v in _flatten(by_arch[arch]).items():
            _assign(cfg, k, v, f"{protocol}.yaml by_arch.{arch}")
    if config_file:
        path = Path(config_file)
        try:
            user = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise MaebenchError(f"cannot read config file {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise MaebenchError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(user, dict):
            raise MaebenchError(f"config file {path} must hold a mapping of keys to values")
        for k, v in user.items():
            _assign(cfg, k, v, str(path))
    for k, v in (flags or {}).items():
        if v is not None:
            _assign(cfg, k, v, f"--{k.replace('_', '-')}")
    for item in sets:
        k, v = parse_set(item)
        _assign(cfg, k, v, f"--set {item}")
    _check_ranges(cfg)
    return cfg
