"""Declared catalog schemas of dataset types, by version.

``catalog_schema`` holds one row per (dataset type, version): the declared table's
name and the whole Felis schema as canonical JSON.  The latest version is the one
tables are validated against at put and ingest.  The table is made by the first
declaration (a repository that never declares a schema never has it), so no
migration is needed; it goes with its dataset type (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import sqlalchemy as sa

from .database import Database
from .schema import NAME_LENGTH, RegistrySchema

TABLE = "catalog_schema"


class CatalogSchemaStore:
    """Reads and writes the ``catalog_schema`` table; rows are (version, table name, Felis JSON)."""

    def __init__(self, db: Database, schema: RegistrySchema):
        self.db = db
        self.schema = schema
        self._table: sa.Table | None = None

    def refresh(self) -> None:
        """Forget whether the table exists: one created in a transaction that rolled back is gone."""
        self._table = None

    def _declare(self) -> sa.Table:
        return sa.Table(
            TABLE, self.schema.metadata,
            sa.Column("dataset_type_id", sa.Integer,
                      sa.ForeignKey("dataset_type.dataset_type_id", ondelete="CASCADE"), primary_key=True),
            sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("table_name", sa.String(NAME_LENGTH), nullable=False),
            sa.Column("felis", sa.Text, nullable=False),
            extend_existing=True)

    def table(self, create: bool = False) -> sa.Table | None:
        """The table, made if ``create``; None if it does not exist (no schema was ever declared)."""
        if self._table is not None:
            return self._table
        with self.db.reading() as conn:
            exists = sa.inspect(conn).has_table(TABLE, schema=self.db.schema)
        if not exists and not create:
            return None
        table = self._declare()
        if not exists:
            with self.db.transaction() as conn:
                self.db.create_tables(conn, [table])
        self._table = table
        return table

    def versions(self, type_id: int) -> list[tuple[int, str, str]]:
        """Every (version, table name, Felis JSON) of a dataset type, oldest first."""
        table = self.table()
        if table is None:
            return []
        with self.db.reading() as conn:
            rows = conn.execute(sa.select(table.c.version, table.c.table_name, table.c.felis)
                                .where(table.c.dataset_type_id == type_id).order_by(table.c.version)).all()
        return [tuple(r) for r in rows]

    def latest(self, type_id: int) -> tuple[int, str, str] | None:
        """The newest (version, table name, Felis JSON) of a dataset type, or None."""
        table = self.table()
        if table is None:
            return None
        with self.db.reading() as conn:
            row = conn.execute(sa.select(table.c.version, table.c.table_name, table.c.felis)
                               .where(table.c.dataset_type_id == type_id)
                               .order_by(table.c.version.desc()).limit(1)).first()
        return None if row is None else tuple(row)

    def put(self, type_id: int, version: int, table_name: str, felis: str, *, replace: bool = False) -> None:
        """Record ``version``; with ``replace``, overwrite it (a version no dataset was validated against)."""
        table = self.table(create=True)
        with self.db.transaction() as conn:
            if replace:
                conn.execute(table.update().where(table.c.dataset_type_id == type_id, table.c.version == version)
                             .values(table_name=table_name, felis=felis))
            else:
                conn.execute(table.insert().values(dataset_type_id=type_id, version=version,
                                                   table_name=table_name, felis=felis))
