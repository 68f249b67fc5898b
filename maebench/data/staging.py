"""Preparing a dataset from archives into `<out>.partial`, renamed to `<out>` only when complete.

Unpacking ImageNet takes hours, so a killed run must not leave anything a reader would take
for a dataset: the work happens in the visible sibling `<out>.partial`, which the next run
removes (saying so) and redoes; a failure of any kind removes it at once. A complete `<out>`
(it has meta.json) is replaced only with force=True, and a directory maebench did not write is
never deleted. An flock on `.<name>.prepare.lock` beside them keeps two preparations of the
same directory apart (the kernel drops it when its holder dies).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from maebench.data.output import META
from maebench.errors import MaebenchError


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


@contextlib.contextmanager
def _exclusive(lock_path: Path, partial: Path):
    import fcntl

    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise MaebenchError(f"another `maebench data prepare` is writing {partial}; wait for it to finish") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()
        os.close(fd)


@contextlib.contextmanager
def staged(out: str | os.PathLike, force: bool = False, say=print):
    """Yield an empty `<out>.partial`; when the block ends normally, rename it to `<out>`."""
    out = Path(out).expanduser().absolute()
    if out.exists():
        if not (out / META).is_file():
            raise MaebenchError(f"{out} exists and was not written by maebench (no {META}); "
                                "remove it or choose another --out")
        if not force:
            raise MaebenchError(f"{out} is already prepared; pass --force to prepare it again")
    partial = partial_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(out.with_name(f".{out.name}.prepare.lock"), partial):
        if partial.exists():
            say(f"removing {partial} left by an interrupted preparation; starting again")
            shutil.rmtree(partial)
        partial.mkdir()
        try:
            yield partial
        except OSError as e:                # a full disk, a read-only target: one line, nothing kept
            shutil.rmtree(partial, ignore_errors=True)
            from maebench.disk import free_space
            raise MaebenchError(f"cannot write {e.filename or partial}: {e.strerror or e}; {free_space(out.parent)} "
                                f"free in {out.parent}; {partial} removed, nothing prepared") from None
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        _swap_in(partial, out)


def _swap_in(partial: Path, out: Path) -> None:
    if not out.exists():
        os.rename(partial, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / "d")
    os.rename(partial, out)
    shutil.rmtree(old, ignore_errors=True)
