"""Files brought into a repository to be ingested -- sent by a remote client for an ingest or an
import, extracted from a zip, or exported from another repository -- kept in a scratch directory of the repository until they have
been moved in (or the write failed), then removed with whatever is left.

Each scratch directory is held: its process holds an exclusive ``flock`` on ``<directory>.held``
beside it while it uses it, and the kernel drops the lock when the process dies, even by
``kill -9``.  So a directory whose lock can be taken is a dead process's, and the next open of
the repository removes it (:func:`remove_abandoned`, run by :mod:`skybutler.recovery` once the
journals of dead writers are settled: a killed move-ingest's files are back in it by then).  What
a scratch directory holds is only ever a copy (the client, or the zip, keeps the original).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import TransferError

#: The prefixes of the scratch directories made here: an upload, an import's tree, a zip's members,
#: the export a transfer between repositories goes through, a Rubin repository's export.
SCRATCH_PREFIXES = ("upload-", "import-", "zip-", "transfer-", "rubin-repository-")
#: A scratch directory without its lock file this old (seconds) was left by a process killed as it
#: made (or removed) it; a younger one may be a live process's, about to take its lock.
UNHELD_AGE = 60.0


def held_directory(directory: str | Path, prefix: str) -> tuple[Path, int]:
    """A new scratch directory inside ``directory``, and the descriptor of the lock its process now
    holds (give both to :func:`release_directory` when done)."""
    os.makedirs(directory, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
    fd = os.open(f"{path}.held", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return path, fd


def release_directory(path: Path, fd: int) -> None:
    """Remove a scratch directory of :func:`held_directory` with whatever is left in it: the
    directory first, its lock file last, so that a process killed on the way leaves what the
    next open removes (a held directory, or a lock file alone), never an unheld directory."""
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{path}.held")
    os.close(fd)


@contextlib.contextmanager
def scratch_directory(directory: str | Path, prefix: str) -> Iterator[Path]:
    """A held scratch directory inside ``directory`` while the block runs."""
    path, fd = held_directory(directory, prefix)
    try:
        yield path
    finally:
        release_directory(path, fd)


def scratch_or_temporary(directory: str | Path | None, prefix: str) -> contextlib.AbstractContextManager:
    """A :func:`scratch_directory` inside ``directory``, or where there is none (a repository
    served elsewhere, whose files are uploaded) a directory in the system's temporary space."""
    if directory is None:
        return tempfile.TemporaryDirectory(prefix=f"skybutler-{prefix}")
    return scratch_directory(directory, prefix)


def remove_abandoned(directory: str | Path) -> list[str]:
    """Remove the scratch directories inside ``directory`` whose processes died (see the module doc);
    returns the paths removed."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        path = os.path.join(directory, name)
        if not name.startswith(SCRATCH_PREFIXES):
            continue
        if name.endswith(".held"):  # a lock file alone is no scratch: removed, not reported
            _remove_lone_lock(path)
            continue
        try:
            fd: int | None = os.open(f"{path}.held", os.O_RDWR)
        except FileNotFoundError:
            try:
                if time.time() - os.stat(path).st_mtime < UNHELD_AGE:
                    continue
            except FileNotFoundError:
                continue
            fd = None
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its process is at work
                    continue
                os.unlink(f"{path}.held")
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def _remove_lone_lock(lock: str) -> bool:
    """Remove the lock file of a scratch directory already removed, once no process holds it
    (its process was killed between removing the directory and the lock file)."""
    if os.path.exists(lock[: -len(".held")]):
        return False
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its process is removing the directory now
            return False
        if os.path.exists(lock[: -len(".held")]):
            return False
        os.unlink(lock)
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def uploaded_files(directory: str | Path, files: Sequence[tuple[str, bytes]]) -> Iterator[list[Path]]:
    """``(name, bytes)`` written as files (under their base names, so their extension tells the
    format) in a new directory inside ``directory``; removed when the block ends."""
    scratch, held = held_directory(directory, "upload-")
    try:
        paths = []
        for number, (name, data) in enumerate(files):
            base = os.path.basename(name.replace("\\", "/"))
            if not base or base in (".", "..") or "\0" in base:
                raise TransferError(f"invalid uploaded file name {name[:100]!r}")
            path = scratch / str(number) / base
            path.parent.mkdir()
            path.write_bytes(data)
            paths.append(path)
        yield paths
    finally:
        release_directory(scratch, held)


class UploadedTree:
    """A tree of files a client streams to the server (an export to import), written to disk as
    the bytes arrive: no file is ever whole in memory.  :meth:`feed` takes the body's chunks in
    order; the body is a sequence of frames (:func:`skybutler.remote.wire.frame_files`): a 4-byte
    name length, the UTF-8 relative path, an 8-byte size and the bytes, ended by a zero name
    length.  Paths must stay inside the tree (no ``..``, no absolute path, no file twice)."""

    def __init__(self, directory: str | Path, limit: int):
        self.root, self._held = held_directory(directory, "import-")
        #: each received file's relative path and size
        self.sizes: dict[str, int] = {}
        self._limit, self._total = limit, 0
        self._buffer = b""
        self._out: Any = None
        self._left = 0
        self.complete = False

    def feed(self, chunk: bytes) -> None:
        self._total += len(chunk)
        if self._total > self._limit:
            raise TransferError(f"the upload is above this server's limit of {self._limit} bytes")
        self._buffer += chunk
        while self._buffer:
            if self.complete:
                raise TransferError("malformed upload: bytes after its end")
            if self._out is not None:
                data, self._buffer = self._buffer[:self._left], self._buffer[self._left:]
                self._out.write(data)
                self._left -= len(data)
                if self._left == 0:
                    self._out.close()
                    self._out = None
                continue
            if len(self._buffer) < 4:
                return
            length = int.from_bytes(self._buffer[:4], "big")
            if length == 0:
                self.complete, self._buffer = True, self._buffer[4:]
                continue
            if length > 4096:
                raise TransferError("malformed upload: a file name longer than 4096 bytes")
            if len(self._buffer) < 4 + length + 8:
                return
            name = self._buffer[4:4 + length].decode("utf-8", errors="replace")
            size = int.from_bytes(self._buffer[4 + length:12 + length], "big")
            self._buffer = self._buffer[12 + length:]
            self._open(name, size)

    def _open(self, name: str, size: int) -> None:
        parts = name.split("/")
        if (name.startswith("/") or "\\" in name or "\0" in name or name in self.sizes
                or any(p in ("", ".", "..") for p in parts)):
            raise TransferError(f"invalid uploaded file name {name[:100]!r}")
        path = self.root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.sizes[name] = size
        self._out = open(path, "wb")
        self._left = size
        if size == 0:
            self._out.close()
            self._out = None

    def finish(self) -> Path:
        """The tree's directory, once the body ended where its last frame says."""
        if not self.complete or self._out is not None or self._buffer:
            raise TransferError("the upload was cut short")
        return self.root

    def read_json(self, name: str) -> Any:
        """The JSON an uploaded file of the tree holds (a batch's header); TransferError if it is
        missing or not JSON."""
        if name not in self.sizes:
            raise TransferError(f"malformed upload: it holds no {name}")
        try:
            return json.loads(self.root.joinpath(*name.split("/")).read_bytes())
        except ValueError as err:
            raise TransferError(f"malformed upload: {name} is not JSON ({err})") from None

    def remove(self) -> None:
        """Delete the tree and whatever is left in it."""
        if self._out is not None:
            self._out.close()
        release_directory(self.root, self._held)
