"""The write path of the Butler: puts, ingests and the transaction that groups them.

Owns the order of a write (stage, insert rows, publish, commit, settle the journal),
the undo list of an enclosing ``transaction()``, retrying once after a crashed
writer's leftovers are recovered, and the RUNs this butler knows exist.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .batching import gc_paused
from .datastore.journal import JournalScope
from .datastore.staging import BACKGROUND_MIN_FILES, BackgroundPreparation, InBackground
from .datastore.transfer import TRANSFER_MODES, IngestBatch, ingest_files
from .dimensions import DataCoordinate
from .errors import (
    ArtifactExistsError,
    CollectionError,
    DatasetConflictError,
    RegistryError,
    SkybutlerError,
    StorageClassError,
)
from .faults import crash_point
from .formats import get_formatter, get_storage_class
from .formats.file_facts import ExaminedFile, check_file, read_file
from .models import REPRODUCIBLE_ID_MODES, CollectionType, DatasetRef, DatasetType, reproducible_dataset_id, uuid7_batch
from .registry.collection_store import check_name as check_collection_name
from .shared_files import plan_shared_ingest, shared_artifacts

if TYPE_CHECKING:
    from .butler import Butler

IdMode = Literal["random", "deterministic", "dataid_type", "dataid_type_run"]


class Writes:
    """The write machinery one :class:`~skybutler.Butler` composes (``butler._writes``)."""

    def __init__(self, butler: Butler):
        self.butler = butler
        self._known_runs: set[str] = set()
        self._undo: list[Callable[[], Any]] | None = None
        self._after_commit: list[Callable[[], Any]] = []
        self._on_commit: list[Callable[[], Any]] = []
        #: the write journal every put of the enclosing ``transaction()`` records its intents in
        self._journal_scope: JournalScope | None = None

    def forget_runs(self, names: Iterable[str]) -> None:
        """Forget RUNs removed by this butler, so a later write registers them anew."""
        self._known_runs.difference_update(names)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: every put, ingest and record inside happens, files included, or none does.

        Files are published as each write goes; if the block fails they are removed again
        together with the rolled-back rows.
        """
        if self._undo is not None:  # nested: the outer block decides
            yield
            return
        self._undo, self._after_commit, self._on_commit = [], [], []
        self._journal_scope = scope = self.butler.datastore.journal_scope()
        try:
            with self.butler.registry.transaction():
                yield
        except BaseException:
            for undo in reversed(self._undo):
                undo()
            self._known_runs.clear()
            raise
        else:
            crash_point("transaction-committed")
            for action in self._on_commit:  # the block's rows are committed: deletions may go ahead
                action()
        finally:
            self._undo, after, self._after_commit, self._on_commit = None, self._after_commit, [], []
            self._journal_scope = None
            try:
                for settle in after:
                    settle()
            finally:
                if scope is not None:  # every write of the block is settled: its journal goes
                    scope.end()

    @property
    def journal_scope(self) -> JournalScope | None:
        """The write journal of the enclosing ``transaction()`` (None outside one)."""
        return self._journal_scope

    def when_committed(self, action: Callable[[], Any]) -> None:
        """Run ``action`` once the write it belongs to is committed: now, or when the enclosing
        ``transaction()`` commits (never if it rolls back).  A removal deletes its files this way,
        so a rolled-back block leaves them where its rows still point."""
        if self._undo is not None:
            self._on_commit.append(action)
        else:
            action()

    def _on_rollback(self, undo: Callable[[], Any]) -> None:
        """Remember how to undo a write that an enclosing ``transaction()`` may still roll back."""
        if self._undo is not None:
            self._undo.append(undo)

    def when_settled(self, settle: Callable[[], Any]) -> None:
        """Run ``settle`` once a write is final: now, or when the enclosing ``transaction()`` has
        committed or rolled back (and undone its files).  Ends a write's journal entry, so a crash
        before then is undone by the next open."""
        if self._undo is not None:
            self._after_commit.append(settle)
        else:
            settle()

    def _run_name(self, run: str | None) -> str:
        run = run or self.butler.run
        if not run:
            raise SkybutlerError("no RUN collection given: pass run= here or when opening the Butler")
        return check_collection_name(run)  # before any file is written under it

    def _ensure_run(self, run: str) -> None:
        """Register the RUN inside the caller's transaction, so a failed write does not leave it behind."""
        if run not in self._known_runs:
            self.butler.registry.collections.register(run, CollectionType.RUN)

    def _raise_if_run_vanished(self, run: str, err: BaseException) -> None:
        """After a failed write: if ``run`` was known here but another client has removed it since,
        forget it and say so (the next write creates it anew)."""
        if isinstance(err, RegistryError) and run in self._known_runs and not self.butler.registry.collections.exists(run):
            self._known_runs.discard(run)
            raise CollectionError(f"RUN {run!r} was removed by another client after this butler last wrote to "
                                  f"it; nothing was written (write again to create the RUN anew)") from err

    def _new_ids(self, dtype: DatasetType, data_ids: Sequence[DataCoordinate], id_mode: IdMode,
                 run: str) -> list[uuid.UUID]:
        if id_mode in REPRODUCIBLE_ID_MODES:
            return [reproducible_dataset_id(id_mode, dtype.name, d, run) for d in data_ids]
        if id_mode != "random":
            raise SkybutlerError(f"unknown id_mode {id_mode!r}; use 'random' or one of "
                                 f"{', '.join(REPRODUCIBLE_ID_MODES)}")
        return uuid7_batch(len(data_ids))

    @gc_paused()
    def put_many(self, dataset_type: str, items: Iterable[tuple[Any, Mapping[str, Any]]], *,
                 run: str | None = None, id_mode: IdMode = "random",
                 ids: Sequence[uuid.UUID] | None = None, adopt_leftovers: bool = False) -> list[DatasetRef]:
        """Store many datasets of one type in one transaction (the fast path for pipelines and ingest);
        ``ids`` gives the dataset IDs explicitly (re-creating purged datasets under their recorded IDs);
        ``adopt_leftovers`` takes as ours, from the first attempt, a file at a path that holds exactly
        these bytes and that no dataset and no live writer claims (a crashed attempt's leftover)."""
        dtype = self.butler.get_dataset_type(dataset_type)
        storage_class = get_storage_class(dtype.storage_class)
        group = dtype.group(self.butler.universe)
        run = self._run_name(run)
        objects: list[Any] = []
        coordinates: list[DataCoordinate] = []
        for obj, data_id in items:
            objects.append(storage_class.check(obj))
            coordinates.append(self.butler._standardize(group, data_id, {}))
        schema = self.butler._declared.for_writing(dtype) if objects else None
        if schema is not None:  # a declared catalog schema: check each table, store it conformed
            from .catalogs.validation import conform

            objects = [conform(obj, schema, f"{dtype.name} table for {dict(c.required)}")
                       for obj, c in zip(objects, coordinates)]
        if ids is not None and len(ids) != len(objects):
            raise SkybutlerError(f"put_many got {len(ids)} dataset IDs for {len(objects)} datasets")
        if not objects:
            return []
        full = self.butler.registry.dimensions.expand_many(coordinates)
        new_ids = list(ids) if ids is not None else self._new_ids(dtype, full, id_mode, run)
        refs = [DatasetRef(i, dtype, d, run) for i, d in zip(new_ids, full)]
        facts = [(ref.id, storage_class.extract_metadata(obj)) for ref, obj in zip(refs, objects)]
        try:
            return self._store(dtype, run, refs, objects, facts, adopt=adopt_leftovers)
        except ArtifactExistsError as err:
            if self._undo is not None:
                # Inside an enclosing transaction this attempt's rows stay until it rolls back, so a
                # second attempt here would collide with them: the enclosing block decides.
                raise self._stranger_file(err, refs) from None
            # A file is at one of the paths: left by a writer that crashed before committing?  Settle
            # the journals of dead writers, then try once more, taking as ours a leftover holding these
            # very bytes that no dataset and no live writer claims.
            self.butler.recover()
            try:
                return self._store(dtype, run, refs, objects, facts, adopt=True)
            except ArtifactExistsError as err:
                raise self._stranger_file(err, refs) from None

    def _store(self, dtype: DatasetType, run: str, refs: list[DatasetRef], objects: list[Any],
               facts: list[tuple[uuid.UUID, dict[str, Any]]], adopt: bool) -> list[DatasetRef]:
        """Stage, register and publish one batch; its journal entry ends once the write is final.
        A large batch is formatted and staged in a thread while its first rows are inserted."""
        formatter = get_storage_class(dtype.storage_class).default_formatter
        datastore, scope = self.butler.datastore, self._journal_scope
        preparation = None if adopt else datastore.prepare_in_background(refs, objects, formatter, scope=scope)
        pending = [] if preparation is not None else datastore.prepare_many(refs, objects, formatter, scope=scope)
        try:
            if adopt:
                claimed = self._claimed_paths([p.artifact.path for p in pending])
                for p in pending:
                    p.adopt_identical = p.artifact.path not in claimed
            if not adopt and preparation is None and self._commits_with_rows(run, len(refs)):
                stored = self._publish_then_commit(dtype, run, refs, pending, facts)
            else:
                stored = self._commit(dtype, run, refs, preparation.pending if preparation else lambda: pending,
                                      facts, preparation)
            pending = preparation.pending() if preparation else pending
        except BaseException:
            datastore.settle(preparation.stop() if preparation else pending, failed=True)
            raise
        crash_point("registry-committed")
        self.when_settled(lambda: datastore.settle(pending))
        return stored

    def _commits_with_rows(self, run: str, n: int) -> bool:
        """Whether a put of ``n`` datasets into ``run`` goes as :meth:`_publish_then_commit`: a
        write of its own (no enclosing transaction) into a known RUN, whose rows the registry sends
        with their COMMIT in one round trip (PostgreSQL, a small batch)."""
        return self._undo is None and run in self._known_runs and self.butler.registry.commits_with_rows(n)

    def _publish_then_commit(self, dtype: DatasetType, run: str, refs: list[DatasetRef], pending: Sequence[Any],
                             facts: list[tuple[uuid.UUID, dict[str, Any]]]) -> list[DatasetRef]:
        """Publish the staged files, then insert the rows and commit in one round trip.

        The commit must follow the files, and here it leaves with the rows, so the files go first.
        A file at a path (another dataset's, as a conflicting put meets it) is refused before any
        row is sent, and the caller's retry takes the rows-first way of :meth:`_commit`, which
        explains a conflict; a conflict the rows meet takes this put's files back out."""
        storage_class = get_storage_class(dtype.storage_class)
        if storage_class.metadata_fields:
            self.butler.registry.metadata.table(storage_class.name, storage_class.metadata_fields)  # see _commit
        published = self.butler.datastore.publish_many(pending)
        crash_point("files-published")
        try:
            return self.butler.registry.insert_datasets(
                dtype, run, [r.data_id for r in refs], [r.id for r in refs], published,
                storage_class.name, storage_class.metadata_fields, facts)
        except BaseException as err:
            self.butler.datastore.remove(published)
            self._raise_if_run_vanished(run, err)
            raise

    def _claimed_paths(self, paths: Sequence[str]) -> set[str]:
        """Which of these artifact paths a registered dataset or another live writer holds."""
        return self.butler.registry.datasets.paths_in_use(paths) | self._live_paths(paths)

    def _live_paths(self, paths: Sequence[str], kinds: Callable[[str], bool] = lambda kind: True) -> set[str]:
        """Which of these artifact paths the journal of another writer still at work names (of its
        intents whose kind ``kinds`` takes: a repair's quarantine move, say, or any other)."""
        journal = self.butler.datastore.journal
        if journal is None:
            return set()
        return {i.path for j in journal.live() for i in j.intents if kinds(i.kind)} & set(paths)

    def _stranger_file(self, err: ArtifactExistsError, writing: Sequence[DatasetRef]) -> SkybutlerError:
        """The error for a file in the way of ``writing`` (the refs being written): another dataset's;
        a live writer's (its journal names the path: a put of the same data ID that has placed its
        file and not yet committed its rows), named by the data ID; one a running ``verify --fix`` is
        setting aside; or a stranger's that only ``verify --fix`` may set aside."""
        root = self.butler.datastore.root.rstrip("/") + "/"
        path = err.path[len(root):] if err.path.startswith(root) else None
        if path is not None and self.butler.registry.datasets.paths_in_use([path], excluding=[r.id for r in writing]):
            return ArtifactExistsError(
                f"{err}: a dataset of this repository is stored there (one with the same dataset type and data ID, "
                "written meanwhile by another writer?); nothing was written", err.path)
        if path is not None and self._live_paths([path], lambda kind: kind != "quarantine"):
            ref = self._ref_at(path, writing)
            what = f"the {ref.dataset_type.name} dataset with data ID {ref.data_id.required} in RUN {ref.run!r}" \
                if ref is not None else "a dataset with the same dataset type and data ID in the same RUN"
            return DatasetConflictError(f"{err}: another writer is storing {what} there now; nothing was written")
        if path is not None and self._live_paths([path]):
            return ArtifactExistsError(
                f"{err}: no dataset of this repository is recorded there, and a running 'verify --fix' is setting "
                "the file aside (into the quarantine) now; nothing was written: write again once it is done", err.path)
        return ArtifactExistsError(
            f"{err}: no dataset of this repository is recorded there and no interrupted write of skybutler "
            f"left it; run 'skybutler verify {self.butler.root} --fix' to set it aside (into the quarantine), then "
            "write again", err.path)

    def _ref_at(self, path: str, refs: Sequence[DatasetRef]) -> DatasetRef | None:
        """Which of ``refs`` is stored at ``path``, whatever its file's suffix (None if none is)."""
        for ref in refs:
            base = self.butler.datastore.relative_path(ref, "")
            if path.startswith(base) and path[len(base):len(base) + 1] in ("", "."):
                return ref
        return None

    def _commit(self, dtype: DatasetType, run: str, refs: list[DatasetRef], pending: Callable[[], Sequence[Any]],
                facts: list[tuple[uuid.UUID, dict[str, Any]]],
                preparation: BackgroundPreparation | None) -> list[DatasetRef]:
        """Insert the batch's rows and publish its files in one registry transaction; ``pending()``
        gives the staged artifacts (waiting for a ``preparation`` still formatting them)."""
        published = []
        storage_class = get_storage_class(dtype.storage_class)
        if storage_class.metadata_fields:
            # Create the metadata table before writing rows: on PostgreSQL, two puts each
            # creating it after inserting datasets (which its foreign key locks) deadlock.
            self.butler.registry.metadata.table(storage_class.name, storage_class.metadata_fields)
        try:
            with self.butler.registry.transaction():
                self._ensure_run(run)
                stored = self.butler.registry.insert_datasets(
                    dtype, run, [r.data_id for r in refs], [r.id for r in refs], lambda: [p.artifact for p in pending()],
                    storage_class.name, storage_class.metadata_fields, facts)
                if preparation is not None:
                    preparation.wait()  # every file staged
                published = self.butler.datastore.publish_many(pending())
                crash_point("files-published")
            self._known_runs.add(run)
            self._on_rollback(lambda: self.butler.datastore.remove(published))
            return stored
        except BaseException as err:
            self.butler.datastore.remove(published)
            self._raise_if_run_vanished(run, err)
            raise

    @gc_paused()
    def ingest(self, dataset_type: str, files: Iterable[tuple[str | Path, Mapping[str, Any]]], *,
               run: str | None = None, transfer: str = "copy", formatter: str | None = None,
               id_mode: IdMode = "random", ids: Sequence[uuid.UUID | str] | None = None,
               skip_existing: bool = False, examined: Sequence[ExaminedFile] | None = None) -> list[DatasetRef]:
        """The work of :meth:`Butler.ingest` (its docstring says what the arguments mean)."""
        if transfer not in TRANSFER_MODES:
            raise SkybutlerError(f"unknown transfer mode {transfer!r}; use one of {', '.join(TRANSFER_MODES)}")
        dtype = self.butler.get_dataset_type(dataset_type)
        storage_class = get_storage_class(dtype.storage_class)
        fmt = get_formatter(formatter or storage_class.default_formatter)
        if not storage_class.holds(fmt.name):  # it could not give back this storage class's object
            raise StorageClassError(f"formatter {fmt.name!r} does not read {storage_class.name} datasets "
                                    f"({dataset_type}); use one of {', '.join(storage_class.formatters)}")
        group = dtype.group(self.butler.universe)
        run = self._run_name(run)
        paths: list[str | Path] = []
        coordinates: list[DataCoordinate] = []
        for path, data_id in files:
            paths.append(path)
            coordinates.append(self.butler._standardize(group, data_id, {}))
        if ids is not None:
            ids = [i if isinstance(i, uuid.UUID) else uuid.UUID(str(i)) for i in ids]
            if len(ids) != len(paths):
                raise SkybutlerError(f"ingest got {len(ids)} dataset IDs for {len(paths)} files")
        if examined is not None and len(examined) != len(paths):
            raise SkybutlerError(f"ingest got {len(examined)} examined files for {len(paths)} files")
        full = self.butler.registry.dimensions.expand_many(coordinates)
        new_ids = ids if ids is not None else self._new_ids(dtype, full, id_mode, run)
        entries = [(p, DatasetRef(i, dtype, d, run)) for p, i, d in zip(paths, new_ids, full)]
        facts_of = [None] * len(entries) if examined is None else [e.facts for e in examined]
        hdus = [None] * len(entries) if examined is None else [e.hdu for e in examined]
        if len({r.data_id.required_values for _, r in entries}) < len(entries):
            raise DatasetConflictError(f"the same {dtype.name} data ID is given twice for RUN {run!r}; "
                                       "nothing was ingested")
        if self.butler.registry.collections.exists(run):
            found = self.butler.registry.datasets.find_many(dtype, [r.data_id for _, r in entries], [run])
            if skip_existing:
                kept = [k for k, (_, r) in enumerate(entries) if r.data_id not in found]
                entries, facts_of = [entries[k] for k in kept], [facts_of[k] for k in kept]
                hdus = [hdus[k] for k in kept]
            elif found:
                # Said before any file is placed: the file would meet the existing dataset's at its path.
                first = next(iter(found))
                more = f" (and {len(found) - 1} more of the {len(entries)} given)" if len(found) > 1 else ""
                raise DatasetConflictError(
                    f"a {dtype.name} dataset with data ID {first.required} already exists in RUN {run!r}{more}; "
                    "nothing was ingested (skip_existing=True, or --skip-existing, ingests only the new ones)")
        if not entries:
            return []
        schema = self.butler._declared.for_writing(dtype)
        if schema is not None:  # a declared catalog schema: every file must conform, as it is
            from .catalogs.validation import conform

            for path, _ in entries:
                conform(read_file(path, fmt), schema, f"file {path}")
        facts = [(r.id, f) for (_, r), f in zip(entries, facts_of) if f is not None]
        if storage_class.metadata_fields:
            self.butler.registry.metadata.table(storage_class.name, storage_class.metadata_fields)  # see _commit
        check = examined is None  # each file checked by its formatter as it is placed (see _ingest_batch)
        try:
            return self._ingest_batch(dtype, run, entries, transfer, fmt, facts, check, hdus)
        except ArtifactExistsError:
            self.butler.recover()  # a crashed writer's leftover at one of the paths goes, then one more try
            try:
                return self._ingest_batch(dtype, run, entries, transfer, fmt, facts, check, hdus)
            except ArtifactExistsError as err:
                raise self._stranger_file(err, [r for _, r in entries]) from None

    def _ingest_batch(self, dtype: DatasetType, run: str, entries: list[tuple[str | Path, DatasetRef]],
                      transfer: str, fmt: Any, facts: list[tuple[uuid.UUID, dict[str, Any]]],
                      check: bool, hdus: Sequence[int | None]) -> list[DatasetRef]:
        """Place one batch of files, register them with their facts; the journal entry ends once final.
        A file several entries give, each as one of its HDUs (``hdus``), is placed once and shared
        (:mod:`skybutler.shared_files`).

        With ``check`` each file is checked by its formatter, and its facts taken, from the bytes read
        to copy it or for its checksum (one read of each file, not two): a refused file undoes the
        batch and every refusal is named (:class:`InvalidFileError`); the facts are complete when
        the registry writes them, after the last file is placed.  Without, they were checked already."""
        storage_class = get_storage_class(dtype.storage_class)
        batch = placing = None
        facts = list(facts)
        placed, owner, names = plan_shared_ingest(entries, hdus, fmt.name)

        def examine(index: int, data: bytes | None) -> None:
            path, ref = placed[index]
            found = check_file(path, fmt, storage_class, data).facts
            if found is not None:
                facts.append((ref.id, found))

        def place() -> IngestBatch:  # undoes itself on failure
            return ingest_files(self.butler.datastore, placed, transfer, fmt.name, fmt.extension,
                                examine=examine if check else None, also_named=fmt.also_named)

        try:
            if len(entries) >= BACKGROUND_MIN_FILES:  # placed while the first rows go in
                placing = InBackground(place)
                artifacts: Any = lambda: shared_artifacts([d.artifact for d in placing.result().files],  # noqa: E731
                                                          owner, names)
            else:
                batch = place()
                artifacts = shared_artifacts([d.artifact for d in batch.files], owner, names)
            with self.butler.registry.transaction():
                self._ensure_run(run)
                stored = self.butler.registry.insert_datasets(
                    dtype, run, [r.data_id for _, r in entries], [r.id for _, r in entries],
                    artifacts, storage_class.name, storage_class.metadata_fields, facts)
                batch = placing.result() if placing is not None else batch  # every file placed before the commit
            self._known_runs.add(run)
        except BaseException as err:
            if placing is not None:
                batch = placing.outcome()  # None if placing failed: it undid itself
            if batch is not None:
                batch.undo()
            self._raise_if_run_vanished(run, err)
            raise
        crash_point("registry-committed")
        self._on_rollback(batch.undo)
        self.when_settled(batch.finish)  # after the commit: a copy-then-delete move deletes its sources
        return stored
