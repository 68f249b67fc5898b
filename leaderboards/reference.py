"""The paper's reference numbers (reference.yaml) as typed entries, and the "(paper)" rows and
delta targets built from them. Kept as data, not code, so every number carries its source."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import yaml

from maebench.leaderboards.columns import Column, parse_blocks
from maebench.leaderboards.families import canonical_arch
from maebench.errors import MaebenchError

REFERENCE_PATH = Path(__file__).with_name("reference.yaml")

ARCH_LABELS = {"vit-tiny": "ViT-Ti", "vit-small": "ViT-S", "vit-base": "ViT-B",
               "vit-large": "ViT-L", "vit-huge": "ViT-H"}
_ENTRY_KEYS = {"label", "column", "value", "method", "family", "arch", "task", "metric", "dataset",
               "blocks", "leaderboard", "variant", "by_family", "note", "mask_ratio", "version"}
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
    by_family: bool        # may be the delta target of a backbone matched by family + size
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
    catalogue_rows: dict[str, str]     # catalogue paper-row name ("mocov3") -> method ("MoCo v3")

    def leaderboard_entries(self) -> list[RefEntry]:
        return [e for e in self.entries if e.leaderboard]

    def methods_for(self, paper_keys: Sequence[str]) -> set[tuple[str, str | None]]:
        """Registry `paper` keys ("mae/vit-b") -> {(method, arch)}; unknown row names are skipped."""
        out = set()
        for key in paper_keys:
            row, _, size = str(key).partition("/")
            if row in self.catalogue_rows:
                out.add((self.catalogue_rows[row], canonical_arch(size)))
        return out

    def delta_target(self, family: str, arch: str | None, column: Column,
                     paper_keys: Sequence[str] = ()) -> RefEntry | None:
        """The one paper number a measured cell is compared with, on the paper's dataset with
        the same task, metric and K. The backbone registry's `paper` keys say which paper row a
        backbone stands for (BEiT, DINO); without them, same family and size. A headline
        number wins over a variant recipe; anything ambiguous gives no delta, never a wrong one."""
        if paper_keys:
            wanted = self.methods_for(paper_keys)
            found = [e for e in self.leaderboard_entries()
                     if (e.method, e.arch) in wanted and e.lb_column == column]
        elif arch is None:
            return None
        else:
            found = [e for e in self.leaderboard_entries()
                     if e.by_family and e.family == family and e.arch == arch and e.lb_column == column]
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
        by_family=bool(merged.get("by_family", True)), note=merged.get("note"))


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
    return Reference(paper=paper, entries=tuple(entries),
                     catalogue_rows=dict(data.get("catalogue_rows") or {}))


@lru_cache(maxsize=1)
def default_reference() -> Reference:
    return load_reference()


def study_reference(name: str, path: str | Path | None = None) -> dict[str, Any]:
    """reference.yaml `studies: NAME`: {source, caption, ablations: {table: {paper row: {ft, lin}}}}."""
    path = Path(path) if path else REFERENCE_PATH
    studies = yaml.safe_load(path.read_text()).get("studies") or {}
    if name not in studies:
        raise MaebenchError(f"{path.name} has no study '{name}' (it has: {', '.join(studies)})")
    return studies[name]
