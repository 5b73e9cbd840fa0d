"""The registry: the SQL record of every dimension, dataset type, dataset and collection.

It composes the stores of this package over one :class:`Database`; the butler
facade talks to this class only.  Creating a registry writes the schema and the
universe it was made with; opening one checks both.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy as sa

from ..dimensions import DataCoordinate, DimensionUniverse
from ..errors import DatasetTypeError, SchemaVersionError, UniverseMismatchError
from ..models import CollectionType, DatasetRef, DatasetType, StoredArtifact
from ..timespan import Timespan
from . import definitions_mark
from .calibration_store import CalibrationStore
from .collection_store import CollectionStore
from .database import Database
from .dataset_store import DatasetStore, Readable
from .dataset_type_store import DatasetTypeStore
from .dimension_store import DimensionRecordStore
from .schema import SCHEMA_VERSION, RegistrySchema

if TYPE_CHECKING:
    from .access_store import AccessStore
    from .catalog_schema_store import CatalogSchemaStore
    from .dataset_state_store import DatasetStateStore
    from .metadata_store import MetadataStore
    from .user_tables import UserTableStore

T = TypeVar("T")

#: The stores made on first use (see :class:`Registry`), whose caches a failed transaction resets.
_STORES_ON_DEMAND = ("metadata", "user_tables", "catalog_schemas")


class _OnDemand(Generic[T]):
    """A registry's store made by ``make`` on first use, then kept as an attribute: made once even
    when a server's threads ask for it at once (two would declare the same table twice)."""

    def __init__(self, make: Callable[[Registry], T]):
        self.make = make
        self.__doc__ = make.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, registry: Registry | None, owner: type | None = None) -> T:
        if registry is None:
            return self  # type: ignore[return-value]
        with registry._making:
            if self.name not in registry.__dict__:
                registry.__dict__[self.name] = self.make(registry)
        return registry.__dict__[self.name]


