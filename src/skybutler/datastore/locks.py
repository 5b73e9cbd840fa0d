"""Per-dataset locks between processes, so that one writer re-creates a dataset and the others wait.

Staging a dataset back from the cold tier and recomputing a purged one are slow and
write a file at a path fixed in advance (the dataset's recorded path).  Two readers
asking for the same dataset at once must not both write it: the first takes the
dataset's lock and does the work, the second blocks on the lock and, once it has it,
finds the dataset stored and reads it.

A lock is ``flock`` on a file under the repository's ``.skybutler/locks`` directory.  The
kernel releases it when its holder ends, however it ends (``kill -9`` included), so a
crashed writer never leaves a lock behind; the lock files themselves are never deleted.
Datasets share 256 lock files by the last two hex digits of their ID (a bounded number
of open files however many datasets one call locks); two unrelated datasets that share
one only wait for each other.  A call locks all the datasets it needs at once, in the
order of their lock files, so two calls can never wait for each other in a circle; a
thread may take again locks it holds (nested calls), but not new ones.

``flock`` is per host unless the file system shares it (local disks always; NFSv4 and
most cluster file systems do): processes on several hosts must see the repository
directory on such a file system.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

#: The lock directory, relative to the repository root.
LOCK_DIR = Path(".skybutler") / "locks"

_HELD = threading.local()  # per thread: {lock file path: file descriptor}


class DatasetLocks:
    """The dataset locks of one repository (lock files under ``root/.skybutler/locks``)."""

    def __init__(self, root: str | Path):
        self.directory = Path(root) / LOCK_DIR

    def path(self, dataset_id: uuid.UUID) -> str:
        return str(self.directory / f"{dataset_id.hex[-2:]}.lock")

    @contextlib.contextmanager
    def hold(self, ids: Iterable[uuid.UUID], on_busy: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the locks of these datasets for the ``with`` block; if another process holds one,
        call ``on_busy()`` once and wait for it."""
        held: dict[str, int] = _HELD.__dict__.setdefault("locks", {})
        paths = sorted({self.path(i) for i in ids})
        new = [p for p in paths if p not in held]
        if not new:  # all held by this thread already: a nested call
            yield
            return
        if held:
            raise RuntimeError("a thread holding dataset locks may not take new ones (take them all at once)")
        try:
            for path in paths:
                held[path] = self._acquire(path, on_busy)
                on_busy = None  # tell once
            yield
        finally:
            for path in paths:
                fd = held.pop(path, None)
                if fd is not None:
                    os.close(fd)  # closing the file releases its flock

    @contextlib.contextmanager
    def try_hold(self, ids: Iterable[uuid.UUID]) -> Iterator[bool]:
        """Hold the locks of these datasets for the ``with`` block if none is busy (yields True),
        else take none (yields False).  For crash recovery, which must not wait on a live writer."""
        held: dict[str, int] = _HELD.__dict__.setdefault("locks", {})
        paths = sorted({self.path(i) for i in ids})
        if all(p in held for p in paths):
            yield True
            return
        if held:  # this thread holds other locks: it may not take new ones
            yield False
            return
        try:
            for path in paths:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    break
                held[path] = fd
            ok = all(p in held for p in paths)
            if not ok:
                for path in paths:
                    fd = held.pop(path, None)
                    if fd is not None:
                        os.close(fd)
            yield ok
        finally:
            for path in paths:
                fd = held.pop(path, None)
                if fd is not None:
                    os.close(fd)

    def _acquire(self, path: str, on_busy: Callable[[], None] | None) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_busy is not None:
                    on_busy()
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd


class RepositoryLock:
    """An exclusive lock on a whole repository for one long-running role (``watch``): ``flock``
    on ``.skybutler/locks/<role>.lock``, holding the holder's description so that a second
    process is told who has it.  Released when the holder ends, however it ends."""

    def __init__(self, root: str | Path, role: str):
        self.path = Path(root) / LOCK_DIR / f"{role}.lock"
        self._fd: int | None = None

    def acquire(self, description: str) -> str | None:
        """Take the lock and record ``description`` in it; if another process holds it, return
        that holder's description instead (and hold nothing)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            os.close(fd)
            return holder or "another process"
        os.ftruncate(fd, 0)
        os.pwrite(fd, description.encode(), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None
