"""Answers to small registry lookups, remembered while nothing is committed to the database.

Every query asks the same small questions before its main statement: the search path a
CHAINED collection flattens to, and which of the searched collections hold the queried
dataset type.  Each is a few microseconds of SQL but 150-200 us of SQLAlchemy execution
and connection handling, twice per query: about a sixth of a 5,000-ref query.

SQLite's ``PRAGMA data_version``, asked on a connection of its own that never writes,
changes whenever any connection of any process commits.  Each lookup reads it (a few
microseconds) and forgets every remembered answer when it has moved, so an answer is
only ever reused when the database is exactly as it was when the answer was found.
Nothing is remembered on PostgreSQL (no such counter), for an in-memory database, or
inside this thread's transaction, whose uncommitted rows a remembered answer would miss.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ReadCache:
    """Remembered answers, valid while SQLite's ``data_version`` stays the same."""

    def __init__(self, path: str | None, in_transaction: Callable[[], bool]):
        self._path = path
        self._in_transaction = in_transaction
        self._lock = threading.Lock()
        self._watcher: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._version: int | None = None
        self._answers: dict[Hashable, Any] = {}

    def active(self) -> bool:
        """Whether answers can be remembered here and now (a SQLite file, no open transaction)."""
        return self._path is not None and not self._in_transaction()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The remembered answer for ``key``, or ``compute()``'s (remembered if that is safe)."""
        version = self._data_version()
        if version is None:
            return compute()
        with self._lock:
            if version != self._version:
                self._answers.clear()
                self._version = version
            elif key in self._answers:
                return self._answers[key]
        value = compute()
        with self._lock:
            if self._version == version:  # a commit in between makes the next lookup forget it anyway
                self._answers[key] = value
        return value

    def close(self) -> None:
        with self._lock:
            if self._watcher is not None:
                self._watcher.close()
                self._watcher = None
            self._answers.clear()

    def _data_version(self) -> int | None:
        if not self.active():
            return None
        with self._lock:
            if self._pid != os.getpid():
                # A forked child: the parent's connection is not ours to use (SQLite forbids it),
                # and data_version numbers of different connections do not compare.
                self._watcher, self._version, self._pid = None, None, os.getpid()
                self._answers.clear()
            if self._watcher is None:
                self._watcher = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            return self._watcher.execute("PRAGMA data_version").fetchone()[0]
