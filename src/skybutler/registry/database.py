"""Connecting to the registry database: SQLite by default, PostgreSQL when configured.

One code path for both.  SQLite gets WAL mode, a busy timeout and foreign keys so
a few concurrent writers work; PostgreSQL gets a connection pool and a schema (a
namespace) per repository so many repositories can share one database.  Passwords
never live in the repository config: PostgreSQL reads them from ``PGPASSWORD`` or
``~/.pgpass`` (libpq's own mechanisms) or from ``SKYBUTLER_DB_PASSWORD``.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import BackendError, QueryError, QueryTimeoutError
from ..faults import crash_point
from .bulk import COPY_MIN_ROWS, end_pipelined_begin, held_until_commit, send_held
from .commit_watch import PostgresWatcher, SqliteWatcher
from .driver_reads import DriverReader
from .read_cache import ReadCache

#: Seconds a SQLite writer waits for a lock before failing with a clear error.
SQLITE_BUSY_TIMEOUT_S = 30
#: Most KiB of database pages a SQLite connection keeps in memory.
SQLITE_CACHE_KIB = 16 * 1024
#: Most KiB of pages a SQLite connection keeps while this thread reads under :meth:`Database.small_cache`.
SQLITE_SMALL_CACHE_KIB = 2 * 1024
#: Seconds to wait for a PostgreSQL server to answer before failing (``?connect_timeout=N`` overrides).
PG_CONNECT_TIMEOUT_S = 10
#: Rows a client inserts into a queried table before it refreshes the table's planner
#: statistics (and at least as many as the statistics describe: they are refreshed as the
#: table doubles, so the work stays a small multiple of the inserts').
STATS_MIN_ROWS = 1000
#: Milliseconds a PostgreSQL client waits for a table's lock to refresh its statistics before
#: leaving that to autovacuum.
PG_ANALYZE_LOCK_WAIT_MS = 100
#: Seconds a pooled PostgreSQL connection may sit idle before it is pinged when handed out.
PG_PING_AFTER_IDLE_S = 2.0


def split_schema(url: str) -> tuple[str, str | None]:
    """Separate a ``?schema=NAME`` option from a database URL."""
    if "?" not in url:
        return url, None
    base, _, query_text = url.partition("?")
    query = parse_qs(query_text)
    schema = query.pop("schema", [None])[0]
    rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
    return (f"{base}?{rest}" if rest else base), schema


def make_engine(url: str) -> tuple[Engine, str | None]:
    """Create the SQLAlchemy engine for a registry URL; returns (engine, schema)."""
    url, schema = split_schema(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine, None
    if url.startswith("postgresql"):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        connect_args: dict = {}
        if "connect_timeout" not in url:  # libpq waits forever for a host that drops packets
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        # No server-side prepared statements: psycopg prepares a statement run five times, and
        # after five more runs the server may switch to a generic plan made without the values
        # of a query's data-ID ranges or IN-lists (Q5 of bench_queries: 300 ms of server time
        # instead of 20).  Unprepared, every statement is planned for its own parameters.
        # (plan_cache_mode = force_custom_plan would do it too, but it also re-plans the
        # foreign-key checks of every inserted row: three times the server's work in a COPY.)
        # The read-only connections of driver_reads.py do prepare, their values in their text;
        # and a single put's insert, which has no plan to choose, is prepared by name (bulk.py).
        connect_args["prepare_threshold"] = None
        password = os.environ.get("SKYBUTLER_DB_PASSWORD")
        if password and "@" in url and ":" not in urlsplit(url).netloc.split("@")[0]:
            connect_args["password"] = password
        engine = sa.create_engine(url, pool_size=5, max_overflow=10, connect_args=connect_args)
        sa.event.listen(engine, "checkin", _pg_on_checkin)
        sa.event.listen(engine, "checkout", _pg_ping_if_idle)
        if schema:
            sa.event.listen(engine, "connect", _pg_search_path(schema))
        return engine, schema
    raise BackendError(f"unsupported registry URL {url!r}: use sqlite:///PATH or postgresql://HOST/DB?schema=NAME")


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # Let SQLAlchemy (not the driver) emit BEGIN so transactions are explicit.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    # SQLite's default page cache (2 MiB) holds less than the index pages that two queries
    # of a few thousand datasets each read, so alternating queries re-read pages from the
    # OS.  The cache is filled as pages are read: a connection that reads little stays small.
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two writers queue instead of
    # deadlocking when both try to upgrade a read lock.
    if not conn.info.get("write"):
        conn.exec_driver_sql("BEGIN")
        return
    if conn.info.get("unchecked_references"):  # see Database.transaction
        conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
    _begin_immediate(conn.connection.dbapi_connection)


def _begin_immediate(dbapi_connection) -> None:
    """Take SQLite's write lock, retrying every millisecond or so until the busy timeout.

    SQLite's own busy handler backs off to 100 ms sleeps, which leaves the lock idle most
    of the time when several processes put one dataset per transaction; short jittered
    retries hand it over as soon as it is free.
    """
    cursor = dbapi_connection.cursor()
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    cursor.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.0005 + random.random() * 0.002)
    finally:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()


def _pg_on_checkin(dbapi_connection, record) -> None:
    record.info["idle_since"] = time.monotonic()
    try:
        end_pipelined_begin(dbapi_connection, record.info)
    except Exception:  # never back to the pool in autocommit mode
        record.invalidate()


def _pg_ping_if_idle(dbapi_connection, record, _proxy) -> None:
    """Ping a pooled connection that sat idle for a while before handing it out (a server
    restarted meanwhile is then met with a fresh connection, not an error).  A connection
    used a moment ago is handed out as it is: a ping on every checkout would be two more
    round trips (BEGIN, SELECT) on each write, a third of a single put's."""
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < PG_PING_AFTER_IDLE_S:
        return
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        dbapi_connection.rollback()
    except dbapi_connection.Error as err:
        raise sa.exc.DisconnectionError(f"pooled PostgreSQL connection is gone: {err}") from err