class Registry:
    """Transactional access to one repository's registry database.

    The stores of dataset states, extracted facts, user tables, catalog schemas and access
    rights are made (and their modules imported, their tables declared) on first use: a
    command that lists collections or dataset types does not pay for them at start-up."""

    def __init__(self, db: Database, universe: DimensionUniverse):
        self.db = db
        self.universe = universe
        self._making = threading.Lock()
        self.schema = RegistrySchema(universe, db.schema)
        self.dimensions = DimensionRecordStore(db, self.schema)
        self.collections = CollectionStore(db, self.schema)
        self.dataset_types = DatasetTypeStore(db, self.schema)
        self.datasets = DatasetStore(db, self.schema, self.dataset_types, self.collections)
        self.calibrations = CalibrationStore(db, self.schema, self.dataset_types, self.collections)
        #: the definitions mark the stores above were last read at (unknown until first asked)
        self._definitions_seen: object = object()
        self._definitions_looked = -float("inf")

    def follow_removals(self, every: float = 0.0) -> None:
        """Re-read the collections and dataset types if one was removed (by any process:
        ``definitions_mark``) since the last look, which is taken at most once in ``every``
        seconds; a long-lived process calls it before each request."""
        now = time.monotonic()
        if now - self._definitions_looked < every:
            return
        self._definitions_looked = now
        mark = definitions_mark.current(self.db, self.schema)
        if mark != self._definitions_seen:
            self.collections.refresh()
            self.dataset_types.refresh()
            self._definitions_seen = mark

    def name_tables(self) -> tuple[Any, ...]:
        """The in-memory tables of collection and dataset type names as they are now: each is
        replaced when re-read (never changed in place), so what was made from them can tell
        by identity whether they were re-read since (see ``ReadCache.checked``)."""
        return (self.collections._by_name, self.dataset_types._by_name)

    @_OnDemand
    def metadata(self) -> MetadataStore:
        """The facts extracted from stored files (shape, sky footprint, header keys...) and metrics."""
        from .metadata_store import MetadataStore

        return MetadataStore(self.db, self.schema)

    @_OnDemand
    def states(self) -> DatasetStateStore:
        """Each dataset's retention state (stored, cold, purged) and last access."""
        from .dataset_state_store import DatasetStateStore

        return DatasetStateStore(self.db, self.schema)

    @_OnDemand
    def user_tables(self) -> UserTableStore:
        """Tables users declare over dimensions."""
        from .user_tables import UserTableStore

        return UserTableStore(self.db, self.schema)

    @_OnDemand
    def catalog_schemas(self) -> CatalogSchemaStore:
        """The declared schemas of catalog dataset types."""
        from .catalog_schema_store import CatalogSchemaStore

        return CatalogSchemaStore(self.db, self.schema)

    @_OnDemand
    def access(self) -> AccessStore:
        """Tokens, users, rules and quotas of a served repository (only the server and its
        administration commands need them)."""
        from .access_store import AccessStore

        return AccessStore(self.db, self.schema)

    # -- lifecycle ------------------------------------------------------------

    @classmethod
    def create(cls, url: str, universe: DimensionUniverse) -> Registry:
        """Create the schema in an empty database (or PostgreSQL schema) and open it."""
        from .dataset_state_store import DatasetStateStore
        from .metadata_store import MetadataStore

        db = Database(url)
        with db.transaction() as conn:
            if db.schema:
                conn.execute(sa.schema.CreateSchema(db.schema, if_not_exists=True))
            schema = RegistrySchema(universe, db.schema)
            MetadataStore(db, schema)  # declares dataset_metric in the schema
            DatasetStateStore(db, schema)  # declares dataset_state
            if sa.inspect(conn).has_table("skybutler_meta", schema=db.schema):
                raise SchemaVersionError(f"a registry already exists at {url}")
            schema.declare_all()
            schema.metadata.create_all(conn)
            conn.execute(schema.meta.insert(), [
                {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                {"key": "universe_name", "value": universe.name},
                {"key": "universe_version", "value": str(universe.version)},
            ])
        return cls(db, universe)

    @classmethod
    def open(cls, url: str, universe: DimensionUniverse) -> Registry:
        """Open an existing registry, refusing a different universe or schema version."""
        db = Database(url)
        meta = read_meta(db)
        if not meta:
            raise SchemaVersionError(f"no skybutler registry at {url}")
        version = int(meta.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"repository schema version {version} is newer than this skybutler supports ({SCHEMA_VERSION}); "
                "upgrade skybutler")
        # Checked before the universe: an older default universe is upgraded by a migration step.
        if version < SCHEMA_VERSION:
            raise SchemaVersionError(
                f"repository schema version {version} is older than {SCHEMA_VERSION}; run 'skybutler migrate'")
        if (meta.get("universe_name"), meta.get("universe_version")) != (universe.name, str(universe.version)):
            raise UniverseMismatchError(
                f"repository was created with dimension universe {meta.get('universe_name')!r} version "
                f"{meta.get('universe_version')}; this code has {universe.name!r} version {universe.version}")
        return cls(db, universe)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All registry writes inside happen or none do; caches are reset on failure."""
        try:
            with self.db.transaction():
                yield
        except BaseException:
            self._refresh_caches()
            raise

    def time_limit(self, seconds: float) -> contextlib.AbstractContextManager[None]:
        """Stop every statement still running ``seconds`` from now (``QueryTimeoutError``): a
        server's limit on one query."""
        return self.db.time_limit(seconds)

    def time_limit_paused(self) -> contextlib.AbstractContextManager[None]:
        """Stop the time limit's clock while the block runs (a server waiting for its client)."""
        return self.db.time_limit_paused()

    def _refresh_caches(self) -> None:
        """Forget what the caches hold after a failed transaction: it may have been rolled back."""
        self.collections.refresh()
        self.dataset_types.refresh()
        self.dimensions.clear_caches()
        for name in _STORES_ON_DEMAND:
            if name in self.__dict__:  # made: its caches may hold what was rolled back
                getattr(self, name).refresh()

    def commits_with_rows(self, n_datasets: int) -> bool:
        """Whether :meth:`insert_datasets` of ``n_datasets`` called now, outside a transaction,
        sends its COMMIT with its rows, in one round trip (PostgreSQL, a batch too small for
        ``COPY``): whatever must be in place before the commit (the files) must be so before."""
        return self.db.one_trip(n_datasets)

    def insert_datasets(self, dtype: DatasetType, run: str, data_ids: Sequence[DataCoordinate],
                        ids: Sequence[uuid.UUID],
                        artifacts: Sequence[StoredArtifact | None] | Callable[[], Sequence[StoredArtifact | None]],
                        storage_class: str, fields: Mapping[str, type],
                        facts: Sequence[tuple[uuid.UUID, Mapping[str, Any]]]) -> list[DatasetRef]:
        """Insert datasets with their artifact records and extracted facts: one statement batch
        (on PostgreSQL, one round trip for a few datasets and ``COPY`` for many).  ``artifacts``
        may be a callable, called once the dataset rows are in (the files are still being formatted)."""
        own = not self.db.in_transaction
        try:
            return self.datasets.insert(dtype, run, data_ids, ids, artifacts,
                                        also=lambda: self.metadata.insert(storage_class, fields, facts))
        except BaseException:
            if own:  # a transaction of its own, as in :meth:`transaction`
                self._refresh_caches()
            raise

    # -- dataset lookup through a search path ---------------------------------

    def find_dataset(self, dtype: DatasetType, data_id: DataCoordinate, collections: Sequence[str],
                     timespan: Timespan | None = None) -> DatasetRef | None:
        """The first dataset matching in ``collections`` (chains flattened), searching
        CALIBRATION collections by ``timespan``; None when there is none."""
        path = self.collections.flatten(collections)
        plain_ids: list[int] = []
        calib_ids: list[int] = []
        ranks: dict[int, int] = {}
        for rank, name in enumerate(path):
            cid, kind = self.collections.lookup(name)
            ranks[cid] = rank
            (calib_ids if kind is CollectionType.CALIBRATION else plain_ids).append(cid)
        found = self.datasets.find(dtype, data_id, plain_ids)
        best = None if found is None else (ranks[plain_ids[found[0]]], found[1])
        if calib_ids and dtype.is_calibration:
            if timespan is None:
                if best is None:
                    raise DatasetTypeError(
                        f"{dtype.name} is a calibration searched in CALIBRATION collection(s) "
                        f"{', '.join(self.collections.name_of(c) for c in calib_ids)}: give a timespan")
            else:
                calib = self.calibrations.find(dtype, data_id, calib_ids, timespan)
                if calib is not None:
                    rank = ranks[calib_ids[calib[0]]]
                    if best is None or rank < best[0]:
                        ref = calib[1]
                        artifact = self.datasets.artifacts([ref.id]).get(ref.id)
                        best = (rank, ref.with_artifact(artifact))
        return None if best is None else best[1]

    def collection_type(self, name: str) -> CollectionType:
        """The type of collection ``name``; :class:`MissingCollectionError` if there is none."""
        return self.collections.lookup(name)[1]

    def collection_name(self, collection_id: int) -> str:
        """The name of the collection with this ID (a query row's ``run_id``, say)."""
        return self.collections.name_of(collection_id)

    def find_many(self, dtype: DatasetType, data_ids: Sequence[DataCoordinate], collections: Sequence[str]
                  ) -> dict[DataCoordinate, DatasetRef]:
        """The first dataset of each data ID in ``collections`` (RUN and TAGGED, chains already
        flattened), one statement per chunk; see :meth:`DatasetStore.find_many`."""
        return self.datasets.find_many(dtype, data_ids, collections)

    def refs_by_id(self, ids: Sequence[uuid.UUID], readable: Readable | None = None) -> list[DatasetRef]:
        return self.datasets.refs_by_id(ids, readable)

    def readable_ids(self, may_read: Callable[[str], bool]) -> Readable | None:
        """The collections whose names ``may_read`` admits, as the ``readable`` of :meth:`refs_by_id`
        and :meth:`owners_by_id`: the admitted RUNs (or, when fewer, every RUN but the others) and
        the admitted TAGGED and CALIBRATION collections; None when every RUN is admitted (so is
        every dataset).  From the collections read afresh (one statement)."""
        runs: dict[bool, list[int]] = {True: [], False: []}
        holders: list[int] = []
        for name, (collection_id, kind) in self.collections.listing().items():
            if kind is CollectionType.RUN:
                runs[may_read(name)].append(collection_id)
            elif kind is not CollectionType.CHAINED and may_read(name):
                holders.append(collection_id)
        if not runs[False]:
            return None
        if len(runs[False]) < len(runs[True]):
            return Readable(runs[False], holders, except_runs=True)
        return Readable(runs[True], holders)

    def owners_by_id(self, ids: Iterable[uuid.UUID], readable: Readable | None = None
                     ) -> dict[uuid.UUID, tuple[str, str]]:
        """(dataset type, RUN) of each known dataset ID (only those of the ``readable`` RUNs or held
        by its collections, judged in the same statement); see :meth:`DatasetStore.owners`."""
        return self.datasets.owners(ids, readable)

    def refs_in_collection(self, collection: str, dataset_type: str | None = None) -> list[DatasetRef]:
        """The datasets a RUN owns or a TAGGED/CALIBRATION collection holds (of ``dataset_type``
        only, if given), with their artifacts; an unknown collection or type raises."""
        return self.datasets.refs_by_id(self.datasets.ids_in_collection(collection, dataset_type))

    def existing_identities(self, element: str, identities: list[tuple]) -> set[tuple]:
        """Those of ``identities`` (tuples of the element's identifying values) that ``element``'s
        records hold; see :meth:`DimensionRecordStore.existing_identities`."""
        return self.dimensions.existing_identities(element, identities)

    def dataset_counts(self) -> dict[tuple[str, str], int]:
        """(collection, dataset type) -> how many datasets of that type the collection holds, for
        every RUN, TAGGED and CALIBRATION collection; see :meth:`DatasetStore.counts`."""
        return self.datasets.counts()

    def facts_of_many(self, ids: Sequence[uuid.UUID], storage_class: str, field: str) -> dict[uuid.UUID, Any]:
        """One extracted fact (a footprint ``region``, say) of many datasets of one storage class;
        datasets without it are left out (see :meth:`MetadataStore.field_of_many`)."""
        return self.metadata.field_of_many(ids, storage_class, field)


def read_meta(db: Database) -> dict[str, str]:
    """The skybutler_meta key/values, or {} if the database holds no registry."""
    with db.reading() as conn:
        if not sa.inspect(conn).has_table("skybutler_meta", schema=db.schema):
            return {}
        t = RegistrySchema.meta_table(db.schema)
        return {k: v for k, v in conn.execute(sa.select(t.c.key, t.c.value))}
