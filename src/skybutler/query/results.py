"""Query results: lazy iteration, counts, ordering, limits, tables, and explanations.

A result object holds a compiled query and runs it only when asked: iterating
streams rows from the database; ``to_arrow`` builds columns straight from the rows
with no per-row Python objects; ``count`` and ``any`` run cheap SQL forms of the
query.  ``limit`` goes into the SQL unless an exact region test has to see the
rows first.
"""

from __future__ import annotations

import gc
import itertools
import operator
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from ..dimensions import DataCoordinate, DimensionRecord
from ..errors import QueryError
from ..models import DatasetRef
from ..registry import Registry
from ..dimensions import regions as sky
from ..timespan import NS_MAX, NS_MIN, ns_to_time
from .builder import BuiltQuery


class QueryResults:
    """Rows of one query; subclasses turn rows into data IDs, refs or records."""

    def __init__(self, registry: Registry, built: BuiltQuery, order: tuple[str, ...] = (),
                 limit: int | None = None, offset: int = 0):
        self._registry = registry
        self._built = built
        self._order = order
        self._limit = limit
        self._offset = offset

    def _copy(self, **changes: Any) -> QueryResults:
        args = {"order": self._order, "limit": self._limit, "offset": self._offset, **changes}
        return type(self)(self._registry, self._built, **args)

    def order_by(self, *names: str) -> QueryResults:
        """Sort by result columns (dimension names); a leading ``-`` sorts descending."""
        for name in names:
            if name.lstrip("-") not in self._built.columns:
                raise QueryError(f"cannot order by {name.lstrip('-')!r}; columns: {', '.join(self._built.columns)}")
        return self._copy(order=tuple(names))

    def limit(self, limit: int, offset: int = 0) -> QueryResults:
        """At most ``limit`` results, after skipping ``offset``."""
        return self._copy(limit=limit, offset=offset)

    # -- SQL ------------------------------------------------------------------

    def _statement(self, with_limit: bool = True) -> sa.Select:
        stmt = self._built.statement
        if self._order:
            sub = stmt.subquery("q")
            keys = [sub.c[n.lstrip("-")].desc() if n.startswith("-") else sub.c[n] for n in self._order]
            stmt = sa.select(*sub.c).order_by(*keys)
        if with_limit and not self._built.region_filters and self._limit is not None:
            stmt = stmt.limit(self._limit).offset(self._offset or None)
        if "dataset_id" in self._built.columns:
            # Dataset IDs as the driver returns them (hex text on SQLite): SQLAlchemy's UUID
            # conversion costs more than the query; the converters make UUIDs where needed.
            sub = stmt.subquery("r")
            stmt = sa.select(*[sa.type_coerce(c, sa.String) if c.key == "dataset_id" else c for c in sub.c])
        return stmt

    def _rows(self) -> Iterator[sa.Row]:
        return itertools.chain.from_iterable(self._batches())

    def _batches(self) -> Iterator[list[sa.Row]]:
        """The result rows, in lists of up to ``_BATCH``."""
        if self._built.doomed and not self._has_rows_anyway():
            return
        filters = self._built.region_filters
        with self._registry.db.reading() as conn:
            result = conn.execute(self._statement())
            # One driver call and one C-level conversion per batch.
            batches = iter(lambda: _paused_gc(result.fetchmany, _BATCH), [])
            if not filters:
                yield from batches
                return
            passed = self._filtered(batches)
            while chunk := list(itertools.islice(passed, _BATCH)):
                yield chunk

    def _filtered(self, batches: Iterator[list[sa.Row]]) -> Iterator[sa.Row]:
        """Rows passing the exact region tests, de-duplicated, after the offset, up to the limit."""
        filters = self._built.region_filters
        skipped = taken = 0
        unique = self._built.unique_by
        key_index = [self._built.columns.index(k) for k in unique] if unique else None
        seen: set[tuple] = set()
        for row in itertools.chain.from_iterable(batches):
            mapping = row._mapping
            if all(f(mapping) for f in filters):
                if key_index is not None:
                    key = tuple(row[i] for i in key_index)
                    if key in seen:
                        continue
                    seen.add(key)
                if skipped < self._offset:
                    skipped += 1
                    continue
                yield row
                taken += 1
                if self._limit is not None and taken >= self._limit:
                    return

    def _has_rows_anyway(self) -> bool:
        return not any(d.startswith("no ") for d in self._built.doomed)

    # -- public ---------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        convert = self._converter()
        for batch in self._batches():
            yield from _paused_gc(lambda: [convert(row) for row in batch])  # noqa: B023 (called at once)

    def count(self) -> int:
        """How many results (SQL count unless an exact region test must see the rows)."""
        if self._built.region_filters or self._limit is not None:
            return sum(1 for _ in self._rows())
        if self._built.doomed and not self._has_rows_anyway():
            return 0
        with self._registry.db.reading() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self._statement().subquery())).scalar_one()

    def any(self) -> bool:
        """Whether there is at least one result."""
        return next(iter(self.limit(1)._rows()), None) is not None

    def to_arrow(self) -> pa.Table:
        """The results as an Arrow table (one column per result column), built without per-row objects."""
        columns = [c for c in self._built.columns if not c.startswith("region_") and c != "collection_rank"]
        index = [self._built.columns.index(c) for c in columns]
        rows = self._plain_rows()
        values = list(zip(*rows)) if rows else []
        data = {name: values[i] for name, i in zip(columns, index)} if rows else {}
        table = pa.table(data) if rows else pa.table({c: pa.array([], pa.null()) for c in columns})
        return self._decorate_arrow(table)

    def _plain_rows(self) -> list[Any]:
        """All result rows, with dataset IDs as the database returns them (no UUID objects)."""
        batches = list(self._batches())
        return batches[0] if len(batches) == 1 else [row for batch in batches for row in batch]

    def _decorate_arrow(self, table: pa.Table) -> pa.Table:
        return table

    def to_astropy(self):
        from astropy.table import Table

        return Table(self.to_arrow().to_pydict())

    def to_pandas(self):
        return self.to_arrow().to_pandas()

    def explain(self) -> list[str]:
        """Reasons the query returns nothing (empty if it returns rows)."""
        if self.any():
            return []
        reasons = list(self._built.doomed)
        base = self._built.base
        with self._registry.db.reading() as conn:
            if base is not None and conn.execute(base.limit(1)).first() is None:
                reasons.append("the joined dimension tables and datasets have no rows before the where-clause")
                return reasons
            for text, sql in self._built.where_terms:
                if conn.execute(base.where(sql).limit(1)).first() is None:
                    reasons.append(f"the where-clause term {text!r} excludes every row")
        if not reasons and self._built.region_filters:
            reasons.append("the sky-pixel index matched rows, but none overlaps the region exactly")
        if not reasons:
            reasons.append("the where-clause terms together exclude every row (each alone matches some)")
        return reasons

    def _converter(self):
        raise NotImplementedError


