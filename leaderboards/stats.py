"""One leaderboard cell: the finished runs of one backbone in one column, summarised as
mean ± sample standard deviation over seeds with the number of runs, plus the difference from
the paper's number where one applies. Also the cell's text, shared by every text format so
that what is printed can be parsed back (tests do)."""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field


@dataclass
class Cell:
    values: list[float]
    run_ids: list[str] = field(default_factory=list)
    reference: float | None = None     # the paper number this cell is compared with
    reference_source: str | None = None
    paper: bool = False                # a "(paper)" row's cell: the value is the paper's number

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample (n-1) standard deviation; None for a single run."""
        return statistics.stdev(self.values) if self.n > 1 else None

    @property
    def delta(self) -> float | None:
        return None if self.reference is None else self.mean - self.reference

    def text(self, pm: str = "±", delta_sign: str = "Δ") -> str:
        """'72.00 ± 2.00 (n=3)', '71.20 (n=1)', '85.70 ± 0.10 (n=3, Δ -0.20)'; paper: '85.9'."""
        if self.paper:
            return f"{self.mean:.1f}"
        out = f"{self.mean:.2f}"
        if self.std is not None:
            out += f" {pm} {self.std:.2f}"
        extra = f", {delta_sign} {self.delta:+.2f}" if self.delta is not None else ""
        return f"{out} (n={self.n}{extra})"

    def as_dict(self) -> dict:
        if self.paper:
            return {"value": self.mean, "source": self.reference_source}
        return {"mean": self.mean, "std": self.std, "n": self.n, "delta": self.delta,
                "reference": self.reference, "reference_source": self.reference_source,
                "run_ids": list(self.run_ids)}


_CELL_RE = re.compile(r"^(?P<mean>-?\d+(?:\.\d+)?)(?: ± (?P<std>\d+(?:\.\d+)?))?"
                      r"(?: \(n=(?P<n>\d+)(?:, Δ (?P<delta>[+-]\d+(?:\.\d+)?))?\))?$")


def parse_cell(text: str) -> dict | None:
    """Inverse of Cell.text: {'mean', 'std', 'n', 'delta'} (None where absent); None for ''."""
    text = text.strip()
    if not text or text == "-":
        return None
    m = _CELL_RE.match(text)
    if not m:
        raise ValueError(f"not a leaderboard cell: {text!r}")
    return {k: (None if v is None else (int(v) if k == "n" else float(v)))
            for k, v in m.groupdict().items()}


def finite(value) -> float | None:
    """A metric value as a float, or None for anything that is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
