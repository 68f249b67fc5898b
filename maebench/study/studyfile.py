"""The study file: read, every entry checked before anything runs (nothing is written).

An unknown key, two variants with one name, a variant whose config equals the base's, a
protocol the study's data cannot serve: one line naming the file and the entry (exit 2).
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maebench.errors import UsageError, did_you_mean

KEYS = ("name", "title", "arch", "data", "base", "ablations", "variants", "grid", "tokenizers", "protocols",
        "protocol_options", "transfer_data", "seeds", "paper")
ROW_KEYS = ("name", "label", "set", "base", "paper", "not_run")
PROTOCOL = "pretrain_mae"
FASHION = "fashion"                             # data: the fashion world, prepared by the study's first stage
QUICK_FASHION = "fashion-quick"                 # a tokenizer's data: the quick world (1,000 images), its own stage
NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")     # a study's and a variant's: part of a backbone name


@dataclass(frozen=True)
class Variant:
    name: str                              # the backbone's suffix: study-<study>-<name>
    sets: dict[str, Any]                   # config key -> value, over the base


@dataclass(frozen=True)
class Row:
    """One row of one ablation table: a variant, or the base (the marked default row)."""
    label: str
    variant: str | None                    # "base" for the default row; None: a paper row not run here
    paper: str | None = None               # the paper's row this one stands beside (reference.yaml)
    note: str | None = None                # why a paper row is not run here


@dataclass(frozen=True)
class Ablation:
    name: str                              # the table's title: "decoder depth", "mask ratio", ...
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Study:
    path: Path
    name: str
    title: str
    arch: str
    data: str                              # a directory, or FASHION
    base: dict[str, Any]
    variants: tuple[Variant, ...]          # the base first
    ablations: tuple[Ablation, ...]
    tokenizers: dict[str, dict[str, Any]]  # name -> `pretrain --method dvae` config keys
    protocols: tuple[str, ...]
    protocol_options: dict[str, list[str]]
    transfer_data: dict[str, Path]
    seeds: tuple[int, ...]
    paper: str | None                      # reference.yaml `studies:` entry with the paper's numbers
    builtin: bool = field(default=False)

    def backbone(self, variant: str, quick: bool = False) -> str:
        """study-<name>-<variant>; the quick form's study-<name>-quick-<variant>, so neither replaces
        the other's registered backbone."""
        return f"study-{self.name}-{'quick-' * quick}{variant}"


def read(path: str | Path, *, builtin: bool = False) -> Study:
    """The study file, every entry checked."""
    from maebench import config
    path = Path(path)
    data = config.read_mapping(path, what="study file", keys=KEYS)
    for key in ("name", "data", "protocols"):
        if not data.get(key):
            raise UsageError(f"{path}: `{key}` is missing or empty")
    if not NAME.fullmatch(str(data["name"])):
        raise UsageError(f"{path}: name '{data['name']}' must be lower-case letters, digits, '.', '_' or '-'")
    base = dict(data.get("base") or {})
    arch = str(data.get("arch") or "vit-micro")
    variants, ablations = _variants(data, path)
    variants = [Variant("base", {})] + variants
    if len(variants) == 1:
        raise UsageError(f"{path}: the study has no variants (give `ablations`, `variants` or `grid`)")
    _check_variants(path, arch, base, variants)
    protocols = tuple(data["protocols"] if isinstance(data["protocols"], list) else [data["protocols"]])
    study = Study(path=path, name=str(data["name"]), title=str(data.get("title") or data["name"]), arch=arch,
                  data=str(data["data"]), base=base, variants=tuple(variants), ablations=tuple(ablations),
                  tokenizers={str(k): dict(v or {}) for k, v in (data.get("tokenizers") or {}).items()},
                  protocols=protocols,
                  protocol_options={k: [str(o) for o in v] for k, v in (data.get("protocol_options") or {}).items()},
                  transfer_data={k: Path(str(v)).expanduser() for k, v in (data.get("transfer_data") or {}).items()},
                  seeds=tuple(int(s) for s in (data.get("seeds") or [0])), paper=data.get("paper"), builtin=builtin)
    _check_tokenizers(study)
    _check_protocols(study)
    return study


def with_data(study: Study, data: str) -> Study:
    """The study on another dataset (`--data`), its protocols checked against it."""
    from dataclasses import replace
    moved = replace(study, data=data)
    _check_protocols(moved)
    return moved


def _variants(data: dict, path: Path) -> tuple[list[Variant], list[Ablation]]:
    """Variants from `ablations` (one table each, the base its marked row), `variants` and `grid`
    (one table, "variants", together)."""
    out: list[Variant] = []
    ablations = []
    for title, spec in (data.get("ablations") or {}).items():
        where = f"ablations: '{title}'"
        if not isinstance(spec, list) or not spec:
            raise UsageError(f"{path}: {where}: expected a list of rows {{name, label, set | base: true, paper}}")
        rows = []
        for i, raw in enumerate(spec):
            kinds = ("set" in raw) + bool(raw.get("base")) + ("not_run" in raw) if isinstance(raw, dict) else 0
            if not isinstance(raw, dict) or set(raw) - set(ROW_KEYS) or kinds != 1:
                raise UsageError(f"{path}: {where} row {i + 1}: expected {{name, label, set: {{key: value}}}}, "
                                 f"{{label, base: true}} or {{label, not_run: WHY}} (each with an optional paper: ROW), "
                                 f"got {raw!r}")
            label = str(raw.get("label") or raw.get("name"))
            paper = None if raw.get("paper") is None else str(raw["paper"])
            if "not_run" in raw:
                rows.append(Row(label, None, paper, str(raw["not_run"])))
                continue
            if raw.get("base"):
                rows.append(Row(label, "base", paper))
                continue
            if "name" not in raw:
                raise UsageError(f"{path}: {where} row {i + 1}: a variant row needs a `name`")
            slug = _slug(title) + "-" + str(raw["name"])
            out.append(Variant(slug, dict(raw["set"] or {})))
            rows.append(Row(label, slug, paper))
        ablations.append(Ablation(str(title), tuple(rows)))
    listed = []
    for i, v in enumerate(data.get("variants") or []):
        if not isinstance(v, dict) or set(v) - {"name", "set"} or "name" not in v:
            raise UsageError(f"{path}: variants[{i}]: expected {{name: NAME, set: {{key: value, ...}}}}, got {v!r}")
        listed.append(Variant(str(v["name"]), dict(v.get("set") or {})))
    grid = data.get("grid") or {}
    if grid:
        keys = list(grid)
        for values in itertools.product(*(grid[k] if isinstance(grid[k], list) else [grid[k]] for k in keys)):
            sets = dict(zip(keys, values))
            listed.append(Variant(".".join(f"{k}-{str(v).lower()}" for k, v in sets.items()), sets))
    if listed:
        ablations.append(Ablation("variants", (Row("base", "base"),) + tuple(Row(v.name, v.name) for v in listed)))
    return out + listed, ablations


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-")


