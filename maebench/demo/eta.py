"""The demo's ETA: each stage's estimate (stages.ESTIMATE), scaled by how the finished stages
compared with theirs and shared over the lanes that run stages side by side. (Not the training
loop's progress line, maebench/progress.py: this one counts stages, not steps.)"""
from __future__ import annotations

import time


class StageEta:
    """Minutes left for the stages still to run, from their estimates and the pace so far."""

    def __init__(self, stages, lanes: int = 1):
        self.left = {id(s): s.estimate for s in stages}
        self.spent = self.estimated = 0.0
        self.lanes = lanes

    def done(self, stage, seconds: float) -> None:
        self.estimated += self.left.pop(id(stage), 0.0)
        self.spent += seconds

    def eta_text(self, stage) -> str:
        pace = min(max(self.spent / self.estimated, 0.5), 4.0) if self.estimated > 120 else 1.0
        eta = sum(self.left.values()) * pace / self.lanes
        return f"about {stage.estimate * pace / 60:.1f} min; demo ETA {eta / 60:.0f} min, " \
               f"{time.strftime('%H:%M', time.localtime(time.time() + eta))}"
