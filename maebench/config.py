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

from maebench import config_values
from maebench.errors import MaebenchError, UsageError, did_you_mean, first_line

PROTOCOL_DIR = Path(__file__).parent / "protocols"

# Names other recipes use for a key (the MAE release's --blr, timm's --drop-path, ...): a
# config file written for them gets the key's name as its did-you-mean.
ALIASES = {"learning_rate": ("base_lr", "lr"), "blr": ("base_lr",), "wd": ("weight_decay",),
           "drop_path_rate": ("drop_path",), "input_size": ("img_size",), "batch": ("batch_size",),
           "warmup": ("warmup_epochs",), "smoothing": ("label_smoothing",), "norm_pix_loss": ("target",),
           "accum": ("accum_iter",), "workers": ("num_workers",)}


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


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "by_arch":
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def get(cfg: dict, key: str) -> Any:
    """The value of a dotted key ('aug.mixup') in a config; None when absent."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _assign(cfg: dict, key: str, value: Any, source: str, nulls: frozenset = frozenset()) -> None:
    """Set `key`, type- and range-checked; `nulls`: the keys whose protocol default is null."""
    known = flatten(cfg)
    if key not in known:
        if isinstance(value, dict):       # a whole sub-table from a YAML file
            for k, v in value.items():
                _assign(cfg, f"{key}.{k}", v, source, nulls)
            return
        raise UsageError(f"unknown config key '{key}' in {source}{_suggest(key, known)}")
    default = known[key]
    if isinstance(default, bool) and not isinstance(value, bool):
        raise UsageError(f"config key '{key}' in {source} expects true/false, got {value!r}")
    numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
    if numeric and config_values.RULES.get(key.rsplit(".", 1)[-1]) is None:
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
    value = config_values.check(key, value, source, nullable=default is None or key in nulls)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value


def _suggest(key: str, known: dict) -> str:
    """' (did you mean: ...?)': a close spelling, else the key other recipes call `key`."""
    leaf = key.rsplit(".", 1)[-1]
    prefix = key[: len(key) - len(leaf)]
    named = [f"{prefix}{k}" for k in ALIASES.get(leaf.lower().replace("-", "_"), ()) if f"{prefix}{k}" in known]
    return f" (did you mean: {', '.join(named)}?)" if named else did_you_mean(key, known)


TABLES = ("search", "resources")     # a protocol's tables that are not a run's config (see `block`)


def load(protocol: str, *, config_file: str | Path | None = None, sets: list[str] = (),
         flags: dict[str, Any] | None = None, arch: str | None = None) -> dict[str, Any]:
    """The effective config of one run. `flags` are named CLI options (None = not given)."""
    defaults = protocol_defaults(protocol)
    by_arch = defaults.pop("by_arch", {}) or {}
    for name in TABLES:                     # read apart from the run's config: `block`
        defaults.pop(name, None)
    cfg = copy.deepcopy(defaults)
    nulls = frozenset(k for k, v in flatten(cfg).items() if v is None)
    for k, v in flatten(cfg).items():       # the shipped values obey the same rules
        config_values.check(k, v, f"{protocol}.yaml", nullable=True)
    if arch and arch in by_arch:
        for k, v in flatten({k: v for k, v in by_arch[arch].items() if k not in TABLES}).items():
            _assign(cfg, k, v, f"{protocol}.yaml by_arch.{arch}", nulls)
    if config_file:
        for k, v in _user_file(config_file).items():
            if k not in TABLES:
                _assign(cfg, k, v, str(config_file), nulls)
    for k, v in (flags or {}).items():
        if v is not None:
            _assign(cfg, k, v, f"--{k.replace('_', '-')}", nulls)
    for item in sets:
        k, v = parse_set(item)
        _assign(cfg, k, v, f"--set {item}", nulls)
    return cfg


def _user_file(config_file: str | Path) -> dict[str, Any]:
    return read_mapping(config_file, "config file", error=MaebenchError)


def read_mapping(path: str | Path, what: str, keys=None, *, error: type[MaebenchError] = UsageError) -> dict[str, Any]:
    """A YAML file holding a mapping (a --config file, a grid file, launcher.yaml), its keys among
    `keys` when given: one line naming the file (and the key, with a did-you-mean) when it is not."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise error(f"{what} {path} is not valid YAML: {first_line(e)}") from None
    if not isinstance(data, dict):
        raise error(f"{what} {path} must hold a mapping of keys to values, not a {type(data).__name__}")
    for key in data if keys is not None else ():
        if key not in keys:
            raise error(f"{path}: unknown key '{key}'{did_you_mean(str(key), keys)}")
    return data


def block(name: str, protocol: str, *, config_file: str | Path | None = None, arch: str | None = None) -> dict[str, Any]:
    """A protocol's table `name` read apart from the run's config (`search:` for maebench/search.py,
    `resources:` for the launcher): the protocol's, then its by_arch entry's, then a --config
    file's; each later table's keys replace the earlier ones (a `space:` replaces the whole space)."""
    defaults = protocol_defaults(protocol)
    table = dict(defaults.get(name) or {})
    later = [((defaults.get("by_arch") or {}).get(arch) or {}) if arch else {}]
    if config_file:
        later.append(_user_file(config_file))
    for entry in later:
        extra = entry.get(name) or {}
        if not isinstance(extra, dict):
            raise UsageError(f"the `{name}:` table of {config_file or protocol} must be a mapping, got {extra!r}")
        table.update(extra)
    return table


def search_block(protocol: str, *, config_file: str | Path | None = None, arch: str | None = None) -> dict[str, Any]:
    """A protocol's `search:` table (maebench/search.py reads it)."""
    return block("search", protocol, config_file=config_file, arch=arch)


def training_flags(*, epochs: int | None, batch_size: int | None, deterministic: bool = False) -> dict[str, Any]:
    """The options every training command shares, as config keys (None = not given).
    --deterministic also means one data-loading process, so the order cannot vary."""
    flags: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size}
    if deterministic:
        flags["num_workers"] = 0
    return flags
