"""Bringing existing files into the datastore: copy, move, hardlink, symlink, or direct.

``direct`` leaves the file where it is and records its absolute URI; the other
modes place it at the dataset's template path.  Each ingested file can be undone
(the butler undoes them all if registering the batch fails), so a failed ingest
leaves the repository as it was.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import DatastoreError, TransferError
from ..models import StoredArtifact
from .checksums import checksum

TRANSFER_MODES = ("copy", "move", "hardlink", "symlink", "direct", "auto")
#: Batches at least this big place their files from a thread pool: creating a file is
#: mostly waiting on the file system, which overlaps well across threads.
PARALLEL_MIN_FILES = 32
PARALLEL_THREADS = 8


class IngestedFile:
    """One file brought in, with what is needed to take it back out."""

    def __init__(self, artifact: StoredArtifact, placed: str | None, moved_from: str | None, fs=None):
        self.artifact = artifact
        self._placed = placed
        self._moved_from = moved_from
        self._fs = fs  # the object store holding ``placed``; None on local disk

    def undo(self) -> None:
        if self._placed is None:
            return
        if self._fs is not None:
            # Fetch a moved file back before deleting the object, so a failed ingest loses nothing.
            if self._moved_from is not None and not os.path.exists(self._moved_from):
                self._fs.get_file(self._placed, self._moved_from)
            try:
                self._fs.rm_file(self._placed)
            except FileNotFoundError:
                pass
            return
        if self._moved_from is not None:
            os.replace(self._placed, self._moved_from)
        else:
            try:
                os.unlink(self._placed)
            except FileNotFoundError:
                pass


def ingest_files(datastore, entries: Sequence[tuple[Path, object]], transfer: str, formatter: str,
                 extension: str) -> list[IngestedFile]:
    """Bring many files in (see :func:`ingest_file`): ``entries`` are (source, dataset ref) pairs,
    a file's path in the datastore comes from its ref and suffix (``extension`` if it has none).

    All or nothing: if one file fails, those already placed are undone and the error is raised.
    Big batches are placed from a thread pool; ``direct`` needs no path and places nothing.
    """
    def one(entry: tuple[Path, object]) -> IngestedFile:
        source, ref = entry
        return ingest_file(datastore, source, lambda: datastore.relative_path(ref, source.suffix or extension),
                           transfer, formatter)

    if transfer == "direct" or len(entries) < PARALLEL_MIN_FILES:
        done: list[IngestedFile] = []
        try:
            for entry in entries:
                done.append(one(entry))
        except BaseException:
            for d in reversed(done):
                d.undo()
            raise
        return done
    with ThreadPoolExecutor(PARALLEL_THREADS) as pool:
        futures = [pool.submit(one, entry) for entry in entries]
    placed, error = [], None
    for future in futures:
        try:
            placed.append(future.result())
        except BaseException as err:  # keep the first error, undo everything that succeeded
            error = error or err
    if error is not None:
        for d in reversed(placed):
            d.undo()
        raise error
    return placed


def ingest_file(datastore, source: Path, relative_path: str | Callable[[], str], transfer: str,
                formatter: str) -> IngestedFile:
    """Bring ``source`` in under ``relative_path`` (or what calling it returns, computed only when
    needed) with ``transfer``; ``auto`` means direct for files already inside the datastore root
    and copy otherwise."""
    source = source.absolute()
    try:
        size = source.stat().st_size
    except FileNotFoundError:
        raise TransferError(f"cannot ingest {source}: no such file") from None
    digest = data = None
    if datastore.checksum_algorithm is not None:
        data = source.read_bytes()
        digest = checksum(data, datastore.checksum_algorithm)
    if transfer == "auto":
        inside = datastore.local and str(source).startswith(datastore.root.rstrip("/") + "/")
        transfer = "direct" if inside else "copy"
    if transfer == "direct":
        inside = datastore.local and str(source).startswith(datastore.root.rstrip("/") + "/")
        path = os.path.relpath(source, datastore.root) if inside else f"file://{source}"
        return IngestedFile(StoredArtifact(path=path, formatter=formatter, size=size, checksum=digest), None, None)
    if callable(relative_path):
        relative_path = relative_path()
    artifact = StoredArtifact(path=relative_path, formatter=formatter, size=size, checksum=digest)
    final = datastore.full_path(relative_path)
    if not datastore.local:
        if transfer not in ("copy", "move"):
            raise TransferError(f"transfer {transfer!r} needs a local datastore; use copy or move")
        if datastore.fs.exists(final):
            raise DatastoreError(f"refusing to overwrite existing object {final}")
        try:
            datastore.fs.put_file(str(source), final)
        except Exception as err:  # the store's own errors vary by backend
            raise TransferError(f"{transfer} of {source} to {datastore.fs.unstrip_protocol(final)} failed: "
                                f"{err}") from err
        if transfer == "move":
            source.unlink()
        return IngestedFile(artifact, final, str(source) if transfer == "move" else None, datastore.fs)
    datastore._ensure_dir(os.path.dirname(final))
    if os.path.lexists(final):
        raise DatastoreError(f"refusing to overwrite existing file {final}")
    try:
        if transfer == "copy":
            staged = f"{final}.tmp-{uuid.uuid4().hex}"
            if data is not None and len(data) == size:  # already read for the checksum
                with open(staged, "wb") as stream:
                    stream.write(data)
            else:
                shutil.copyfile(source, staged)
            os.replace(staged, final)
        elif transfer == "move":
            os.replace(source, final) if _same_device(source, final) else shutil.move(source, final)
            return IngestedFile(artifact, final, str(source))
        elif transfer == "hardlink":
            os.link(source, final)
        elif transfer == "symlink":
            os.symlink(source, final)
        else:
            raise TransferError(f"unknown transfer mode {transfer!r}; use one of {', '.join(TRANSFER_MODES)}")
    except OSError as err:
        raise TransferError(f"{transfer} of {source} to {final} failed: {err}") from err
    return IngestedFile(artifact, final, None)


def _same_device(source: Path, final: str) -> bool:
    return os.stat(source).st_dev == os.stat(os.path.dirname(final)).st_dev
