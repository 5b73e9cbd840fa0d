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
server and the client alike.  Fewer rows (a single put) are gathered by
:func:`guarded_batch` into one statement -- the rows of every table but the last in
data-modifying ``WITH`` clauses -- and sent with its savepoint in one
:func:`pipeline`: one network round trip, and one statement for the server to parse
and the client to send, instead of one per table.  A put that is its own transaction
sends that statement with its BEGIN and COMMIT as one query (:func:`held_until_commit`),
a single put's statement prepared on the session once and run by name (:func:`_prepared`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from ..faults import crash_point

#: From this many rows on, a PostgreSQL insert goes through COPY.
COPY_MIN_ROWS = 64
#: The savepoint guarding a batch of inserts.
_SAVEPOINT = "skybutler_rows"
#: The text of gathered statements by their shape (tables, columns, rows per table): a put of one
#: dataset type sends the same text each time, and quoting its names cost as much as sending it.
_GATHERED: dict[tuple, str] = {}
_GATHERED_KEPT = 256
#: Most parameters one gathered statement takes (PostgreSQL's limit is 65,535); beyond,
#: each table's rows go in a statement of their own.
_MAX_PARAMETERS = 20_000


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
    PostgreSQL one ``COPY`` when there are many (outside a :func:`pipeline`); inside a small
    :func:`guarded_batch` on PostgreSQL, the rows join the batch's one statement."""
    if not rows:
        return
    gathered = conn.info.get("gathered")
    if gathered is not None:
        gathered.append((table, columns, rows))
        return
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_MIN_ROWS and not conn.info.get("pipelined"):
        _copy_rows(conn, table, columns, rows)
        return
    _execute(conn, insert_statement(conn, table, columns), rows)


