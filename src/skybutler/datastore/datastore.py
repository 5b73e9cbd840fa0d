"""The file datastore: artifacts of datasets on local disk or any fsspec store (S3, ...).

Writes never leave half-written files visible: on a local disk the bytes go to a
temporary name and are linked into place without clobbering anything; on an
object store a single PUT (or a completed multipart upload) is atomic by itself.
The datastore knows nothing of the registry: the butler gives it refs and gets
back :class:`StoredArtifact` records to save.  This module places, removes and lists files;
reading them is :mod:`skybutler.datastore.reading`.

An ``s3://bucket/prefix`` root goes through s3fs, which takes everything from the
standard AWS configuration, never from the repository config: credentials from
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` or ``~/.aws``; the
region from ``AWS_DEFAULT_REGION``; and, for a store other than AWS (MinIO, Ceph,
moto...), the endpoint from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (e.g.
``https://s3.example.org``).  Other s3fs options can be set as ``FSSPEC_S3_<OPTION>``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import posixpath
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ArtifactExistsError, DatastoreError
from ..faults import crash_point
from ..formats import get_formatter
from ..models import DatasetRef, StoredArtifact
from .checksums import checksum
from .journal import Intent, Journal, JournalScope, WriteJournal
from .local_files import rename_no_replace, write_new_file
from .reading import ArtifactReads, fsspec_url_to_fs
from .staging import BACKGROUND_MIN_FILES, BackgroundPreparation
from .templates import DEFAULT_TEMPLATE, PathTemplate, template_fields

T = TypeVar("T")

#: Threads that publish the objects of one batch at once to an object store, where each
#: write waits on the network.  Local files are written in order: creating many files in
#: one directory from several threads is slower on a local file system, not faster.
OBJECT_STORE_THREADS = 8

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
    the write-journal entry of the batch, ended by :meth:`FileDatastore.settle` (None when the
    batch records its intent ``number`` in an enclosing transaction's :class:`JournalScope`).
    """

    def __init__(self, datastore: FileDatastore, artifact: StoredArtifact, staged: str | None, data: bytes | None,
                 digest: str | None = None, journal: Journal | None = None,
                 scope: JournalScope | None = None, number: int = 0, stage_name: str | None = None):
        self.datastore = datastore
        self.artifact = artifact
        self._staged = staged
        self._data = data
        self.digest = digest
        self.journal = journal
        self.scope = scope
        self.number = number
        #: the temporary name the journal records for the bytes (local datastores), staged there by
        #: :meth:`FileDatastore.prepare_many`
        self.stage_name = stage_name
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


