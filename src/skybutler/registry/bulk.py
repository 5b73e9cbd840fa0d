"""Hot-path inserts: many rows through the driver's ``executemany``, without SQLAlchemy's per-row work.

SQLAlchemy Core builds and processes a parameter dictionary for every row; for the
tens of thousands of rows that a ``put_many`` or an ingest writes, that costs more
than the database's own work.  These helpers send positional tuples straight to the
DBAPI cursor, inside the caller's SQLAlchemy transaction.  Values the driver cannot
take as they are (UUIDs on SQLite) are converted by the caller with
:func:`uuid_to_db`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa


def insert_statement(conn: sa.Connection, table: sa.Table, columns: Sequence[str]) -> str:
    """An INSERT of ``columns`` into ``table`` taking positional parameters, in the driver's style."""
    quote = conn.dialect.identifier_preparer
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return (f"INSERT INTO {quote.format_table(table)} ({', '.join(quote.quote(c) for c in columns)}) "
            f"VALUES ({', '.join([marker] * len(columns))})")


def uuid_to_db(conn: sa.Connection) -> Callable[[uuid.UUID], Any]:
    """How this connection's driver takes a UUID column value (hex text on SQLite, as is elsewhere)."""
    return sa.Uuid().bind_processor(conn.dialect) or _unchanged


def insert_rows(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Insert positional ``rows`` (values in the order of ``columns``) with one ``executemany``."""
    if rows:
        conn.exec_driver_sql(insert_statement(conn, table, columns), list(rows))


def _unchanged(value: uuid.UUID) -> uuid.UUID:
    return value
