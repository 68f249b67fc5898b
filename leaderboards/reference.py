"""The paper's reference numbers (reference.yaml) as typed entries, and the "(paper)" rows and
delta targets built from them. Kept as data, not code, so every number carries its source."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from leaderboards.columns import Column, parse_blocks
from maebench.errors import MaebenchError

REFERENCE_PATH = Path(__file__).with_name("reference.yaml")

ARCH_LABELS = {"vit-tiny": "ViT-Ti", "vit-small": "ViT-S", "vit-base": "ViT-B",
               "vit-large": "ViT-L", "vit-huge": "ViT-H"}
_ENTRY_KEYS = {"label", "column", "value", "method", "family", "arch", "task", "metric", "dataset",
               "blocks", "leaderboard", "variant", "compare", "note", "mask_ratio", "version"}
_REQUIRED = ("label", "column", "value", "method", "family", "task", "metric")


@dataclass(frozen=True)
class RefEntry:
    source: str            # "Table 3", "Fig. 9", ...
    version: str           # a version note where table numbers differ between arXiv versions
    caption: str
    label: str             # row label in the source table
    column: str            # column label in the source table
    value: float
    method: str
    family: str
    arch: str | None
    task: str
    metric: str
    dataset: str | None
    blocks: float | None
    leaderboard: bool
    variant: str | None
    compare: bool
    note: str | None

    @property
    def lb_column(self) -> Column:
        return Column(self.task, self.metric, self.dataset or "unknown", self.blocks)

    @property
    def row_label(self) -> str:
        arch = ARCH_LABELS.get(self.arch or "", self.arch or "")
        variant = f", {self.variant}" if self.variant else ""
        return f"{self.method} {arch}{variant} (paper)"

    @property
    def citation(self) -> str:
        """'Table 7 (final arXiv; Table 6 in v1)': the source, with a version note where needed."""
        return f"{self.source} ({self.version})" if self.version else self.source


@dataclass(frozen=True)
class Reference:
    paper: dict[str, str]
    entries: tuple[RefEntry, ...]

    def leaderboard_entries(self) -> list[RefEntry]:
        return [e for e in self.entries if e.leaderboard]

    def delta_target(self, family: str, arch: str | None, column: Column) -> RefEntry | None:
        """The one paper number a measured cell is compared with: same family, size, task,
        metric, K and the paper's dataset. A headline number wins over a variant recipe;
        anything ambiguous gives no delta rather than a wrong one."""
        if arch is None:
            return None
        found = [e for e in self.leaderboard_entries()
                 if e.compare and e.family == family and e.arch == arch and e.lb_column == column]
        headline = [e for e in found if e.variant is None]
        found = headline or found
        return found[0] if len(found) == 1 else None

    @property
    def citation(self) -> str:
        p = self.paper
        return f"{p['title']}, {p['authors']}, arXiv {p['arxiv']} ({p['venue']}); {p['version']}"


def _entry(group: dict[str, Any], raw: dict[str, Any], where: str) -> RefEntry:
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise MaebenchError(f"{where}: unknown key(s) {sorted(unknown)}")
    merged = {k: v for k, v in group.items() if k in _ENTRY_KEYS}
    merged.update(raw)
    missing = [k for k in _REQUIRED if merged.get(k) is None]
    if missing:
        raise MaebenchError(f"{where}: missing {missing}")
    return RefEntry(
        source=group["source"], version=str(merged.get("version") or ""),
        caption=group.get("caption", ""), label=str(merged["label"]), column=str(merged["column"]),
        value=float(merged["value"]), method=str(merged["method"]), family=str(merged["family"]),
        arch=merged.get("arch"), task=str(merged["task"]), metric=str(merged["metric"]),
        dataset=merged.get("dataset"), blocks=parse_blocks(merged.get("blocks")),
        leaderboard=bool(merged.get("leaderboard", False)), variant=merged.get("variant"),
        compare=bool(merged.get("compare", True)), note=merged.get("note"))


def load_reference(path: str | Path | None = None) -> Reference:
    path = Path(path) if path else REFERENCE_PATH
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise MaebenchError(f"cannot read paper reference numbers {path}: {e}") from e
    paper = data["paper"]
    entries = []
    for g_i, group in enumerate(data["groups"]):
        for e_i, raw in enumerate(group["entries"]):
            entries.append(_entry(group, raw, f"{path.name}: {group['source']} entry {e_i + 1}"))
    return Reference(paper=paper, entries=tuple(entries))


@lru_cache(maxsize=1)
def default_reference() -> Reference:
    return load_reference()
