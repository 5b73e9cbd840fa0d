"""Answers to small registry lookups, remembered while nothing is committed to the database.

Every query asks the same small questions before its main statement: the search path a
CHAINED collection flattens to, and which of the searched collections hold the queried
dataset type.  Each is a few microseconds of SQL but 150-200 us of SQLAlchemy execution
and connection handling, twice per query: about a sixth of a 5,000-ref query.

SQLite's ``PRAGMA data_version``, asked on a connection of its own that never writes,
changes whenever any connection of any process commits.  Each lookup reads it (a few
microseconds) and forgets every remembered answer when it has moved, so an answer is
only ever reused when the database is exactly as it was when the answer was found.
Nothing is remembered so for an in-memory database, or inside this thread's
transaction, whose uncommitted rows a remembered answer would miss.

PostgreSQL has no such counter, so there every lookup runs each time.  What is made
from lookups (a built query: 0.5-1 ms of SQLAlchemy constructs) can still be reused:
:meth:`ReadCache.checked` remembers a computation's answer with the lookups it made
through :meth:`ReadCache.get` and their answers, runs those lookups again when it is
asked again, and reuses the answer only if every lookup answers as before (and the
computation read nothing else from the database).  A query that needs no lookup (data
IDs by dimensions alone) is then never built twice.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

#: Most answers :meth:`ReadCache.checked` keeps (the least recently used go first).
CHECKED_ANSWERS = 256


class ReadCache:
    """Remembered answers, valid while SQLite's ``data_version`` stays the same."""

    def __init__(self, path: str | None, in_transaction: Callable[[], bool], opened: Callable[[], int]):
        self._path = path
        self._in_transaction = in_transaction
        #: How many connections this thread has taken for reads or writes (ever): what tells
        #: whether a computation read the database other than through recorded lookups.
        self._opened = opened
        self._local = threading.local()
        self._checked: OrderedDict[Hashable, tuple[Any, list[tuple[Callable[[], Any], Any]], tuple]] = OrderedDict()
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
            value = compute()
            recorder = getattr(self._local, "recorder", None)
            if recorder is not None:
                recorder.append((compute, value))
            return value
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

    def checked(self, key: Hashable, compute: Callable[[], T], state: tuple,
                keep: Callable[[T], bool] = lambda _: True) -> T:
        """``compute()``'s answer, reused where the database cannot say whether anything was
        committed (PostgreSQL) while every lookup it made through :meth:`get` answers as it did,
        and ``state`` holds the same objects (the in-memory name tables the computation used).
        Remembered only if ``compute`` read nothing but those lookups and ``keep`` accepts
        its answer; never inside this thread's transaction.  Where :meth:`get` remembers
        answers itself, this is ``get``."""
        if self._path is not None:
            return self.get(key, compute)
        if self._in_transaction():
            return compute()
        with self._lock:
            entry = self._checked.get(key)
            if entry is not None:
                self._checked.move_to_end(key)
        if entry is not None:
            value, lookups, known = entry
            if (len(known) == len(state) and all(a is b for a, b in zip(known, state))
                    and all(lookup() == answer for lookup, answer in lookups)):
                return value
        outer, recorded = getattr(self._local, "recorder", None), []
        self._local.recorder, opened = recorded, self._opened()
        try:
            value = compute()
        finally:
            self._local.recorder = outer
        # each lookup took one connection, and nothing else did
        if self._opened() - opened == len(recorded) and keep(value):
            with self._lock:
                self._checked[key] = (value, recorded, state)
                while len(self._checked) > CHECKED_ANSWERS:
                    self._checked.popitem(last=False)
        return value

    def close(self) -> None:
        with self._lock:
            self._checked.clear()
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
