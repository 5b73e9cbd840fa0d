"""Telling cheaply whether anything was committed to the registry's database since a moment ago.

The read cache (:mod:`.read_cache`) reuses a lookup's answer only while the database is as
it was when the answer was found.  A watcher reads a mark that moves with every commit, on
a connection of its own that never writes and never holds a transaction open:

- SQLite: ``PRAGMA data_version``, which changes whenever any connection of any process
  commits to the file.  A few microseconds.
- PostgreSQL: ``pg_current_snapshot()``, the snapshot of the statement itself: its xmax is
  one past the latest transaction that ended, and its list holds the transactions still
  running.  A transaction that wrote anything has an ID; when it commits it either leaves
  that list or, not in it (its ID at or past xmax), moves xmax past it, so the snapshot is
  the same only while no writing transaction ended.  (Its xmax alone would not do: a transaction older than the
  latest one to end leaves the list without moving it.)  A transaction's end is in the
  server's shared list of running transactions before its COMMIT is answered, so a commit
  that finished before the mark was asked for has moved it.  The snapshot is the whole
  server's: a commit to another database moves it too, so after a move the cache checks
  what it remembered rather than forgetting it (``shared``).

  The mark is read at the start of nearly every query, so it is read the cheapest way: a
  statement prepared once on the connection, run through libpq's own calls (psycopg's
  ``pq`` layer) without a cursor: 18-24 us a read on loopback against psycopg's
  ``execute``'s 43-55 (a third of the client CPU, and no parse or plan on the server).
  ``pg_current_wal_insert_lsn()`` costs the same to read and moves with every commit too,
  but also with any other WAL (vacuum, checkpoints: reads asked again for nothing), and a
  standby refuses it; a counter row would be a write every writer waits on.
"""

from __future__ import annotations

import select
import sqlite3
from collections.abc import Callable, Hashable
from typing import Any

import sqlalchemy as sa


class SqliteWatcher:
    """``PRAGMA data_version`` of a SQLite file."""

    #: The mark moves only with commits to this repository's own database.
    shared = False

    def __init__(self, path: str):
        self._path = path
        self.connection: sqlite3.Connection | None = None

    def mark(self) -> Hashable | None:
        if self.connection is None:
            self.connection = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        return self.connection.execute("PRAGMA data_version").fetchone()[0]

    def forget(self) -> None:
        """In a forked child: leave the parent's connection alone (SQLite forbids its use),
        and open one of its own when next asked (marks of two connections do not compare)."""
        self.connection = None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


#: The name of the watcher's prepared statement on its connection, and its text.
_MARK_NAME = b"skybutler_commit_mark"
_MARK_SQL = b"SELECT pg_current_snapshot()::text"


class _Unanswered(Exception):
    """The server answered the mark's statement with an error, or with no value."""


class PostgresWatcher:
    """The server's current snapshot, read on a connection of its own (autocommit)."""

    #: The mark moves with commits to any database of the server.
    shared = True

    def __init__(self, connect: Callable[[], Any]):
        self._connect = connect
        self.connection: Any = None
        #: Polls the connection's socket for the server's answer.
        self._poll: Any = None
        #: Connections a forked child inherited: never used nor closed here (closing one would
        #: end the parent's session), only kept from the garbage collector's warning.
        self._inherited: list[Any] = []

    def mark(self) -> Hashable | None:
        """The snapshot as text (bytes); None if the server cannot be asked now (the cache then
        remembers nothing, and the next call connects again)."""
        if self.connection is None and not self._open():
            return None
        failed = (self.connection.Error, _Unanswered)
        try:
            return self._read()
        except BaseException as err:
            # the server went away, or the wait was interrupted with the answer still to come:
            # either way this connection is done with, and the next call connects again
            self.close()
            if isinstance(err, failed):
                return None
            raise

    def _open(self) -> bool:
        """Connect and prepare the mark's statement; False if the server cannot be reached."""
        try:
            self.connection = self._connect()
        except sa.exc.DBAPIError:
            return False
        from psycopg import pq  # (PostgreSQL only)

        try:
            prepared = self.connection.pgconn.prepare(_MARK_NAME, _MARK_SQL).status == pq.ExecStatus.COMMAND_OK
        except self.connection.Error:
            prepared = False
        if not prepared:
            self.close()
            return False
        self._poll = select.poll()
        self._poll.register(self.connection.pgconn.socket, select.POLLIN)
        return True

    def _read(self) -> bytes:
        """Run the prepared statement and wait for its one value.  Waits in ``poll``, which a
        signal interrupts (Ctrl-C), rather than inside libpq, which would not return until
        the server answers.  Raises on any failure (the caller drops the connection)."""
        from psycopg import pq  # (PostgreSQL only)

        pgconn = self.connection.pgconn
        pgconn.send_query_prepared(_MARK_NAME, None)
        while pgconn.flush():  # (the connection is non-blocking: what the socket did not take yet)
            select.select([], [pgconn.socket], [])
        value = None
        while True:
            while pgconn.is_busy():
                self._poll.poll()
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                break
            if result.status != pq.ExecStatus.TUPLES_OK:
                raise _Unanswered(result.error_message)
            value = result.get_value(0, 0)
        if value is None:
            raise _Unanswered(b"no value")
        return value

    def backend_pid(self) -> int | None:
        """The server process answering (for measuring the server's CPU time), if connected."""
        return None if self.connection is None else self.connection.info.backend_pid

    def forget(self) -> None:
        """In a forked child: the parent's connection is not ours to use; connect anew when asked."""
        if self.connection is not None:
            self._inherited.append(self.connection)
        self.connection, self._poll = None, None

    def close(self) -> None:
        self._poll = None
        if self.connection is not None:
            try:
                self.connection.close()
            except self.connection.Error:  # already broken: nothing more to do with it
                pass
            self.connection = None
