"""Datasets: insertion into RUNs, lookup through collection search paths, removal,
and TAGGED membership.

Lookups are written for the hot path of ``butler.get``: one statement finds the
dataset in every RUN/TAGGED collection of the search path at once, joined to its
artifact record, and the first collection in search order wins.
"""

from __future__ import annotations

import contextlib
import json
import operator
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from ..dimensions import DataCoordinate, DimensionGroup
from ..errors import CollectionError, DataIdError, DatasetConflictError, MissingDatasetTypeError, RegistryError
from ..models import CollectionType, DatasetRef, DatasetType, StoredArtifact, uuid7_batch, uuid7_hex_batch
from .bulk import failed_table, gathers, guarded_batch, insert_keyed, insert_rows, insert_streamed, uuid_to_db
from .collection_store import CollectionStore
from .database import Database
from .dataset_counts import DatasetCounts
from .dataset_type_store import DatasetTypeStore
from .schema import RegistrySchema

_DATASET_COLUMNS = ("id", "dataset_type_id", "run_id", "ingest_time")
_TAG_COLUMNS = ("dataset_type_id", "collection_id", "dataset_id")
_LOCATION_COLUMNS = ("dataset_id", "path", "formatter", "size", "checksum")


class Readable(NamedTuple):
    """The datasets a reader may see: those of the RUNs ``runs`` (with ``except_runs``, of every RUN
    but those) and those the TAGGED or CALIBRATION collections ``holders`` hold (by collection ID)."""

    runs: Sequence[int]
    holders: Sequence[int]
    except_runs: bool = False


