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
from .dataset_counts import DatasetCounts
from .dataset_state_store import DatasetStateStore
from .dataset_type_store import DatasetTypeStore
from .metadata_store import MetadataStore
from .schema import SCHEMA_VERSION, RegistrySchema


def _add_metric_table(conn: sa.Connection, schema: RegistrySchema, db: Database) -> None:
    """Version 2: metrics attached to datasets after they are stored (``dataset_metric``)."""
    MetadataStore(db, schema).metric.create(conn, checkfirst=True)


def _add_dataset_state_table(conn: sa.Connection, schema: RegistrySchema, db: Database) -> None:
    """Version 3: retention states of datasets (stored, cold, purged) in ``dataset_state``."""
    DatasetStateStore(db, schema).create(conn)


#: Default-universe versions each upgrade step of ``_grow_universe`` may start from.
_GROWABLE_UNIVERSES = {("default", "1")}


def _grow_universe(conn: sa.Connection, schema: RegistrySchema, db: Database) -> None:
    """Version 4: the default universe grows to version 2 (everything the Rubin universe holds).

    The change is additive: tables of new elements (``visit_system``,
    ``visit_system_membership``, ``subfilter``, ...) are created, and new fields
    become nullable columns of existing element tables, so every record keeps its
    values and gains NULLs.  A repository of another universe is left as it is.
    """
    meta = {k: v for k, v in conn.execute(sa.select(schema.meta.c.key, schema.meta.c.value))}
    old = (meta.get("universe_name"), meta.get("universe_version"))
    universe = schema.universe
    if old == (universe.name, str(universe.version)) or old not in _GROWABLE_UNIVERSES:
        return
    if universe.name != "default":
        raise SchemaVersionError(f"repository has universe {old[0]!r} version {old[1]}, which only the "
                                 f"default universe can grow from; this code has {universe.name!r}")
    inspector = sa.inspect(conn)
    preparer = conn.dialect.identifier_preparer
    for name, table in schema.elements.items():
        if not inspector.has_table(name, schema=db.schema):
            table.create(conn)
            overlap = schema.skypix_overlaps.get(name)
            if overlap is not None:
                overlap.create(conn, checkfirst=True)
            continue
        have = {c["name"] for c in inspector.get_columns(name, schema=db.schema)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable:
                raise SchemaVersionError(f"cannot add non-null column {name}.{column.name} to existing records")
            kind = column.type.compile(dialect=conn.dialect)
            target = preparer.format_table(table)
            conn.execute(sa.text(f"ALTER TABLE {target} ADD COLUMN {preparer.quote(column.name)} {kind}"))
    conn.execute(schema.meta.update().where(schema.meta.c.key == "universe_version")
                 .values(value=str(universe.version)))


def _add_dataset_type_key(conn: sa.Connection, schema: RegistrySchema, db: Database) -> None:
    """Version 5: a unique index on ``dataset (id, dataset_type_id)``, which the one foreign key
    from a dataset membership (``dataset_tags_*``, ``dataset_calibs_*``) to its dataset refers to.

    Membership tables made before keep the keys they were made with (to ``dataset``,
    ``dataset_type`` and every dimension): they check the same facts, one by one, and stay
    correct; only tables made from now on get the fewer keys."""
    next(i for i in schema.dataset.indexes if i.name == "dataset_id_type").create(conn, checkfirst=True)


def _add_dataset_counts(conn: sa.Connection, schema: RegistrySchema, db: Database) -> None:
    """Version 6: maintained counts of the datasets of each type in each RUN and TAGGED
    collection (``dataset_count``), counted once from the membership tables."""
    schema.dataset_count.create(conn, checkfirst=True)
    types = DatasetTypeStore(db, schema)
    DatasetCounts(schema).recount(conn, {schema.tags_table(types.group(d)) for d in types.all()})


#: from-version -> the step that upgrades it to from-version + 1.
STEPS: dict[int, Callable[[sa.Connection, RegistrySchema, Database], None]] = {
    1: _add_metric_table,
    2: _add_dataset_state_table,
    3: _grow_universe,
    4: _add_dataset_type_key,
    5: _add_dataset_counts,
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
