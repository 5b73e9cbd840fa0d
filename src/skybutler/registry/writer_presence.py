"""Which hosts have clients writing a repository whose registry is a shared PostgreSQL server.

The write journal and the dataset locks live in a repository directory on one host (see
:mod:`skybutler.datastore.journal`): two hosts sharing a PostgreSQL registry and an object store
(or a shared directory) each have their own, and a repair on one cannot see the other's writes in
flight -- files placed, rows not yet committed.  So every client that writes holds, from before
its first file until it closes, a *shared* PostgreSQL advisory lock on (this repository, its host
and journal directory), on a connection of its own; the server drops the lock when the client's
session ends, however the client ends (``kill -9`` included).  :meth:`WriterPresence.others` lists
the locks of the same repository held under another journal directory: while there is one, a
repair leaves the files no row explains where they are.  One round trip per writing client, not per write.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
import zlib
from typing import Any

import sqlalchemy as sa

from .database import Database

#: Connections a forked child inherited from its parent: never used nor closed here (closing one,
#: or letting it be collected, would end the parent's session, and its lock with it).
_INHERITED: list[Any] = []
_PRESENCES: weakref.WeakSet[WriterPresence] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for presence in list(_PRESENCES):
        presence._inherited()


def _key(text: str) -> int:
    """A non-negative 31-bit key (pg_locks shows an advisory key as an unsigned oid)."""
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


class WriterPresence:
    """This client's writer lock on a PostgreSQL registry, and the other hosts' writers."""

    def __init__(self, db: Database, journal_directory: str):
        self._db = db
        #: the repository: its database and schema
        self.repository = _key(f"skybutler-writers:{db.engine.url.database}:{db.schema or ''}")
        self.where = f"{socket.gethostname()}:{os.path.abspath(journal_directory)}"
        #: this client's host and journal directory
        self.mine = _key(self.where)
        self._connection: Any = None
        self._pid = 0
        self._taking = threading.Lock()
        _PRESENCES.add(self)

    def announce(self) -> None:
        """Hold this client's writer lock (once per process; before its first file is placed)."""
        if self._connection is not None and self._pid == os.getpid():
            return
        with self._taking:
            if self._connection is not None and self._pid == os.getpid():
                return
            self._inherited()
            connection = self._db._watch_connection()
            try:
                connection.execute("SELECT set_config('application_name', %s, false)",
                                   [f"skybutler writer {self.where} pid {os.getpid()}"[:63]])
                connection.execute("SELECT pg_advisory_lock_shared(%s, %s)", [self.repository, self.mine])
            except BaseException:
                connection.close()
                raise
            self._connection, self._pid = connection, os.getpid()

    def _inherited(self) -> None:
        """In a forked child: the parent's connection (and lock) is kept aside, untouched."""
        if self._connection is not None and self._pid != os.getpid():
            _INHERITED.append(self._connection)
            self._connection = None

    def others(self) -> list[str]:
        """The writers of this repository on other hosts (or under another journal directory) whose
        sessions are alive, each named as its client named itself."""
        with self._db.reading() as conn:
            rows = conn.execute(sa.text(
                "SELECT DISTINCT COALESCE(a.application_name, ''), l.pid FROM pg_locks l "
                "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.classid = CAST(:repository AS oid) AND l.objid <> CAST(:mine AS oid)"),
                {"repository": self.repository, "mine": self.mine}).all()
        return sorted(f"{name or 'a skybutler writer'} (server session {pid})" for name, pid in rows)

    def close(self) -> None:
        """Let go of the lock (the client is closing)."""
        self._inherited()
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - already broken: the server dropped the lock with it
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