_BATCH = 10_000


def _paused_gc(function: Any, *args: Any) -> Any:
    """Call ``function`` with the cyclic garbage collector paused.

    Fetching and converting rows makes only acyclic objects (rows, refs, data IDs,
    dicts), but so many that the collector would run full passes over the whole heap
    several times per batch (a 16,700-row fetch took 30 ms paused, 100-300 ms not).  It
    is paused only around such work, never while a caller's code runs between yields.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return function(*args)
    finally:
        if paused:
            gc.enable()


def _ref_maker():
    """A constructor of :class:`DatasetRef` from values the registry produced.

    It fills the model's instance state the way ``model_construct`` does, without its
    per-call field bookkeeping (a third of the time of turning a row into a ref); a
    self-check against ``DatasetRef.make`` falls back to that if pydantic ever differs.
    """
    new, set_attr = object.__new__, object.__setattr__
    fields = frozenset(DatasetRef.model_fields)

    def make(id: Any, dtype: Any, data_id: DataCoordinate, run: str) -> DatasetRef:
        ref = new(DatasetRef)
        set_attr(ref, "__dict__", {"id": id, "dataset_type": dtype, "data_id": data_id, "run": run,
                                   "component": None, "artifact": None})
        set_attr(ref, "__pydantic_fields_set__", set(fields))
        set_attr(ref, "__pydantic_extra__", None)
        set_attr(ref, "__pydantic_private__", None)
        return ref

    global _REF_MAKER_OK
    if _REF_MAKER_OK is None:
        from ..models import DatasetType

        args = (uuid.uuid4(), DatasetType(name="probe", dimensions=(), storage_class="Dict"), None, "run")
        a, b = make(*args), DatasetRef.make(*args)
        _REF_MAKER_OK = all(getattr(a, k, None) == getattr(b, k, None) for k in (
            "__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"))
    return make if _REF_MAKER_OK else DatasetRef.make


_REF_MAKER_OK: bool | None = None


class DataIdQueryResults(QueryResults):
    """Data IDs of a dimension group."""

    def _converter(self):
        group = self._built.group
        n = len(group.required)
        names = list(group.required) + [c for c in self._built.columns if c in group.implied]
        index = [self._built.columns.index(c) for c in names]
        if n == 0:
            return lambda row: DataCoordinate(group, {})
        values = operator.itemgetter(*index)
        if len(names) == 1:
            return lambda row: DataCoordinate(group, {names[0]: values(row)})
        return lambda row: DataCoordinate(group, dict(zip(names, values(row))))


class DatasetQueryResults(QueryResults):
    """Resolved dataset references of one dataset type."""

    def _converter(self):
        dtype = self._built.dataset_type
        group = self._built.group
        required = group.required
        cols = self._built.columns
        dims = operator.itemgetter(*[cols.index(d) for d in required])
        if len(required) == 1:
            single = dims
            dims = lambda row: (single(row),)  # noqa: E731
        i_id, i_run = cols.index("dataset_id"), cols.index("run_id")
        name_of = self._registry.collections.name_of
        runs: dict[int, str] = {}
        make = _ref_maker()

        def convert(row: Any) -> DatasetRef:
            run = runs.get(row[i_run])
            if run is None:
                run = runs[row[i_run]] = name_of(row[i_run])
            dataset_id = row[i_id]
            if dataset_id.__class__ is str:
                dataset_id = uuid.UUID(dataset_id)
            return make(dataset_id, dtype, DataCoordinate(group, dict(zip(required, dims(row)))), run)

        return convert

    def _decorate_arrow(self, table: pa.Table) -> pa.Table:
        if table.num_rows == 0:
            return table
        name_of = self._registry.collections.name_of
        ids = table.column("dataset_id")
        first = ids[0].as_py()
        if isinstance(first, str) and len(first) == 32:  # hex digits, as SQLite stores them
            parts = [pc.utf8_slice_codeunits(ids, a, b) for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))]
            ids = pc.binary_join_element_wise(*parts, "-")
        elif not isinstance(first, str):
            ids = pa.array([str(u) for u in ids.to_pylist()], pa.string())
        table = table.set_column(table.schema.get_field_index("dataset_id"), "dataset_id", ids)
        run_ids = table.column("run_id")
        unique = pc.unique(run_ids)
        names = pa.array([name_of(c) for c in unique.to_pylist()], pa.string())
        run = names.take(pc.index_in(run_ids, value_set=unique))
        return table.set_column(table.schema.get_field_index("run_id"), "run", run)


class DimensionRecordQueryResults(QueryResults):
    """Records of one dimension element."""

    def _converter(self):
        store, element, cols = self._registry.dimensions, self._element, self._built.columns
        return lambda row: store.from_row(element, dict(zip(cols, row)))

    def __init__(self, registry: Registry, built: BuiltQuery, element: str = "", **kwargs: Any):
        super().__init__(registry, built, **kwargs)
        self._element = element

    def _copy(self, **changes: Any) -> QueryResults:
        args = {"order": self._order, "limit": self._limit, "offset": self._offset, **changes}
        return DimensionRecordQueryResults(self._registry, self._built, element=self._element, **args)

    def _decorate_arrow(self, table: pa.Table) -> pa.Table:
        names = table.column_names
        if "region" in names:
            regions = [None if r is None else [list(v) for v in sky.vertices_of(sky.decode(r))]
                       for r in table.column("region").to_pylist()]
            table = table.set_column(names.index("region"), "region", pa.array(regions))
        for bound in ("timespan_begin", "timespan_end"):
            if bound in names:
                values = [None if v is None or not NS_MIN < v < NS_MAX else ns_to_time(v).isot
                          for v in table.column(bound).to_pylist()]
                table = table.set_column(table.column_names.index(bound), bound, pa.array(values, pa.string()))
        return table


__all__ = ["DataIdQueryResults", "DatasetQueryResults", "DimensionRecordQueryResults", "DimensionRecord"]
