"""The results store: one SQLite file, one row per run. Every task writes through this API.

A run is inserted as `running` when it starts and becomes `done` only in the same transaction
that writes its metrics, so a crash can never leave a half-finished run marked done. WAL mode
plus a busy timeout lets several concurrent runs (or torchrun ranks, though only rank 0
writes) share one file without losing rows.

    store = ResultsStore(path)
    with store.run(task="linprobe", backbone="mae-vit-b", dataset="shapes", config=cfg) as run:
        ...train...
        run.finish({"top1": 71.2, "top5": 90.1}, images_per_s=812.0)
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import sqlite3
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from maebench.home import results_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id            TEXT PRIMARY KEY,
    created           REAL NOT NULL,
    task              TEXT NOT NULL,
    backbone          TEXT NOT NULL,
    checkpoint_sha256 TEXT,
    dataset           TEXT,
    split             TEXT,
    metrics           TEXT,          -- JSON object
    config            TEXT,          -- JSON object: the effective config
    config_hash       TEXT,          -- identifies "the same run" for reuse
    seed              INTEGER,
    versions          TEXT,          -- JSON: package versions
    git_commit        TEXT,
    hardware          TEXT,
    wall_time_s       REAL,
    peak_mem_mb       REAL,
    images_per_s      REAL,          -- images/s of optimizer steps: training time only (maebench/progress.py), NULL without training
    status            TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'failed-resumable')),
    error             TEXT,
    out_dir           TEXT
);
CREATE INDEX IF NOT EXISTS runs_lookup ON runs (task, backbone, status);
"""

STATUSES = ("running", "done", "failed", "failed-resumable")


