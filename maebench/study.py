"""`maebench study FILE.yaml`: an ablation study of MAE pretraining, planned as launcher jobs.

A study file names a base pretraining recipe, its variants and the transfer protocols that
score each variant:

    name: mask-ratio                       # the study's name: backbones are study-<name>-<variant>
    arch: vit-micro
    data: ~/.maebench/data/fashion/classification   # pretraining data, and the protocols' unless `transfer_data`
    base: {target: norm-pixel}             # pretrain_mae config keys (as --set takes them)
    variants:                              # a list of named variants ...
      - {name: ratio-0.5, set: {mask_ratio: 0.5}}
    grid: {mask_ratio: [0.1, 0.5, 0.9]}    # ... and/or a grid over keys (names: mask_ratio-0.1, ...)
    protocols: [finetune, linprobe]        # how each variant is scored (`maebench run --task`)
    protocol_options: {linprobe: [--cached-features]}
    transfer_data: {coco: DIR}             # optional: another dataset for a protocol
    seeds: [0]

The base itself is always a row (variant `base`). Everything is checked before anything runs: an
unknown key in a variant, two variants with one name, a variant whose config equals the base's,
a protocol the study's data cannot serve -- one line naming the file and the entry (exit 2).
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maebench.errors import UsageError, did_you_mean
from maebench.launch.jobs import Job

KEYS = ("name", "arch", "data", "base", "variants", "grid", "protocols", "protocol_options", "transfer_data", "seeds")
PROTOCOL = "pretrain_mae"
NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")     # a study's and a variant's: part of a backbone name


@dataclass(frozen=True)
class Variant:
    name: str
    sets: dict[str, Any]                   # config key -> value, over the base


@dataclass(frozen=True)
class Study:
    path: Path
    name: str
    arch: str
    data: Path
    base: dict[str, Any]
    variants: tuple[Variant, ...]          # the base first
    protocols: tuple[str, ...]
    protocol_options: dict[str, list[str]]
    transfer_data: dict[str, Path]
    seeds: tuple[int, ...]

    def backbone(self, variant: Variant) -> str:
        return f"study-{self.name}-{variant.name}"


def read(path: str | Path) -> Study:
    """The study file, every entry checked (no file is written)."""
    import yaml
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise UsageError(f"cannot read study file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a study file is a mapping with keys {', '.join(KEYS)}")
    for key in data:
        if key not in KEYS:
            raise UsageError(f"{path}: unknown key '{key}'{did_you_mean(str(key), KEYS)}")
    for key in ("name", "data", "protocols"):
        if not data.get(key):
            raise UsageError(f"{path}: `{key}` is missing or empty")
    if not NAME.fullmatch(str(data["name"])):
        raise UsageError(f"{path}: name '{data['name']}' must be lower-case letters, digits, '.', '_' or '-'")
    base = dict(data.get("base") or {})
    arch = str(data.get("arch") or "vit-micro")
    variants = [Variant("base", {})] + _variants(data, path)
    _check_variants(path, arch, base, variants)
    protocols = tuple(data["protocols"] if isinstance(data["protocols"], list) else [data["protocols"]])
    study = Study(path=path, name=str(data["name"]), arch=arch, data=Path(str(data["data"])).expanduser(), base=base,
                  variants=tuple(variants), protocols=protocols,
                  protocol_options={k: [str(o) for o in v] for k, v in (data.get("protocol_options") or {}).items()},
                  transfer_data={k: Path(str(v)).expanduser() for k, v in (data.get("transfer_data") or {}).items()},
                  seeds=tuple(int(s) for s in (data.get("seeds") or [0])))
    _check_protocols(study)
    return study


def _variants(data: dict, path: Path) -> list[Variant]:
    out = []
    for i, v in enumerate(data.get("variants") or []):
        if not isinstance(v, dict) or set(v) - {"name", "set"} or "name" not in v:
            raise UsageError(f"{path}: variants[{i}]: expected {{name: NAME, set: {{key: value, ...}}}}, got {v!r}")
        out.append(Variant(str(v["name"]), dict(v.get("set") or {})))
    grid = data.get("grid") or {}
    if grid:
        keys = list(grid)
        for values in itertools.product(*(grid[k] if isinstance(grid[k], list) else [grid[k]] for k in keys)):
            sets = dict(zip(keys, values))
            out.append(Variant(".".join(f"{k}-{str(v).lower()}" for k, v in sets.items()), sets))
    return out


def _check_variants(path: Path, arch: str, base: dict, variants: list[Variant]) -> None:
    """Every variant's keys through the protocol's own checks (`--set`'s); no two names alike; none
    equal to the base."""
    from maebench import config
    seen: dict[str, int] = {}
    base_cfg = None
    for i, v in enumerate(variants):
        where = "base" if i == 0 else f"variant '{v.name}'"
        if not NAME.fullmatch(v.name):
            raise UsageError(f"{path}: variant name '{v.name}' must be lower-case letters, digits, '.', '_' or '-' "
                             "(it names a backbone)")
        if v.name in seen:
            raise UsageError(f"{path}: two variants are named '{v.name}'")
        seen[v.name] = i
        try:
            cfg = config.load(PROTOCOL, arch=arch, sets=[f"{k}={_yaml(x)}" for k, x in {**base, **v.sets}.items()])
        except UsageError as e:
            raise UsageError(f"{path}: {where}: {e}") from None
        if i == 0:
            base_cfg = cfg
        elif cfg == base_cfg:
            raise UsageError(f"{path}: variant '{v.name}' is the base recipe itself (it changes nothing)")


def _yaml(value: Any) -> str:
    import yaml
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _check_protocols(study: Study) -> None:
    """Every protocol is a transfer task whose data the study's data (or transfer_data) serves."""
    from maebench.data.check import check
    from maebench.tasks.table import TASKS
    for p in study.protocols:
        if p not in TASKS:
            raise UsageError(f"{study.path}: protocols: unknown protocol '{p}'{did_you_mean(str(p), TASKS)}")
        data = study.transfer_data.get(p, study.data)
        report = check(p if p in ("coco", "ade20k") else "classification", data, decode=False)
        if report.problems:
            raise UsageError(f"{study.path}: protocols: {p} cannot run on {data}: {report.problems[0]}")
    for p in study.protocol_options:
        if p not in study.protocols:
            raise UsageError(f"{study.path}: protocol_options: '{p}' is not one of the study's protocols")


def plan(study: Study, settings, *, results: str | None = None) -> list[Job]:
    """Pretrain each variant, then score it with every protocol at every seed; the transfer jobs
    need their variant's pretraining."""
    from maebench.launch.settings import protocol_resources
    common = ["--results", results] if results else []
    jobs = []
    for v in study.variants:
        sets = [a for k, x in {**study.base, **v.sets}.items() for a in ("--set", f"{k}={_yaml(x)}")]
        pre = Job(f"pretrain {v.name}", ["pretrain", "--method", "mae", "--arch", study.arch, "--data", str(study.data),
                                         "--name", study.backbone(v), *sets, *common, "--seed", "0"],
                  resources=settings.resources(protocol_resources(PROTOCOL, study.arch)))
        jobs.append(pre)
        for p in study.protocols:
            for seed in study.seeds:
                jobs.append(Job(f"{p} {v.name} (seed {seed})",
                                ["run", "--task", p, "--backbone", study.backbone(v),
                                 "--data", str(study.transfer_data.get(p, study.data)),
                                 *study.protocol_options.get(p, []), *common, "--seed", str(seed)],
                                needs=(pre.label,), resources=settings.resources(protocol_resources(p, study.arch))))
    return jobs
