"""Schema migrations: each step upgrades a registry by one schema version.

A repository records its schema version in ``skybutler_meta``.  Opening one
older than this code is refused until ``skybutler migrate`` runs the steps below
in order, each in the same transaction as the version bump; one newer than this
code is always refused.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from ..dimensions import DimensionUniverse
from ..errors import SchemaVersionError
from .database import Database
from .dataset_state_store import DatasetStateStore
from .metadata_store import MetadataStore
from .schema import SCHEMA_VERSION, RegistrySchema


def _add_metric_table(conn: sa.Connection, schema: RegistrySchema, db: Database) -> None:
    """Version 2: metrics attached to datasets after they are stored (``dataset_metric``)."""
    MetadataStore(db, schema).metric.create(conn, checkfirst=True)


def _add_dataset_state_table(conn: sa.Connection, schema: RegistrySchema, db: Database) -> None:
    """Version 3: retention states of datasets (stored, cold, purged) in ``dataset_state``."""
    DatasetStateStore(db, schema).create(conn)


#: from-version -> the step that upgrades it to from-version + 1.
STEPS: dict[int, Callable[[sa.Connection, RegistrySchema, Database], None]] = {
    1: _add_metric_table,
    2: _add_dataset_state_table,
}


def migrate(url: str, universe: DimensionUniverse) -> tuple[int, int]:
    """Upgrade the registry at ``url`` to this code's schema version; returns (old, new)."""
    from .registry import read_meta

    db = Database(url)
    try:
        meta = read_meta(db)
        if not meta:
            raise SchemaVersionError(f"no skybutler registry at {url}")
        old = version = int(meta.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(f"repository schema version {version} is newer than this skybutler "
                                     f"({SCHEMA_VERSION}); upgrade skybutler instead")
        schema = RegistrySchema(universe, db.schema)
        while version < SCHEMA_VERSION:
            step = STEPS.get(version)
            if step is None:
                raise SchemaVersionError(f"no migration from schema version {version}")
            with db.transaction() as conn:
                step(conn, schema, db)
                conn.execute(schema.meta.update().where(schema.meta.c.key == "schema_version")
                             .values(value=str(version + 1)))
            version += 1
        return old, version
    finally:
        db.close()