def _check_variants(path: Path, arch: str, base: dict, variants: list[Variant]) -> None:
    """Every variant's keys through the protocol's own checks (`--set`'s and the MAE method's); no
    two names alike; none equal to the base."""
    from maebench import config
    from maebench.backbones.pretraining.mae_method import check_mae_config
    seen: set[str] = set()
    base_cfg = None
    for i, v in enumerate(variants):
        where = "base" if i == 0 else f"variant '{v.name}'"
        if not NAME.fullmatch(v.name):
            raise UsageError(f"{path}: variant name '{v.name}' must be lower-case letters, digits, '.', '_' or '-' "
                             "(it names a backbone)")
        if v.name in seen:
            raise UsageError(f"{path}: two variants are named '{v.name}'")
        seen.add(v.name)
        try:
            cfg = config.load(PROTOCOL, arch=arch, sets=sets_of({**base, **v.sets})[1::2])
            check_mae_config(cfg)
        except UsageError as e:
            raise UsageError(f"{path}: {where}: {e}") from None
        if i == 0:
            base_cfg = cfg
        elif cfg == base_cfg:
            raise UsageError(f"{path}: variant '{v.name}' is the base recipe itself (it changes nothing; "
                             "in an ablation, mark the base's row `base: true`)")


def sets_of(values: dict[str, Any]) -> list[str]:
    """config keys -> `--set KEY=VALUE` arguments, the values as YAML."""
    import yaml
    out = []
    for k, x in values.items():
        text = yaml.safe_dump(x, default_flow_style=True).strip().removesuffix("...").strip()
        out += ["--set", f"{k}={text}"]
    return out


def _check_tokenizers(study: Study) -> None:
    from maebench import config
    for name, sets in study.tokenizers.items():
        if not NAME.fullmatch(name):
            raise UsageError(f"{study.path}: tokenizers: name '{name}' must be lower-case letters, digits, '.', "
                             "'_' or '-'")
        try:
            if "data" in sets and sets["data"] != QUICK_FASHION:
                raise UsageError(f"data must be '{QUICK_FASHION}' (the quick fashion world) or left out (the study's data), "
                                 f"got {sets['data']!r}")
            config.load("pretrain_dvae", arch=study.arch, sets=sets_of({k: v for k, v in sets.items() if k != "data"})[1::2])
        except UsageError as e:
            raise UsageError(f"{study.path}: tokenizers: '{name}': {e}") from None


def _check_protocols(study: Study) -> None:
    """Every protocol is a transfer task whose data the study's data (or transfer_data) serves; the
    fashion world serves them all once prepared."""
    from maebench.data.check import check
    from maebench.tasks.table import TASKS
    for p in study.protocols:
        if p not in TASKS:
            raise UsageError(f"{study.path}: protocols: unknown protocol '{p}'{did_you_mean(str(p), TASKS)}")
        if study.data == FASHION and p not in study.transfer_data:
            continue
        data = study.transfer_data.get(p, Path(study.data).expanduser())
        report = check(p if p in ("coco", "ade20k") else "classification", data, decode=False)
        if report.problems:
            raise UsageError(f"{study.path}: protocols: {p} cannot run on {data}: {report.problems[0]}")
    for p in study.protocol_options:
        if p not in study.protocols:
            raise UsageError(f"{study.path}: protocol_options: '{p}' is not one of the study's protocols")


def only(study: Study, names: list[str]) -> Study:
    """The study cut to these ablation tables or variants (`--only`): their rows, the base, and the
    tokenizers those variants read."""
    from dataclasses import replace
    tables = {a.name for a in study.ablations}
    variants = {v.name for v in study.variants}
    for n in names:
        if n not in tables | variants:
            raise UsageError(f"{study.path}: --only: no ablation or variant '{n}' (ablations: "
                             f"{', '.join(a.name for a in study.ablations)}; variants: as `--dry-run` names them)")
    keep = {"base"} | {r.variant for a in study.ablations if a.name in names for r in a.rows} | set(names)
    ablations = []
    for a in study.ablations:
        rows = tuple(r for r in a.rows if r.variant in keep)
        if a.name in names or any(r.variant in names for r in rows):
            ablations.append(replace(a, rows=rows))
    kept = tuple(v for v in study.variants if v.name in keep)
    used = {str({**study.base, **v.sets}.get("tokenizer")) for v in kept}
    return replace(study, ablations=tuple(ablations), variants=kept,
                   tokenizers={k: v for k, v in study.tokenizers.items() if k in used})
