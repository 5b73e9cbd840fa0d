"""Query results: lazy iteration, counts, ordering, limits, tables, and explanations.

A result object holds a compiled query and runs it only when asked.  Data-ID and
dataset results come back as whole columns (see ``QueryResults._columns_whole``):
``to_arrow`` is made of them without per-row objects, and iterating builds data IDs
and refs from them.  Otherwise (records, an order, an exact region test, a streaming
server) rows are read in batches and turned into the same columns.  ``count`` and ``any`` run cheap SQL
forms of the query.  ``limit`` goes into the SQL unless an exact region test has to
see the rows first (such queries, and records queries, always read rows).
The dataset kind of result is in ``dataset_results.py``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from ..batching import gc_paused
from ..dimensions import DataCoordinate, DimensionRecord
from ..dimensions import regions as sky
from ..errors import BackendError, QueryError
from ..models import DatasetRef
from ..registry import Registry
from ..timespan import NS_MAX, NS_MIN, ns_to_time
from . import calibrations, columnar, keyset, ordering, region_tests
from .builder import BuiltQuery
from .list_habits import ListHabits


class QueryResults(ListHabits):
    """Rows of one query; subclasses turn rows into data IDs, refs or records."""

    def __init__(self, registry: Registry, built: BuiltQuery, order: tuple[str, ...] = (),
                 limit: int | None = None, offset: int = 0, after: tuple[Any, ...] | None = None,
                 records: bool = False, recheck: Callable[[], BuiltQuery] | None = None):
        self._registry = registry
        self._given = built
        #: Checks ``built`` (a query remembered by the read cache, handed out unchecked) or builds
        #: it anew, when first needed (see ``builder.build_checked_later``); None once checked.
        self._recheck = recheck
        self._order = order
        self._limit = limit
        self._offset = offset
        self._after = after
        self._records = records

    @property
    def _built(self) -> BuiltQuery:
        """The query, checked against the database the first time it is needed."""
        if self._recheck is not None:
            self._given, self._recheck = self._recheck(), None
        return self._given

    def _copy(self, **changes: Any) -> QueryResults:
        args = {"order": self._order, "limit": self._limit, "offset": self._offset, "after": self._after,
                "records": self._records, "recheck": self._recheck, **changes}
        return type(self)(self._registry, self._given, **args)

    def with_dimension_records(self) -> QueryResults:
        """The same results, each data ID (a ref's too) holding the record of every element
        it identifies, as the Rubin butler's ``with_dimension_records()``:
        ``data_id.records["visit"].exposure_time``.  Looked up a batch at a time."""
        if isinstance(self, DimensionRecordQueryResults):
            raise QueryError("records are already what a records query gives")
        return self._copy(records=True)

    def order_by(self, *names: str) -> QueryResults:
        """Sort by result columns (dimension names, ``dataset_id``; ``run`` sorts datasets by
        their RUN's name) or fields of the elements they identify (``visit.exposure_time``,
        ``visit.timespan.begin``); a leading ``-`` sorts descending."""
        for name in names:
            if name.lstrip("-") not in self._built.columns and not self._by_run_name(name) and \
                    not (name.lstrip("-") == "ingest_date" and "dataset_id" in self._built.columns) and \
                    ordering.element_field(self._registry.universe, self._built.columns, name) is None:
                raise QueryError(f"cannot order by {name.lstrip('-')!r}; columns: {', '.join(self._built.columns)}, "
                                 "or <element>.<field> of an element they identify")
        return self._copy(order=tuple(names))

    def _by_run_name(self, name: str) -> bool:
        """Whether ``name`` is ``run``: the name of each dataset's RUN (held as its key, ``run_id``)."""
        return name.lstrip("-") == "run" and "run_id" in self._built.columns

    def limit(self, limit: int, offset: int = 0) -> QueryResults:
        """At most ``limit`` results, after skipping ``offset``."""
        return self._copy(limit=limit, offset=offset)

    def after(self, key: Sequence[Any]) -> QueryResults:
        """The results that follow ``key`` in this order: keyset paging.  ``key`` holds a value
        of each order column (those of the last row of the previous page), and the order must
        end with ``dataset_id`` so that a key names one row.  A page read this way costs the
        same however deep it is (an offset makes the database walk every row before it), and
        rows written meanwhile neither repeat nor drop one at a page boundary.

        A search of CALIBRATION collections may list one dataset once per validity range, so
        its key ends with the row's validity too: its begin and end (TAI nanoseconds, ISO
        text or astropy Times; None for unbounded), the order of rows of one dataset."""
        if not self._order or self._order[-1].lstrip("-") != "dataset_id":
            raise QueryError("paging after a row needs an order that ends with dataset_id")
        names = self._order + self._tie_breakers()
        if len(key) != len(names):
            raise QueryError(f"a key after which to page needs {len(names)} values "
                             f"({', '.join(names)}), not {len(key)}")
        return self._copy(after=tuple(self._key_value(n.lstrip("-"), v) for n, v in zip(names, key)))

    def _tie_breakers(self) -> tuple[str, ...]:
        return keyset.tie_breakers(self._built.columns, self._order)

    def _key_value(self, column: str, value: Any) -> Any:
        return keyset.key_value(self._registry.universe, column, value)

    # -- SQL ------------------------------------------------------------------

    #: Whether results may be read as whole columns (records need SQLAlchemy's own
    #: conversions of booleans, regions and timespans).
    _column_reads = True

    def _statement(self, with_limit: bool = True, plain_ids: bool = True) -> sa.Select:
        stmt = self._built.statement
        if self._order:
            sub = stmt.subquery("q")
            order = self._order + self._tie_breakers()
            joined, columns = ordering.join_fields(self._registry.schema, self._registry.universe, sub,
                                                   [n for n in order if n.lstrip("-") not in sub.c])
            columns.update({n.lstrip("-"): sub.c[n.lstrip("-")] for n in order
                            if not self._by_run_name(n) and n.lstrip("-") in sub.c})
            if any(map(self._by_run_name, order)):
                names = self._registry.schema.collection.alias("run_names")
                joined = joined.join(names, names.c.collection_id == sub.c.run_id)
                # byte order on every database (as SQLite sorts; PostgreSQL's locale may ignore '/')
                columns["run"] = (sa.collate(names.c.name, "C") if self._registry.db.dialect == "postgresql"
                                  else names.c.name)
            if any(n.lstrip("-") == "ingest_date" for n in order):
                stored = self._registry.schema.dataset.alias("order_ingest")
                joined = joined.join(stored, stored.c.id == sub.c.dataset_id)
                columns["ingest_date"] = stored.c.ingest_time
            stmt = sa.select(*sub.c).select_from(joined)
            keys = [columns[n.lstrip("-")].desc() if n.startswith("-") else columns[n] for n in order]
            stmt = stmt.order_by(*keys)
            if self._after is not None:
                stmt = stmt.where(keyset.following(columns, order, self._after))
        if with_limit and not self._built.region_filters and self._limit is not None:
            stmt = stmt.limit(self._limit).offset(self._offset or None)
        if plain_ids and "dataset_id" in self._built.columns:
            # Dataset IDs as the driver returns them (hex text on SQLite): SQLAlchemy's UUID
            # conversion costs more than the query; the converters make UUIDs where needed.
            sub = stmt.subquery("r")
            stmt = sa.select(*[sa.type_coerce(c, _TEXT) if c.key == "dataset_id" else c for c in sub.c])
        return stmt

    def _empty(self) -> bool:
        """Whether the result is known to be empty without running SQL (and, for a find-first
        search of CALIBRATION collections, the check that no lookup is ambiguous: every
        way of reading results passes here first)."""
        for built in (self._built, *[part for _, part in self._built.parts]):  # several types: each one's
            if built.ambiguity is not None:
                calibrations.raise_if_ambiguous(self._registry, *built.ambiguity)
        return self._built.certainly_empty()

    def _output_columns(self) -> list[str]:
        """The result columns callers see (not the region and collection-rank helpers)."""
        return [c for c in self._built.columns if not c.startswith("region_") and c != "collection_rank"]

    def _columns_whole(self) -> tuple[dict[str, pa.Array], int] | None:
        """The whole result as Arrow columns, transferred by the database one column at a
        time; or None where this does not apply (an exact region test, an order, columns of
        unknown type) or the values are not as expected.

        A database driver makes a tuple and an object per value of every row (Python's
        sqlite3; psycopg, and SQLAlchemy a row object more), which costs several times
        what the database spends answering the query.  Here the database concatenates each
        column into one value (:func:`columnar.aggregates`: integers as decimal text on
        SQLite and as their 8-byte binary forms on PostgreSQL, strings joined by an ASCII
        unit separator, dataset IDs as 32 hex digits each), and
        numpy cuts those into Arrow arrays: a handful of Python objects per result,
        whatever its size (30,000 data IDs from PostgreSQL: 1 ms of client CPU against 8
        for the rows).  Every aggregate of one SELECT sees the same rows in the same order.
        Each aggregate costs SQLite about 40 ns a row, so there is one per column, and none
        for a column the query fixes (``BuiltQuery.constants``).  A query of several
        dataset types aggregates each type's statement on its own (a row per type, joined
        by UNION ALL: one statement still), which keeps each type's fixed columns fixed and
        spares the database carrying every row through the union.  The columns are
        dimension keys (NOT NULL in their tables, inner-joined), dataset IDs and RUNs; the
        row count is checked against every column all the same, so a NULL (which the
        aggregates skip), a string holding the separator or a malformed value falls back
        to rows.
        """
        if (not self._column_reads or self._built.region_filters or self._order
                or self._registry.db.dialect not in ("sqlite", "postgresql")):
            return None
        columns = self._output_columns()
        types = self._arrow_types(columns)
        if types is None:
            return None
        built = self._built
        if built.parts and self._limit is None and not self._offset:
            sources = [(part.statement, {**part.constants, "dataset_type_index": i}, part.sole_keys)
                       for i, part in built.parts]
        else:
            sources = [(self._statement(plain_ids=False), built.constants, built.sole_keys)]
        try:
            rows = columnar.aggregate_rows(self._registry.db, sources, columns, types, self._built.compiled,
                                           (type(self), self._limit, self._offset))
        except BackendError:  # e.g. a result too large for one value: read rows instead
            return None
        return columnar.whole_columns(rows, sources, columns, types, self._registry.db.dialect)

    #: Read rows batch by batch from the database cursor (a server-side one on PostgreSQL)
    #: rather than whole columns: what a server streaming a large answer sets, so that the
    #: answer is never whole in its memory.
    streaming = False

    def _column_batches(self) -> Iterator[tuple[list[Sequence[Any]], int]]:
        """The result as batches of columns (one sequence per result column) and their row
        counts, from SQLite's concatenated columns or from SQLAlchemy's rows."""
        if self._empty():
            return
        found = None if self.streaming else self._columns_whole()
        if found is not None:
            arrays, n = found
            index = {c: i for i, c in enumerate(self._built.columns)}
            # a column the query fixes is one value repeated (not a Python string made per row)
            fixed = {} if self._built.parts else self._built.constants
            for start in range(0, n, _BATCH):
                columns: list[Sequence[Any]] = [()] * len(self._built.columns)
                for name, array in arrays.items():
                    columns[index[name]] = ([fixed[name]] * min(_BATCH, n - start) if name in fixed
                                            else _paused_gc(columnar.pylist, array.slice(start, _BATCH)))
                yield columns, min(_BATCH, n - start)
            return
        width = len(self._built.columns)
        for rows in self._batches():
            yield (list(zip(*rows)) if rows else [()] * width), len(rows)

    def _rows(self) -> Iterator[Sequence[Any]]:
        return itertools.chain.from_iterable(self._batches())

    def _batches(self) -> Iterator[list[Sequence[Any]]]:
        """The result rows, in lists of up to ``_BATCH``: a query without an order or a page key
        asked again as the SQL text SQLAlchemy sent the first time, now sent to the driver
        (:func:`columnar.kept_text`), others through SQLAlchemy."""
        if self._empty():
            return
        filters = self._built.region_filters
        db = self._registry.db
        key = (None if self.streaming or self._order or self._after is not None
               else (type(self), "rows", self._limit, self._offset))
        text = None if key is None else columnar.kept_text(self._built.compiled, key)
        with self._executed(key) if text is None else db.driver_read(*text) as result:
            # One driver call and one C-level conversion per batch.
            batches = iter(lambda: _paused_gc(result.fetchmany, _BATCH), [])
            if not filters:
                yield from batches
                return
            built = self._built
            passed = region_tests.passing(itertools.chain.from_iterable(batches), built.region_filters, built.columns,
                                   built.unique_by, self._offset, self._limit)
            while chunk := list(itertools.islice(passed, _BATCH)):
                yield chunk

    @contextlib.contextmanager
    def _executed(self, key: tuple | None = None) -> Iterator[sa.CursorResult]:
        """The statement's result through SQLAlchemy (a server-side cursor when streaming), its
        text kept by ``key`` for the next time (:func:`columnar.keep_text`)."""
        with self._registry.db.reading(cursor=self.streaming) as conn:
            statement = self._statement()
            if self.streaming:
                statement = statement.execution_options(stream_results=True, max_row_buffer=_BATCH)
            result = conn.execute(statement)
            if key is not None:
                columnar.keep_text(self._built.compiled, key, result)
            yield result

    # -- public ---------------------------------------------------------------

    def _stream(self) -> Iterator[Any]:
        # Chained lists: no Python frame per result (a generator's yield costs as much as
        # building a data ID).
        return itertools.chain.from_iterable(self._converted_batches())

    def _converted_batches(self) -> Iterator[list[Any]]:
        convert = self._converter()
        for columns, n in self._column_batches():
            batch = _paused_gc(convert, columns, n)
            yield self._with_records(batch) if self._records and batch else batch

    def _with_records(self, batch: list[Any]) -> list[Any]:
        """``batch`` (data IDs or refs of one group) with each data ID holding its records."""
        refs = isinstance(batch[0], DatasetRef)
        data_ids = [r.data_id for r in batch] if refs else batch
        with_records = self._registry.dimensions.with_records(data_ids)
        if not refs:
            return with_records
        return [r.with_data_id(d) for r, d in zip(batch, with_records)]

    def count(self) -> int:
        """How many results (SQL count unless an exact region test must see the rows).  The
        query's own lookups and a remembered count answer for one reading of the read cache's
        mark."""
        with self._registry.db.read_cache.pinned():
            return self._count()

    def _count(self) -> int:
        if self._built.region_filters or self._limit is not None:
            return sum(1 for _ in self._rows())
        if self._empty():
            return 0
        if self._built.counted is not None and self._after is None:
            def total() -> int:
                with self._registry.db.reading() as conn:
                    return self._registry.datasets.totals.total(conn, *self._built.counted)

            # a sum of a few maintained rows, remembered like a lookup while nothing is committed
            return self._registry.db.read_cache.get(("dataset-count", *self._built.counted), total)
        stmt = self._statement(plain_ids=False)
        if columnar.is_flat(stmt):
            counting = stmt.with_only_columns(sa.func.count(), maintain_column_froms=True)
        else:
            counting = sa.select(sa.func.count()).select_from(stmt.subquery())
        with self._registry.db.reading() as conn:
            return conn.execute(counting).scalar_one()

    def any(self) -> bool:
        """Whether there is at least one result."""
        return next(iter(self.limit(1)._rows()), None) is not None

    def to_arrow(self) -> pa.Table:
        """The results as an Arrow table (one column per result column), built without per-row objects."""
        columns = self._output_columns()
        types = self._arrow_types(columns)
        found = None if self._empty() else self._columns_whole()
        if found is not None:
            table = pa.table(found[0]) if columns else pa.table({})
        else:
            rows = [] if self._empty() else self._plain_rows()
            index = [self._built.columns.index(c) for c in columns]
            values = list(zip(*rows)) if rows else [()] * len(self._built.columns)
            data = {c: _paused_gc(_arrow_array, values[i], None if types is None else types[c])
                    for c, i in zip(columns, index)}
            table = pa.table(data) if columns else pa.table({})
        return self._decorate_arrow(table)

    def arrow_batches(self) -> Iterator[pa.Table]:
        """The results as a sequence of Arrow tables of at most ~10,000 rows each, with the
        columns of :meth:`to_arrow`: what a server streams, so that a large answer is never
        whole in memory as Python objects."""
        columns = self._output_columns()
        types = self._arrow_types(columns)
        index = [self._built.columns.index(c) for c in columns]
        batches = self._column_batches()
        first = next(batches, None)
        if first is None:  # an empty answer still has its columns
            first = ([()] * len(self._built.columns), 0)
        for values, n in itertools.chain([first], batches):
            data = {c: _paused_gc(_arrow_array, values[i] if n else (), None if types is None else types[c])
                    for c, i in zip(columns, index)}
            yield self._decorate_arrow(pa.table(data) if columns else pa.table({}))

    def _arrow_types(self, columns: list[str]) -> dict[str, pa.DataType] | None:
        """The Arrow type of each result column (the same whichever way the rows were read), or
        None to take the types of the values."""
        universe = self._registry.universe
        out = {}
        for c in columns:
            if c in ("dataset_id",):
                out[c] = pa.string()
            elif c in ("run_id", "collection_rank", "dataset_type_index", "validity_begin", "validity_end"):
                out[c] = pa.int64()
            elif c in universe.elements and universe[c].key is not None:
                out[c] = pa.int64() if universe[c].key.type == "int" else pa.string()
            else:
                return None
        return out

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

    def _converter(self) -> Callable[[list[Sequence[Any]], int], list[Any]]:
        """A function of (columns, row count) returning the results of those rows."""
        raise NotImplementedError


_BATCH = 10_000
#: A shared type instance: SQLAlchemy works out the cache key of every new one afresh.
_TEXT = sa.String()

def _paused_gc(function: Any, *args: Any) -> Any:
    """Call ``function`` with the cyclic garbage collector paused (see :mod:`skybutler.batching`):
    only around fetching and converting, never while a caller's code runs between yields."""
    with gc_paused():
        return function(*args)


def _arrow_array(values: Sequence[Any], kind: pa.DataType | None) -> pa.Array:
    if kind is not None and pa.types.is_string(kind) and values and not isinstance(values[0], str):
        values = [None if v is None else str(v) for v in values]  # UUIDs from PostgreSQL's driver
    return pa.array(values, kind)


def implied_lookup(registry: Registry, group: Any, names: tuple[str, ...], columns: list[Sequence[Any]],
                    n: int) -> Callable[[DataCoordinate], dict[str, Any]] | None:
    """For a group with implied dimensions: the look-up that one batch of result data IDs
    (made from ``columns``) shares, which finds the implied values (band,
    physical_filter, day_obs, ...) of the whole batch, with one query per record type,
    the first time any of them is asked for; building the data IDs costs nothing more.
    It holds the batch's columns, never its data IDs (see :class:`~skybutler.dimensions.data_id.RowShape`)."""
    if not group.implied:
        return None
    found: dict[tuple, Any] = {}

    def expand(data_id: DataCoordinate) -> Any:
        if not found:  # the batch's plain data IDs, made again from its columns
            for full in registry.dimensions.expand_many(columnar.data_ids(group, names, columns, n)):
                found[full.required_values] = full.as_dict()
        return found[data_id.required_values]

    return expand


class DataIdQueryResults(QueryResults):
    """Data IDs of a dimension group."""

    def _converter(self):
        group = self._built.group
        cols = self._built.columns
        names = tuple(group.required) + tuple(c for c in cols if c in group.implied)
        index = [cols.index(c) for c in names]
        registry = self._registry

        def convert(columns: list[Sequence[Any]], n: int) -> list[DataCoordinate]:
            values = [columns[i] for i in index]
            return columnar.data_ids(group, names, values, n, implied_lookup(registry, group, names, values, n))

        return convert


class DimensionRecordQueryResults(QueryResults):
    """Records of one dimension element."""

    _column_reads = False

    def _converter(self):
        store, element, cols = self._registry.dimensions, self._element, self._built.columns
        return lambda columns, n: [store.from_row(element, dict(zip(cols, row))) for row in zip(*columns)]

    def __init__(self, registry: Registry, built: BuiltQuery, element: str = "", **kwargs: Any):
        super().__init__(registry, built, **kwargs)
        self._element = element

    def _copy(self, **changes: Any) -> QueryResults:
        args = {"order": self._order, "limit": self._limit, "offset": self._offset, "after": self._after,
                "records": self._records, "recheck": self._recheck, **changes}
        return DimensionRecordQueryResults(self._registry, self._given, element=self._element, **args)

    def order_by(self, *names: str) -> QueryResults:
        """Sort by the element's fields, named as the Rubin butler names them (see
        :func:`.ordering.record_column`)."""
        element = self._registry.universe[self._element]
        return super().order_by(*(ordering.record_column(element, n) for n in names))

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


__all__ = ["DataIdQueryResults", "DimensionRecordQueryResults", "DimensionRecord"]
