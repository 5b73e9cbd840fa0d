"""The file datastore: artifacts of datasets on local disk or any fsspec store (S3, ...).

Writes never leave half-written files visible: on a local disk the bytes go to a
temporary name and are linked into place without clobbering anything; on an
object store a single PUT (or a completed multipart upload) is atomic by itself.
The datastore knows nothing of the registry: the butler gives it refs and gets
back :class:`StoredArtifact` records to save.

An ``s3://bucket/prefix`` root goes through s3fs, which takes everything from the
standard AWS configuration, never from the repository config: credentials from
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` or ``~/.aws``; the
region from ``AWS_DEFAULT_REGION``; and, for a store other than AWS (MinIO, Ceph,
moto...), the endpoint from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (e.g.
``https://s3.example.org``).  Other s3fs options can be set as ``FSSPEC_S3_<OPTION>``.
"""

from __future__ import annotations

import functools
import io
import os
import posixpath
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar


from ..errors import (ArtifactExistsError, ChecksumMismatchError, DatastoreError, FileNotStoredError, FormatterError,
                      StaleArtifactError)
from ..formats import get_formatter
from ..models import DatasetRef, StoredArtifact
from ..faults import crash_point
from .checksums import algorithm_of, checksum, stream_checksum, verify
from .journal import Intent, Journal, WriteJournal
from .local_files import rename_no_replace, write_new_file
from .templates import DEFAULT_TEMPLATE, PathTemplate, template_fields


T = TypeVar("T")

#: Threads that publish the objects of one batch at once to an object store, where each
#: write waits on the network.  Local files are written in order: creating many files in
#: one directory from several threads is slower on a local file system, not faster.
OBJECT_STORE_THREADS = 8

#: How much earlier than a record was read a file's inode must have last changed for the file
#: to be taken as the one the record describes without asking the registry: file times come
#: from the kernel's coarse clock (a few ms behind) and some file systems keep whole seconds
#: or another machine's clock; a file placed after a purge, a move to the cold tier or a
#: removal always changed its inode after the record was read.
RECORD_CLOCK_MARGIN_NS = 1_500_000_000


def _older_than(stream: Any, seen_ns: int | None) -> bool:
    """Whether the open local file's inode last changed (created, renamed, linked) more than
    :data:`RECORD_CLOCK_MARGIN_NS` before ``seen_ns``."""
    return seen_ns is not None and os.fstat(stream.fileno()).st_ctime_ns < seen_ns - RECORD_CLOCK_MARGIN_NS


def _all_or_nothing(action, items: list, undo, threads: int = 1) -> list:
    """``action`` on every item (in threads if asked); if any fails, ``undo`` the results that
    succeeded and raise the first error."""
    if threads <= 1 or len(items) < 4:
        done = []
        try:
            for item in items:
                done.append(action(item))
        except BaseException:
            for result in done:
                undo(result)
            raise
        return done
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(action, item) for item in items]
        results, error = [], None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as err:  # keep the first, collect the rest
                error = error or err
    if error is not None:
        for result in results:
            undo(result)
        raise error
    return results


class PendingArtifact:
    """Bytes formatted and staged for one dataset, not yet visible at their final path.

    ``digest`` is the xxh3 checksum of the bytes (whatever the repository records), by which a
    retry recognises the same bytes left at the final path by a crashed writer; ``journal`` is
    the write-journal entry of the batch, ended by :meth:`FileDatastore.settle`.
    """

    def __init__(self, datastore: FileDatastore, artifact: StoredArtifact, staged: str | None, data: bytes | None,
                 digest: str | None = None, journal: Journal | None = None):
        self.datastore = datastore
        self.artifact = artifact
        self._staged = staged
        self._data = data
        self.digest = digest
        self.journal = journal
        #: whether identical bytes already at the final path may be taken as this artifact
        self.adopt_identical = False

    def commit(self) -> None:
        """Make the artifact visible at its final path; refuses to overwrite an existing one
        (:class:`ArtifactExistsError`) unless it holds these very bytes and ``adopt_identical``."""
        self.datastore._publish(self.artifact.path, self._staged, self._data,
                                self.digest if self.adopt_identical else None)
        self._staged = self._data = None

    def abort(self) -> None:
        """Discard the staged bytes."""
        if self._staged is not None:
            self.datastore._discard(self._staged)
        self._staged = self._data = None


