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

from ..errors import DatastoreError, FormatterError, InvalidFileError, TransferError
from ..formats import get_formatter
from ..models import StoredArtifact
from .checksums import checksum
from .local_files import read_all, rename_no_replace, write_new_file

TRANSFER_MODES = ("copy", "move", "hardlink", "symlink", "direct", "auto")
#: Suffixes of compressed files: the suffix before them is kept too (``.fits.gz``).
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".fz", ".xz", ".z")
#: Threads that place the files of one batch at once into an object store, where each
#: transfer waits on the network.  On a local disk files are placed in order: creating
#: many files from several threads is slower there, not faster.
OBJECT_STORE_THREADS = 8


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


def check_sources(sources: Sequence[tuple[str | Path, str]]) -> None:
    """Ask each (file, formatter name)'s formatter whether it can read the file, before any is placed.

    Cheap by design (a FITS header walk, a Parquet footer, a JSON/YAML parse); raises
    :class:`InvalidFileError` naming every refused file and its reason.
    """
    failures: list[tuple[str, str]] = []
    for source, formatter_name in sources:
        formatter = get_formatter(formatter_name)
        try:
            with open(source, "rb") as stream:
                formatter.validate(stream)
        except FormatterError as err:
            failures.append((str(source), str(err)))
        except FileNotFoundError:
            raise TransferError(f"cannot ingest {source}: no such file") from None
        except OSError as err:  # a directory, no permission
            raise TransferError(f"cannot ingest {source}: {err.strerror or err}") from err
    if failures:
        raise InvalidFileError(failures)


def ingest_files(datastore, entries: Sequence[tuple[str | Path, object]], transfer: str, formatter: str,
                 extension: str) -> list[IngestedFile]:
    """Bring many files in (see :func:`ingest_file`): ``entries`` are (source, dataset ref) pairs,
    a file's path in the datastore comes from its ref and suffix (``extension`` if it has none).

    All or nothing: every file is checked by its formatter first (:func:`check_sources`),
    and if one fails to be placed, those already placed are undone and the error is raised.
    """
    check_sources([(source, formatter) for source, _ in entries])
    def one(entry: tuple[str | Path, object]) -> IngestedFile:
        source, ref = entry
        return ingest_file(datastore, source, lambda: datastore.relative_path(ref, file_suffix(source, extension)),
                           transfer, formatter)

    if datastore.local or transfer == "direct" or len(entries) < 2:
        done: list[IngestedFile] = []
        try:
            for entry in entries:
                done.append(one(entry))
        except BaseException:
            for d in reversed(done):
                d.undo()
            raise
        return done
    with ThreadPoolExecutor(OBJECT_STORE_THREADS) as pool:
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


def file_suffix(path: str | Path, default: str) -> str:
    """The suffix a stored copy of ``path`` keeps: ``.fits``, or ``.fits.gz`` for a compressed file
    (the compression suffix and the one before it); ``default`` if it has none."""
    suffixes = Path(path).suffixes
    if not suffixes:
        return default
    if suffixes[-1].lower() in COMPRESSION_SUFFIXES and len(suffixes) > 1 and suffixes[-2][1:].isalnum() \
            and len(suffixes[-2]) <= 8:
        return "".join(suffixes[-2:])
    return suffixes[-1]


def ingest_file(datastore, source: str | Path, relative_path: str | Callable[[], str], transfer: str,
                formatter: str) -> IngestedFile:
    """Bring ``source`` in under ``relative_path`` (or what calling it returns, computed only when
    needed) with ``transfer``; ``auto`` means direct for files already inside the datastore root
    and copy otherwise."""
    source = os.path.abspath(source)
    size, data = _read_for_checksum(source, datastore.checksum_algorithm is not None)
    digest = checksum(data, datastore.checksum_algorithm) if data is not None else None
    if transfer in ("auto", "direct"):
        inside = datastore.local and source.startswith(datastore.root.rstrip("/") + "/")
        if transfer == "direct" or inside:
            path = os.path.relpath(source, datastore.root) if inside else f"file://{source}"
            return IngestedFile(StoredArtifact(path=path, formatter=formatter, size=size, checksum=digest), None, None)
        transfer = "copy"
    if callable(relative_path):
        relative_path = relative_path()
    artifact = StoredArtifact(path=relative_path, formatter=formatter, size=size, checksum=digest)
    final = datastore.full_path(relative_path)
    if not datastore.local:
        if transfer not in ("copy", "move"):
            raise TransferError(f"transfer {transfer!r} needs a local datastore; use copy or move")
        if datastore.fs.exists(final):
            raise DatastoreError(f"refusing to overwrite existing object {final}")
        try:  # exclusive: a concurrent writer's object of the same name is never replaced
            datastore.fs.put_file(source, final, mode="create")
        except FileExistsError:
            raise DatastoreError(f"refusing to overwrite existing object {final}") from None
        except Exception as err:  # the store's own errors vary by backend
            raise TransferError(f"{transfer} of {source} to {datastore.fs.unstrip_protocol(final)} failed: "
                                f"{err}") from err
        if transfer == "move":
            os.unlink(source)
        return IngestedFile(artifact, final, source if transfer == "move" else None, datastore.fs)
    try:
        moved = datastore.in_directory_of(final, lambda: _place(source, final, transfer, data, size))
    except OSError as err:
        raise TransferError(f"{transfer} of {source} to {final} failed: {err}") from err
    return IngestedFile(artifact, final, source if moved else None)


def _place(source: str, final: str, transfer: str, data: bytes | None, size: int) -> bool:
    """Put ``source`` at the local path ``final`` by ``transfer``; True if it was moved there.

    An existing file at ``final`` is never replaced: copies and same-device moves end in
    one no-clobber rename (no window between a check and the rename), links fail on
    their own, and a cross-device move checks first."""
    refusal = DatastoreError(f"refusing to overwrite existing file {final}")
    if transfer == "copy":
        staged = f"{final}.tmp-{uuid.uuid4().hex}"
        if data is not None and len(data) == size:  # already read for the checksum
            write_new_file(staged, data)
        else:
            shutil.copyfile(source, staged)
        try:
            rename_no_replace(staged, final)
        except FileExistsError:
            os.unlink(staged)
            raise refusal from None
    elif transfer == "move":
        if not _same_device(source, final):
            if os.path.lexists(final):
                raise refusal
            shutil.move(source, final)
            return True
        try:
            rename_no_replace(source, final)
        except FileExistsError:
            raise refusal from None
        return True
    elif transfer in ("hardlink", "symlink"):
        try:
            (os.link if transfer == "hardlink" else os.symlink)(source, final)
        except FileExistsError:
            raise refusal from None
    else:
        raise TransferError(f"unknown transfer mode {transfer!r}; use one of {', '.join(TRANSFER_MODES)}")
    return False


def _read_for_checksum(source: str, read: bool) -> tuple[int, bytes | None]:
    """The size of ``source`` and, if ``read``, its bytes (one open, one stat)."""
    try:
        fd = os.open(source, os.O_RDONLY)
    except FileNotFoundError:
        raise TransferError(f"cannot ingest {source}: no such file") from None
    except OSError as err:
        raise TransferError(f"cannot ingest {source}: {err.strerror or err}") from err
    try:
        size = os.fstat(fd).st_size
        return size, read_all(fd, size) if read else None
    except OSError as err:  # a directory, an unreadable device
        raise TransferError(f"cannot ingest {source}: {err.strerror or err}") from err
    finally:
        os.close(fd)


def _same_device(source: Path, final: str) -> bool:
    return os.stat(source).st_dev == os.stat(os.path.dirname(final)).st_dev
