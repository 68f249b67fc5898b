"""Which results store the leaderboard shows.

An explicit --results path must exist (a typo is an error naming it, never an empty board).
Without one, the default store ($MAEBENCH_RESULTS or $MAEBENCH_HOME/results.sqlite); when that
has no finished transfer run, the newest known store with one (a store a command recorded in
$MAEBENCH_HOME/stores.json, as `maebench demo` records its own), with a line saying so."""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from maebench.errors import MaebenchError
from maebench.home import known_stores
from maebench.leaderboards.columns import TASKS
from maebench.results import ResultsStore


@dataclass
class Choice:
    store: ResultsStore
    note: str | None = None        # printed to stderr: why this store and not the default


def has_transfer_runs(store: ResultsStore) -> bool:
    return any(r.task in TASKS for r in store.rows(status="done"))


def choose_store(results: str | os.PathLike | None) -> Choice:
    if results:
        path = Path(results).expanduser()
        if not path.exists():
            raise MaebenchError(f"--results {path}: no such results store")
        if path.is_dir():
            raise MaebenchError(f"--results {path}: is a directory, not a results store file")
        return Choice(ResultsStore(path))
    default = ResultsStore(None)
    if has_transfer_runs(default):
        return Choice(default)
    for path, what in known_stores():
        known = ResultsStore(path)
        if has_transfer_runs(known):
            return Choice(known, f"{default.path} has no finished transfer runs; showing {what} "
                                 f"{path} (the same as `maebench leaderboard --results {shlex.quote(str(path))}`)")
    return Choice(default)
