"""A tracked run: its id, its directory, and its row in the results store.

Run ids are derived from (task, backbone, dataset, effective config, seed), so the same
command finds its own directory again: `--resume` needs no extra argument. Only rank 0 writes
to the results store; the other ranks get a handle whose `finish` does nothing.

What the backbone is (family, architecture, the paper rows it stands for) is written into the
row when the run starts, so the leaderboard never needs the live registry: a backbone removed
later still renders under its family.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from maebench import distributed as dist
from maebench.home import runs_dir
from maebench.results import ResultsStore, config_hash


@dataclass
class RunContext:
    run_id: str
    out_dir: Path
    _handle: Any = None

    def finish(self, metrics: dict[str, Any], *, peak_mem_mb: float | None = None,
               images_per_s: float | None = None) -> None:
        if self._handle is not None:
            self._handle.finish(metrics, peak_mem_mb=peak_mem_mb, images_per_s=images_per_s)


def run_id_for(task: str, backbone: str, dataset: str | None, config: dict, seed: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", backbone)
    return f"{task}-{safe}-{config_hash(task, backbone, dataset, config, seed)[:10]}-s{seed}"


@contextmanager
def tracked_run(*, task: str, backbone: str, dataset: str | None, config: dict, seed: int | None,
                out: str | Path | None = None, results: str | Path | None = None,
                split: str | None = "val", checkpoint_sha256: str | None = None,
                backbone_info: dict[str, Any] | None = None) -> Iterator[RunContext]:
    """`backbone_info`: {"family", "arch", "paper"} of the backbone, stored with the row."""
    seed = seed or 0
    run_id = run_id_for(task, backbone, dataset, config, seed)
    out_dir = Path(out) if out else runs_dir() / run_id
    if dist.is_main():
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            from maebench.errors import MaebenchError
            raise MaebenchError(f"cannot create run directory {out_dir}: {e.strerror or e}") from None
        store = ResultsStore(results)
        with store.run(task=task, backbone=backbone, config=config, dataset=dataset, split=split,
                       seed=seed, checkpoint_sha256=checkpoint_sha256, out_dir=str(out_dir),
                       run_id=run_id, backbone_info=backbone_info) as handle:
            yield RunContext(run_id, out_dir, handle)
    else:
        yield RunContext(run_id, out_dir, None)


def backbone_info(entry: Any) -> dict[str, Any]:
    """The row's record of a registry entry (anything with .family, .arch, .paper)."""
    return {"family": entry.family, "arch": entry.arch, "paper": list(getattr(entry, "paper", None) or [])}