class FileDatastore(ArtifactReads):
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
        return self._root_slash + path

    @functools.cached_property
    def _root_slash(self) -> str:
        """The root with one trailing slash: what a relative path is joined to (once per read)."""
        return posixpath.join(self.root, "")

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

    def journal_scope(self) -> JournalScope | None:
        """A journal for every write of one enclosing transaction (None: no journal is kept)."""
        return JournalScope(self.journal) if self.journal is not None else None

    def prepare_many(self, refs: Sequence[DatasetRef], objects: Sequence[Any],
                     formatter_name: str, scope: JournalScope | None = None) -> list[PendingArtifact]:
        """Format every object and stage the bytes; on any failure nothing stays staged.  The
        intents go to ``scope``'s journal (an enclosing transaction's) if given, else to a journal
        of the batch's own."""
        pending = self._format_and_journal(refs, objects, formatter_name, scope)
        if not self.local:
            return pending
        try:
            _all_or_nothing(self._stage, pending, PendingArtifact.abort)
        except BaseException:
            self._forget_batch(pending)
            raise
        return pending

    def prepare_in_background(self, refs: Sequence[DatasetRef], objects: Sequence[Any], formatter_name: str,
                              scope: JournalScope | None = None) -> BackgroundPreparation | None:
        """:meth:`prepare_many` in a thread, while the caller inserts the batch's rows (see
        :mod:`.staging`); None where it would not pay (an object store, a small batch).  Its
        ``pending()`` are the artifacts, to :meth:`publish_many` after its ``wait()``; a failed batch
        is ended by :meth:`settle` of what its ``stop()`` returns."""
        if not self.local or len(refs) < BACKGROUND_MIN_FILES:
            return None
        return BackgroundPreparation(lambda: self._format_and_journal(refs, objects, formatter_name, scope),
                                     self._stage)

    def _format_and_journal(self, refs: Sequence[DatasetRef], objects: Sequence[Any], formatter_name: str,
                            scope: JournalScope | None) -> list[PendingArtifact]:
        """Format every object and record the batch's intents (the staged names included) in the
        journal, before any file is touched."""
        formatter = get_formatter(formatter_name)
        to_bytes, extension, algorithm = formatter.to_bytes, formatter.extension, self.checksum_algorithm
        formatted = []
        for ref, obj in zip(refs, objects):
            data = to_bytes(obj)
            artifact = StoredArtifact(path=self.relative_path(ref, extension), formatter=formatter_name,
                                      size=len(data), checksum=checksum(data, algorithm))
            digest = artifact.checksum if algorithm == "xxh3" else checksum(data, "xxh3")
            formatted.append((ref, artifact, data, digest))
        if self.journal is None:
            scope = None
        # staged names: the journal's token and the intent's number in it
        token, first = (scope.token, scope.next_number) if scope is not None else (uuid.uuid4().hex, 0)
        staged_names = [self.staged_name(a.path, token, first + n) for n, (_, a, _, _) in enumerate(formatted)]
        intents = [Intent(str(ref.id), a.path, "put", staged=staged, checksum=digest)
                   for (ref, a, _, digest), staged in zip(formatted, staged_names)]
        journal = None
        if scope is not None:
            scope.record(intents)
        elif self.journal is not None:
            journal = self.journal.begin(intents, token=token)
        return [PendingArtifact(self, artifact, None, data, digest, journal, scope, first + n, stage_name=staged)
                for n, ((_, artifact, data, digest), staged) in enumerate(zip(formatted, staged_names))]

    def _stage(self, pending: PendingArtifact) -> PendingArtifact:
        """Write a pending artifact's bytes under its staged name (the journal names it)."""
        staged, data = pending.stage_name, pending._data
        try:
            self.in_directory_of(staged, lambda: write_new_file(staged, data))
        except OSError as err:  # a full disk, a read-only or missing mount, permissions
            raise DatastoreError(f"local datastore write of {self.full_path(pending.artifact.path)} failed: "
                                 f"{err.strerror or err}") from err
        pending._staged, pending._data = staged, None
        crash_point("file-staged")
        return pending

    def _forget_batch(self, pending: Sequence[PendingArtifact]) -> None:
        """A batch failed before any registry work and its files are gone: end its journal entry."""
        if not pending:
            return
        if pending[0].journal is not None:
            self.journal.end(pending[0].journal)
        if pending[0].scope is not None and pending[0].scope.journal is not None:
            pending[0].scope.journal.void([p.number for p in pending])

    def journal_removal(self, artifacts: Mapping[uuid.UUID, StoredArtifact],
                        scope: JournalScope | None = None) -> Journal | None:
        """Record that these datasets' files are about to go (after their rows), so a removal killed
        between its commit and its deletions is finished by the next open; ``end_journal`` after.
        With ``scope`` (an enclosing transaction's) the intents go to its journal, which the
        transaction ends, and None is returned.  A removal whose rows stay (it failed, or its
        transaction rolled back) needs no undo there: a replay keeps a file whose rows remain."""
        inside = [(i, a) for i, a in artifacts.items() if "://" not in a.path and not a.path.startswith("/")]
        if self.journal is None or not inside:
            return None
        intents = [Intent(str(i), a.path, "remove", checksum=a.checksum) for i, a in inside]
        if scope is not None:
            scope.record(intents)
            return None
        return self.journal.begin(intents)

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

    def settle(self, pending: Sequence[PendingArtifact], failed: bool = False) -> None:
        """A batch is over (committed, or rolled back and its files removed): discard what is still
        staged and end its journal entry.  Recorded in a transaction's journal, the batch leaves it
        to the transaction; if it ``failed`` (its files gone), its intents are voided there."""
        journals = {id(p.journal): p.journal for p in pending if p.journal is not None}
        for p in pending:
            p.abort()
        for journal in journals.values():
            self.journal.end(journal)
        shared = [p for p in pending if p.scope is not None and p.scope.journal is not None]
        if failed and shared:
            shared[0].scope.journal.void([p.number for p in shared])

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
            return dataclasses.replace(artifact, size=len(existing), checksum=checksum(existing, algorithm))
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
