"""The run directories on disk: their size and age for `maebench runs list`, and
`maebench runs clean [--dry-run]`, which frees the training checkpoints of finished runs.

What `clean` removes, in the run directory of a row whose status is done: the training loop's
checkpoint (checkpoint.pth, or a strategy=fsdp run's checkpoint.dcp/ with its .tmp/.old
leftovers). It keeps everything else: final.pth (the weights `maebench pretrain` registers as a
backbone, which later commands load), config.yaml, log.jsonl, stdout.log, tensorboard/, and the
results row. A transfer run's fine-tuned weights live in its checkpoint alone, so they go; its
scores stay in the store. What `--resume` of a done run would do (evaluate again) needs the
checkpoint, so a cleaned run is rerun with --force instead. Never touched: a directory that any
row of the store still uses while not done (running, failed, failed-resumable: --resume reads
its checkpoint), and the trial runs of a search (config key `trial_holdout`; their store is the
search directory's trials.sqlite), whose checkpoints `--search-reuse` resumes.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

CHECKPOINTS = ("checkpoint.pth", "checkpoint.dcp", "checkpoint.dcp.tmp", "checkpoint.dcp.old")


def disk_size(path: str | os.PathLike) -> int | None:
    """Bytes of every file under `path` (links not followed); None when it does not exist."""
    p = Path(path)
    if not p.exists():
        return None
    if p.is_file():
        return p.stat().st_size
    total = 0
    for root, _, files in os.walk(p):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:              # removed while walking
                pass
    return total


def size_text(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def age_text(created: float, now: float | None = None) -> str:
    """'42s', '17m', '5h', '3d' since `created`."""
    s = max(0.0, (time.time() if now is None else now) - created)
    for limit, unit, div in ((60, "s", 1), (3600, "m", 60), (86400, "h", 3600)):
        if s < limit:
            return f"{int(s // div)}{unit}"
    return f"{int(s // 86400)}d"


def checkpoints_to_free(rows) -> list[tuple[Path, int]]:
    """(path, bytes) of every training checkpoint `clean` may remove, given every row of a store."""
    users: dict[Path, list] = {}
    for r in rows:
        if r.out_dir:
            users.setdefault(Path(r.out_dir).resolve(), []).append(r)
    out = []
    for out_dir, rs in users.items():
        if any(r.status != "done" for r in rs) or any("trial_holdout" in (r.config or {}) for r in rs):
            continue
        for name in CHECKPOINTS:
            p = out_dir / name
            if p.exists() and not p.is_symlink():
                out.append((p, disk_size(p) or 0))
    return out


def clean(store, *, dry_run: bool) -> int:
    """Remove (or with dry_run, list) the checkpoints of the store's done runs; prints each and the total."""
    found = checkpoints_to_free(store.rows(status=None))
    if not found:
        print(f"nothing to clean: no training checkpoints of done runs in {store.path}")
        return 0
    verb = "would remove" if dry_run else "removed"
    for path, size in found:
        if not dry_run:
            try:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            except OSError as e:
                from maebench.errors import MaebenchError
                raise MaebenchError(f"cannot remove {path}: {e.strerror or e}") from None
        print(f"{verb} {path} ({size_text(size)})")
    total = sum(size for _, size in found)
    print(f"{'would free' if dry_run else 'freed'} {size_text(total)} in {len(found)} checkpoint"
          f"{'s' * (len(found) != 1)}; final weights, logs and results rows are kept")
    return 0
