"""A study's results as the paper's tables: one table per ablation, a row per variant (the base its
marked default row), our fine-tune and linear numbers (mean ± std over seeds) beside the paper's
for the same row, and what each row's pretraining cost. Rows are found by their tags (`--tag
study=... variant=...`), the newest finished run per recipe and seed."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from maebench.study.studyfile import Study

PAPER_COLUMNS = {"finetune": "ft", "linprobe": "lin"}       # reference.yaml `studies:` column names


@dataclass(frozen=True)
class Cell:
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def text(self) -> str:
        return f"{self.mean:.1f}" + (f" ± {self.std:.1f}" if self.std is not None else "")


@dataclass
class TableRow:
    label: str
    variant: str | None                    # None: a paper row this study does not run
    default: bool
    paper_label: str | None
    ours: dict[str, Cell | None] = field(default_factory=dict)     # protocol -> our number
    paper: dict[str, float | None] = field(default_factory=dict)   # protocol -> the paper's
    gflops: float | None = None            # pretraining GFLOPs per image (forward + backward)
    seconds: float | None = None           # pretraining wall time
    note: str | None = None


@dataclass
class Table:
    name: str
    rows: list[TableRow]
    relative_to: TableRow | None = None    # the default row: the cost columns' 1.0x


@dataclass
class StudyTables:
    tables: list[Table]
    protocols: tuple[str, ...]
    source: str | None                     # the paper table the numbers beside ours come from
    hardware: str | None


def paper_numbers(study: Study) -> tuple[dict, str | None]:
    """{ablation: {paper row: {ft, lin}}} and the source line, from reference.yaml `studies:`."""
    if not study.paper:
        return {}, None
    from maebench.leaderboards.reference import study_reference
    ref = study_reference(study.paper)
    return ref["ablations"], f"{ref['source']}: {ref['caption']}"


def collect(study: Study, results: Path) -> StudyTables:
    from maebench.results import ResultsStore, newest_done
    rows = [r for r in newest_done(ResultsStore(results).rows()) if r.config.get("tag_study") == study.name]
    score: dict[tuple[str, str], list[float]] = {}
    cost: dict[str, tuple[float | None, float | None]] = {}
    hardware = None
    for r in rows:
        variant = r.config.get("tag_variant")
        if r.task == "pretrain-mae":
            cost[variant] = (r.metrics.get("train_gflops_per_image"), r.wall_time_s)
            hardware = hardware or r.hardware
        elif r.task in study.protocols:
            from maebench.tasks.table import TASKS
            metric = TASKS[r.task].headline[0]
            if metric in r.metrics:
                score.setdefault((variant, r.task), []).append(float(r.metrics[metric]))
    paper, source = paper_numbers(study)
    tables = []
    for ab in study.ablations:
        out = []
        for row in ab.rows:
            ref = (paper.get(ab.name) or {}).get(row.paper) or {} if row.paper else {}
            t = TableRow(row.label, row.variant, row.variant == "base", row.paper, note=row.note)
            for p in study.protocols:
                values = score.get((row.variant, p))
                t.ours[p] = Cell(tuple(values)) if values else None
                t.paper[p] = ref.get(PAPER_COLUMNS.get(p, p))
            t.gflops, t.seconds = cost.get(row.variant, (None, None))
            out.append(t)
        tables.append(Table(ab.name, out, next((t for t in out if t.default), None)))
    return StudyTables(tables, study.protocols, source, hardware)
