"""Telling cheaply whether anything was committed to the registry's database since a moment ago.

The read cache (:mod:`.read_cache`) reuses a lookup's answer only while the database is as
it was when the answer was found.  A watcher reads a mark that moves with every commit, on
a connection of its own that never writes and never holds a transaction open:

- SQLite: ``PRAGMA data_version``, which changes whenever any connection of any process
  commits to the file.  A few microseconds.
- PostgreSQL: ``pg_current_snapshot()``, the snapshot of the statement itself: its xmax is
  one past the latest transaction that ended, and its list holds the transactions still
  running.  A transaction that wrote anything has an ID; when it commits it either leaves
  that list or (begun after the last look) moves xmax, so the snapshot is the same only while
  no writing transaction ended.  One round trip on an idle connection (50 us on loopback),
  a quarter of a statement run through the pool.  The snapshot is the whole server's: a
  commit to another database moves it too, so after a move the cache checks what it
  remembered rather than forgetting it (``shared``).
"""

from __future__ import annotations

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


class PostgresWatcher:
    """The server's current snapshot, read on a connection of its own (autocommit)."""

    #: The mark moves with commits to any database of the server.
    shared = True

    def __init__(self, connect: Callable[[], Any]):
        self._connect = connect
        self.connection: Any = None
        #: Connections a forked child inherited: never used nor closed here (closing one would
        #: end the parent's session), only kept from the garbage collector's warning.
        self._inherited: list[Any] = []

    def mark(self) -> Hashable | None:
        """The snapshot as text; None if the server cannot be asked now (the cache then
        remembers nothing, and the next call connects again)."""
        if self.connection is None:
            try:
                self.connection = self._connect()
            except sa.exc.DBAPIError:
                return None
        try:
            return self.connection.execute("SELECT pg_current_snapshot()::text").fetchone()[0]
        except self.connection.Error:  # the server went away: connect again next time
            self.close()
            return None

    def backend_pid(self) -> int | None:
        """The server process answering (for measuring the server's CPU time), if connected."""
        return None if self.connection is None else self.connection.info.backend_pid

    def forget(self) -> None:
        """In a forked child: the parent's connection is not ours to use; connect anew when asked."""
        if self.connection is not None:
            self._inherited.append(self.connection)
        self.connection = None

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except self.connection.Error:  # already broken: nothing more to do with it
                pass
            self.connection = None
