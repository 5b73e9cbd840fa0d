"""A mark that changes whenever a collection or a dataset type is removed, so that a
long-lived process (the server) can tell its remembered definitions are out of date.

Each process keeps the collections and dataset types by name in memory
(``CollectionStore``, ``DatasetTypeStore``) and reads them again when it misses a name, so
what another process adds is found.  What another process removes -- and perhaps makes anew
under the same name, of another type or with other dimensions -- would not be: a server
would go on answering with the old definition until restarted.  So every removal writes a
new random mark (``skybutler_meta`` key ``definitions``) in its own transaction, and
:meth:`Registry.follow_removals` re-reads the definitions when the mark has moved since it
last looked (on SQLite the look costs nothing while nothing was committed: ``ReadCache``).
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from .database import Database
from .schema import RegistrySchema

KEY = "definitions"


def move(db: Database, schema: RegistrySchema, conn: sa.Connection) -> None:
    """Write a new mark inside the removal's transaction ``conn``."""
    table, mark = schema.meta, uuid.uuid4().hex
    if conn.execute(table.update().where(table.c.key == KEY).values(value=mark)).rowcount:
        return
    try:
        with db.savepoint(conn):  # two first removals at once on PostgreSQL: the second updates
            conn.execute(table.insert().values(key=KEY, value=mark))
    except sa.exc.IntegrityError:
        conn.execute(table.update().where(table.c.key == KEY).values(value=mark))


def current(db: Database, schema: RegistrySchema) -> str | None:
    """The mark now (None: nothing was ever removed)."""
    table = schema.meta

    def lookup() -> str | None:
        with db.reading() as conn:
            return conn.execute(sa.select(table.c.value).where(table.c.key == KEY)).scalar()

    return db.read_cache.get(("definitions-mark",), lookup)
