"""Preparing a put batch's files (or placing an ingest's) in a thread while its rows go to the registry.

A ``put_many`` of small datasets spends about as long serialising its objects and creating
their staged files as the database spends inserting the batch's rows (on PostgreSQL,
checking their foreign keys at the end of each ``COPY``), and the two wait on different
things: the interpreter and the file system on one side, the server on the other.
:class:`BackgroundPreparation` formats the objects, journals the batch and stages its files
in one thread while the caller inserts the rows that need none of that (the datasets and
their collection memberships); the caller takes the artifacts (:meth:`pending`) for their
location rows, and publishes the files only after :meth:`wait`, inside its registry
transaction, so a failure of either half fails the whole batch and leaves nothing behind.
The journal is written before the first file is staged, as in the caller's thread, so a
crash at any moment is undone by recovery as it always was.  An ingest places its files in
:class:`InBackground` the same way: the location rows take their artifacts from its result,
and the registry commits only after every file is placed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Fewer datasets than this are prepared in the caller's thread: starting a thread costs more
#: than the overlap gains for a handful of files.
BACKGROUND_MIN_FILES = 32


class BackgroundPreparation:
    """Runs ``prepare()`` (format and journal: returns the batch's pending artifacts), then
    ``stage(p)`` for each of them in order, in a thread of its own, until done, stopped or failed."""

    def __init__(self, prepare: Callable[[], Sequence[Any]], stage: Callable[[Any], Any]):
        self._prepare, self._stage = prepare, stage
        self._pending: Sequence[Any] | None = None
        self._stopped = False
        self._error: BaseException | None = None
        self._prepared = threading.Event()
        self._thread = threading.Thread(target=self._run, name="skybutler-prepare", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._pending = self._prepare()
            self._prepared.set()
            for item in self._pending:
                if self._stopped:
                    return
                self._stage(item)
        except BaseException as err:  # raised in the caller's thread by pending() or wait()
            self._error = err
        finally:
            self._prepared.set()

    def pending(self) -> Sequence[Any]:
        """The batch's pending artifacts, once formatted and journaled (their files may still be
        being staged); raises the error that stopped the preparation before then."""
        self._prepared.wait()
        if self._pending is None:
            self._thread.join()
            raise self._error  # type: ignore[misc]
        return self._pending

    def wait(self) -> None:
        """Block until every file is staged; raise the error that stopped the thread, if any."""
        self._thread.join()
        if self._error is not None:
            raise self._error

    def stop(self) -> Sequence[Any]:
        """Stage nothing more and wait for the file in progress (the batch failed elsewhere);
        returns the pending artifacts made (none if the preparation failed before journaling)."""
        self._stopped = True
        self._thread.join()
        return self._pending or []


class InBackground(Generic[T]):
    """Runs ``work()`` in a thread of its own; :meth:`result` waits for it."""

    def __init__(self, work: Callable[[], T]):
        self._work = work
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="skybutler-place", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._work()
        except BaseException as err:  # raised in the caller's thread by result()
            self._error = err

    def result(self) -> T:
        """What ``work()`` returned, once it has; raises what it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def outcome(self) -> T | None:
        """What ``work()`` returned, or None if it failed (once it has ended either way)."""
        self._thread.join()
        return self._result
