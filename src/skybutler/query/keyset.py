"""Keyset paging: the rows after a key in an order, and keys as the columns hold them.

A page read after the last row's key costs what the first page does (an offset makes the
database walk every row before it), and rows written meanwhile neither repeat nor drop at
a page boundary.  The order ends with ``dataset_id`` so that a key names one row; a
search of CALIBRATION collections may list one dataset once per validity range, so its
rows of one dataset are ordered by that range as well, and its keys end with it.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from ..errors import QueryError
from ..timespan import NS_MAX, NS_MIN, time_to_ns, to_time


def tie_breakers(columns: list[str], order: tuple[str, ...]) -> tuple[str, ...]:
    """The columns ordering the rows of one dataset after ``dataset_id`` (with its direction):
    the validity range, when the query lists certifications (one dataset, several ranges)."""
    if "validity_begin" not in columns:
        return ()
    sign = "-" if order and order[-1].startswith("-") else ""
    return (f"{sign}validity_begin", f"{sign}validity_end")


def key_value(universe: Any, column: str, value: Any) -> Any:
    """A key's value as the column holds it (from JSON text: a dataset ID's string; a
    validity bound as TAI nanoseconds, ISO text or a time, None for unbounded)."""
    if column == "ingest_date":  # no result column holds it: a caller has no key to give
        raise QueryError("paging after a row is not offered in an order by ingest_date")
    try:
        if column == "dataset_id":
            return uuid.UUID(str(value))
        if column == "run":
            return str(value)
        if column in ("validity_begin", "validity_end"):
            if value is None:
                return NS_MIN if column == "validity_begin" else NS_MAX
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return time_to_ns(to_time(value))
        if column in ("run_id", "collection_rank", "dataset_type_index") or (
                column in universe.elements and universe[column].key is not None
                and universe[column].key.type == "int"):
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError(value)
            return int(value)
        return str(value)
    except ValueError:
        raise QueryError(f"{value!r} is not a value of column {column!r}") from None


def following(columns: dict[str, sa.ColumnElement], order: tuple[str, ...], key: tuple[Any, ...]) -> sa.ColumnElement:
    """Rows after ``key`` in ``order`` (a leading ``-`` descending; ``columns`` by name): beyond
    it in the first column, or equal there and beyond in the next, and so on."""
    terms = []
    for i, (name, value) in enumerate(zip(order, key)):
        column = columns[name.lstrip("-")]
        beyond = column < value if name.startswith("-") else column > value
        equal = [columns[n.lstrip("-")] == v for n, v in zip(order[:i], key[:i])]
        terms.append(sa.and_(*equal, beyond))
    return sa.or_(*terms)
