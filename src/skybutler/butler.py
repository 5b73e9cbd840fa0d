"""The Butler: one facade over the registry, the datastore and the formats.

A thin composition with no SQL and no file I/O of its own: opening and creating
repositories, writes, reads and removal here; dataset types in ``butler_dataset_types.py``,
dimension records and data IDs in ``butler_records.py``, the queries in ``butler_queries.py``,
catalog schemas and loading in ``butler_catalogs.py``, raws, cameras, visits and sky maps in
``butler_ingest.py``, provenance, retention and access in ``butler_parts.py``; the order of
operations of writes in ``writes.py``, of reads in ``reads.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .butler_catalogs import CatalogMethods
from .butler_dataset_types import DatasetTypeMethods
from .butler_ingest import IngestMethods
from .butler_parts import PartMethods
from .butler_queries import QueryMethods
from .butler_records import RecordMethods
from .butler_rubin import RubinButlerCalls, check_default_data_id, no_file_datasets
from .collections_manager import CollectionsManager
from .config import BOOKKEEPING_DIR, CONFIG_NAME, DEFAULT_DATASTORE, RepoConfig
from .datastore import FileDatastore
from .dimensions import DimensionUniverse
from .dimensions.data_id import lazily_expanded
from .errors import (
    ConfigError,
    DataIdError,
    DatasetNotFoundError,
    SkybutlerError,
)
from .faults import crash_point
from .models import CollectionType, DatasetRef, DatasetType, StoredArtifact, split_component
from .reads import observation_time, read_dataset
from .registry import Registry
from .remote.served import served as _served
from .rubin_registry import RubinRegistry
from .shared_files import unshared
from .timespan import Timespan, as_timespan
from .writes import IdMode, Writes

if TYPE_CHECKING:
    from astropy.time import Time

    from .formats.file_facts import ExaminedFile
    from .registry.writer_presence import WriterPresence
    from .remote.client import RemoteTransport
    from .retention import RecomputeOptions


def _load_universe(name: str) -> DimensionUniverse:
    if name == "default":
        return DimensionUniverse.default()
    try:
        return DimensionUniverse.from_yaml(name)
    except OSError as err:
        raise ConfigError(f"universe {name!r} (in {CONFIG_NAME}): cannot read it: {err.strerror or err}") from None
    except (yaml.YAMLError, UnicodeDecodeError, TypeError, KeyError, ValueError) as err:
        if isinstance(err, SkybutlerError):
            raise
        raise ConfigError(f"universe {name!r} (in {CONFIG_NAME}) is not a dimension universe file: "
                          f"{' '.join(str(err).split())}") from None


def _unlocated(target: str | DatasetRef) -> str | DatasetRef:
    """``target`` without the artifact location a ref may carry, so it is looked up afresh."""
    return target.with_artifact(None) if isinstance(target, DatasetRef) else target


class Butler(DatasetTypeMethods, QueryMethods, CatalogMethods, IngestMethods, PartMethods, RecordMethods,
             RubinButlerCalls):
    """Read and write datasets of one repository.

    ``root`` is a repository directory, or a server's URL (``http://host:port/repo``): then
    every call goes to that server with the bearer ``token`` (default: the ``SKYBUTLER_TOKEN``
    environment variable), under the rights its owner has there.

    ``collections`` is the default search path for reads, ``run`` the default RUN
    for writes, ``data_id`` default data-ID values (e.g. ``{"instrument": "SimCam"}``, or as
    keywords, ``instrument="SimCam"``, the Rubin butler's way).  The Rubin butler's
    ``writeable`` and ``inferDefaults`` are taken and change nothing: what a butler may
    write is its repository's and its token's to say.
    ``recompute`` (True or a :class:`~skybutler.retention.RecomputeOptions`) lets ``get``
    re-create purged datasets from their provenance; ``on_wait(message, seconds)`` is told
    the expected wait of a recompute or of staging from the cold tier (default: a log warning).
    """

    #: the bearer token of a butler opened on a server URL (handed to the workers of a pipeline run)
    token: str | None = None

    def __init__(self, root: str | Path, collections: str | Sequence[str] | None = None, run: str | None = None,
                 data_id: Mapping[str, Any] | None = None, *, recompute: bool | RecomputeOptions = False,
                 on_wait: Callable[[str, float], None] | None = None, token: str | None = None,
                 writeable: bool | None = None, inferDefaults: bool = True, _registry: Registry | None = None,
                 **data_id_values: Any):
        self._remote = None
        #: no collections given but a RUN: the RUN is the default collection, as in the Rubin butler (and in
        #: a clone of this butler that gives no collections either)
        self._collections_given = collections is not None
        if collections is None and run is not None:
            collections = [run]
        if data_id_values:  # the Rubin butler's Butler(repo, instrument="Cam"); writeable is the rights' to say
            data_id = {**(data_id or {}), **data_id_values}
        #: this client's writer lock on a shared (PostgreSQL) registry, seen by the other hosts' repairs
        self.writers: WriterPresence | None = None
        if isinstance(root, str) and root.startswith(("http://", "https://")):
            from .remote.client import open_remote

            open_remote(self, root, collections, run, data_id, token)
            self.registry = RubinRegistry(self)
            check_default_data_id(self)
            return
        self.root = Path(root).absolute()
        self.config = RepoConfig.load(self.root)
        self.universe = _load_universe(self.config.universe)
        parts = _registry or Registry.open(self.config.registry_url(self.root), self.universe)
        #: the Rubin registry's calls; any other name is the SQL registry's (``registry.datasets``)
        self.registry = RubinRegistry(self, parts)
        self.datastore = FileDatastore(self.config.datastore_uri(self.root), self.config.templates,
                                       self.config.checksum, journal=str(self.root / BOOKKEEPING_DIR / "journal"))
        if parts.db.dialect == "postgresql" and self.datastore.journal is not None:
            from .registry.writer_presence import WriterPresence

            self.writers = WriterPresence(parts.db, self.datastore.journal.directory)
            self.datastore.journal.before_write = self.writers.announce
        self.collections = CollectionsManager(parts)
        self.collections.owner = self
        self.default_collections = [collections] if isinstance(collections, str) else list(collections or [])
        self.run = run
        self.default_data_id = dict(data_id or {})
        try:
            check_default_data_id(self)
        except DataIdError:
            self.registry.close()
            raise
        self._writes = Writes(self)
        self.recompute = recompute
        self.on_wait = on_wait
        self._tracks_access = self.config.retention.tracks_access
        #: what this open settled from the journals of interrupted writes (see ``recover``)
        self.recovered = self.recover()

    @_served
    def recover(self) -> list[str]:
        """Settle the writes of crashed writers from their journals: files whose registry rows were
        never committed are taken back out (moved files back where they came from), leftover
        staging files deleted; returns what was done.  Runs on every open (one directory listing
        when there is nothing to do)."""
        from .recovery import recover

        return recover(self)

    @classmethod
    def create(cls, root: str | Path, registry: str | None = None, datastore: str | None = None, *,
               universe: str = "default", templates: Mapping[str, str] | None = None,
               checksum: str | None = "xxh3", verify_checksums: bool = False, existing_ok: bool = False,
               **kwargs: Any) -> Butler:
        """Create a new, empty repository at ``root`` and open it (extra kwargs go to ``Butler``).

        ``root`` must be missing or empty, unless ``existing_ok``: then the repository is made
        beside the files already there, which skybutler never lists, moves or deletes (its own
        names -- ``butler.yaml``, the SQLite registry, ``datastore/``, ``.skybutler/`` -- must be
        free).  By default dataset files go to ``datastore/`` in the repository, a tree of their own.
        ``verify_checksums`` makes every ``get`` check its file's checksum by default.
        """
        root = Path(root).absolute()
        if (root / CONFIG_NAME).exists():
            raise SkybutlerError(f"a repository already exists at {root}")
        if root.exists() and not root.is_dir():
            raise SkybutlerError(f"cannot create a repository at {root}: it is a file, not a directory")
        present = sorted(os.listdir(root)) if root.exists() else []
        if present and not existing_ok:
            raise SkybutlerError(f"{root} is not empty ({len(present)} entries, e.g. {present[0]!r}): create the "
                                 "repository in a new or empty directory, or pass existing_ok=True (CLI: "
                                 "--existing-ok) to make it beside those files, which skybutler then never touches")
        if datastore is None:
            datastore_setting = DEFAULT_DATASTORE
        elif "://" in datastore or os.path.isabs(datastore):
            datastore_setting = datastore
        else:  # a relative path typed by the user means relative to where they typed it
            datastore_setting = os.path.abspath(datastore)
        ours = [BOOKKEEPING_DIR] + ([DEFAULT_DATASTORE] if datastore is None else [])
        ours += [] if registry else [f"registry.sqlite3{suffix}" for suffix in ("", "-wal", "-shm", "-journal")]
        taken = [name for name in ours if os.path.lexists(root / name)]
        if taken:
            raise SkybutlerError(f"{root} already holds {', '.join(taken)}, which a new repository would make: "
                                 "choose another directory")
        store = None if "://" in datastore_setting else root / datastore_setting  # a local datastore directory
        if store is not None and store.exists() and any(store.iterdir()):
            raise SkybutlerError(f"the datastore directory {store} is not empty: give a new or empty directory")
        made_root = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        made = [root / name for name in ours] + ([store] if store is not None and not store.exists() else [])
        try:
            config = RepoConfig.checked(registry=registry, datastore=datastore_setting, templates=dict(templates or {}),
                                checksum=checksum, verify_checksums=verify_checksums, universe=universe)
            reg = Registry.create(config.registry_url(root), _load_universe(universe))
            (root / BOOKKEEPING_DIR).mkdir()
            if store is not None:
                store.mkdir(parents=True, exist_ok=True)
            config.save(root)
        except BaseException:
            if made_root:
                shutil.rmtree(root, ignore_errors=True)
            else:  # only what this call made: the user's files stay as they were
                for path in [root / CONFIG_NAME, *made]:
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path, ignore_errors=True)
                    elif path.exists():
                        path.unlink()
            raise
        return cls(root, _registry=reg, **kwargs)

    @_served
    def close(self) -> None:
        if self.writers is not None:
            self.writers.close()
        self.registry.close()

    def __enter__(self) -> Butler:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Butler({str(self.root)!r}, collections={self.default_collections}, run={self.run!r})"

    # -- where work is done ---------------------------------------------------

    @property
    def served_by(self) -> RemoteTransport | None:
        """The server a butler opened on a server URL sends its calls to (None for a local
        repository): the functions taking a butler (verify, export, import) hand it their work."""
        return self._remote

    def scratch_directory(self, prefix: str) -> contextlib.AbstractContextManager:
        """A directory for files on their way into this repository while the block runs: held
        under the repository's bookkeeping directory (a process killed meanwhile leaves it to the
        next open, not in the system's temporary space), or in the system's temporary space for a
        served repository (its files are uploaded)."""
        from .datastore.uploads import scratch_or_temporary

        return scratch_or_temporary(None if self._remote is not None else self.root / BOOKKEEPING_DIR / "uploads",
                                    prefix)

    def settle_placed_files(self, undo: Callable[[], Any], finish: Callable[[], Any]) -> None:
        """Files a write placed and registered (outside ``put``, ``ingest``): undone by ``undo``
        if an enclosing ``transaction()`` rolls back, ``finish``-ed (a move's sources deleted,
        the journal entry ended) once the write is final."""
        self._writes._on_rollback(undo)
        self._writes.when_settled(finish)

    # -- writing --------------------------------------------------------------

    @_served
    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Group writes: every put, ingest and record inside happens, files included, or none does.

        Files are published as each write goes; if the block fails they are removed again
        together with the rolled-back rows.
        """
        return self._writes.transaction()

    def put(self, obj: Any, dataset_type: str | DatasetType | DatasetRef, data_id: Mapping[str, Any] | None = None, *,
            run: str | None = None, id_mode: IdMode = "random", **kwargs: Any) -> DatasetRef:
        """Store one dataset; the file and the registry rows appear together or not at all.
        ``dataset_type`` may be a ref, as in the Rubin butler: the dataset is stored under its ID,
        data ID and RUN (e.g. one removed before, or another repository's)."""
        if isinstance(dataset_type, DatasetRef):
            return self._put_of_ref(obj, dataset_type, data_id, run, kwargs)
        name = dataset_type if isinstance(dataset_type, str) else dataset_type.name  # a DatasetType (ours or Rubin's)
        return self.put_many(name, [(obj, {**(data_id or {}), **kwargs})], run=run, id_mode=id_mode)[0]

    @_served
    def put_many(self, dataset_type: str, items: Iterable[tuple[Any, Mapping[str, Any]]], *,
                 run: str | None = None, id_mode: IdMode = "random",
                 ids: Sequence[uuid.UUID] | None = None, adopt_leftovers: bool = False) -> list[DatasetRef]:
        """Store many datasets of one type in one transaction (the fast path for pipelines and ingest);
        ``ids`` gives the dataset IDs explicitly (re-creating purged datasets under their recorded IDs);
        ``adopt_leftovers`` takes as ours a file already at a path that holds exactly these bytes and
        that no dataset and no live writer claims (what a crashed attempt of the same write left)."""
        return self._writes.put_many(dataset_type, items, run=run, id_mode=id_mode, ids=ids,
                                     adopt_leftovers=adopt_leftovers)

    @no_file_datasets
    @_served
    def ingest(self, dataset_type: str, files: Iterable[tuple[str | Path, Mapping[str, Any]]], *,
               run: str | None = None, transfer: str = "copy", formatter: str | None = None,
               id_mode: IdMode = "random", ids: Sequence[uuid.UUID | str] | None = None,
               skip_existing: bool = False, examined: Sequence[ExaminedFile] | None = None) -> list[DatasetRef]:
        """Register existing files as datasets, moving them in by ``transfer`` (copy, move,
        hardlink, symlink, relsymlink, link, direct); all or nothing.

        ``ids`` keeps given dataset IDs, one per file in order (e.g. the IDs another
        repository gave them, so the same dataset is never duplicated); otherwise IDs
        are made by ``id_mode``.  With ``skip_existing`` a file whose data ID is
        already in the RUN is skipped.  ``examined`` gives, one per file in order, what
        ``skybutler.formats.examine_file`` made of it with this dataset type's formatter
        (which checked it and took its facts): the files are then not opened again
        before they are placed."""
        return self._writes.ingest(dataset_type, files, run=run, transfer=transfer, formatter=formatter,
                                   id_mode=id_mode, ids=ids, skip_existing=skip_existing, examined=examined)

    # -- reading --------------------------------------------------------------

    def _search_path(self, collections: str | Sequence[str] | None) -> list[str]:
        if collections is None:
            if not self.default_collections:
                raise SkybutlerError("no collections to search: pass collections= here or when opening the Butler")
            return self.default_collections
        return [collections] if isinstance(collections, str) else list(collections)

    @_served
    def find_dataset(self, dataset_type: str, data_id: Mapping[str, Any] | None = None, *,
                     collections: str | Sequence[str] | None = None, timespan: Timespan | Time | None = None,
                     **kwargs: Any) -> DatasetRef | None:
        """The first matching dataset in the search path (None if there is none); calibrations
        in CALIBRATION collections are matched by ``timespan``, or else by the timespan of the
        exposure or visit the data ID names (``exposure=...`` for a bias of a detector).
        ``timespan`` may be an astropy ``Time``: the calibration valid at that instant (see
        :func:`~skybutler.timespan.as_timespan`, which also reads a Rubin ``Timespan``)."""
        dtype = self.get_dataset_type(dataset_type)
        group = dtype.group(self.universe)
        timespan = as_timespan(timespan)
        if "dataId" in kwargs:  # the Rubin butler's spelling
            data_id = {**(data_id or {}), **kwargs.pop("dataId")}
        if dtype.is_calibration:  # a timespan given wins over the exposure's (as in the Rubin butler)
            data_id, kwargs, observed = observation_time(self, group, data_id, kwargs, need_time=timespan is None)
            timespan = observed if timespan is None else timespan
        coordinate = self._standardize(group, data_id, kwargs)
        if any(name in coordinate for name in group.implied):
            coordinate = self.registry.dimensions.expand(coordinate)
        ref = self.registry.find_dataset(dtype, coordinate, self._search_path(collections), timespan)
        return None if ref is None else self._with_implied(ref)

    def _with_implied(self, ref: DatasetRef) -> DatasetRef:
        """``ref`` whose data ID carries the implied values (band, day_obs, ...) as the Rubin butler's does."""
        if not ref.data_id.group.implied:
            return ref
        return DatasetRef(ref.id, ref.dataset_type, lazily_expanded(ref.data_id, self.registry.dimensions.expand),
                          ref.run, ref.artifact)

    @_served
    def get_dataset(self, id: uuid.UUID | str) -> DatasetRef | None:
        """The dataset with this ID (a UUID or its text), or None if the repository has none."""
        try:
            key = id if isinstance(id, uuid.UUID) else uuid.UUID(str(id))
        except ValueError:
            return None
        found = self.registry.refs_by_id([key])
        return self._with_implied(found[0]) if found else None

    @_served
    def _find_many(self, dataset_type: str, data_ids: Sequence[Any], collections: Sequence[str]) -> dict[Any, DatasetRef]:
        """The datasets of many data IDs (coordinates) of one type, found first in ``collections``:
        one statement here, one request per 20,000 through a server (a worker's look-up of its outputs)."""
        return self.registry.datasets.find_many(self.get_dataset_type(dataset_type), data_ids, list(collections))

    def _resolve(self, target: str | DatasetRef, data_id: Mapping[str, Any] | None,
                 collections: str | Sequence[str] | None, timespan: Timespan | None,
                 kwargs: Mapping[str, Any], need_artifact: bool = True) -> DatasetRef:
        if isinstance(target, DatasetRef):
            if target.artifact is not None:
                return target
            artifact = self.registry.datasets.artifacts([target.id]).get(target.id)
            if artifact is None and need_artifact:
                raise DatasetNotFoundError(f"dataset {target} has no stored artifact in this repository")
            return target.with_artifact(artifact)
        ref = self.find_dataset(target, data_id, collections=collections, timespan=timespan, **kwargs)
        if ref is None:
            shown = {**(data_id or {}), **kwargs}
            raise DatasetNotFoundError(
                f"no {target} dataset with data ID {shown} in collections {self._search_path(collections)}")
        if ref.artifact is None and need_artifact:
            raise DatasetNotFoundError(f"dataset {ref} is registered but has no stored artifact")
        return ref

    @_served
    def get(self, dataset_type: str | DatasetRef, data_id: Mapping[str, Any] | None = None, *,
            collections: str | Sequence[str] | None = None, timespan: Timespan | None = None,
            parameters: Mapping[str, Any] | None = None, component: str | None = None,
            recompute: bool | RecomputeOptions | None = None, verify_checksums: bool | None = None,
            **kwargs: Any) -> Any:
        """Read a dataset by type + data ID (searched in ``collections``) or by reference.

        ``parameters`` read a subset where the format allows (``columns``, ``bbox``);
        ``component`` reads a part (``header``, ``wcs``), as does a component's dataset type
        (``"calexp.wcs"``) or ref (``ref.makeComponentRef("wcs")``), the Rubin butler's spellings.  A cold dataset is staged back
        first; a purged one is recomputed from its provenance if ``recompute`` (default:
        the butler's) says so, else :class:`DatasetNotFoundError` says it was purged.
        ``verify_checksums`` (default: ``verify_checksums`` of ``butler.yaml``, off) reads the
        whole file and checks it against its recorded checksum first:
        :class:`ChecksumMismatchError` if it was changed since it was stored.
        """
        dataset_type, component = split_component(dataset_type, component)
        ref = self._resolve(dataset_type, data_id, collections, timespan, kwargs, need_artifact=False)
        return read_dataset(self, ref, component=component, parameters=parameters, recompute=recompute,
                            verify_checksums=verify_checksums, just_resolved=ref is not dataset_type)

    @_served
    def exists(self, dataset_type: str | DatasetRef, data_id: Mapping[str, Any] | None = None, *,
               collections: str | Sequence[str] | None = None, full_check: bool = True, **kwargs: Any) -> bool:
        """Whether a dataset is registered and its artifact is present (``full_check``, the Rubin
        butler's, is taken: the file is always looked for).

        A ref's own location is not trusted here: it may predate a removal or purge after
        which another file took the same path, so the registry is asked again."""
        try:
            ref = self._resolve(_unlocated(dataset_type), data_id, collections, None, kwargs)
        except DatasetNotFoundError:
            return False
        return self.datastore.exists(ref.artifact)

    @_served
    def get_uri(self, dataset_type: str | DatasetRef, data_id: Mapping[str, Any] | None = None, *,
                collections: str | Sequence[str] | None = None, **kwargs: Any) -> str:
        """The URI of a dataset's artifact, as the registry records it now."""
        ref = self._resolve(_unlocated(dataset_type), data_id, collections, None, kwargs)
        return self.datastore.uri(ref.artifact)

    # -- dataset facts --------------------------------------------------------

    @_served
    def set_metrics(self, ref: DatasetRef, **metrics: float | None) -> None:
        """Attach named float metrics to a stored dataset; queryable as ``<type>.<name>``."""
        if not metrics:
            raise SkybutlerError("set_metrics needs at least one name=value")
        if not self.registry.datasets.refs_by_id([ref.id]):
            raise DatasetNotFoundError(f"dataset {ref} is not in this repository")
        self.registry.metadata.set_metrics(ref.id, metrics)

    @_served
    def get_metadata(self, ref: DatasetRef) -> dict[str, Any]:
        """The facts extracted from a dataset when it was stored, and its metrics."""
        return self.registry.metadata.get(ref.id, ref.dataset_type.storage_class)

    def get_cutouts(self, dataset_type: str, ra: float, dec: float, size: int, *,
                    collections: str | Sequence[str] | None = None, where: str = "",
                    bind: Mapping[str, Any] | None = None) -> list[tuple[DatasetRef, Any]]:
        """``size`` x ``size`` pixel cut-outs centred on ICRS (``ra``, ``dec``) degrees from every
        image of ``dataset_type`` whose footprint covers it (clipped at the image's edges), as
        (ref, astropy ImageHDU) pairs; ``where`` narrows the images.  Through a server, the
        footprint query and each image's WCS and box are read there: only the boxes travel."""
        from .cutouts import get_cutouts

        return get_cutouts(self, dataset_type, ra, dec, size, collections=collections, where=where, bind=bind)

    @_served
    def extract_metadata(self, dataset_types: str | Sequence[str], *, collections: str | Sequence[str] | None = None,
                         where: str = "", replace: bool = False) -> int:
        """Extract the facts of stored datasets that have none (all of them with ``replace``),
        reading each artifact only as far as its storage class needs; returns how many."""
        from .fact_backfill import extract_metadata

        return extract_metadata(self, dataset_types, collections=collections, where=where, replace=replace)

    # -- user tables ----------------------------------------------------------

    @_served
    def register_user_table(self, name: str, dimensions: Iterable[str], columns: Mapping[str, Any]) -> bool:
        """Add a table of your own keyed by ``dimensions``, with typed ``columns``
        (``{"seeing": float}``; int, float, str or bool); where-clauses then use
        ``<name>.<column>``.  False if it exists identically, an error if differently."""
        taken = [d.name for d in self.registry.dataset_types.all()]
        return self.registry.user_tables.register(name, dimensions, columns, taken=taken)

    @_served
    def insert_user_rows(self, name: str, rows: Iterable[Mapping[str, Any]], *, replace: bool = False) -> int:
        """Insert rows (key dimension values + column values) into a user table, all or none;
        ``replace`` overwrites rows whose key exists.  Returns how many rows were written."""
        return self.registry.user_tables.insert(name, rows, replace=replace)

    def retrieve_artifacts(self, refs: Iterable[DatasetRef], destination: str | Path, *, preserve_path: bool = True,
                           overwrite: bool = False, zip: bool = False) -> list[Path]:
        """Copy the files of ``refs`` into the directory ``destination`` (in the datastore's
        layout, or side by side), or into one zip there; returns the paths written
        (see :func:`skybutler.retrieve.retrieve_artifacts`)."""
        from .retrieve import retrieve_artifacts

        return retrieve_artifacts(self, refs, destination, preserve_path=preserve_path, overwrite=overwrite,
                                  zip=zip)

    # -- removal --------------------------------------------------------------

    @_served
    def remove(self, refs: Iterable[DatasetRef]) -> int:
        """Delete datasets: registry rows first (one transaction), then their files."""
        ids = list({r.id for r in refs})
        artifacts = self.registry.datasets.artifacts(ids)
        self._remove_rows_then_files(artifacts, lambda: self.registry.datasets.delete(ids))
        return len(ids)

    def _remove_rows_then_files(self, artifacts: Mapping[uuid.UUID, StoredArtifact],
                                delete_rows: Callable[[], None]) -> None:
        """Delete rows in one transaction, then the files once that is committed: at once, or, inside
        an enclosing ``transaction()``, when it commits (a rollback leaves rows and files as they were).
        The files are journaled first, so a crash after the commit is finished by the next open."""
        journal = self.datastore.journal_removal(artifacts, self._writes.journal_scope)
        try:
            with self.registry.transaction():
                delete_rows()
        except BaseException:
            self.datastore.end_journal(journal)
            raise

        def delete_files() -> None:
            crash_point("registry-committed")
            # A file other datasets share (one detector each) goes with the last of them.
            self.datastore.remove(unshared(self.registry, artifacts.values()))

        self._writes.when_committed(delete_files)
        self._writes.when_settled(lambda: self.datastore.end_journal(journal))

    @_served
    def remove_runs(self, names: Iterable[str]) -> int:
        """Delete RUN collections with all their datasets and files, all in one transaction;
        returns the number of datasets removed."""
        names = list(names)
        for name in names:
            _, kind = self.registry.collections.lookup(name)
            if kind is not CollectionType.RUN:
                raise SkybutlerError(f"{name!r} is a {kind.value} collection, not a RUN")
        ids = [i for name in names for i in self.registry.datasets.ids_in_collection(name)]
        artifacts = self.registry.datasets.artifacts(ids)

        def delete_rows() -> None:
            self.registry.datasets.delete(ids)
            for name in names:
                self.registry.collections.remove(name)

        self._remove_rows_then_files(artifacts, delete_rows)
        self._writes.forget_runs(names)
        return len(ids)
