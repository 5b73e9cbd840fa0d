"""What a Rubin user does with a query's answer, which the Rubin butler's ``query_datasets``,
``query_data_ids`` and ``query_dimension_records`` give as a list.  skybutler's results are
read from the registry as they are iterated, so a loop over a million refs never holds them
all, and each loop reads the registry anew.  The list habits still answer as the list would:
``if refs:`` asks whether there is any (one row read); ``len(refs)``, ``refs[0]`` and
``refs[-3:]`` read the rows and hold them, for more indexing and for the next loop, so that
``for i in range(len(refs)): refs[i]`` and ``n = len(refs); for ref in refs`` see one list.
That loop hands the rows over and holds them no longer: the loop after it (or ``list(refs)``,
which asks ``len()`` first) reads the registry again, as a loop always does."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any


class ListHabits:
    """The list habits of a results class that streams its rows (``_stream``) and has ``any()``."""

    #: The rows a list habit read, until the next loop takes them.
    _held: list[Any] | None = None
    #: Whether a loop was begun (``iter()``) and has not asked for its first row.
    _loop_unstarted = False

    def any(self) -> bool:
        raise NotImplementedError

    def _stream(self) -> Iterator[Any]:
        """The rows, read from their source as they are iterated."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        held, self._held = self._held, None
        if held is not None:
            return iter(held)
        self._loop_unstarted = True
        # the stream's rows pass through chain at C speed; _started runs once, at the first row
        return itertools.chain.from_iterable(self._started())

    def _started(self) -> Iterator[Iterator[Any]]:
        self._loop_unstarted = False
        yield self._stream()

    def __bool__(self) -> bool:
        return self.any() if self._held is None else bool(self._held)

    def __len__(self) -> int:
        if self._loop_unstarted:
            # list(results) asks len() after iter() and before the first row: "not known" (a
            # TypeError) lets the loop read the rows, once
            raise TypeError(f"a loop over these {type(self).__name__} has begun and read nothing yet: "
                            "its rows are not counted until it reads them (use .count())")
        return len(self._as_list())

    def __getitem__(self, index: Any) -> Any:
        return self._as_list()[index]

    def _as_list(self) -> list[Any]:
        if self._held is None:
            self._held = list(self._stream())
        return self._held
