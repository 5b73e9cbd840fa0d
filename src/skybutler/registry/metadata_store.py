"""Queryable facts about datasets: metadata extracted at put time, metrics attached later.

Extracted metadata lives in one table per storage class with a typed column per
fact (``dataset_metadata_table``: n_rows, n_columns, columns); metrics live in
``dataset_metric`` as (dataset, name, float value) rows.  Both are keyed by
dataset ID and vanish with the dataset.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from .bulk import insert_rows, uuid_to_db
from .database import Database
from .schema import NAME_LENGTH, RegistrySchema

_SQL_TYPES = {int: sa.BigInteger, float: sa.Float, str: lambda: sa.Text(), bool: sa.Boolean}


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

    def refresh(self) -> None:
        """Forget known tables: one created in a transaction that rolled back is gone again."""
        self._tables.clear()

    @staticmethod
    def table_name(storage_class: str) -> str:
        return f"dataset_metadata_{storage_class.lower()}"

    def table(self, storage_class: str, fields: Mapping[str, type] | None = None) -> sa.Table | None:
        """The metadata table of a storage class: created from ``fields`` if given, else
        read from the database; None if the storage class has no table."""
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
        elif fields:
            table = sa.Table(name, self.schema.metadata,
                             sa.Column("dataset_id", sa.Uuid, sa.ForeignKey("dataset.id", ondelete="CASCADE"),
                                       primary_key=True),
                             *[sa.Column(k, _SQL_TYPES[t](), nullable=True) for k, t in fields.items()],
                             extend_existing=True)
            with self.db.transaction() as conn:
                self.db.create_tables(conn, [table])
        else:
            return None
        self._tables[storage_class] = table
        return table

    def insert(self, storage_class: str, fields: Mapping[str, type],
               rows: Sequence[tuple[uuid.UUID, Mapping[str, Any]]]) -> None:
        """Record extracted facts of datasets just inserted (same transaction as the insert)."""
        if not fields or not rows:
            return
        table = self.table(storage_class, fields)
        names = list(fields)
        with self.db.transaction() as conn:
            to_db = uuid_to_db(conn)
            insert_rows(conn, table, ["dataset_id", *names],
                        [(to_db(i), *[values.get(k) for k in names]) for i, values in rows])

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
                    out.update({k: v for k, v in row.items() if k != "dataset_id"})
            for name, value in conn.execute(sa.select(self.metric.c.name, self.metric.c.value).where(
                    self.metric.c.dataset_id == dataset_id)):
                out[name] = value
        return out

    def metric_exists(self, name: str) -> bool:
        with self.db.reading() as conn:
            return conn.execute(sa.select(self.metric.c.name).where(self.metric.c.name == name).limit(1)).first() \
                is not None