def _pg_search_path(schema: str):
    def on_connect(dbapi_connection, _record) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f'SET search_path TO "{schema}", public')
        dbapi_connection.commit()

    return on_connect


class Database:
    """An engine plus the current thread's open transaction, so calls can nest."""

    def __init__(self, url: str):
        self.url = url
        self.engine, self.schema = make_engine(url)
        self.dialect = self.engine.dialect.name
        self._local = threading.local()
        path = self.engine.url.database if self.dialect == "sqlite" else None
        watcher: SqliteWatcher | PostgresWatcher | None = None
        if path and path != ":memory:":
            watcher = SqliteWatcher(path)
        elif self.dialect == "postgresql":
            watcher = PostgresWatcher(self._watch_connection)
        #: Small lookups' answers, reused while nothing is committed (not for an in-memory database).
        self.read_cache = ReadCache(watcher, lambda: self.in_transaction, lambda: getattr(self._local, "opened", 0))
        #: Rows this client inserted into queried tables since their statistics were made, and
        #: the row counts those statistics describe (read from sqlite_stat1 or pg_class when needed).
        self._inserted: dict[str, int] = {}
        self._analyzed: dict[str, int] | None = None
        #: time.monotonic() after which this database's statements are stopped (None: never); a
        #: server sets it for the duration of one request's query (see ``time_limit``)
        self.deadline: float | None = None
        self._limit_seconds = 0.0
        #: Each thread's connection for reads of compiled SQL text (PostgreSQL; ``driver_read``).
        self._readers: weakref.WeakSet[DriverReader] = weakref.WeakSet()
        #: Connections of those a forked child inherited: never used nor closed here.
        self._inherited_readers: list[Any] = []
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", self._sqlite_watch_deadline)
        elif self.dialect == "postgresql":
            sa.event.listen(self.engine, "before_cursor_execute", self._pg_statement_timeout)

    def _watch_connection(self):
        """A driver connection of the engine's own making (its password, search path and
        timeouts), out of the pool for good and in autocommit: the read cache's watcher."""
        proxied = self.engine.raw_connection()
        proxied.detach()
        connection = proxied.dbapi_connection
        connection.autocommit = True
        return connection

    @contextlib.contextmanager
    def time_limit(self, seconds: float) -> Iterator[None]:
        """Stop every statement still running ``seconds`` from now (``QueryTimeoutError``)."""
        self.deadline, self._limit_seconds = time.monotonic() + seconds, seconds
        try:
            yield
        finally:
            self.deadline = None

    @contextlib.contextmanager
    def time_limit_paused(self) -> Iterator[None]:
        """Stop the time limit's clock while the block runs: a server waiting for its client to
        read what it sent does not spend the query's time (the time left carries on afterwards)."""
        if self.deadline is None:
            yield
            return
        left, self.deadline = self.deadline - time.monotonic(), None
        try:
            yield
        finally:
            self.deadline = time.monotonic() + left

    def _sqlite_watch_deadline(self, dbapi_connection, _record) -> None:
        # SQLite calls this every few thousand virtual-machine steps; non-zero interrupts the statement.
        dbapi_connection.set_progress_handler(
            lambda: 1 if self.deadline is not None and time.monotonic() > self.deadline else 0, 20_000)

    def _timeout_ms(self) -> int:
        """What is left of the deadline, in milliseconds, for the server's own timer (0: none)."""
        return 0 if self.deadline is None else max(1, int((self.deadline - time.monotonic()) * 1000))

    def _pg_statement_timeout(self, conn, cursor, statement, parameters, context, executemany) -> None:
        send_held(conn)  # a one-trip transaction's statements go first, in their order
        wanted = self._timeout_ms()
        if wanted or conn.info.get("statement_timeout"):
            # on a cursor of its own: the statement's cursor may be a server-side (named) one
            conn.connection.dbapi_connection.execute(f"SET statement_timeout = {wanted}")
            conn.info["statement_timeout"] = wanted

    def one_trip(self, n_rows: int) -> bool:
        """Whether a write of ``n_rows`` rows per table, opening its own transaction now, goes to
        the server in one round trip with its BEGIN and COMMIT (:meth:`transaction` with
        ``one_trip``): on PostgreSQL, a batch too small for ``COPY`` with no transaction open."""
        return self.dialect == "postgresql" and not self.in_transaction and n_rows < COPY_MIN_ROWS

    @contextlib.contextmanager
    def transaction(self, *, caller_checks_references: bool = False, one_trip: bool = False) -> Iterator[Connection]:
        """A write transaction; nested calls join the outer one (all or nothing).

        ``caller_checks_references``: the caller checks every foreign key of the rows it
        inserts itself, set-based, inside the transaction (a bulk insert), so SQLite need
        not look up each row's references (a quarter of a bulk insert's time).  SQLite can
        switch its checks only outside a transaction: a nested call keeps them on, and they
        are on again before the connection goes back to the pool.

        ``one_trip`` (where :meth:`one_trip` says so): the block's statements go to the server
        as one query with the transaction's BEGIN and its COMMIT when the block ends -- one
        round trip (:func:`~.bulk.held_until_commit`).  The block must not read what its statements
        return, and its errors (a unique violation) are raised when it ends, the transaction
        rolled back; a small :func:`~.bulk.guarded_batch` inside needs no savepoint."""
        current = getattr(self._local, "conn", None)
        self._local.opened = getattr(self._local, "opened", 0) + 1
        if current is not None:
            yield current
            return
        with self._errors("write"), self.engine.connect() as conn:
            conn.info["write"] = True
            unchecked = conn.info["unchecked_references"] = caller_checks_references and self.dialect == "sqlite"
            try:
                with conn.begin():
                    self._local.conn = conn
                    if one_trip:  # its COMMIT sent with the rest: SQLAlchemy's commit has nothing to do
                        with held_until_commit(conn):
                            yield conn
                    else:
                        yield conn
            finally:
                self._local.conn = None
                conn.info["write"] = False
                if self.dialect == "postgresql" and not conn.invalidated:
                    try:
                        end_pipelined_begin(conn.connection.dbapi_connection, conn.connection.info)
                    except Exception:  # never back to the pool in autocommit mode
                        conn.invalidate()
                if unchecked:
                    conn.info["unchecked_references"] = False
                    try:
                        conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")
                    except sqlite3.Error:  # never back to the pool unchecked
                        conn.invalidate()
                        raise
        crash_point("sql-committed")
        if self._inserted:
            self._refresh_statistics()

    # -- planner statistics (SQLite) -------------------------------------------------------------

    def note_inserted(self, table: sa.Table, n: int) -> None:
        """Count ``n`` rows inserted into a table that queries join (dataset memberships,
        dimension records), so that its statistics are refreshed once it has grown.

        SQLite's planner chooses between plans by ``sqlite_stat1``; without it, it guesses
        from the indexes alone, and for a join of datasets with visits and filters (``band =
        'r'``) it guessed a scan of every dataset with a visit look-up per row: 15 times
        slower than the plan the statistics lead to, and which plan won depended on whether a
        repository had ever been analysed.  PostgreSQL's autovacuum analyses a table only some
        time (``autovacuum_naptime``, a minute) after a bulk load, and until then the planner
        guesses the selectivity of every condition on it; so there too the loading client
        analyses what it doubled, right after its commit."""
        if n > 0:
            self._inserted[table.name] = self._inserted.get(table.name, 0) + n

    def _refresh_statistics(self) -> None:
        """Once a table has grown by ``STATS_MIN_ROWS`` rows and by as many as its statistics
        describe, ANALYZE it and every other table this client has doubled, in a transaction
        of its own after the inserting one committed.  An optimisation only: if the write
        lock cannot be had (on PostgreSQL: at once, say while autovacuum analyses the table), it
        is skipped."""
        if self._analyzed is None:
            self._analyzed = self._statistics_rows()
        if not any(n >= max(STATS_MIN_ROWS, self._analyzed.get(t, 0)) for t, n in self._inserted.items()):
            return
        # with them, the smaller tables grown as much (the visits and filters joined to datasets)
        due = [t for t, n in self._inserted.items() if n >= self._analyzed.get(t, 0)]
        for table in due:
            self._inserted.pop(table, None)
        try:
            with self.transaction() as conn:
                quote = conn.dialect.identifier_preparer.quote
                if self.dialect == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {PG_ANALYZE_LOCK_WAIT_MS}")
                for table in due:
                    conn.exec_driver_sql(f"ANALYZE {quote(table)}")
        except BackendError:
            return
        self._analyzed = self._statistics_rows()

    def _statistics_rows(self) -> dict[str, int]:
        """The row count each table's statistics describe (the first number of sqlite_stat1's rows;
        ``pg_class.reltuples`` on PostgreSQL, -1 for a table never analysed)."""
        with self.reading() as conn:
            if self.dialect == "postgresql":
                rows = conn.exec_driver_sql(
                    "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind = 'r' AND n.nspname = current_schema()").all()
                return {table: max(0, int(n)) for table, n in rows}
            if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first() is None:
                return {}
            out: dict[str, int] = {}
            for table, stat in conn.exec_driver_sql("SELECT tbl, stat FROM sqlite_stat1").all():
                rows = int(stat.split()[0]) if stat and stat.split()[0].isdigit() else 0
                out[table] = max(out.get(table, 0), rows)
            return out

    @contextlib.contextmanager
    def reading(self, *, cursor: bool = False) -> Iterator[Connection]:
        """A connection for reads (the open transaction's, if there is one).

        On PostgreSQL its statements run in autocommit mode, each on its own: at the READ
        COMMITTED level every statement sees what was committed when it began, in a
        transaction or not, so a read transaction adds nothing but its BEGIN and ROLLBACK,
        two round trips that made a small query's one into three.  ``cursor`` keeps the
        transaction, for a server-side cursor (a streamed result), which lives in one."""
        current = getattr(self._local, "conn", None)
        self._local.opened = getattr(self._local, "opened", 0) + 1
        if current is not None:
            yield current
            return
        with self._errors("read"), self.engine.connect() as conn:
            if self.dialect == "postgresql" and not cursor:
                conn.execution_options(isolation_level="AUTOCOMMIT")  # undone when it goes back to the pool
            small = self.dialect == "sqlite" and getattr(self._local, "small_cache", False)
            if small:  # lowering the cache's size frees its pages beyond it
                conn.connection.dbapi_connection.execute(f"PRAGMA cache_size=-{SQLITE_SMALL_CACHE_KIB}")
            try:
                yield conn
                conn.rollback()
            finally:
                if small:
                    with contextlib.suppress(Exception):  # a connection lost on the way is not restored
                        conn.connection.dbapi_connection.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")

    @contextlib.contextmanager
    def driver_read(self, sql: str, params: Mapping[str, Any] | Sequence[Any], binary: bool = False) -> Iterator[Any]:
        """The result of SQL text compiled earlier (its rows read by ``fetchmany``/``fetchall``),
        sent to the driver as it is: on PostgreSQL on this thread's own autocommit connection
        (see :mod:`.driver_reads`; with ``binary``, its values sent in their binary forms: a
        bytea is not written as hex text), inside this thread's transaction on the
        transaction's connection, on SQLite on a pooled one."""
        if self.dialect != "postgresql" or self.in_transaction:
            with self.reading() as conn:
                yield conn.exec_driver_sql(sql, params)
            return
        self._local.opened = getattr(self._local, "opened", 0) + 1
        reader = getattr(self._local, "reader", None)
        if reader is None or reader.pid != os.getpid():
            if reader is not None:  # a forked child: the parent's connection stays the parent's
                reader.close()
            reader = self._local.reader = DriverReader(self._watch_connection, self._inherited_readers)
            self._readers.add(reader)
        import psycopg  # (PostgreSQL only)

        with self._errors("read"):
            try:
                cursor = reader.execute(sql, params, self._timeout_ms(), binary)
            except psycopg.Error as err:  # as SQLAlchemy raises it, for _errors to explain
                raise sa.exc.DBAPIError.instance(sql, params, err, psycopg.Error) from err
            yield cursor

    @contextlib.contextmanager
    def small_cache(self) -> Iterator[None]:
        """Reads of this thread keep at most :data:`SQLITE_SMALL_CACHE_KIB` of pages per SQLite
        connection (instead of :data:`SQLITE_CACHE_KIB`): for a pass over many rows each read once
        (an export), whose pages would fill every pooled connection's cache for nothing, so that
        its memory does not grow with the repository."""
        before = getattr(self._local, "small_cache", False)
        self._local.small_cache = True
        try:
            yield
        finally:
            self._local.small_cache = before

    def savepoint(self, conn: Connection) -> contextlib.AbstractContextManager:
        """Guard statements whose failure is caught and explained: PostgreSQL aborts the whole
        transaction on an error unless it happened inside a savepoint; SQLite undoes only the
        failed statement, so it needs none (and skipping it keeps bulk inserts fast)."""
        return contextlib.nullcontext() if self.dialect == "sqlite" else conn.begin_nested()

    def create_tables(self, conn: Connection, tables) -> None:
        """Create the tables that do not exist yet, even while another client creates them.

        On PostgreSQL two clients creating the same table both pass the ``checkfirst``
        test; the second then fails (a catalog unique index, or "already exists") once
        the first commits.  A savepoint keeps that failure from aborting the caller's
        transaction, and the table is there to use.  SQLite writers are serialised."""
        for table in tables:
            try:
                with self.savepoint(conn):
                    table.create(conn, checkfirst=True)
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
                if self.dialect == "sqlite" or not sa.inspect(conn).has_table(table.name, schema=table.schema):
                    raise

    @property
    def in_transaction(self) -> bool:
        return getattr(self._local, "conn", None) is not None

    @contextlib.contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except sa.exc.OperationalError as err:
            if self.deadline is not None and time.monotonic() >= self.deadline - 0.01:
                raise QueryTimeoutError(f"the query ran longer than this server allows ({self._limit_seconds:g} s) "
                                        "and was stopped: narrow it (a where-clause, fewer collections) or "
                                        "ask for fewer results") from None
            if "Expression tree is too large" in str(err.orig):  # SQLite's depth limit of 1,000
                raise QueryError("the where-clause nests too deep for SQLite (its expression tree is limited to "
                                 "1,000 levels): nest fewer groups, or list values with IN, e.g. "
                                 "visit IN (1, 2, 3)") from None
            if "number of parameters must be between" in str(err.orig):  # PostgreSQL's 65,535
                raise QueryError("the query needs more than the 65,535 values PostgreSQL takes in one statement: "
                                 "list values with IN, e.g. visit IN (1, 2, 3)") from None
            if "parser stack overflow" in str(err.orig):  # SQLite parses ~30 levels of nested arithmetic
                raise QueryError("the where-clause nests its groups too deeply for SQLite's parser: write "
                                 "nested arithmetic or conditions with fewer parentheses") from None
            raise BackendError(f"{self.dialect} registry {operation} failed: {err.orig}") from err
        except sa.exc.DataError as err:
            if "out of range" in str(err.orig):  # PostgreSQL's integers overflow where SQLite's turn float
                raise QueryError("the where-clause's arithmetic leaves the 64-bit integer range PostgreSQL "
                                 "computes in: write a factor as a float (2.0) to compute in floating point") from None
            raise BackendError(f"{self.dialect} registry {operation} failed: {err.orig}") from err
        except sa.exc.InterfaceError as err:
            raise BackendError(f"{self.dialect} registry connection lost during {operation}: {err.orig}") from err

    def close(self) -> None:
        self.read_cache.close()
        for reader in list(self._readers):
            reader.close()
        self.engine.dispose()


def url_holds_password(url: str) -> bool:
    """Whether a database URL carries a password (``user:secret@`` or ``?password=``), parsed
    as SQLAlchemy will parse it (a password may contain ``/``)."""
    try:
        parsed = make_url(url)
    except ArgumentError:  # not a URL the registry could open either
        return False
    return parsed.password is not None or any(key.lower() == "password" for key in parsed.query)