class DatasetStore:
    """Reads and writes the dataset, dataset_location and dataset_tags_* tables."""

    def __init__(self, db: Database, schema: RegistrySchema, types: DatasetTypeStore, collections: CollectionStore):
        self.db = db
        self.schema = schema
        self.types = types
        self.collections = collections
        self._find_statements: dict[DimensionGroup, sa.Select] = {}
        self._key_statements: dict[str, sa.Select] = {}
        self.totals = DatasetCounts(schema)

    # -- insertion ------------------------------------------------------------

    def insert(self, dtype: DatasetType, run: str, data_ids: Sequence[DataCoordinate], ids: Sequence[uuid.UUID],
               artifacts: Sequence[StoredArtifact | None] | Callable[[], Sequence[StoredArtifact | None]] | None = None,
               also: Callable[[], None] | None = None) -> list[DatasetRef]:
        """Insert datasets of one type into a RUN, with their artifact records, in one transaction;
        ``also`` inserts more rows of the same batch (their facts) in the same statement batch.
        ``artifacts`` may be a callable, called after the dataset and membership rows are inserted
        (and given to the database): the caller may still be making them meanwhile."""
        type_id, dtype = self.types.get(dtype.name)
        run_id = self.collections.id_of_kind(run, CollectionType.RUN, "datasets can only be put into")
        group = self.types.group(dtype)
        tags = self.schema.tags_table(group)
        now = time.time_ns()
        # A put of its own on PostgreSQL: its BEGIN, rows and COMMIT in one round trip, without
        # a savepoint; its conflict is raised when the transaction ends, rolled back.
        one_trip = self.db.one_trip(len(ids))
        step = "dataset"
        try:
            with self.db.transaction(one_trip=one_trip) as conn:
                to_db = uuid_to_db(conn)
                db_ids = [to_db(i) for i in ids]
                gathered = gathers(conn, len(ids))
                try:
                    # The explanation below must see the database as it was before the batch; on
                    # PostgreSQL a small batch goes to the server in one round trip.
                    with guarded_batch(conn, len(ids)):
                        insert_rows(conn, self.schema.dataset, _DATASET_COLUMNS,
                                    [(i, type_id, run_id, now) for i in db_ids])
                        step = "tags"
                        insert_rows(conn, tags, [*_TAG_COLUMNS, *group.required],
                                    [(type_id, run_id, i, *d.required_values) for i, d in zip(db_ids, data_ids)])
                        self.db.note_inserted(tags, len(db_ids))
                        step = "rest"
                        self.totals.add(conn, {(type_id, run_id): len(db_ids)})
                        if callable(artifacts):
                            artifacts = artifacts()
                        if artifacts:
                            insert_rows(conn, self.schema.location, _LOCATION_COLUMNS,
                                        [(i, a.path, a.formatter, a.size, a.checksum)
                                         for i, a in zip(db_ids, artifacts) if a is not None])
                        if also is not None:
                            also()
                except sa.exc.IntegrityError as err:
                    explained = self._conflict(err, dtype, run, data_ids, ids, tags, step, gathered)
                    if explained is None:
                        raise
                    raise explained from err
                self.totals.maybe_fold(conn, [(type_id, run_id)])
        except sa.exc.IntegrityError as err:
            explained = self._conflict(err, dtype, run, data_ids, ids, tags, "rest", True) if one_trip else None
            if explained is None:
                raise
            raise explained from err
        return [DatasetRef(i, dtype, d, run, a) for i, d, a in
                zip(ids, data_ids, artifacts or [None] * len(ids))]

    def insert_bulk(self, dtype: DatasetType, run: str, values: Iterable[Sequence[Any]], *,
                    batch_size: int = 50_000) -> int:
        """Register many datasets of one type in a RUN, without artifacts, from plain tuples of
        required data-ID values (in the order of the type's required dimensions); returns how many.

        The fast path for building large repositories (benchmarks, bulk registration of
        existing data): new time-ordered IDs, per ``batch_size`` rows one statement for the
        dataset rows (``json_each`` on SQLite, ``COPY`` on PostgreSQL) and one streamed
        ``executemany`` (``COPY``) for the memberships, all in one transaction, and no
        :class:`DatasetRef` objects.  It checks
        what the database would: one dataset per type and data ID in the RUN (the database
        itself), and that every data ID's dimension records exist -- for each chunk in one
        statement per dimension over the chunk's distinct keys, before inserting it, rather
        than by SQLite's per-row foreign-key look-ups, which are switched off for the
        transaction.  A missing record refuses the whole call (:class:`DataIdError`, naming
        it) and leaves the repository as it was.
        """
        type_id, dtype = self.types.get(dtype.name)
        run_id = self.collections.id_of_kind(run, CollectionType.RUN, "datasets can only be put into")
        group = self.types.group(dtype)
        tags = self.schema.tags_table(group)
        dims = list(group.required)
        now = time.time_ns()
        total = 0
        iterator = iter(values)
        with self.db.transaction(caller_checks_references=True) as conn, _large_sqlite_cache(conn):
            # Positional rows straight to the driver (COPY on PostgreSQL): SQLAlchemy's per-row
            # parameter processing would cost more than the database's own work here.
            to_db = uuid_to_db(conn)
            self._check_owner(conn, type_id, run_id, dtype.name, run)
            while True:
                chunk = [tuple(v) for _, v in zip(range(batch_size), iterator)]
                if not chunk:
                    break
                self._check_dimension_records(conn, group, chunk, dtype.name)
                ids = (uuid7_hex_batch(len(chunk)) if conn.dialect.name == "sqlite"  # its stored form
                       else [to_db(i) for i in uuid7_batch(len(chunk))])
                insert_keyed(conn, self.schema.dataset, _DATASET_COLUMNS, ids, (type_id, run_id, now))
                insert_streamed(conn, tags, [*_TAG_COLUMNS, *dims], ((type_id, run_id, i, *v) for i, v in zip(ids, chunk)))
                total += len(chunk)
            self.db.note_inserted(tags, total)
            self.totals.add(conn, {(type_id, run_id): total})
            self.totals.maybe_fold(conn, [(type_id, run_id)], always=True)
        return total

    def _check_owner(self, conn: sa.Connection, type_id: int, run_id: int, type_name: str, run: str) -> None:
        """Refuse a bulk insert whose dataset type or RUN was removed since it was looked up
        (inside the inserting transaction: the foreign keys that would say so are not checked)."""
        types, collections = self.schema.dataset_type.c, self.schema.collection.c
        if conn.execute(sa.select(types.dataset_type_id).where(types.dataset_type_id == type_id)).first() is None:
            raise MissingDatasetTypeError(f"dataset type {type_name!r} was removed")
        if conn.execute(sa.select(collections.collection_id).where(collections.collection_id == run_id)).first() is None:
            raise CollectionError(f"RUN {run!r} was removed")

    def _check_dimension_records(self, conn: sa.Connection, group: DimensionGroup, rows: Sequence[tuple],
                                 type_name: str) -> None:
        """Raise :class:`DataIdError` naming a dimension record that ``rows`` (required data-ID
        values in ``group.required`` order) refer to and that does not exist: per dimension,
        statements over the distinct keys of the rows, 500 at a time (what the per-row foreign
        keys check)."""
        universe, required = self.schema.universe, list(group.required)
        # Columns as lists of references and distinct keys from zips of them, in C; no tuple
        # per row is kept (a list of them sets off the garbage collector's passes).
        columns: dict[str, list] = {}
        for dim in required:
            target = universe[dim]
            if target.skypix is not None:
                continue
            for d in target.identity:
                if d not in columns:
                    columns[d] = list(map(operator.itemgetter(required.index(d)), rows))
            keys = list(set(zip(*[columns[d] for d in target.identity])))
            statement, single = self._existing_keys_statement(dim), len(target.identity) == 1
            for start in range(0, len(keys), 500):
                given = keys[start:start + 500]
                found = set(map(tuple, conn.execute(statement, {"keys": [k[0] for k in given] if single else given})))
                missing = next((k for k in given if k not in found), None)
                if missing is not None:
                    record = ", ".join(f"{d}={v!r}" for d, v in zip(target.identity, missing))
                    raise DataIdError(f"no {dim} record {record}: register it before {type_name} datasets "
                                      "that refer to it")

    def _existing_keys_statement(self, dim: str) -> sa.Select:
        """Which of the given keys (``keys``: tuples of ``dim``'s identity) have a record: one
        statement per dimension, built once (an expanding parameter, rendered per call)."""
        stmt = self._key_statements.get(dim)
        if stmt is None:
            target, table = self.schema.universe[dim], self.schema.elements[dim]
            columns = [table.c[target.column_of(d)] for d in target.identity]
            key = sa.tuple_(*columns) if len(columns) > 1 else columns[0]
            stmt = self._key_statements[dim] = sa.select(*columns).where(
                key.in_(sa.bindparam("keys", expanding=True)))
        return stmt

    def _conflict(self, err: sa.exc.IntegrityError, dtype: DatasetType, run: str, data_ids: Sequence[DataCoordinate],
                  ids: Sequence[uuid.UUID], tags: sa.Table, step: str, gathered: bool) -> Exception | None:
        """The error to raise for an insert that failed at ``step`` (the table the server names
        decides, once known): a conflict explained, or None to raise ``err`` as it is."""
        table = failed_table(err)
        if table is not None:  # known only once a pipeline has ended
            # In one gathered statement the other tables' rows (artifact, facts: keyed by
            # dataset ID) may meet a duplicate ID before the dataset table does.
            step = ("dataset" if table == self.schema.dataset.name else
                    "tags" if table == tags.name else "dataset" if gathered else "rest")
        if step == "rest":
            return None
        return self._explain_conflict(dtype, run, data_ids, ids, step)

    def _explain_conflict(self, dtype: DatasetType, run: str, data_ids: Sequence[DataCoordinate],
                          ids: Sequence[uuid.UUID], step: str) -> Exception:
        existing = self.find_many(dtype, data_ids, [run]) if step == "tags" else {}
        if step == "tags" and len({d.required_values for d in data_ids}) < len(data_ids):
            return DatasetConflictError(f"the same {dtype.name} data ID is given twice for RUN {run!r}")
        if existing:
            d = next(iter(existing))
            return DatasetConflictError(
                f"a {dtype.name} dataset with data ID {d.required} already exists in RUN {run!r}")
        t = self.schema.dataset
        with self.db.reading() as conn:
            dupes = conn.execute(sa.select(t.c.id).where(t.c.id.in_(list(ids)[:1000]))).scalars().all()
        if dupes and step == "dataset":
            return DatasetConflictError(f"dataset ID {dupes[0]} already exists (in another RUN or with another type)")
        return RegistryError(f"could not insert {dtype.name} datasets into {run!r}: a referenced record is missing")

    # -- lookup ---------------------------------------------------------------

    def _find_statement(self, group: DimensionGroup) -> sa.Select:
        stmt = self._find_statements.get(group)
        if stmt is None:
            tags = self.schema.tags_table(group)
            ds, loc = self.schema.dataset, self.schema.location
            stmt = (sa.select(tags.c.collection_id, tags.c.dataset_id, ds.c.run_id, loc.c.path, loc.c.formatter,
                              loc.c.size, loc.c.checksum)
                    .select_from(tags.join(ds, ds.c.id == tags.c.dataset_id)
                                 .outerjoin(loc, loc.c.dataset_id == tags.c.dataset_id))
                    .where(tags.c.dataset_type_id == sa.bindparam("type_id"),
                           tags.c.collection_id.in_(sa.bindparam("cids", expanding=True)),
                           *[tags.c[d] == sa.bindparam(f"d_{d}") for d in group.required]))
            self._find_statements[group] = stmt
        return stmt

    def find(self, dtype: DatasetType, data_id: DataCoordinate, collection_ids: Sequence[int]
             ) -> tuple[int, DatasetRef] | None:
        """The dataset in the earliest of ``collection_ids`` (RUN/TAGGED), with its artifact, and that rank."""
        if not collection_ids:
            return None
        type_id, dtype = self.types.get(dtype.name)
        group = self.types.group(dtype)
        params: dict[str, Any] = {"type_id": type_id, "cids": list(collection_ids)}
        for d in group.required:
            params[f"d_{d}"] = data_id[d]
        seen_ns = time.time_ns()
        with self.db.reading() as conn:
            rows = conn.execute(self._find_statement(group), params).all()
        if not rows:
            return None
        rank = {cid: i for i, cid in enumerate(collection_ids)}
        row = min(rows, key=lambda r: rank[r[0]])
        artifact = None if row[3] is None else StoredArtifact(path=row[3], formatter=row[4], size=row[5],
                                                               checksum=row[6], seen_ns=seen_ns)
        return rank[row[0]], DatasetRef(row[1], dtype, data_id.subset(group), self.collections.name_of(row[2]),
                                             artifact)

    def find_many(self, dtype: DatasetType, data_ids: Sequence[DataCoordinate], collections: Sequence[str]
                  ) -> dict[DataCoordinate, DatasetRef]:
        """Find-first lookup of many data IDs at once (one statement per chunk)."""
        type_id, dtype = self.types.get(dtype.name)
        group = self.types.group(dtype)
        tags = self.schema.tags_table(group)
        cids = [self.collections.lookup(c)[0] for c in collections]
        rank = {cid: i for i, cid in enumerate(cids)}
        wanted = {d.required_values: d for d in data_ids}
        cols = [tags.c[d] for d in group.required]
        best: dict[tuple, tuple[int, Any]] = {}
        keys = list(wanted)
        with self.db.reading() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                stmt = (sa.select(tags.c.collection_id, tags.c.dataset_id, self.schema.dataset.c.run_id, *cols)
                        .join(self.schema.dataset, self.schema.dataset.c.id == tags.c.dataset_id)
                        .where(tags.c.dataset_type_id == type_id, tags.c.collection_id.in_(cids),
                               _key_in(cols, chunk)))
                for row in conn.execute(stmt):
                    key = tuple(row[3:])
                    if key not in best or rank[row[0]] < best[key][0]:
                        best[key] = (rank[row[0]], row)
        return {wanted[k]: DatasetRef(row[1], dtype, wanted[k], self.collections.name_of(row[2]))
                for k, (_, row) in best.items()}

    def artifacts(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, StoredArtifact]:
        """The artifact records of these datasets (those that have one)."""
        seen_ns = time.time_ns()
        return {i: StoredArtifact(path=path, formatter=formatter, size=size, checksum=checksum, seen_ns=seen_ns)
                for i, (path, formatter, size, checksum) in self.artifact_rows(ids).items()}

    def artifact_rows(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str, int, str | None]]:
        """(path, formatter, size, checksum) of these datasets' artifact records, for the
        thousands of refs of a query batch at once: the IDs go to the database as one
        parameter (a JSON array on SQLite, an array on PostgreSQL) through the driver, since
        SQLAlchemy's per-ID parameters and per-row UUID conversion cost ten times the look-up."""
        ids = list(ids)
        out: dict[uuid.UUID, tuple[str, str, int, str | None]] = {}
        if not ids:
            return out
        with self.db.reading() as conn:
            keys = list(map(uuid_to_db(conn), ids))
            id_of = dict(zip(keys, ids))
            table = conn.dialect.identifier_preparer.format_table(self.schema.location)
            select = f"SELECT dataset_id, path, formatter, size, checksum FROM {table} WHERE dataset_id "
            if self.db.dialect == "sqlite":
                chunks = [(select + "IN (SELECT value FROM json_each(?))", (json.dumps(keys),))]
            else:
                chunks = [(select + "= ANY(%s)", (keys[start:start + 20_000],)) for start in range(0, len(keys), 20_000)]
            for sql, params in chunks:
                for key, path, formatter, size, checksum in conn.exec_driver_sql(sql, params).all():
                    out[id_of[key]] = (path, formatter, size, checksum)
        return out

    def all_artifacts(self) -> dict[uuid.UUID, StoredArtifact]:
        """Every artifact record of the repository (for consistency checks)."""
        loc = self.schema.location
        with self.db.reading() as conn:
            return {row["dataset_id"]: StoredArtifact(path=row["path"], formatter=row["formatter"], size=row["size"],
                                                      checksum=row["checksum"])
                    for row in conn.execute(sa.select(loc)).mappings()}

    def paths_in_use(self, paths: Iterable[str], excluding: Iterable[uuid.UUID] = ()) -> set[str]:
        """Which of these artifact paths a committed dataset's artifact record holds (for recovery
        after a crash: a file at a path nobody holds was never committed); the records of the
        datasets ``excluding`` (a write still in progress, seeing its own rows) do not count."""
        loc = self.schema.location
        paths = list(dict.fromkeys(paths))
        own = set(excluding)
        found: set[str] = set()
        with self.db.reading() as conn:
            for start in range(0, len(paths), 500):
                stmt = sa.select(loc.c.path, loc.c.dataset_id).where(loc.c.path.in_(paths[start:start + 500]))
                found.update(path for path, dataset_id in conn.execute(stmt) if dataset_id not in own)
        return found

    def owners(self, ids: Iterable[uuid.UUID], readable: Readable | None = None
               ) -> dict[uuid.UUID, tuple[str, str]]:
        """The dataset type and RUN of each known dataset ID (unknown IDs are left out): one
        statement per 500 IDs on the dataset table alone, for callers that need only whether a
        dataset exists and where (no data ID, no artifact, as :meth:`refs_by_id` makes).
        ``readable`` (RUN IDs, TAGGED/CALIBRATION collection IDs) keeps only the datasets of those
        RUNs or held by those collections, judged in the same statement: a dataset left out for it
        costs exactly what an unknown ID costs (a server's caller cannot tell them apart by time)."""
        ids = list(dict.fromkeys(ids))
        ds = self.schema.dataset
        where = self._readable(readable) if readable is not None else sa.true()
        out: dict[uuid.UUID, tuple[str, str]] = {}
        with self.db.reading() as conn:
            for start in range(0, len(ids), 500):
                for dataset_id, type_id, run_id in conn.execute(sa.select(ds.c.id, ds.c.dataset_type_id, ds.c.run_id)
                                                                .where(ds.c.id.in_(ids[start:start + 500]), where)):
                    out[dataset_id] = (self.types.name_of(type_id).name, self.collections.name_of(run_id))
        return out

    def _readable(self, readable: Readable) -> sa.ColumnElement[bool]:
        """A condition on the dataset table: its RUN is readable or one of the TAGGED or CALIBRATION
        collections ``readable.holders`` holds it (any dataset type's membership table).  The
        collection IDs are written into the statement (integers: no bound variable each, however
        many collections a repository has)."""
        ds = self.schema.dataset

        def among(column: Any, ids: Sequence[int]) -> sa.ColumnElement[bool]:
            return column.in_(sa.bindparam(None, list(ids), expanding=True, literal_execute=True))

        held = []
        if readable.holders:
            dtypes = self.types.all()
            tables = {self.schema.tags_table(self.types.group(d)) for d in dtypes}
            tables |= {self.schema.calibs_table(self.types.group(d)) for d in dtypes if d.is_calibration}
            held = [sa.exists().where(t.c.dataset_id == ds.c.id, among(t.c.collection_id, readable.holders))
                    for t in sorted(tables, key=lambda t: t.name)]
        runs = among(ds.c.run_id, readable.runs)
        return sa.or_(sa.not_(runs) if readable.except_runs else runs, *held)

    def refs_by_id(self, ids: Iterable[uuid.UUID], readable: Readable | None = None
                   ) -> list[DatasetRef]:
        """Resolve dataset IDs to refs (with artifacts); unknown IDs are left out, and so are those
        ``readable`` leaves out (see :meth:`owners`), in the same first statement.

        One statement per dataset type and chunk of IDs: the data ID comes from the
        type's tags row in the dataset's own RUN.
        """
        ids = list(ids)
        ds = self.schema.dataset
        where = self._readable(readable) if readable is not None else sa.true()
        by_type: dict[int, list[uuid.UUID]] = {}
        with self.db.reading() as conn:
            for start in range(0, len(ids), 500):
                for dataset_id, type_id in conn.execute(sa.select(ds.c.id, ds.c.dataset_type_id)
                                                        .where(ds.c.id.in_(ids[start:start + 500]), where)):
                    by_type.setdefault(type_id, []).append(dataset_id)
            refs = []
            for type_id, type_ids in by_type.items():
                dtype = self.types.name_of(type_id)
                group = self.types.group(dtype)
                tags = self.schema.tags_table(group)
                for start in range(0, len(type_ids), 500):
                    stmt = (sa.select(tags.c.dataset_id, ds.c.run_id, *[tags.c[d] for d in group.required])
                            .join(ds, sa.and_(ds.c.id == tags.c.dataset_id, ds.c.run_id == tags.c.collection_id))
                            .where(tags.c.dataset_id.in_(type_ids[start:start + 500])))
                    for row in conn.execute(stmt):
                        refs.append(DatasetRef(row[0], dtype, DataCoordinate.from_required(group, tuple(row[2:])),
                                                    self.collections.name_of(row[1])))
        found = self.artifacts(r.id for r in refs)
        return [r.with_artifact(found.get(r.id)) for r in refs]

    def ids_in_collection(self, collection: str, dataset_type: str | None = None) -> list[uuid.UUID]:
        """IDs of every dataset a RUN owns or a TAGGED/CALIBRATION collection holds."""
        cid, kind = self.collections.lookup(collection)
        dtypes = [self.types.get(dataset_type)[1]] if dataset_type else self.types.all()
        out: list[uuid.UUID] = []
        with self.db.reading() as conn:
            if kind is CollectionType.RUN and dataset_type is None:
                ds = self.schema.dataset
                return list(conn.execute(sa.select(ds.c.id).where(ds.c.run_id == cid)).scalars())
            for dtype in dtypes:
                type_id, _ = self.types.get(dtype.name)
                group = self.types.group(dtype)
                table = (self.schema.calibs_table(group) if kind is CollectionType.CALIBRATION
                         else self.schema.tags_table(group))
                if kind is CollectionType.CALIBRATION and not dtype.is_calibration:
                    continue
                out += conn.execute(sa.select(table.c.dataset_id).distinct().where(
                    table.c.collection_id == cid, table.c.dataset_type_id == type_id)).scalars().all()
        return out

    def types_in(self, collections: Iterable[str]) -> dict[str, set[str]]:
        """The names of the dataset types each RUN, TAGGED or CALIBRATION collection holds
        datasets of now: one DISTINCT query per dataset table, over the collections' rows only."""
        ids = {self.collections.lookup(name)[0]: name for name in collections}
        out: dict[str, set[str]] = {name: set() for name in ids.values()}
        dtypes = self.types.all()
        if not ids or not dtypes:
            return out
        tables = {self.schema.tags_table(self.types.group(d)) for d in dtypes}
        tables |= {self.schema.calibs_table(self.types.group(d)) for d in dtypes if d.is_calibration}
        with self.db.reading() as conn:
            for table in tables:
                stmt = sa.select(table.c.collection_id, table.c.dataset_type_id).distinct().where(
                    table.c.collection_id.in_(list(ids)))
                for cid, type_id in conn.execute(stmt):
                    out[ids[cid]].add(self.types.name_of(type_id).name)
        return out

    def counts(self) -> dict[tuple[str, str], int]:
        """How many datasets of each type every collection holds: (collection, dataset type) ->
        count, for RUN, TAGGED and CALIBRATION collections alike (a calibration certified over
        several validity ranges counts once); a few GROUP BY queries, one per dataset table."""
        out: dict[tuple[str, str], int] = {}
        dtypes = self.types.all()
        tables = [(self.schema.tags_table(g), False) for g in {self.types.group(d) for d in dtypes}]
        tables += [(self.schema.calibs_table(g), True) for g in {self.types.group(d) for d in dtypes if d.is_calibration}]
        with self.db.reading() as conn:
            for table, distinct in tables:
                number = sa.func.count(sa.distinct(table.c.dataset_id)) if distinct else sa.func.count()
                stmt = sa.select(table.c.collection_id, table.c.dataset_type_id, number).group_by(
                    table.c.collection_id, table.c.dataset_type_id)
                for cid, type_id, n in conn.execute(stmt):
                    key = (self.collections.name_of(cid), self.types.name_of(type_id).name)
                    out[key] = out.get(key, 0) + n
        return out

    # -- removal and tagging --------------------------------------------------

    def delete(self, ids: Iterable[uuid.UUID]) -> None:
        """Delete datasets (artifact and calibration rows go with them, by cascade; the RUN and
        TAGGED memberships of every dataset type's table are deleted here, to count them)."""
        ids = list(ids)
        ds = self.schema.dataset
        tags_tables = {self.schema.tags_table(self.types.group(d)) for d in self.types.all()}
        removed: Counter[tuple[int, int]] = Counter()
        with self.db.transaction() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                conn.execute(self.schema.location.delete().where(self.schema.location.c.dataset_id.in_(chunk)))
                for tags in tags_tables:
                    removed.update(tuple(r) for r in conn.execute(tags.delete().where(tags.c.dataset_id.in_(chunk))
                                                                  .returning(tags.c.dataset_type_id, tags.c.collection_id)))
                for table in list(self.schema._calibs.values()):
                    conn.execute(table.delete().where(table.c.dataset_id.in_(chunk)))
                conn.execute(ds.delete().where(ds.c.id.in_(chunk)))
            self.totals.add(conn, {pair: -n for pair, n in removed.items()})
            self.totals.maybe_fold(conn, removed)

    def associate(self, collection: str, refs: Sequence[DatasetRef]) -> None:
        """Add refs to a TAGGED collection; a different dataset with the same type+data ID there conflicts."""
        cid = self.collections.id_of_kind(collection, CollectionType.TAGGED, "can only associate into")
        with self.db.transaction() as conn:
            for dtype_name, group_refs in _by_type(refs).items():
                type_id, dtype = self.types.get(dtype_name)
                tags = self.schema.tags_table(self.types.group(dtype))
                existing = self.find_many(dtype, [r.data_id for r in group_refs], [collection])
                rows = []
                batch: dict[tuple, uuid.UUID] = {}
                for ref in group_refs:
                    other = existing.get(ref.data_id)
                    if other is not None:
                        if other.id != ref.id:
                            raise DatasetConflictError(
                                f"TAGGED collection {collection!r} already holds a different {dtype_name} "
                                f"for data ID {ref.data_id.required}")
                        continue
                    seen = batch.setdefault(ref.data_id.required_values, ref.id)
                    if seen != ref.id:
                        raise DatasetConflictError(
                            f"two different {dtype_name} datasets for data ID {ref.data_id.required} "
                            f"cannot both be in TAGGED collection {collection!r}")
                    if len(rows) == len(batch):  # the same dataset given twice
                        continue
                    rows.append({"dataset_type_id": type_id, "collection_id": cid, "dataset_id": ref.id,
                                 **ref.data_id.required})
                if rows:
                    conn.execute(tags.insert(), rows)
                    self.db.note_inserted(tags, len(rows))
                    self.totals.add(conn, {(type_id, cid): len(rows)})
                    self.totals.maybe_fold(conn, [(type_id, cid)])

    def disassociate(self, collection: str, refs: Sequence[DatasetRef]) -> None:
        cid = self.collections.id_of_kind(collection, CollectionType.TAGGED, "can only disassociate from")
        with self.db.transaction() as conn:
            for dtype_name, group_refs in _by_type(refs).items():
                type_id, dtype = self.types.get(dtype_name)
                tags = self.schema.tags_table(self.types.group(dtype))
                gone = conn.execute(tags.delete().where(tags.c.collection_id == cid, tags.c.dataset_type_id == type_id,
                                                        tags.c.dataset_id.in_([r.id for r in group_refs]))).rowcount
                self.totals.add(conn, {(type_id, cid): -gone})
                self.totals.maybe_fold(conn, [(type_id, cid)])


@contextlib.contextmanager
def _large_sqlite_cache(conn: sa.Connection, kib: int = 262_144) -> Iterator[None]:
    """A SQLite page cache of ``kib`` KiB for one bulk write (the default 2 MiB makes every
    index insert of a large table re-read pages), restored afterwards."""
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size = -{kib}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {before}")


def _by_type(refs: Iterable[DatasetRef]) -> dict[str, list[DatasetRef]]:
    out: dict[str, list[DatasetRef]] = {}
    for ref in refs:
        out.setdefault(ref.dataset_type.name, []).append(ref)
    return out


__all__ = ["DatasetStore", "MissingDatasetTypeError"]


def _key_in(cols: list[Any], keys: list[tuple]) -> Any:
    """The condition that a row's data ID (its ``cols``) is one of ``keys``; a dataset type without
    dimensions has one data ID, the empty one, which every row of it has."""
    if not cols:
        return sa.true()
    return sa.tuple_(*cols).in_(keys) if len(cols) > 1 else cols[0].in_([k[0] for k in keys])
