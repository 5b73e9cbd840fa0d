"""What a Rubin user does with a query's answer, which the Rubin butler's ``query_datasets``,
``query_data_ids`` and ``query_dimension_records`` give as a list.  skybutler's results are
read from the registry as they are iterated (a million refs are never held at once), so:
``if refs:`` asks whether there is any (one row read), and ``len(refs)`` and ``refs[0]`` are
refused naming what to write instead, rather than running the query twice to know a length."""

from __future__ import annotations

from typing import Any


class ListHabits:
    """The list habits of a results class that has ``any()``: a truth test, and the refusals."""

    def any(self) -> bool:
        raise NotImplementedError

    def __bool__(self) -> bool:
        return self.any()

    def __len__(self) -> int:
        # TypeError, as for any unsized object: list(results) takes it as "no length known"
        raise TypeError(f"{type(self).__name__} are read as they are iterated and have no len(): "
                        "use .count() for how many, or list(...) for a list (as the Rubin butler gives)")

    def __getitem__(self, index: Any) -> Any:
        raise TypeError(f"{type(self).__name__} are read as they are iterated and cannot be indexed: "
                        "use list(...)[i], or .order_by(...).limit(1) for the first in an order")
