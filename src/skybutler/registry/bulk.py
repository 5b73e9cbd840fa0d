"""Hot-path inserts: many rows through the driver, without SQLAlchemy's per-row work.

SQLAlchemy Core builds and processes a parameter dictionary for every row; for the
tens of thousands of rows that a ``put_many`` or an ingest writes, that costs more
than the database's own work.  These helpers send positional tuples straight to the
DBAPI cursor, inside the caller's SQLAlchemy transaction.  Values the driver cannot
take as they are (UUIDs on SQLite) are converted by the caller with
:func:`uuid_to_db`.

On PostgreSQL, each row of an ``executemany`` is still one statement for the server
to bind and run; from :data:`COPY_MIN_ROWS` rows on, rows go through ``COPY FROM
STDIN`` instead (psycopg 3 encodes them in C), several times cheaper for the
server and the client alike.  Fewer rows (a single put) are sent in one
:func:`pipeline`: every statement of the batch leaves in one network round trip
instead of one each.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

#: From this many rows on, a PostgreSQL insert goes through COPY.
COPY_MIN_ROWS = 64
#: The savepoint guarding a batch of inserts.
_SAVEPOINT = "skybutler_rows"


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
    """Insert positional ``rows`` (values in the order of ``columns``): one ``executemany``, or on
    PostgreSQL one ``COPY`` when there are many (outside a :func:`pipeline`)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_MIN_ROWS and not conn.info.get("pipelined"):
        _copy_rows(conn, table, columns, rows)
        return
    _execute(conn, insert_statement(conn, table, columns), rows)


def _execute(conn: sa.Connection, sql: str, rows: Sequence[tuple] | None = None) -> None:
    """Run ``sql`` (for each of ``rows``) on the driver's own cursor: SQLAlchemy's execution
    machinery costs more than the database's work for a one-row insert."""
    with _as_sqlalchemy_errors(conn, sql):
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            if rows is None:
                cursor.execute(sql)
            else:
                cursor.executemany(sql, rows)
        finally:
            cursor.close()


def _copy_rows(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """``COPY table (columns) FROM STDIN`` with psycopg 3; its errors become SQLAlchemy's, like an insert's."""
    quote = conn.dialect.identifier_preparer
    sql = f"COPY {quote.format_table(table)} ({', '.join(quote.quote(c) for c in columns)}) FROM STDIN"
    dbapi = conn.connection.dbapi_connection
    with _as_sqlalchemy_errors(conn, sql):
        with dbapi.cursor() as cursor, cursor.copy(sql) as copy:
            write = copy.write_row
            for row in rows:
                write(row)


@contextlib.contextmanager
def pipeline(conn: sa.Connection) -> Iterator[None]:
    """Send the statements of the block together (psycopg's pipeline mode on PostgreSQL; nothing
    changes elsewhere).  Errors of a pipelined statement are raised when the block ends, as
    SQLAlchemy exceptions; the transaction is then aborted, so guard the block with a savepoint."""
    if conn.dialect.name != "postgresql" or conn.info.get("pipelined"):
        yield
        return
    dbapi = conn.connection.dbapi_connection
    conn.info["pipelined"] = True
    try:
        with _as_sqlalchemy_errors(conn, "pipeline"), dbapi.pipeline():
            yield
    finally:
        conn.info["pipelined"] = False


@contextlib.contextmanager
def _as_sqlalchemy_errors(conn: sa.Connection, statement: str) -> Iterator[None]:
    """Raise the driver's errors as the SQLAlchemy exceptions its ``execute`` would raise."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        yield
    except dbapi_error as err:
        raise sa.exc.DBAPIError.instance(statement, None, err, dbapi_error) from err


def failed_table(err: sa.exc.DBAPIError) -> str | None:
    """The table a PostgreSQL constraint violation names (None elsewhere or when unknown)."""
    diag = getattr(err.orig, "diag", None)
    return getattr(diag, "table_name", None)


def _unchanged(value: uuid.UUID) -> uuid.UUID:
    return value


@contextlib.contextmanager
def guarded_batch(conn: sa.Connection, n_rows: int) -> Iterator[None]:
    """A block inserting a batch of ``n_rows`` (datasets, say) inside a savepoint, so that a
    failure leaves the transaction as it was before the block and the caller can ask the
    database why it failed: PostgreSQL aborts a transaction on any error, and an
    ``executemany`` that fails at its 80th row has already inserted 79.  On PostgreSQL a batch
    too small for ``COPY`` sends every statement (the savepoint's included) in one
    :func:`pipeline`."""
    pipelined = conn.dialect.name == "postgresql" and n_rows < COPY_MIN_ROWS
    try:
        with pipeline(conn) if pipelined else contextlib.nullcontext():
            _execute(conn, f"SAVEPOINT {_SAVEPOINT}")
            yield
            _execute(conn, f"RELEASE SAVEPOINT {_SAVEPOINT}")
    except BaseException:
        # The savepoint is still there: a failure skips the rest of a pipeline, RELEASE included.
        with contextlib.suppress(sa.exc.DBAPIError):  # the connection is gone: the original error says more
            _execute(conn, f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            _execute(conn, f"RELEASE SAVEPOINT {_SAVEPOINT}")
        raise

