"""One leaderboard cell: the finished runs of one backbone in one column, summarised as
mean ± sample standard deviation over seeds, the 95 % Student-t interval of the mean (the one
leaderboards/compare.py uses) and the number of runs, plus the difference from the paper's
number where one applies. Also the cell's text, shared by every text format."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from maebench.leaderboards.compare import INTERVAL, Summary

INTERVAL_TEXT = f"{INTERVAL} interval of the mean over seeds"


@dataclass
class Cell(Summary):
    """A Summary of the cell's values (n, mean, sample std, interval) with its runs and paper number."""
    run_ids: list[str] = field(default_factory=list)
    reference: float | None = None     # the paper number this cell is compared with
    reference_source: str | None = None
    paper: bool = False                # a "(paper)" row's cell: the value is the paper's number
    seen_all_labels: bool = False      # carries the † mark (leaderboards/label_mark.py)
    searched: bool = False             # carries the § mark (leaderboards/searched.py)

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95 % Student-t interval of the mean; None for one run and for a paper number."""
        return None if self.paper else Summary.interval.fget(self)

    @property
    def delta(self) -> float | None:
        return None if self.reference is None else self.mean - self.reference

    def text(self, pm: str = "±", interval: bool = False) -> str:
        """'72.00 ± 2.00' when n > 1 (with interval: '72.00 ± 2.00 [67.03, 76.97]'), '71.20' for
        one run; a paper row's number as the paper prints it: '85.9'. n and the difference from
        the paper are columns of their own."""
        if self.paper:
            return f"{self.mean:.1f}"
        out = f"{self.mean:.2f}" + (f" {pm} {self.std:.2f}" if self.std is not None else "")
        return out + (f" {interval_text(self.interval)}" if interval and self.interval else "")


def interval_text(iv: tuple[float, float] | None, digits: int = 2) -> str:
    """'[67.03, 76.97]'; '' without an interval."""
    return "" if iv is None else f"[{iv[0]:.{digits}f}, {iv[1]:.{digits}f}]"


def delta_text(delta: float | None) -> str:
    """'+0.20', '-0.80'; '' when there is nothing to compare with."""
    return "" if delta is None else f"{delta:+.2f}"


def finite(value) -> float | None:
    """A metric value as a float, or None for anything that is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
