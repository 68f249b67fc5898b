"""A tracked run: its id, its directory, and its row in the results store.

Run ids are derived from (task, backbone, dataset, effective config, seed), so the same
command finds its own directory again: `--resume` needs no extra argument. Only rank 0 writes
to the results store; the other ranks get a handle whose `finish` does nothing.

A run directory is locked while a process trains in it (maebench.runlock; rank 0's lock under
torchrun): the same command started twice fails at once in the second, naming the first. A run
whose row is done, in the same run directory, is not trained again unless asked: without --resume
or --force, the command says it is done, prints its metrics and ends with exit 0 (RunDone);
another --out is a new run.

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
from maebench.errors import AlreadyDone, MaebenchError
from maebench.home import runs_dir
from maebench.results import ResultsStore, config_hash


@dataclass
class RunContext:
    run_id: str
    out_dir: Path
    _handle: Any = None

    def finish(self, metrics: dict[str, Any], *, peak_mem_mb: float | None = None,
               images_per_s: float | None = None, execution: str | None = None) -> None:
        if self._handle is not None:
            self._handle.finish(metrics, peak_mem_mb=peak_mem_mb, images_per_s=images_per_s, execution=execution)


class RunDone(AlreadyDone):
    """This exact run is finished; the runner prints the message (stdout) and goes on. `row`:
    the finished row (rank 0; None on the other ranks)."""

    def __init__(self, message: str, row: Any = None):
        super().__init__(message)
        self.row = row


def _done_message(row, out_dir: Path) -> str:
    import time
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.created))
    took = f", {row.wall_time_s:.0f} s" if row.wall_time_s else ""
    metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f"{k} {v}"
                        for k, v in row.metrics.items() if not isinstance(v, (dict, list)))
    return (f"run {row.run_id} is already done (started {when}{took}): {metrics or 'no metrics'}\n"
            f"  run directory {out_dir}; --force trains it again, --resume continues from its last checkpoint")


def _claim(out_dir: Path, store: ResultsStore, run_id: str, resume: bool, force: bool):
    """Rank 0: lock the run directory, then refuse (RunDone) a run finished in it unless asked
    to resume or force it. Returns (lock, None) or (None, the RunDone / RunLocked to raise)."""
    import sys

    from maebench.runlock import RunLock
    lock = RunLock(out_dir)
    try:
        note = lock.acquire()
    except MaebenchError as e:
        return None, e
    if note:
        print(f"maebench: note: {note}", file=sys.stderr)
    if not (resume or force):
        try:
            done = [r for r in store.rows(run_id=run_id, status="done")      # in this directory: another
                    if r.out_dir and Path(r.out_dir).resolve() == out_dir.resolve()]  # --out is a new run
        except MaebenchError as e:
            lock.release()
            return None, e
        if done:
            lock.release()
            return None, RunDone(_done_message(done[-1], out_dir), done[-1])
    return lock, None


def run_id_for(task: str, backbone: str, dataset: str | None, config: dict, seed: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", backbone)
    return f"{task}-{safe}-{config_hash(task, backbone, dataset, config, seed)[:10]}-s{seed}"


@contextmanager
def tracked_run(*, task: str, backbone: str, dataset: str | None, config: dict, seed: int | None,
                out: str | Path | None = None, results: str | Path | None = None,
                split: str | None = "val", checkpoint_sha256: str | None = None,
                backbone_info: dict[str, Any] | None = None, resume: bool = False,
                force: bool = False, tags: dict[str, str] | None = None) -> Iterator[RunContext]:
    """`backbone_info`: {"family", "arch", "paper"} of the backbone, stored with the row.
    `resume` / `force`: the command's --resume / --force (a done run is otherwise not retrained)."""
    seed = seed or 0
    run_id = run_id_for(task, backbone, dataset, config, seed)
    out_dir = Path(out) if out else runs_dir() / run_id
    lock, refusal = None, None
    if dist.is_main():
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            refusal = MaebenchError(f"cannot create run directory {out_dir}: {e.strerror or e}")
        else:
            store = ResultsStore(results)
            lock, refusal = _claim(out_dir, store, run_id, resume, force)
    kind = dist.broadcast_object(None if refusal is None else type(refusal).__name__)
    if kind is not None:             # every rank stops; rank 0 says why
        if refusal is None:
            refusal = RunDone("") if kind == "RunDone" else MaebenchError(f"rank 0 could not start run {run_id}")
        raise refusal
    if not dist.is_main():
        yield RunContext(run_id, out_dir, None)
        return
    try:
        with store.run(task=task, backbone=backbone, config=config, dataset=dataset, split=split,
                       seed=seed, checkpoint_sha256=checkpoint_sha256, out_dir=str(out_dir),
                       run_id=run_id, backbone_info=backbone_info, tags=tags) as handle:
            yield RunContext(run_id, out_dir, handle)
    finally:
        lock.release()


def backbone_info(entry: Any) -> dict[str, Any]:
    """The row's record of a registry entry (anything with .family, .arch, .paper)."""
    return {"family": entry.family, "arch": entry.arch, "paper": list(getattr(entry, "paper", None) or [])}