def config_hash(task: str, backbone: str, dataset: str | None, config: dict, seed: int | None) -> str:
    blob = json.dumps([task, backbone, dataset, config, seed], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _versions() -> dict[str, str]:
    from importlib import metadata
    out = {}
    for pkg in ("maebench", "torch", "torchvision", "timm", "pycocotools", "transformers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                           capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _hardware() -> str:
    desc = f"{platform.machine()} {os.cpu_count()} cpu"
    try:
        import sys
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            desc += f", {torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    except Exception:  # hardware description must never fail a run
        pass
    return desc


@dataclass
class Row:
    run_id: str
    created: float
    task: str
    backbone: str
    checkpoint_sha256: str | None
    dataset: str | None
    split: str | None
    metrics: dict[str, Any]
    config: dict[str, Any]
    config_hash: str | None
    seed: int | None
    versions: dict[str, str]
    git_commit: str | None
    hardware: str | None
    wall_time_s: float | None
    peak_mem_mb: float | None
    images_per_s: float | None            # optimizer steps only; evaluation and feature extraction excluded
    status: str
    error: str | None
    out_dir: str | None


def _set_up(con: sqlite3.Connection, patience_s: float = 60.0) -> None:
    """WAL mode and the schema. Switching a new file to WAL, or two first writers creating the
    schema at once, can fail with "database is locked" without SQLite calling its busy handler
    (it reports a would-be deadlock instead of waiting), so this step retries by itself."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            con.execute("PRAGMA busy_timeout=60000")
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
            return
        except sqlite3.OperationalError as e:
            if not ("locked" in str(e) or "busy" in str(e)) or time.monotonic() > deadline:
                raise
            time.sleep(0.02 + 0.08 * random.random())


class ResultsStore:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = results_path(path)

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            try:
                _set_up(con)
            except BaseException:
                con.close()
                raise
        except (OSError, sqlite3.Error) as e:   # a directory, a file that is not SQLite, no permission
            from maebench.errors import MaebenchError
            why = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror and e.filename else str(e)
            raise MaebenchError(f"cannot use results store {self.path}: {why}") from None
        return con

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    # -- writing -------------------------------------------------------------------------
    def start(self, *, task: str, backbone: str, config: dict, dataset: str | None = None,
              split: str | None = None, seed: int | None = None, checkpoint_sha256: str | None = None,
              out_dir: str | None = None, run_id: str | None = None,
              backbone_info: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> str:
        """Insert a `running` row (or re-open `run_id` when resuming); returns the run id.

        `backbone_info` ({"family", "arch", "paper"}) is stored in the row's config as
        `backbone_family`, `backbone_arch` and `backbone_paper`, outside the config hash; `tags`
        (`--tag KEY=VALUE`: a study and its variant) as `tag_KEY`, outside it too."""
        run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        stored = dict(config)
        for key, value in (backbone_info or {}).items():
            stored[f"backbone_{key}"] = value
        for key, value in (tags or {}).items():
            stored[f"tag_{key}"] = value
        with self._tx() as con:
            con.execute(
                "INSERT INTO runs (run_id, created, task, backbone, checkpoint_sha256, dataset, split,"
                " config, config_hash, seed, versions, git_commit, hardware, status, out_dir)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'running',?)"
                " ON CONFLICT(run_id) DO UPDATE SET status='running', error=NULL",
                (run_id, time.time(), task, backbone, checkpoint_sha256, dataset, split,
                 json.dumps(stored, default=str), config_hash(task, backbone, dataset, config, seed),
                 seed, json.dumps(_versions()), _git_commit(), _hardware(), out_dir))
        return run_id

    def finish(self, run_id: str, metrics: dict[str, Any], *, wall_time_s: float | None = None,
               peak_mem_mb: float | None = None, images_per_s: float | None = None,
               execution: str | None = None) -> None:
        """`execution`: how a trained run ran (threads, micro-batch), appended to its hardware."""
        with self._tx() as con:
            con.execute("UPDATE runs SET status='done', metrics=?, wall_time_s=?, peak_mem_mb=?,"
                        " images_per_s=?, error=NULL, hardware=COALESCE(hardware || ?, hardware) WHERE run_id=?",
                        (json.dumps(metrics), wall_time_s, peak_mem_mb, images_per_s,
                         f"; {execution}" if execution else None, run_id))

    def fail(self, run_id: str, error: str, *, resumable: bool = False) -> None:
        with self._tx() as con:
            con.execute("UPDATE runs SET status=?, error=? WHERE run_id=?",
                        ("failed-resumable" if resumable else "failed", error[:2000], run_id))

    @contextmanager
    def run(self, **kw) -> Iterator["RunHandle"]:
        """Start a run; mark it failed if the body raises before `finish` is called."""
        handle = RunHandle(self, self.start(**kw), time.time())
        try:
            yield handle
        except BaseException as e:  # noqa: BLE001 - any escape means the run did not finish
            if not handle.finished:
                resumable = isinstance(e, KeyboardInterrupt) or getattr(e, "resumable", False)
                self.fail(handle.run_id, f"{type(e).__name__}: {e}".strip(), resumable=resumable)
            raise
        if not handle.finished:
            self.fail(handle.run_id, "run ended without reporting metrics")

    def remove(self, run_ids: list[str]) -> None:
        """Delete these rows, all in one transaction."""
        with self._tx() as con:
            con.executemany("DELETE FROM runs WHERE run_id=?", [(r,) for r in run_ids])

    # -- reading -------------------------------------------------------------------------
    def tasks_done(self) -> dict[str, list[str]]:
        """backbone -> its tasks with a finished run, sorted. Read-only (never creates the file or
        its schema: `maebench backbones list` only looks); {} without a store."""
        if not self.path.is_file():
            return {}
        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
            try:
                rows = con.execute("SELECT DISTINCT backbone, task FROM runs WHERE status='done'").fetchall()
            finally:
                con.close()
        except sqlite3.Error as e:
            from maebench.errors import MaebenchError
            raise MaebenchError(f"cannot read results store {self.path}: {e}") from None
        out: dict[str, list[str]] = {}
        for backbone, task in rows:
            out.setdefault(backbone, []).append(task)
        return {k: sorted(v) for k, v in out.items()}

    def rows(self, *, task: str | None = None, backbone: str | None = None,
             status: str | None = "done", run_id: str | None = None) -> list[Row]:
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        for col, val in (("task", task), ("backbone", backbone), ("status", status), ("run_id", run_id)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        sql += " ORDER BY created"
        if not self.path.exists():
            return []
        con = self._connect()
        try:
            con.row_factory = sqlite3.Row
            out = []
            for r in con.execute(sql, args):
                d = dict(r)
                for k in ("metrics", "config", "versions"):
                    d[k] = json.loads(d[k]) if d[k] else {}
                out.append(Row(**d))
            return out
        finally:
            con.close()



# -- which rows count: the newest finished run per recipe and seed -------------------------
def recipe(row: Row) -> str:
    """What makes two runs the same run but for the seed: task, backbone, dataset and config,
    less the backbone description and the tags stored beside the config (`backbone_*`, `tag_*`,
    outside config_hash). config_hash is the hash of this and the seed."""
    cfg = {k: v for k, v in row.config.items() if not k.startswith(("backbone_", "tag_"))}
    return json.dumps([row.task, row.backbone, row.dataset, cfg], sort_keys=True, default=str)


def newest_done(rows: Iterable[Row], key: Callable[[Row], Any] | None = None) -> list[Row]:
    """The finished rows, the newest one per recipe and seed (or per `key(row)`) alone, in the
    given order (oldest first, as ResultsStore.rows gives them): a repeated run replaces the
    earlier one, so n counts seeds, not repetitions."""
    key = key or (lambda r: (recipe(r), r.seed))
    done = [r for r in rows if r.status == "done"]
    newest = {key(r): r for r in done}
    return [r for r in done if newest[key(r)] is r]


def by_recipe(rows: Iterable[Row]) -> dict[str, dict[int | None, Row]]:
    """{recipe: {seed: the newest finished row}}, recipes in the order they first appear."""
    out: dict[str, dict[int | None, Row]] = {}
    for r in newest_done(rows):
        out.setdefault(recipe(r), {})[r.seed] = r
    return out

@dataclass
class RunHandle:
    store: ResultsStore
    run_id: str
    t0: float
    finished: bool = field(default=False)

    def finish(self, metrics: dict[str, Any], *, peak_mem_mb: float | None = None,
               images_per_s: float | None = None, execution: str | None = None) -> None:
        self.store.finish(self.run_id, metrics, wall_time_s=time.time() - self.t0,
                          peak_mem_mb=peak_mem_mb, images_per_s=images_per_s, execution=execution)
        self.finished = True
