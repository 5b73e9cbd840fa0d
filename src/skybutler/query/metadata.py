"""Dataset facts in where-clauses: ``<dataset_type>.<field>`` as a correlated value.

``src.n_rows > 5000`` compares, for each row of the query, the ``n_rows`` of the
``src`` dataset with that row's data ID, found first in the searched collections.
A correlated scalar subquery keeps one value per row, so a dataset present in
several collections never multiplies the result.  A region fact (an image's
footprint) is usable in ``calexp.region OVERLAPS POINT(ra, dec)``: the sky-pixel
ranges recorded with it are the coarse SQL test, its exact overlap is checked
on the rows.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from astropy.time import Time

from ..errors import QueryError
from ..models import DatasetType
from ..registry import Registry
from ..registry.user_tables import UserTable
from .joins import JoinBuilder
from .where import Operand

_KINDS = {sa.BigInteger: "int", sa.Integer: "int", sa.Float: "float", sa.Text: "str", sa.String: "str",
          sa.Boolean: "bool", sa.LargeBinary: "region"}


def _kind(column: sa.Column) -> str:
    for sql_type, kind in _KINDS.items():
        if isinstance(column.type, sql_type):
            return kind
    return "float" if "FLOAT" in str(column.type).upper() or "REAL" in str(column.type).upper() else "str"


#: The fields every dataset has, queryable as ``<dataset_type>.<field>`` (and bare, when
#: the query has one dataset type): its ID, ingest time, RUN and the collection it was found in.
DATASET_FIELDS = ("dataset_id", "ingest_date", "run", "collection")


@lru_cache(maxsize=1)
def _leap_seconds() -> list[tuple[int, int]]:
    """(UTC instant as Unix ns, TAI - UTC in ns from then on), newest first."""
    from astropy.utils import iers  # on first use: it imports astropy.table, FITS and pandas

    table = iers.LeapSeconds.auto_open()
    out = []
    for row in table:
        if row["year"] >= 1972:
            start = Time(f"{row['year']}-{row['month']:02d}-01", scale="utc")
            out.append((int(round(start.unix * 1e9)), int(row["tai_utc"]) * 1_000_000_000))
    return sorted(out, reverse=True)


def _unix_to_tai_ns(unix_ns: sa.ColumnElement) -> sa.ColumnElement:
    """Unix nanoseconds (how ingest times are kept) as TAI nanoseconds since 1970 (how the
    query language compares times): plus TAI - UTC at that instant, from the leap-second table."""
    leaps = _leap_seconds()
    offset = sa.case(*[(unix_ns >= start, sa.literal(step)) for start, step in leaps],
                     else_=sa.literal(leaps[-1][1]))
    return unix_ns + offset


def _builtin_operand(registry: Registry, field: str, source: sa.FromClause, dataset_id: sa.ColumnElement,
                     collection_id: sa.ColumnElement, where: list[sa.ColumnElement],
                     order: sa.ColumnElement | None = None) -> Operand:
    """``field`` of the dataset whose ID and collection are columns of ``source`` (the
    query's own row, or a tags table searched for the first dataset of a data ID), as one
    correlated lookup."""
    ds = registry.schema.dataset.alias(f"f_ds_{field}")
    coll = registry.schema.collection.alias(f"f_coll_{field}")
    if field == "dataset_id":
        value, kind, joined = dataset_id, "uuid", source
    elif field == "ingest_date":
        value, kind, joined = ds.c.ingest_time, "time", source.join(ds, ds.c.id == dataset_id)
    elif field == "run":
        value, kind = coll.c.name, "str"
        joined = source.join(ds, ds.c.id == dataset_id).join(coll, coll.c.collection_id == ds.c.run_id)
    else:
        value, kind, joined = coll.c.name, "str", source.join(coll, coll.c.collection_id == collection_id)
    if order is None and field == "dataset_id":
        return Operand(kind, dataset_id)
    stmt = sa.select(value).select_from(joined).where(*where)
    if order is not None:
        stmt = stmt.order_by(order).limit(1)
    sql = stmt.scalar_subquery()
    return Operand(kind, _unix_to_tai_ns(sql) if field == "ingest_date" else sql)


def dataset_field_operand(registry: Registry, joins: JoinBuilder, dtype: DatasetType, field: str,
                          collection_ids: list[int], expression: str, column: int | None,
                          row_dataset_id: sa.ColumnElement | None = None,
                          row_collection_id: sa.ColumnElement | None = None) -> Operand:
    """The value of ``dtype.field`` for the query's current data ID (or, given
    ``row_dataset_id``, for the dataset of the current row)."""
    group = registry.dataset_types.group(dtype)
    type_id, _ = registry.dataset_types.get(dtype.name)
    if field in DATASET_FIELDS:
        if row_dataset_id is not None and row_collection_id is not None:
            if field == "collection":
                coll = registry.schema.collection.alias("f_coll_collection")
                return Operand("str", sa.select(coll.c.name).where(coll.c.collection_id == row_collection_id)
                               .scalar_subquery())
            ds = registry.schema.dataset.alias("f_row")
            return _builtin_operand(registry, field, ds, ds.c.id, row_collection_id, [ds.c.id == row_dataset_id]) \
                if field != "dataset_id" else Operand("uuid", row_dataset_id)
        tags = registry.schema.tags_table(group).alias(f"first_{dtype.name}_{field}")
        rank = sa.case({cid: i for i, cid in enumerate(collection_ids)}, value=tags.c.collection_id) \
            if len(collection_ids) > 1 else sa.literal(0)
        where = [tags.c.dataset_type_id == type_id, tags.c.collection_id.in_(collection_ids),
                 *[tags.c[d] == joins.ensure(d) for d in group.required]]
        return _builtin_operand(registry, field, tags, tags.c.dataset_id, tags.c.collection_id, where, rank)
    table = registry.metadata.table(dtype.storage_class)
    if table is not None and field in table.c and field != "dataset_id":
        source, value, kind = table, table.c[field], _kind(table.c[field])
        link = [table.c.dataset_id]
        extra: list[sa.ColumnElement] = []
    elif registry.metadata.metric_exists(field):
        source, value, kind = registry.metadata.metric, registry.metadata.metric.c.value, "float"
        link = [registry.metadata.metric.c.dataset_id]
        extra = [registry.metadata.metric.c.name == field]
    else:
        known = [c.name for c in table.c if c.name != "dataset_id"] if table is not None else []
        raise QueryError(f"{dtype.name} has no metadata field or metric {field!r}"
                         f"{'; fields: ' + ', '.join(known) if known else ''}", expression, column)
    if kind == "region" and registry.metadata.spatial_index is None:
        raise QueryError("this universe has no spatial index; region queries are unavailable", expression, column)
    if row_dataset_id is not None:
        sub = sa.select(value).where(link[0] == row_dataset_id, *extra).scalar_subquery()
        if kind == "region":
            return Operand(kind, sub, element=f"{dtype.name}_{field}",
                           coarse=lambda region: row_dataset_id.in_(registry.metadata.overlapping(field, region)))
        return Operand(kind, sub)
    tags = registry.schema.tags_table(group).alias(f"meta_{dtype.name}_{field}")
    rank = sa.case({cid: i for i, cid in enumerate(collection_ids)}, value=tags.c.collection_id) \
        if len(collection_ids) > 1 else sa.literal(0)
    found = [tags.c.dataset_type_id == type_id, tags.c.collection_id.in_(collection_ids),
             *[tags.c[d] == joins.ensure(d) for d in group.required]]
    sub = (sa.select(value).select_from(tags.join(source, link[0] == tags.c.dataset_id))
           .where(*found, *extra).order_by(rank).limit(1).scalar_subquery())
    if kind == "region":
        def coarse(region: Any) -> sa.ColumnElement:
            near = registry.metadata.overlapping(field, region)
            return sa.exists(sa.select(sa.literal(1)).select_from(tags).where(*found, tags.c.dataset_id.in_(near)))

        return Operand(kind, sub, element=f"{dtype.name}_{field}", coarse=coarse)
    return Operand(kind, sub)


def user_field_operand(user: UserTable, joins: JoinBuilder, field: str, expression: str,
                       column: int | None) -> Operand:
    """The value of ``<user table>.<column>`` in the row keyed by the query's current data ID
    (NULL when the table has no such row), as a correlated lookup on its primary key."""
    if field not in user.columns:
        raise QueryError(f"user table {user.name} has no column {field!r}; columns: {', '.join(user.columns)}",
                         expression, column)
    table = user.table.alias(f"u_{user.name}_{field}")
    sub = sa.select(table.c[field]).where(*[table.c[d] == joins.ensure(d) for d in user.dimensions])
    return Operand(user.columns[field], sub.scalar_subquery())
