"""One process trains in a run directory at a time.

The lock is an exclusive `flock` on `<run dir>/.maebench.lock`, which also holds who took it
(pid, host, start time) so that a second process can name the holder. The kernel drops a flock
when its holder dies, however it dies, so a lock left behind by a killed run is taken over by
the next one (with a note naming the dead holder) instead of blocking the directory forever.
The file is removed on release; a process that opened it just before that checks, once it
holds the lock, that the path still names the file it locked, and otherwise starts again.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from maebench.errors import MaebenchError

LOCK_NAME = ".maebench.lock"


class RunLocked(MaebenchError):
    """Another live process trains in this run directory (exit 1: the files are in use)."""


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (started {when})"


def _read(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace")
        holder = json.loads(text) if text.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


class RunLock:
    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> str | None:
        """Hold the lock, or raise RunLocked naming the holder. Returns a note when the lock of
        a process that died without releasing it was taken over, else None."""
        import fcntl

        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise MaebenchError(f"cannot create the lock file {self.path}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read(fd)
                for _ in range(20):          # the holder writes its name right after taking the lock
                    if holder:
                        break
                    time.sleep(0.05)
                    holder = _read(fd)
                os.close(fd)
                who = _describe(holder) if holder else "another process (it is just starting)"
                raise RunLocked(f"run directory {self.out_dir} is in use: {who} is training in it; wait for it "
                                "to finish, or give this run another --out DIR") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)                     # released and removed while we waited: start again
        previous = _read(fd)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        self.fd = fd
        if previous:
            return (f"took over the lock of run directory {self.out_dir} from {_describe(previous)}, "
                    "which ended without releasing it")
        return None

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self.fd)                    # closing drops the flock
        self.fd = None
