"""The stage ledger (stages.json in the demo's directory): for every finished stage's command
line, a hash of its recipe. A second run reuses a stage whose hash is unchanged, so a changed
protocol file reruns its stages and those downstream of them, and nothing else."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from maebench.tasks.table import TASKS


def recipe_hashes(stages: list) -> dict[str, str]:
    """label -> a hash of the stage's argv, its protocol file and the hashes of the stages it
    needs: the stage ledger's record that a finished stage is still the stage planned now."""
    from maebench.config import PROTOCOL_DIR

    hashes: dict[str, str] = {}
    for s in stages:                                   # needs come first (plan's order)
        h = hashlib.sha256(" ".join(s.argv).encode())
        protocol = (f"pretrain_{s.argv[s.argv.index('--method') + 1]}" if s.kind == "pretrain"
                    else TASKS[s.kind].protocol if s.kind in TASKS else None)
        if protocol:
            h.update((PROTOCOL_DIR / f"{protocol}.yaml").read_bytes())
        for label in s.needs:
            h.update(hashes[label].encode())
        hashes[s.label] = h.hexdigest()[:16]
    return hashes


class Ledger:
    """stages.json: command line -> recipe hash of the stages that finished."""

    def __init__(self, path: Path):
        self.path = path
        self.done = json.loads(path.read_text()) if path.exists() else {}

    def reusable(self, stage, recipe: str) -> bool:
        """The stage finished earlier with this recipe (the data stage is never reused)."""
        return stage.kind != "data" and self.done.get(" ".join(stage.argv)) == recipe

    def pending(self, stages: list, recipe: dict[str, str]) -> list[tuple[int, object]]:
        """(position from 1, stage) of the stages to run; a line for each one reused."""
        todo = []
        for i, stage in enumerate(stages, 1):
            if self.reusable(stage, recipe[stage.label]):
                print(f"[{i}/{len(stages)}] {stage.label}: done earlier, reused", flush=True)
            else:
                todo.append((i, stage))
        return todo

    def record(self, stage, recipe: str) -> None:
        self.done[" ".join(stage.argv)] = recipe
        self.path.write_text(json.dumps(self.done, indent=1))
