"""The read path of the file datastore: opening a dataset's recorded file and reading it.

A record read from the registry some time ago is not trusted blindly (a purge, a move to the
cold tier or a removal may have put another file at its path since): a local file whose inode
last changed well before the record was read is the recorded one and is read without asking
the registry; otherwise the registry confirms it first.  Also here: checksum checks, byte
ranges for downloads, copies out of the repository and presigned URLs.  Mixed into
:class:`~skybutler.datastore.datastore.FileDatastore`, which provides the paths and file system.
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ChecksumMismatchError, DatastoreError, FileNotStoredError, FormatterError, StaleArtifactError
from ..formats import get_formatter
from ..models import StoredArtifact
from .checksums import algorithm_of, stream_checksum, verify
from .local_files import copy_file, download_new_file

if TYPE_CHECKING:
    from .copy_scratch import ScratchJournal

#: How much earlier than a record was read a file's inode must have last changed for the file
#: to be taken as the one the record describes without asking the registry: file times come
#: from the kernel's coarse clock (a few ms behind) and some file systems keep whole seconds
#: or another machine's clock; a file placed after a purge, a move to the cold tier or a
#: removal always changed its inode after the record was read.
RECORD_CLOCK_MARGIN_NS = 1_500_000_000


#: A local file up to this size is read whole through ``os`` and handed to its formatter in
#: memory: for the many small datasets (metrics, configs) making a buffered file object cost
#: as much CPU as all the rest of a get.  Larger files are read as streams (a subset of a big
#: image or catalog is read without the rest).
SMALL_FILE = 1 << 16


def _open_local(full: str) -> tuple[Any, int]:
    """A local file opened for reading (its bytes in memory if it is small) and the time its
    inode last changed (created, renamed into place, linked)."""
    fd = os.open(full, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if st.st_size <= SMALL_FILE:
            data = os.read(fd, st.st_size + 1)
            if len(data) == st.st_size:  # all of it (else it changed meanwhile: read it as a stream)
                os.close(fd)
                return io.BytesIO(data), st.st_ctime_ns
            os.lseek(fd, 0, os.SEEK_SET)
        return open(fd, "rb"), st.st_ctime_ns
    except BaseException:
        os.close(fd)
        raise


class ArtifactReads:
    """Reading artifacts (the read half of :class:`~skybutler.datastore.datastore.FileDatastore`)."""

    # Provided by FileDatastore: ``local`` (the root is a local directory, its files opened
    # through ``os``), ``fs``, ``full_path`` and ``uri``.
    local: bool
    fs: Any

    def read(self, artifact: StoredArtifact, component: str | None = None,
             parameters: Mapping[str, Any] | None = None, check: bool = False,
             confirm: Callable[[], bool] | None = None) -> Any:
        """Read a dataset (or a component, or a subset by read parameters).

        With ``confirm``, a record read from the registry some time ago is not trusted
        blindly: if the file at its path may have been placed after the record was read (on
        a local disk: its inode changed less than :data:`RECORD_CLOCK_MARGIN_NS` before
        ``artifact.seen_ns``; elsewhere: always), ``confirm()`` must say that the registry
        still records it, else :class:`StaleArtifactError`, before anything is read."""
        formatter = get_formatter(artifact.formatter)
        full = self.full_path(artifact.path)
        try:
            with self._open_recorded(artifact, full, confirm) as stream:
                if check:
                    data = stream.read()
                    if not verify(data, artifact.checksum):
                        raise ChecksumMismatchError(f"{full} does not match its recorded checksum "
                                                    f"{artifact.checksum}")
                    return formatter.read(io.BytesIO(data), component=component, parameters=parameters)
                return formatter.read(stream, component=component, parameters=parameters)
        except FileNotFoundError:
            raise FileNotStoredError(f"artifact {full} is missing from the datastore") from None
        except FormatterError as err:
            if type(err) is not FormatterError:
                raise
            raise FormatterError(f"{self.uri(artifact)}: {err}") from err  # name the file that failed

    def _open_recorded(self, artifact: StoredArtifact, full: str, confirm: Callable[[], bool] | None) -> Any:
        """The open file of a record, checked as :meth:`read` says."""
        if self.local and "://" not in artifact.path:
            stream, changed_ns = _open_local(full)
            seen_ns = artifact.seen_ns
            if confirm is not None and (seen_ns is None or changed_ns >= seen_ns - RECORD_CLOCK_MARGIN_NS):
                try:
                    confirmed = confirm()
                except BaseException:
                    stream.close()
                    raise
                if not confirmed:
                    stream.close()
                    raise StaleArtifactError(f"{full} was placed after its record was read, and the "
                                             "registry no longer records it")
            return stream
        if confirm is not None and not confirm():
            raise StaleArtifactError(f"{full}: the registry no longer records this file")
        fs = fsspec_url_to_fs(artifact.path)[0] if "://" in artifact.path else self.fs
        return fs.open(full, "rb")

    def _locate(self, path: str) -> tuple[Any, str]:
        """The file system holding a stored path, and the path on it: a direct-ingested URI
        (``file://`` in an S3 datastore, say) lives outside the datastore's own file system."""
        if "://" in path:
            return fsspec_url_to_fs(path)
        return self.fs, self.full_path(path)

    def _read_bytes(self, path: str) -> bytes:
        if self.local and "://" not in path:
            with open(self.full_path(path), "rb") as stream:
                return stream.read()
        fs, full = self._locate(path)
        return fs.cat_file(full)

    def checksum_matches(self, artifact: StoredArtifact) -> bool:
        """Whether the artifact's file still hashes to its recorded checksum (read as a stream;
        true when none was recorded).  FileNotStoredError if the file is gone."""
        if artifact.checksum is None:
            return True
        fs, full = self._locate(artifact.path)
        try:
            opened = open(full, "rb") if self.local and "://" not in artifact.path else fs.open(full, "rb")
            with opened as stream:
                return stream_checksum(stream, algorithm_of(artifact.checksum)) == artifact.checksum
        except FileNotFoundError:
            raise FileNotStoredError(f"artifact {full} is missing from the datastore") from None

    def exists(self, artifact: StoredArtifact) -> bool:
        if self.local and "://" not in artifact.path:
            return os.path.exists(self.full_path(artifact.path))
        fs, full = self._locate(artifact.path)
        return fs.exists(full)

    def export_artifact(self, artifact: StoredArtifact, directory: str | Path, journal: ScratchJournal,
                        transfer: str = "copy", suffix: str | None = None) -> str:
        """Place a copy (or link) of an artifact under ``directory``; returns its path there.
        ``suffix`` replaces the file's extension (another butler may insist on its own).  A copy
        is written under a scratch name ``journal`` records, then renamed into place."""
        relative = export_path(artifact.path, suffix)
        destination = os.path.join(directory, relative)  # a plain string: pathlib costs more than the copy
        source = self.full_path(artifact.path)

        # a file of another file system (an object store) is downloaded, and compared with one already there
        linked = transfer in ("symlink", "hardlink") and self.local
        downloaded = not linked and not (self.local and "://" not in artifact.path)

        def place() -> None:
            if downloaded:
                download_new_file(fsspec_url_to_fs(artifact.path)[0] if "://" in artifact.path else self.fs,
                                  source, destination, journal)
            elif not linked:
                copy_file(source, destination, journal)
            elif transfer == "symlink":
                os.symlink(source, destination)
            else:
                os.link(source, destination)

        try:  # most files go to a directory made for an earlier one: make it only when missing
            try:
                place()
            except FileNotFoundError:
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                place()
        except FileExistsError:  # never replaced: a copy is taken only if it has these very bytes (an export
            # run again: see place_new_file), a link only if it is to this very file
            if not (linked and os.path.exists(destination) and os.path.samefile(source, destination)):
                raise DatastoreError(f"{destination} is already there, and is not {artifact.path}: export into an "
                                     "empty directory (nothing there was changed)") from None
        return relative

    def size(self, artifact: StoredArtifact) -> int:
        if self.local and "://" not in artifact.path:
            return os.path.getsize(self.full_path(artifact.path))
        fs, full = self._locate(artifact.path)  # a direct-ingested file may live on another file system
        return fs.size(full)

    def read_range(self, artifact: StoredArtifact, start: int = 0, end: int | None = None,
                   chunk: int = 1 << 20) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of an artifact's file (to its end if ``end`` is None), in chunks:
        a server's download without the whole file in memory."""
        fs, full = (None, self.full_path(artifact.path)) if self.local and "://" not in artifact.path \
            else self._locate(artifact.path)
        try:
            stream = open(full, "rb") if fs is None else fs.open(full, "rb")
        except FileNotFoundError:
            raise FileNotStoredError(f"artifact {full} is missing from the datastore") from None
        with stream:
            stream.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                data = stream.read(chunk if left is None else min(chunk, left))
                if not data:
                    return
                if left is not None:
                    left -= len(data)
                yield data

    def presigned_url(self, artifact: StoredArtifact, seconds: int) -> str | None:
        """A URL reading the artifact without credentials for ``seconds`` (object stores that can
        sign one); None otherwise."""
        if self.local or "://" in artifact.path:
            return None
        try:
            return self.fs.sign(self.full_path(artifact.path), expiration=seconds)
        except NotImplementedError:
            return None


def fsspec_url_to_fs(url: str) -> tuple[Any, str]:
    """fsspec's file system and path for a URL (fsspec imported here, when a URL needs it)."""
    import fsspec

    return fsspec.core.url_to_fs(url)


def export_path(stored: str, suffix: str | None = None) -> str:
    """Where an export (or any copy out) puts a stored file, relative to its directory: the
    datastore's own path, or ``external/<hash>/<name>`` for a file ingested in place (an absolute
    path or a URI); ``suffix`` replaces the extension.  The same for a butler opened on a server
    URL, which downloads the files to these paths."""
    if "://" in stored or stored.startswith("/"):
        name = posixpath.basename(stored.rstrip("/"))
        relative = f"external/{uuid.uuid5(uuid.NAMESPACE_URL, stored).hex[:12]}/{name}"
    else:
        relative = stored
    if suffix is not None:
        relative = posixpath.splitext(relative)[0] + suffix
    return relative

