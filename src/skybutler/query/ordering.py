"""Orders named as the Rubin butler names them.

``order_by("visit.exposure_time")`` or ``"-exposure.timespan.begin"`` sorts data IDs or
datasets by a field of an element whose identifying dimensions the result holds: the
element's table is joined to the result on them, for the ordering alone.  Records of an
element take its fields qualified or not, and its name for its key (``-visit``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from ..dimensions import DimensionUniverse
from ..dimensions.universe import DimensionElement
from ..errors import QueryError
from ..registry.schema import RegistrySchema


def element_field(universe: DimensionUniverse, columns: Sequence[str], name: str) -> tuple[str, str] | None:
    """(element, column of its table) that ``name`` (``visit.exposure_time``,
    ``visit.timespan.end``) orders by, when the result's ``columns`` identify that element's
    record; None otherwise."""
    head, _, field = name.lstrip("-").partition(".")
    if not field or head not in universe.elements:
        return None
    element = universe[head]
    if element.skypix is not None or not set(element.identity) <= set(columns):
        return None
    if field in ("timespan.begin", "timespan.end") and element.timespan:
        return head, "timespan_" + field.rpartition(".")[2]
    if field in element.fields or (element.key is not None and field == element.key.name):
        return head, field
    return None


def join_fields(schema: RegistrySchema, universe: DimensionUniverse, result: sa.Subquery,
                names: Sequence[str]) -> tuple[sa.FromClause, dict[str, sa.ColumnElement]]:
    """``result`` joined to the tables of the elements ``names`` order by, and each name's column."""
    joined: sa.FromClause = result
    tables: dict[str, sa.FromClause] = {}
    out: dict[str, sa.ColumnElement] = {}
    for name in names:
        found = element_field(universe, list(result.c.keys()), name)
        if found is None:
            continue
        head, column = found
        if head not in tables:
            element = universe[head]
            table = schema.alias(schema.elements[head], f"order_{head}")
            joined = joined.join(table, sa.and_(*[table.c[element.column_of(d)] == result.c[d]
                                                  for d in element.identity]))
            tables[head] = table
        out[name.lstrip("-")] = tables[head].c[column]
    return joined, out


#: The fields of every dataset a query's datasets can be ordered by, after ``<dataset type>.``.
_DATASET_ORDERS = ("ingest_date", "run", "dataset_id", "collection", "timespan.begin", "timespan.end")


def dataset_field(name: str, dataset_types: set[str], columns: Sequence[str]) -> str | None:
    """The result column (or ``run``, ``ingest_date``) that ``name`` orders datasets by:
    ``<type>.ingest_date`` is ``ingest_date``, ``<type>.timespan.begin`` the validity range's
    ``validity_begin``, or None (no order) when the query lists no validity ranges: outside
    CALIBRATION collections every dataset's range is unbounded.  Other names are unchanged."""
    sign, body = ("-", name[1:]) if name.startswith("-") else ("", name)
    head, _, field = body.partition(".")
    if head in dataset_types and field in _DATASET_ORDERS:
        body = field
    if body in ("timespan.begin", "timespan.end"):
        return sign + "validity_" + body.rpartition(".")[2] if "validity_begin" in columns else None
    if body == "collection":
        raise QueryError(f"datasets cannot be ordered by {name.lstrip('-')!r} here (each is listed once, "
                         "not once per collection holding it): order them by run")
    return sign + body


def record_column(element: DimensionElement, name: str) -> str:
    """The column of ``element``'s records that ``name`` orders by: ``visit.exposure_time`` is
    ``exposure_time``, ``visit`` the key ``id``, ``timespan.begin`` ``timespan_begin``."""
    sign, field = ("-", name[1:]) if name.startswith("-") else ("", name)
    if field.startswith(f"{element.name}."):
        field = field[len(element.name) + 1:]
    if field == element.name and element.key is not None:
        field = element.key.name
    if field in ("timespan.begin", "timespan.end"):
        field = "timespan_" + field.rpartition(".")[2]
    return sign + field