def insert_streamed(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """Insert positional ``rows`` made one at a time as the driver takes them (SQLite's
    ``executemany`` over an iterator), for the large batches of a bulk registration: a row is
    freed once bound, where a list of a batch's rows would hold tens of thousands of tuples
    whose growth sets off the garbage collector's passes (a sixth of a bulk insert's CPU).
    On PostgreSQL the rows are gathered for :func:`insert_rows` (``COPY``)."""
    if conn.dialect.name != "sqlite":
        insert_rows(conn, table, columns, list(rows))
        return
    _execute(conn, insert_statement(conn, table, columns), rows)


def insert_keyed(conn: sa.Connection, table: sa.Table, columns: Sequence[str], keys: Sequence[Any],
                 constants: Sequence[Any]) -> None:
    """Insert one row per key of ``keys`` (the first of ``columns``), each with the same
    ``constants`` (the other columns).  On SQLite one ``INSERT ... SELECT`` over ``json_each``
    of the keys, in their order: one statement, where the driver's binding and stepping of
    each row of an ``executemany`` cost more than SQLite's inserting them; elsewhere
    :func:`insert_rows`."""
    if not keys:
        return
    if conn.dialect.name != "sqlite":
        insert_rows(conn, table, columns, [(k, *constants) for k in keys])
        return
    quote = conn.dialect.identifier_preparer
    sql = (f"INSERT INTO {quote.format_table(table)} ({', '.join(quote.quote(c) for c in columns)}) "
           f"SELECT value{', ?' * len(constants)} FROM json_each(?)")
    _execute(conn, sql, parameters=(*constants, json.dumps(list(keys))))


def _execute(conn: sa.Connection, sql: str, rows: Iterable[tuple] | None = None, *,
             parameters: Sequence[Any] | None = None) -> None:
    """Run ``sql`` (with ``parameters``, or for each of ``rows``) on the driver's own cursor:
    SQLAlchemy's execution machinery costs more than the database's work for a one-row insert.
    Inside :func:`held_until_commit` a statement is held, to be sent with the others."""
    held = conn.info.get(HELD)
    if held is not None:
        if rows is None:
            held.append((sql, parameters or ()))
            return
        send_held(conn)
    with _as_sqlalchemy_errors(conn, sql):
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            if rows is None:
                cursor.execute(sql) if parameters is None else cursor.execute(sql, parameters)
            else:
                cursor.executemany(sql, rows)
        finally:
            cursor.close()


def _insert_gathered(conn: sa.Connection, batches: Sequence[tuple[sa.Table, Sequence[str], Sequence[tuple]]]) -> None:
    """Insert the rows of several tables (in order: a table's rows may reference an earlier
    one's) in one PostgreSQL statement: every table but the last in a data-modifying ``WITH``
    clause.  Foreign keys are checked at the end of the statement, when every row is in."""
    if sum(len(columns) * len(rows) for _, columns, rows in batches) > _MAX_PARAMETERS:
        for table, columns, rows in batches:
            _execute(conn, insert_statement(conn, table, columns), rows)
        return
    shape = tuple((table, tuple(columns), len(rows)) for table, columns, rows in batches)
    sql = _GATHERED.get(shape)
    if sql is None:
        quote = conn.dialect.identifier_preparer
        inserts = []
        for table, columns, rows in batches:
            row = f"({', '.join(['%s'] * len(columns))})"
            inserts.append(f"INSERT INTO {quote.format_table(table)} ({', '.join(quote.quote(c) for c in columns)}) "
                           f"VALUES {', '.join([row] * len(rows))}")
        sql = inserts[-1]
        if len(inserts) > 1:
            sql = "WITH " + ", ".join(f"rows_{n} AS ({insert})" for n, insert in enumerate(inserts[:-1])) + " " + sql
        if len(_GATHERED) >= _GATHERED_KEPT:
            _GATHERED.clear()
        _GATHERED[shape] = sql
    parameters = [value for _, _, rows in batches for values in rows for value in values]
    if conn.info.get(HELD) is not None and all(len(rows) == 1 for _, _, rows in batches):
        sql = _prepared(conn, sql, len(parameters))
    _execute(conn, sql, parameters=parameters)


#: The statements prepared on a pooled PostgreSQL connection's session, by name: True once a query
#: that prepared or ran it succeeded, False while that is not known (such a query failed: its
#: PREPARE may have run before the failure, or the statement was gone).  Kept in the pool's record
#: of the driver connection, which SQLAlchemy empties when the connection is replaced.
_PREPARED = "skybutler_prepared"
#: The names the held query of a :func:`held_until_commit` transaction prepares or runs.
_PREPARING = "skybutler_preparing"


def _prepared(conn: sa.Connection, sql: str, n_parameters: int) -> str:
    """The statement of a single put, held for its one-trip transaction, as an ``EXECUTE`` of
    ``sql`` prepared on the connection's session (a ``PREPARE`` held before it the first time).

    The server then neither parses nor plans the five-table insert again for each put (0.07-0.09
    ms of the 0.35-0.4 ms of server CPU a put cost; a plan of VALUES has nothing to choose, so
    the generic plan the server may keep is as good as a custom one).  A PREPARE is not undone by a rollback, so
    after a failed query that held one, whether it ran is asked of the server
    (``pg_prepared_statements``) before the name is used again.  The name is made from the
    text, so a session never holds two texts under one name."""
    name = _statement_name(sql)
    prepared = conn.connection.info.setdefault(_PREPARED, {})
    known = prepared.get(name)
    if known is False:  # a query preparing or running it failed: is it there?
        with _as_sqlalchemy_errors(conn, "pg_prepared_statements"):
            known = conn.connection.dbapi_connection.execute(
                "SELECT count(*) > 0 FROM pg_prepared_statements WHERE name = %s", [name]).fetchone()[0] or None
    if known is None:
        numbered = iter(range(1, n_parameters + 1))
        conn.info[HELD].append((f"PREPARE {name} AS " + "".join(
            part if n == 0 else f"${next(numbered)}{part}" for n, part in enumerate(sql.split("%s"))), ()))
    prepared[name] = False  # until the query succeeds
    conn.info.setdefault(_PREPARING, []).append(name)
    return f"EXECUTE {name} ({', '.join(['%s'] * n_parameters)})"


@functools.lru_cache(maxsize=_GATHERED_KEPT)
def _statement_name(sql: str) -> str:
    return "skybutler_put_" + hashlib.blake2b(sql.encode(), digest_size=12).hexdigest()


def _copy_rows(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """``COPY table (columns) FROM STDIN`` with psycopg 3; its errors become SQLAlchemy's, like an insert's."""
    quote = conn.dialect.identifier_preparer
    sql = f"COPY {quote.format_table(table)} ({', '.join(quote.quote(c) for c in columns)}) FROM STDIN"
    dbapi = conn.connection.dbapi_connection
    with _as_sqlalchemy_errors(conn, sql):
        with dbapi.cursor() as cursor, cursor.copy(sql) as copy:
            write = copy.write_row
            half = len(rows) // 2
            for row in itertools.islice(rows, half):
                write(row)
            crash_point("copy-half-sent")
            for row in itertools.islice(rows, half, None):
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
    begin = _begin_in_pipeline(conn)
    conn.info["pipelined"] = True
    try:
        with _as_sqlalchemy_errors(conn, "pipeline"), dbapi.pipeline():
            if begin is not None:
                _execute(conn, begin)
            yield
    finally:
        conn.info["pipelined"] = False
        if begin is not None and dbapi.info.transaction_status == _idle():
            # the BEGIN never ran (the connection failed): no statement may run in autocommit mode
            with contextlib.suppress(Exception):  # else the pool discards the connection (see database.py)
                end_pipelined_begin(dbapi, conn.connection.info)


def _begin_in_pipeline(conn: sa.Connection) -> str | None:
    """The BEGIN to send as the first statement of a pipeline (or of :func:`held_until_commit`'s
    query), when it opens the transaction.

    psycopg opens a transaction at a connection's first statement with a BEGIN of its own, and in
    a pipeline it sends that BEGIN with a Sync and waits for its answer: a round trip more than the
    pipeline's own.  So the connection goes to autocommit mode, in which psycopg begins nothing,
    and the pipeline starts with the same BEGIN: the server is in a transaction block until the
    COMMIT or ROLLBACK as before.  The
    connection leaves autocommit mode again when the transaction ends (:func:`end_pipelined_begin`),
    at the latest when it goes back to the pool."""
    dbapi = conn.connection.dbapi_connection
    if (dbapi.autocommit or dbapi.read_only is not None or dbapi.deferrable is not None
            or dbapi.info.transaction_status != _idle()):
        return None
    dbapi.autocommit = True
    conn.connection.info[PIPELINED_BEGIN] = True
    level = dbapi.isolation_level
    return "BEGIN" if level is None else f"BEGIN ISOLATION LEVEL {level.name.replace('_', ' ')}"


def _idle() -> Any:
    """psycopg's transaction status outside a transaction (psycopg is imported for PostgreSQL only)."""
    from psycopg.pq import TransactionStatus

    return TransactionStatus.IDLE


#: The statements a :func:`held_until_commit` transaction holds until its end, in ``conn.info``.
HELD = "skybutler_held_statements"


@contextlib.contextmanager
def held_until_commit(conn: sa.Connection) -> Iterator[None]:
    """A PostgreSQL transaction whose statements (:func:`insert_rows`, :func:`execute_unread`) are
    held and sent, with its BEGIN and COMMIT, as one query when the block ends: one round trip,
    one message, and the driver's work once instead of per statement (a pipeline's messages,
    polls and answers cost a single put more client CPU than its rows).  The values are bound
    by the driver on the client (``ClientCursor``), as the simple query protocol takes
    several statements only without parameters.  The block must not read what its statements
    return; a statement run some other way inside (through SQLAlchemy) first sends those held.
    Errors (a unique violation) are raised when the block ends, the transaction aborted for
    the caller's rollback; a block that fails before its end has sent nothing."""
    dbapi = conn.connection.dbapi_connection
    begin = _begin_in_pipeline(conn)
    conn.info[HELD] = [] if begin is None else [(begin, ())]
    try:
        yield
        conn.info[HELD].append(("COMMIT", ()))
        send_held(conn)
    finally:
        conn.info.pop(HELD, None)
        conn.info.pop(_PREPARING, None)  # a failed query: whether its statement is there stays unknown
        if begin is not None and dbapi.info.transaction_status == _idle():
            # committed, or nothing sent: no statement may run in autocommit mode
            with contextlib.suppress(Exception):  # else the pool discards the connection (see database.py)
                end_pipelined_begin(dbapi, conn.connection.info)


def send_held(conn: sa.Connection) -> None:
    """Send the statements a :func:`held_until_commit` transaction holds, as one query (none: nothing)."""
    held = conn.info.get(HELD)
    if not held:
        return
    sql = "; ".join(statement for statement, _ in held)
    parameters = [value for _, values in held for value in values]
    held.clear()
    from psycopg import ClientCursor

    with _as_sqlalchemy_errors(conn, sql), ClientCursor(conn.connection.dbapi_connection) as cursor:
        cursor.execute(sql, parameters or None)
    for name in conn.info.pop(_PREPARING, ()):  # the query preparing or running them succeeded
        conn.connection.info[_PREPARED][name] = True


def execute_unread(conn: sa.Connection, sql: str, parameters: Sequence[Any] | None = None) -> None:
    """Run a statement whose answer is not read: inside :func:`held_until_commit` it is held and sent with
    the others, inside a :func:`pipeline` with the pipeline's."""
    _execute(conn, sql, parameters=parameters)


#: Marks a pooled connection put in autocommit mode by :func:`_begin_in_pipeline`.
PIPELINED_BEGIN = "skybutler_pipelined_begin"


def end_pipelined_begin(dbapi_connection: Any, info: dict) -> None:
    """Take a connection whose transaction a pipeline began out of autocommit mode, once that
    transaction has ended (a connection left in autocommit mode would commit each statement of
    its next transaction on its own).  Raises if it cannot, the mark kept: the caller must then
    discard the connection."""
    if info.get(PIPELINED_BEGIN) and dbapi_connection is not None:
        dbapi_connection.autocommit = False
    info.pop(PIPELINED_BEGIN, None)


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


def gathers(conn: sa.Connection, n_rows: int) -> bool:
    """Whether :func:`guarded_batch` sends a batch of ``n_rows`` as one statement.  Its tables'
    rows are then inserted in no set order: a duplicate dataset ID may be met first in any
    table keyed by it."""
    return conn.dialect.name == "postgresql" and n_rows < COPY_MIN_ROWS and "gathered" not in conn.info


@contextlib.contextmanager
def _gathering(conn: sa.Connection) -> Iterator[None]:
    """A block whose rows given to :func:`insert_rows` are gathered, then inserted in one
    statement when the block ends without an error."""
    gathered = conn.info["gathered"] = []
    try:
        yield
    finally:
        del conn.info["gathered"]
    if gathered:
        _insert_gathered(conn, gathered)


@contextlib.contextmanager
def guarded_batch(conn: sa.Connection, n_rows: int) -> Iterator[None]:
    """A block inserting a batch of ``n_rows`` (datasets, say) inside a savepoint, so that a
    failure leaves the transaction as it was before the block and the caller can ask the
    database why it failed: PostgreSQL aborts a transaction on any error, and an
    ``executemany`` that fails at its 80th row has already inserted 79.  On PostgreSQL a batch
    too small for ``COPY`` gathers the rows that :func:`insert_rows` is given in the block into
    one statement, sent when the block ends, with the savepoint's, in one :func:`pipeline`.
    In a :func:`held_until_commit` transaction the batch needs no savepoint: a failure rolls the whole
    transaction back."""
    small = gathers(conn, n_rows)
    if small and conn.info.get(HELD) is not None:
        with _gathering(conn):
            yield
        return
    try:
        with pipeline(conn) if small else contextlib.nullcontext():
            _execute(conn, f"SAVEPOINT {_SAVEPOINT}")
            with _gathering(conn) if small else contextlib.nullcontext():
                yield
            _execute(conn, f"RELEASE SAVEPOINT {_SAVEPOINT}")
    except BaseException:
        # The savepoint is still there: a failure skips the rest of a pipeline, RELEASE included.
        with contextlib.suppress(sa.exc.DBAPIError):  # the connection is gone: the original error says more
            _execute(conn, f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            _execute(conn, f"RELEASE SAVEPOINT {_SAVEPOINT}")
        raise