class FileDatastore:
    """Stores dataset artifacts under a root URI through fsspec."""

    def __init__(self, root: str, templates: Mapping[str, str] | None = None, checksum: str | None = "xxh3",
                 journal: str | None = None):
        #: the write journal (a local directory) covering every write in flight; None: not kept
        self.journal = WriteJournal(journal) if journal is not None else None
        if "://" in root:
            from fsspec.implementations.local import LocalFileSystem

            self.fs, root_path = fsspec_url_to_fs(root)
            self.local = isinstance(self.fs, LocalFileSystem)
        else:  # a plain directory: fsspec's local file system is made when first used (see ``fs``)
            root_path, self.local = root, True
        self.root = os.path.abspath(root_path) if self.local else root_path.rstrip("/")
        self.root_uri = root
        self.checksum_algorithm = checksum
        self._templates = {name: PathTemplate(t) for name, t in (templates or {}).items()}
        self._default_template = self._templates.pop("default", PathTemplate(DEFAULT_TEMPLATE))
        if "dataset_type" not in self._default_template.fields:
            raise DatastoreError(f"the default path template {self._default_template.template!r} has no "
                                 "{dataset_type}: datasets of different types would share files")
        self._identified: set[str] = set()  # dataset types whose template names every data-ID value
        self._made_dirs: set[str] = set()

    @functools.cached_property
    def fs(self) -> Any:
        """The fsspec file system of a plain-directory root, made on first use: most local reads
        and writes go through ``os`` and never need it, and importing fsspec costs a command
        that reads no dataset a noticeable part of its start-up."""
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem()

    # -- paths ----------------------------------------------------------------

    def relative_path(self, ref: DatasetRef, extension: str) -> str:
        """Where a dataset's file goes: its template's path (checked to stay inside the root)."""
        name = ref.dataset_type.name
        template = self._templates.get(name, self._default_template)
        if name not in self._identified:
            problem = self.template_problem(name, ref.data_id.group.required)
            if problem:
                raise DatastoreError(problem)
            self._identified.add(name)
        fields = template_fields(ref.run, name, ref.data_id, ref.data_id.group.required)
        return template.format(fields) + extension

    def template_problem(self, name: str, required: Sequence[str]) -> str | None:
        """Why the path template of dataset type ``name`` (with these required dimensions)
        would make two datasets share a file, or None if it names each of them."""
        template = self._templates.get(name, self._default_template)
        if template.run_problem:
            return template.run_problem
        vague = template.identifies(required)
        if not vague:
            return None
        return (f"path template {template.template!r} of {name} does not name {', '.join(vague)}: two "
                f"{name} datasets would share one file; add {{data_id}} (or each of those fields)")

    def full_path(self, path: str) -> str:
        """The file-system path of a stored path (relative to the root, or absolute for direct ingest)."""
        if "://" in path:
            return fsspec_url_to_fs(path)[1]
        if path.startswith("/"):
            return path
        return posixpath.join(self.root, path)

    def uri(self, artifact: StoredArtifact) -> str:
        """A URI for the artifact that a user or another program can open."""
        if "://" in artifact.path:
            return artifact.path
        full = self.full_path(artifact.path)
        return f"file://{full}" if self.local else self.fs.unstrip_protocol(full)

    # -- writing --------------------------------------------------------------

    def prepare(self, ref: DatasetRef, obj: Any, formatter_name: str) -> PendingArtifact:
        """Format ``obj`` and stage its bytes; nothing is visible until ``commit``."""
        return self.prepare_many([ref], [obj], formatter_name)[0]

    def prepare_many(self, refs: Sequence[DatasetRef], objects: Sequence[Any],
                     formatter_name: str) -> list[PendingArtifact]:
        """Format every object and stage the bytes; on any failure nothing stays staged."""
        formatter = get_formatter(formatter_name)
        formatted = []
        for ref, obj in zip(refs, objects):
            buffer = io.BytesIO()
            formatter.write(obj, buffer)
            data = buffer.getvalue()
            artifact = StoredArtifact(path=self.relative_path(ref, formatter.extension), formatter=formatter_name,
                                      size=len(data), checksum=checksum(data, self.checksum_algorithm))
            digest = artifact.checksum if self.checksum_algorithm == "xxh3" else checksum(data, "xxh3")
            formatted.append((ref, artifact, data, digest))
        token = uuid.uuid4().hex  # staged names: this batch's token and the item's number
        staged_names = [f"{self.full_path(a.path)}.tmp-{token}-{n}" if self.local else None
                        for n, (_, a, _, _) in enumerate(formatted)]
        journal = None
        if self.journal is not None:
            journal = self.journal.begin([Intent(str(ref.id), a.path, "put", staged=staged, checksum=digest)
                                          for (ref, a, _, digest), staged in zip(formatted, staged_names)],
                                         token=token)
        if not self.local:
            return [PendingArtifact(self, artifact, None, data, digest, journal)
                    for _, artifact, data, digest in formatted]

        def stage(number: int) -> PendingArtifact:
            _, artifact, data, digest = formatted[number]
            staged = staged_names[number]
            try:
                self.in_directory_of(staged, lambda: write_new_file(staged, data))
                crash_point("file-staged")
            except OSError as err:  # a full disk, a read-only or missing mount, permissions
                raise DatastoreError(f"local datastore write of {self.full_path(artifact.path)} failed: "
                                     f"{err.strerror or err}") from err
            return PendingArtifact(self, artifact, staged, None, digest, journal)

        try:
            return _all_or_nothing(stage, list(range(len(formatted))), PendingArtifact.abort)
        except BaseException:
            if journal is not None:
                self.journal.end(journal)
            raise

    def journal_removal(self, artifacts: Mapping[uuid.UUID, StoredArtifact]) -> Journal | None:
        """Record that these datasets' files are about to go (after their rows), so a removal killed
        between its commit and its deletions is finished by the next open; ``end_journal`` after."""
        inside = [(i, a) for i, a in artifacts.items() if "://" not in a.path and not a.path.startswith("/")]
        if self.journal is None or not inside:
            return None
        return self.journal.begin([Intent(str(i), a.path, "remove", checksum=a.checksum) for i, a in inside])

    def begin_journal(self, intents: Sequence[Intent], token: str, dataset_locks: bool = False) -> Journal | None:
        """Journal the intents of a write that is not a put or an ingest (staging, recompute
        write-back, purge, cold move); None when this datastore keeps no journal."""
        if self.journal is None or not intents:
            return None
        return self.journal.begin(intents, token=token, dataset_locks=dataset_locks)

    def staged_name(self, path: str, token: str, number: int) -> str | None:
        """The temporary name of the ``number``-th file of batch ``token`` (None on an object store)."""
        return f"{self.full_path(path)}.tmp-{token}-{number}" if self.local else None

    def end_journal(self, journal: Journal | None) -> None:
        if journal is not None:
            self.journal.end(journal)

    def settle(self, pending: Sequence[PendingArtifact]) -> None:
        """A batch is over (committed, or rolled back and its files removed): discard what is still
        staged and end its journal entry."""
        journals = {id(p.journal): p.journal for p in pending if p.journal is not None}
        for p in pending:
            p.abort()
        for journal in journals.values():
            self.journal.end(journal)

    def publish_many(self, pending: Sequence[PendingArtifact]) -> list[StoredArtifact]:
        """Make staged artifacts visible; if one fails, the others are taken back."""
        def publish(p: PendingArtifact) -> StoredArtifact:
            p.commit()
            return p.artifact

        def unpublish(artifact: StoredArtifact) -> None:
            self.remove([artifact])

        try:
            return _all_or_nothing(publish, list(pending), unpublish,
                                   threads=1 if self.local else OBJECT_STORE_THREADS)
        finally:
            for p in pending:
                p.abort()

    def write_or_adopt(self, artifact: StoredArtifact, data: bytes, accept: Callable[[bytes], bool],
                       staged: str | None = None) -> StoredArtifact:
        """Publish ``data`` at the artifact's path, never replacing another file; returns the
        artifact as placed.

        For writers that restore a dataset at its recorded path (staging from the cold tier,
        recompute write-back) while holding the dataset's lock: a file already there was left
        by an interrupted writer of the same dataset -- it is kept, and described by the
        returned artifact, if ``accept`` takes its bytes (the same checksum, say); otherwise
        nothing is changed and :class:`DatastoreError` names the file.  ``staged``: the temporary
        name the writer's journal recorded (local datastores).
        """
        if self.local:
            final = self.full_path(artifact.path)
            staged = staged or f"{final}.tmp-{uuid.uuid4().hex}-0"
            try:
                self.in_directory_of(final, lambda: write_new_file(staged, data))
            except OSError as err:
                raise DatastoreError(f"local datastore write of {final} failed: {err.strerror or err}") from err
            crash_point("file-staged")
        else:
            staged = None
        try:
            self._publish(artifact.path, staged, data)
            crash_point("file-placed")
            return artifact
        except DatastoreError as err:
            try:
                existing = self._read_bytes(artifact.path)
            except FileNotFoundError:
                raise err from None  # nothing there: the write itself failed
            if not accept(existing):
                raise DatastoreError(
                    f"refusing to overwrite existing file {self.full_path(artifact.path)}: it is not this dataset's "
                    "content, so it was not left by an interrupted writer of it ('skybutler verify' lists it)"
                    ) from None
            algorithm = artifact.checksum.split(":", 1)[0] if artifact.checksum else self.checksum_algorithm
            crash_point("file-placed")
            return artifact.model_copy(update={"size": len(existing), "checksum": checksum(existing, algorithm)})
        finally:
            if staged is not None:
                self._discard(staged)

    def _ensure_dir(self, directory: str) -> None:
        if directory not in self._made_dirs:
            os.makedirs(directory, exist_ok=True)
            self._made_dirs.add(directory)

    def in_directory_of(self, path: str, action: Callable[[], T]) -> T:
        """Make the local directory of ``path`` (once per datastore) and run ``action``; if the
        directory has gone since (pruned by another client's removal), make it again and retry."""
        directory = os.path.dirname(path)
        self._ensure_dir(directory)
        try:
            return action()
        except FileNotFoundError:
            if os.path.isdir(directory):
                raise  # something else is missing (an ingest's source file)
            self._made_dirs.discard(directory)
            self._ensure_dir(directory)
            return action()

    def _publish(self, path: str, staged: str | None, data: bytes | None, adopt_digest: str | None = None) -> None:
        final = self.full_path(path)
        if staged is not None:
            # The rename itself is atomic and never replaces a file: one already there was left by
            # a writer that crashed before committing, or a path template maps two datasets to one file.
            try:
                rename_no_replace(staged, final)
            except FileExistsError:
                os.unlink(staged)
                if adopt_digest is not None and self.digest_of(path) == adopt_digest:
                    return
                raise ArtifactExistsError(f"refusing to overwrite existing file {final}", final) from None
            return
        if self.fs.exists(final):
            if adopt_digest is not None and self.digest_of(path) == adopt_digest:
                return
            raise ArtifactExistsError(f"refusing to overwrite existing object {self.fs.unstrip_protocol(final)}",
                                      final)
        try:  # exclusive: a concurrent writer's object of the same name is never replaced
            self.fs.pipe_file(final, data, mode="create")
        except FileExistsError:
            raise ArtifactExistsError(f"refusing to overwrite existing object {self.fs.unstrip_protocol(final)}",
                                      final) from None
        except Exception as err:  # the store's own errors vary by backend
            raise DatastoreError(f"writing {self.fs.unstrip_protocol(final)} failed: {err}") from err

    def digest_of(self, path: str) -> str | None:
        """The xxh3 checksum of the file at a stored path (None if there is none)."""
        try:
            return checksum(self._read_bytes(path), "xxh3")
        except FileNotFoundError:
            return None

    def _discard(self, staged: str) -> None:
        try:
            os.unlink(staged)
        except FileNotFoundError:
            pass

    # -- reading --------------------------------------------------------------

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
            stream = open(full, "rb")
            if confirm is not None and not _older_than(stream, artifact.seen_ns):
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

    def export_artifact(self, artifact: StoredArtifact, directory: Path, transfer: str = "copy",
                        suffix: str | None = None) -> str:
        """Place a copy (or link) of an artifact under ``directory``; returns its path there.
        ``suffix`` replaces the file's extension (another butler may insist on its own)."""
        if "://" in artifact.path or artifact.path.startswith("/"):
            name = posixpath.basename(self.full_path(artifact.path))
            relative = f"external/{uuid.uuid5(uuid.NAMESPACE_URL, artifact.path).hex[:12]}/{name}"
        else:
            relative = artifact.path
        if suffix is not None:
            relative = posixpath.splitext(relative)[0] + suffix
        destination = directory / relative
        source = self.full_path(artifact.path)

        def place() -> None:
            if transfer == "symlink" and self.local:
                os.symlink(source, destination)
            elif transfer == "hardlink" and self.local:
                os.link(source, destination)
            elif self.local and "://" not in artifact.path:
                shutil.copyfile(source, destination)
            else:
                fs = fsspec_url_to_fs(artifact.path)[0] if "://" in artifact.path else self.fs
                fs.get_file(source, str(destination))

        try:  # most files go to a directory made for an earlier one: make it only when missing
            place()
        except FileNotFoundError:
            destination.parent.mkdir(parents=True, exist_ok=True)
            place()
        return relative

    # -- removal and listing --------------------------------------------------

    def remove(self, artifacts: Iterable[StoredArtifact]) -> list[str]:
        """Delete the files of artifacts stored inside the datastore (direct-ingested
        files outside it are left alone); returns paths that could not be removed."""
        failed = []
        emptied: set[str] = set()
        for artifact in artifacts:
            if "://" in artifact.path or artifact.path.startswith("/"):
                continue
            full = self.full_path(artifact.path)
            try:
                if self.local:
                    os.unlink(full)
                    emptied.add(os.path.dirname(full))
                else:
                    self.fs.rm_file(full)
            except FileNotFoundError:
                pass
            except OSError:
                failed.append(full)
        self.prune_empty_dirs(emptied)
        return failed

    def prune_empty_dirs(self, directories: Iterable[str]) -> None:
        """Remove local directories left empty by removals, up to (not including) the root.

        Object stores have no directories.  A directory another client fills meanwhile is
        not empty and stays; one removed under a writer's feet is made again by the writer.
        """
        root = self.root.rstrip("/") + "/"
        for directory in sorted(set(directories), key=len, reverse=True):
            while directory.startswith(root):
                try:
                    os.rmdir(directory)
                except OSError:  # not empty, or already gone
                    break
                self._made_dirs.discard(directory)
                directory = os.path.dirname(directory)

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

    def root_is(self, path: Path) -> bool:
        """Whether the datastore root is the given local directory."""
        return self.local and os.path.abspath(path) == self.root

    def remove_paths(self, relative_paths: Iterable[str]) -> int:
        """Delete files by path relative to the root (orphans found by a consistency check)."""
        removed = 0
        emptied: set[str] = set()
        for rel in relative_paths:
            full = self.full_path(rel)
            try:
                os.unlink(full) if self.local else self.fs.rm_file(full)
                removed += 1
                emptied.add(os.path.dirname(full))
            except FileNotFoundError:
                pass
        if self.local:
            self.prune_empty_dirs(emptied)
        return removed

    def walk(self, skip: Iterable[str] = ()) -> Iterator[str]:
        """Relative paths of every file under the root (for consistency checks), leaving out the
        top-level entries named in ``skip`` (a repository's own files when they share the root)."""
        skip = set(skip)
        if self.local:
            for directory, dirs, files in os.walk(self.root):
                top = directory == self.root
                if top:
                    dirs[:] = [d for d in dirs if d not in skip]
                for name in files:
                    if top and name in skip:
                        continue
                    rel = os.path.relpath(os.path.join(directory, name), self.root)
                    yield rel.replace(os.sep, "/")
            return
        for full in self.fs.find(self.root):
            rel = full[len(self.root):].lstrip("/")
            if rel.split("/", 1)[0] not in skip:
                yield rel

    def uri_of_path(self, path: str) -> str:
        """The URI of a file at a path relative to the root."""
        full = self.full_path(path)
        return f"file://{full}" if self.local else self.fs.unstrip_protocol(full)

    def age(self, path: str) -> float:
        """Seconds since the file at a path relative to the root was last modified."""
        full = self.full_path(path)
        if self.local:
            return time.time() - os.lstat(full).st_mtime
        modified = self.fs.modified(full)
        return time.time() - modified.timestamp()


def fsspec_url_to_fs(url: str) -> tuple[Any, str]:
    """fsspec's file system and path for a URL (fsspec imported here, when a URL needs it)."""
    import fsspec

    return fsspec.core.url_to_fs(url)
