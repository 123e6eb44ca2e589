"""An exclusive lock file that names its holder and dies with it.

:class:`FileLock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on a file and then
writes a one-line JSON description of the holder (pid, host, start time,
command) into that same file. A second process is turned away at once with a
:class:`LockHeldError` that quotes the description. The kernel drops the
lock when the holder's process ends, however it ends (SIGKILL included), so a
lock is never stale in the sense of blocking anyone; a description still in
the file when the lock is taken means its writer died without releasing it,
and :meth:`FileLock.acquire` returns it so the caller can warn.

Written here rather than taken from ``filelock``: its native Unix lock keeps
no holder description (a turned-away process could not say who holds the
lock), and its soft lock, which does keep one, is a marker file that survives
a SIGKILLed holder and must be broken by age or pid checks. ``flock`` locks
are local to one machine; on NFS they are emulated by the server, which is
fine for one workstation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a lock.

    Attributes:
        pid: Process id.
        host: Host name.
        started: When the lock was taken (ISO 8601, UTC).
        command: The holder's command line.
    """

    pid: int
    host: str
    started: str
    command: str

    @classmethod
    def current(cls, command: str | None = None) -> Holder:
        """This process, now."""
        if command is None:
            argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else []
            command = " ".join(argv) or "python"
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return cls(os.getpid(), socket.gethostname(), started, command)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder written in a lock file (``None`` if empty or unreadable)."""
        try:
            raw = json.loads(text)
            return cls(
                int(raw["pid"]),
                str(raw["host"]),
                str(raw["started"]),
                str(raw["command"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        """``pid 123 on host, started 2026-12-04T02:00:00+00:00 (kedro run ...)``."""
        return f"pid {self.pid} on {self.host}, started {self.started} ({self.command})"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


class LockHeldError(RuntimeError):
    """Another live process holds the lock; the message names it."""

    def __init__(self, path: Path, holder: Holder | None, what: str) -> None:
        self.path = path
        self.holder = holder
        who = holder.describe() if holder else "a process that is just starting"
        super().__init__(f"{what} is locked by {who}; lock file {path}")


class FileLock:
    """Exclusive, non-blocking lock on ``path`` with the holder written inside.

    Args:
        path: The lock file (created with its folder when missing).
        what: What the lock protects, for messages (``"data folder data/"``).

    Example::

        lock = FileLock(Path("data/.run.lock"), "data folder data/")
        previous = lock.acquire()      # LockHeldError if another run holds it
        try:
            ...
        finally:
            lock.release()
    """

    def __init__(self, path: Path, what: str = "lock") -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self, holder: Holder | None = None) -> Holder | None:
        """Take the lock or fail at once.

        Args:
            holder: Description written into the file (default: this process).

        Returns:
            The description a dead holder left behind (its process ended
            without releasing the lock), or ``None``.

        Raises:
            LockHeldError: A live process holds the lock (named in the message).
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = Holder.parse(_read(fd))
            os.close(fd)
            raise LockHeldError(self.path, other, self.what) from None
        except BaseException:
            os.close(fd)
            raise
        previous = Holder.parse(_read(fd))
        me = holder or Holder.current()
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me.to_dict()) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return previous

    def release(self) -> None:
        """Erase the holder description and drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self) -> Holder | None:
        """The description currently in the lock file, if any."""
        try:
            return Holder.parse(self.path.read_text(encoding="utf-8"))
        except OSError:
            return None


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 65536, 0).decode("utf-8", errors="replace")
    except OSError:
        return ""
