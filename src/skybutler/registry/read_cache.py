"""Answers to small registry lookups, remembered while nothing is committed to the database.

Every query asks the same small questions before its main statement: the search path a
CHAINED collection flattens to, and which of the searched collections hold the queried
dataset type.  Each is a few microseconds of SQL but 150-200 us of SQLAlchemy execution
and connection handling on SQLite, and a round trip and a parse more on PostgreSQL: on
PostgreSQL, the chain and membership lookups were two of a small query's three statements.

A watcher (:mod:`.commit_watch`) reads a mark that moves whenever anything is committed
(SQLite's ``data_version``, PostgreSQL's current snapshot), on a connection of its own.
Each lookup reads it and forgets every remembered answer when it has moved, so an answer
is only ever reused when the database is exactly as it was when the answer was found.
Within one :meth:`ReadCache.pinned` block (building one query) the mark is read once, at
the first lookup: every lookup of the block answers for that moment, after the call began.
Nothing is remembered so for an in-memory database, or inside this thread's transaction,
whose uncommitted rows a remembered answer would miss.

What is made from lookups (a built query: 0.5-1 ms of SQLAlchemy constructs) is reused
too (:meth:`ReadCache.checked`).  On SQLite, while the mark stays the same.  PostgreSQL's
mark moves with commits to any database of the server, so there a built query is kept
with the lookups it made and their answers: while the mark stays, it is reused as it is;
once it has moved, the lookups are asked again and it is reused if every one answers as
before (and the computation read nothing else from the database).  A query that needs no
lookup (data IDs by dimensions alone) is then never built twice.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

from .commit_watch import PostgresWatcher, SqliteWatcher

T = TypeVar("T")

#: Most answers :meth:`ReadCache.checked` keeps (the least recently used go first).
CHECKED_ANSWERS = 256


#: Stands for a mark not read yet in a :meth:`ReadCache.pinned` block.
_UNREAD = object()
#: Stands for an answer not remembered.
_MISSING = object()


class ReadCache:
    """Remembered answers, valid while the watcher's mark stays the same."""

    def __init__(self, watcher: SqliteWatcher | PostgresWatcher | None, in_transaction: Callable[[], bool],
                 opened: Callable[[], int]):
        self.watcher = watcher
        self._in_transaction = in_transaction
        #: How many connections this thread has taken for reads or writes (ever): what tells
        #: whether a computation read the database other than through recorded lookups.
        self._opened = opened
        self._local = threading.local()
        #: key -> (answer, its lookups as (key, compute, answer), the state it was made from,
        #: the mark when it was last found valid)
        self._checked: OrderedDict[Hashable, tuple[Any, list[tuple[Hashable, Callable[[], Any], Any]], tuple,
                                                   Hashable | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._version: Hashable | None = None
        self._answers: dict[Hashable, Any] = {}

    def active(self) -> bool:
        """Whether answers can be remembered here and now (a database file or server, no open transaction)."""
        return self.watcher is not None and not self._in_transaction()

    def private(self) -> bool:
        """Whether answers can be remembered here and now and the mark moves only with this
        repository's own commits (SQLite): a lookup that needs the cache to be almost free
        to be worth asking for every query (see ``DimensionRecordStore.sole_key``)."""
        return self.active() and not self.watcher.shared

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Read the mark at most once in the block (at its first lookup), for a group of
        lookups that answer together (one query's); a block inside another is the outer one.
        Only for blocks that commit nothing."""
        if hasattr(self._local, "pin"):
            yield
            return
        self._local.pin = _UNREAD
        try:
            yield
        finally:
            del self._local.pin

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The remembered answer for ``key``, or ``compute()``'s (remembered if that is safe)."""
        version = self._data_version()
        computed = True
        if version is None:
            value = compute()
        else:
            with self._lock:
                if version != self._version:
                    self._answers.clear()
                    self._version = version
                found = self._answers.get(key, _MISSING)
            if found is not _MISSING:
                value, computed = found, False
            else:
                value = compute()
                with self._lock:
                    if self._version == version:  # a commit in between makes the next lookup forget it anyway
                        self._answers[key] = value
        recorder = getattr(self._local, "recorder", None)
        if recorder is not None:
            recorder.append((key, compute, value, computed))
        return value

    def checked(self, key: Hashable, compute: Callable[[], T], state: tuple,
                keep: Callable[[T], bool] = lambda _: True) -> T:
        """``compute()``'s answer, remembered; on SQLite this is :meth:`get`.  Where the mark
        moves with other databases' commits (PostgreSQL), it is reused while the mark stays,
        or, once it has moved, while every lookup it made through :meth:`get` answers as it
        did; and only while ``state`` holds the same objects (the in-memory name tables the
        computation used).  Remembered there only if ``compute`` read nothing but those
        lookups and ``keep`` accepts its answer; never inside this thread's transaction."""
        if self.watcher is None or not self.watcher.shared:
            return self.get(key, compute)
        if self._in_transaction() or getattr(self._local, "recorder", None) is not None:
            return compute()  # (inside another computation: its lookups are that one's)
        with self.pinned():
            with self._lock:
                entry = self._checked.get(key)
                if entry is not None:
                    self._checked.move_to_end(key)
            if entry is not None:
                value, lookups, known, version = entry
                if len(known) == len(state) and all(a is b for a, b in zip(known, state)):
                    if not lookups:
                        return value
                    now = self._data_version()
                    if now is not None and now == version:
                        return value
                    if all(self.get(k, c) == answer for k, c, answer in lookups):
                        with self._lock:
                            if key in self._checked:
                                self._checked[key] = (value, lookups, known, now)
                        return value
            recorded: list[tuple[Hashable, Callable[[], Any], Any, bool]] = []
            self._local.recorder, opened = recorded, self._opened()
            try:
                value = compute()
            finally:
                self._local.recorder = None
            # each lookup computed took one connection, and nothing else did
            if self._opened() - opened == sum(computed for *_, computed in recorded) and keep(value):
                lookups = [(k, c, answer) for k, c, answer, _ in recorded]
                with self._lock:
                    self._checked[key] = (value, lookups, state, self._data_version() if lookups else None)
                    while len(self._checked) > CHECKED_ANSWERS:
                        self._checked.popitem(last=False)
            return value

    def remembered(self, key: Hashable, state: tuple) -> tuple[Any, bool] | None:
        """What :meth:`checked` remembers for ``key`` (made from the same ``state``), without
        reading the mark nor asking its lookups again, and whether :meth:`checked` would check
        it (False: it is reused as it is, having needed no lookup); None if nothing.  Only for
        a caller that passes it through :meth:`checked` before the database is read for it: a
        query built when asked for but checked when run, so that running it (a count from the
        cache) reads the mark once, not once to check the query and once more for the count."""
        if not self.active() or getattr(self._local, "recorder", None) is not None:
            return None
        with self._lock:
            if not self.watcher.shared:
                found = self._answers.get(key, _MISSING)
                return None if found is _MISSING else (found, True)
            entry = self._checked.get(key)
        if entry is None or len(entry[2]) != len(state) or not all(a is b for a, b in zip(entry[2], state)):
            return None
        return entry[0], bool(entry[1])

    def close(self) -> None:
        with self._lock:
            self._checked.clear()
            if self.watcher is not None:
                self.watcher.close()
            self._answers.clear()

    def _data_version(self) -> Hashable | None:
        """The watcher's mark now (or as read earlier in this thread's pinned block); None
        when nothing may be remembered."""
        if not self.active():
            return None
        pin = getattr(self._local, "pin", None)
        if pin is not None and pin is not _UNREAD:
            return pin
        with self._lock:
            if self._pid != os.getpid():
                # A forked child: the parent's connection is not ours to use, and the marks
                # of different connections need not compare.
                self.watcher.forget()
                self._version, self._pid = None, os.getpid()
                self._answers.clear()
                self._checked.clear()
            version = self.watcher.mark()
        if pin is _UNREAD:
            self._local.pin = version
        return version
