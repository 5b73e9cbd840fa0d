"""Queryable facts about datasets: metadata extracted when stored, metrics attached later.

Extracted metadata lives in one table per storage class with a typed column per
fact (``dataset_metadata_table``: n_rows, n_columns, columns); metrics live in
``dataset_metric`` as (dataset, name, float value) rows.  Both are keyed by
dataset ID and vanish with the dataset.  A sky region (an image's footprint) is
stored in its sphgeom encoding, and the ranges of the universe's sky pixels that
cover it go to ``dataset_metadata_skypix``: the coarse index of "which datasets
cover this position", refined by an exact overlap test on the region itself.
A storage class that gains a fact later gets the column added to its table.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..dimensions import regions as sky
from .bulk import insert_rows, uuid_to_db
from .database import Database
from .schema import NAME_LENGTH, RegistrySchema

_SQL_TYPES = {int: sa.BigInteger, float: sa.Float, str: lambda: sa.Text(), bool: sa.Boolean}


def _sql_type(kind: type) -> Any:
    """The column type of a metadata field of Python type ``kind`` (a sky Region is stored encoded;
    sphgeom is looked up only for such a field, so opening a registry does not import it)."""
    if kind in _SQL_TYPES:
        return _SQL_TYPES[kind]()
    if kind is sky.Region:
        return sa.LargeBinary()
    raise KeyError(f"no column type for metadata of type {kind!r}")

SKYPIX_TABLE = "dataset_metadata_skypix"


class MetadataStore:
    """Reads and writes the dataset_metadata_* and dataset_metric tables."""

    def __init__(self, db: Database, schema: RegistrySchema):
        self.db = db
        self.schema = schema
        self.metric = sa.Table(
            "dataset_metric", schema.metadata,
            sa.Column("dataset_id", sa.Uuid, sa.ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("name", sa.String(NAME_LENGTH), primary_key=True),
            sa.Column("value", sa.Float, nullable=True),
            sa.Index("dataset_metric_name", "name", "value"),
            extend_existing=True)
        self._tables: dict[str, sa.Table] = {}
        self._skypix: sa.Table | None = None

    def refresh(self) -> None:
        """Forget known tables: one created in a transaction that rolled back is gone again.  Their
        definitions leave the schema's metadata too: defined again over a stale one, a table would
        carry its indexes twice, and its creation would fail ("index ... already exists")."""
        for table in [*self._tables.values(), *([self._skypix] if self._skypix is not None else [])]:
            self.schema.metadata.remove(table)
        self._tables.clear()
        self._skypix = None

    @property
    def spatial_index(self) -> tuple[str, int] | None:
        """(system, level) of the universe's sky pixels that index regions, or None."""
        index = self.schema.universe.spatial_index
        return None if index is None else self.schema.universe[index].skypix

    def skypix_table(self, create: bool = False) -> sa.Table | None:
        """The sky-pixel ranges of region facts: (dataset, field, system, level, pix_begin, pix_end)."""
        if self._skypix is not None:
            return self._skypix
        with self.db.reading() as conn:
            exists = sa.inspect(conn).has_table(SKYPIX_TABLE, schema=self.db.schema)
        if not exists and not create:
            return None
        table = sa.Table(
            SKYPIX_TABLE, self.schema.metadata,
            sa.Column("dataset_id", sa.Uuid, sa.ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("field", sa.String(NAME_LENGTH), primary_key=True),
            sa.Column("skypix_system", sa.String(16), primary_key=True),
            sa.Column("skypix_level", sa.Integer, primary_key=True),
            sa.Column("pix_begin", sa.BigInteger, primary_key=True),
            sa.Column("pix_end", sa.BigInteger, nullable=False),
            sa.Index(f"{SKYPIX_TABLE}_begin", "field", "skypix_system", "skypix_level", "pix_begin"),
            extend_existing=True)
        if not exists:
            with self.db.transaction() as conn:
                self.db.create_tables(conn, [table])
        self._skypix = table
        return table

    @staticmethod
    def table_name(storage_class: str) -> str:
        return f"dataset_metadata_{storage_class.lower()}"

    def table(self, storage_class: str, fields: Mapping[str, type] | None = None) -> sa.Table | None:
        """The metadata table of a storage class: created from ``fields`` if given, else
        read from the database; None if the storage class has no table.  A region field
        makes sure the sky-pixel table exists too (created here, before any transaction
        that inserts datasets, like the table itself)."""
        if fields and self.spatial_index and any(t is sky.Region for t in fields.values()):
            self.skypix_table(create=True)
        table = self._tables.get(storage_class)
        if table is not None:
            return table
        name = self.table_name(storage_class)
        with self.db.reading() as conn:
            exists = sa.inspect(conn).has_table(name, schema=self.db.schema)
        if exists:
            with self.db.reading() as conn:
                # Reflection cannot tell a UUID stored as CHAR(32) from text: declare it.
                table = sa.Table(name, self.schema.metadata, sa.Column("dataset_id", sa.Uuid, primary_key=True),
                                 autoload_with=conn, extend_existing=True)
            missing = {k: t for k, t in (fields or {}).items() if k not in table.c}
            if missing:
                table = self._add_columns(table, missing)
        elif fields:
            table = sa.Table(name, self.schema.metadata,
                             sa.Column("dataset_id", sa.Uuid, sa.ForeignKey("dataset.id", ondelete="CASCADE"),
                                       primary_key=True),
                             *[sa.Column(k, _sql_type(t), nullable=True) for k, t in fields.items()],
                             extend_existing=True)
            with self.db.transaction() as conn:
                self.db.create_tables(conn, [table])
        else:
            return None
        self._tables[storage_class] = table
        return table

    def _add_columns(self, table: sa.Table, fields: Mapping[str, type]) -> sa.Table:
        """Add nullable columns for facts a storage class gained since its table was made."""
        with self.db.transaction() as conn:
            for key, kind in fields.items():
                column = sa.Column(key, _sql_type(kind), nullable=True)
                type_sql = column.type.compile(dialect=conn.dialect)
                conn.execute(sa.text(f"ALTER TABLE {self._qualified(table.name, conn)} "
                                     f"ADD COLUMN {conn.dialect.identifier_preparer.quote(key)} {type_sql}"))
        self.schema.metadata.remove(table)
        with self.db.reading() as conn:
            return sa.Table(table.name, self.schema.metadata, sa.Column("dataset_id", sa.Uuid, primary_key=True),
                            autoload_with=conn, extend_existing=True)

    def _qualified(self, name: str, conn: sa.Connection) -> str:
        quote = conn.dialect.identifier_preparer.quote
        return f"{quote(self.db.schema)}.{quote(name)}" if self.db.schema else quote(name)

    def insert(self, storage_class: str, fields: Mapping[str, type],
               rows: Sequence[tuple[uuid.UUID, Mapping[str, Any]]], replace: bool = False) -> None:
        """Record extracted facts of datasets just inserted (same transaction as the insert);
        ``replace`` drops facts already recorded for them first (re-extraction)."""
        if not fields or not rows:
            return
        table = self.table(storage_class, fields)
        names = list(fields)
        regions = [k for k, t in fields.items() if t is sky.Region]
        skypix = self.skypix_table(create=True) if regions and self.spatial_index else None
        with self.db.transaction() as conn:
            to_db = uuid_to_db(conn)
            if replace:
                ids = [i for i, _ in rows]
                for begin in range(0, len(ids), 500):
                    conn.execute(table.delete().where(table.c.dataset_id.in_(ids[begin:begin + 500])))
                    if skypix is not None:
                        conn.execute(skypix.delete().where(skypix.c.dataset_id.in_(ids[begin:begin + 500])))
            insert_rows(conn, table, ["dataset_id", *names],
                        [(to_db(i), *[_to_db(values.get(k)) for k in names]) for i, values in rows])
            if skypix is not None:
                system, level = self.spatial_index
                ranges = [(to_db(i), field, system, level, begin, end)
                          for i, values in rows for field in regions if values.get(field) is not None
                          for begin, end in sky.pixelization(system, level).envelope(values[field])]
                if ranges:
                    insert_rows(conn, skypix, ["dataset_id", "field", "skypix_system", "skypix_level", "pix_begin",
                                               "pix_end"], ranges)

    def overlapping(self, field: str, region: sky.Region) -> sa.Select | None:
        """The IDs of datasets whose region ``field`` may overlap ``region`` (the coarse sky-pixel
        test; an exact test on the regions must follow), or None without a spatial index."""
        skypix = self.skypix_table()
        if self.spatial_index is None:
            return None
        if skypix is None:
            return sa.select(sa.null()).where(sa.false())
        system, level = self.spatial_index
        ranges = list(sky.pixelization(system, level).envelope(region))
        overlap = sa.or_(*[sa.and_(skypix.c.pix_begin < end, skypix.c.pix_end > begin) for begin, end in ranges])
        return sa.select(skypix.c.dataset_id).where(skypix.c.field == field, skypix.c.skypix_system == system,
                                                    skypix.c.skypix_level == level, overlap)

    def ids_without_facts(self, storage_class: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``ids`` have no row of extracted facts."""
        table = self.table(storage_class)
        if table is None:
            return set(ids)
        found: set[uuid.UUID] = set()
        with self.db.reading() as conn:
            for begin in range(0, len(ids), 500):
                chunk = list(ids[begin:begin + 500])
                found.update(conn.execute(sa.select(table.c.dataset_id).where(table.c.dataset_id.in_(chunk))).scalars())
        return set(ids) - found

    def set_metrics(self, dataset_id: uuid.UUID, values: Mapping[str, float | None]) -> None:
        """Attach (or replace) named float metrics of one dataset."""
        with self.db.transaction() as conn:
            conn.execute(self.metric.delete().where(self.metric.c.dataset_id == dataset_id,
                                                    self.metric.c.name.in_(list(values))))
            conn.execute(self.metric.insert(), [{"dataset_id": dataset_id, "name": k,
                                                 "value": None if v is None else float(v)} for k, v in values.items()])

    def get(self, dataset_id: uuid.UUID, storage_class: str) -> dict[str, Any]:
        """Every fact known about one dataset: extracted metadata and metrics."""
        out: dict[str, Any] = {}
        table = self.table(storage_class)
        with self.db.reading() as conn:
            if table is not None:
                row = conn.execute(sa.select(table).where(table.c.dataset_id == dataset_id)).mappings().first()
                if row:
                    out.update({k: _from_db(v) for k, v in row.items() if k != "dataset_id"})
            for name, value in conn.execute(sa.select(self.metric.c.name, self.metric.c.value).where(
                    self.metric.c.dataset_id == dataset_id)):
                out[name] = value
        return out

    def field_of_many(self, ids: Sequence[uuid.UUID], storage_class: str, field: str) -> dict[uuid.UUID, Any]:
        """One extracted fact (a footprint ``region``, say) of many datasets of one storage class,
        a query per 500 IDs; datasets without it are left out."""
        table = self.table(storage_class)
        if table is None or field not in table.c:
            return {}
        out: dict[uuid.UUID, Any] = {}
        with self.db.reading() as conn:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start:start + 500])
                for dataset_id, value in conn.execute(sa.select(table.c.dataset_id, table.c[field]).where(
                        table.c.dataset_id.in_(chunk))):
                    if value is not None:
                        out[dataset_id] = _from_db(value)
        return out

    def metric_exists(self, name: str) -> bool:
        with self.db.reading() as conn:
            return conn.execute(sa.select(self.metric.c.name).where(self.metric.c.name == name).limit(1)).first() \
                is not None


def _to_db(value: Any) -> Any:
    """A fact as stored: a region in its sphgeom encoding."""
    return sky.encode(value) if isinstance(value, sky.Region) else value


def _from_db(value: Any) -> Any:
    return sky.decode(bytes(value)) if isinstance(value, (bytes, memoryview)) else value
