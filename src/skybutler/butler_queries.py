"""The query methods of the Butler: a where-clause, a dataset type or an element becomes a
:class:`~skybutler.query.builder.QuerySpec`, which the query machinery (or, for a butler
opened on a server URL, the server) answers.

:class:`QueryMethods` is a base of :class:`~skybutler.Butler`; it uses the butler's
registry, default collections and data ID, and nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import QueryError
from .remote.served import served as _served
from .timespan import Timespan, as_timespan

if TYPE_CHECKING:
    from astropy.time import Time

    from .query.builder import QuerySpec
    from .query.calibrations import CalibrationQueryResults
    from .query.dataset_results import DatasetQueryResults
    from .query.results import DataIdQueryResults, DimensionRecordQueryResults


#: The characters that make a collection name a glob pattern.
_GLOB = frozenset("*?[")


def _span_ns(timespan: Timespan | Time | None) -> tuple[int, int] | None:
    """A query's time as integer TAI nanoseconds [begin, end); a time is an instant (begin == end)."""
    span = as_timespan(timespan)
    return None if span is None else span.to_ns()


def _shaped(results: Any, order_by: str | Sequence[str] | None, limit: int | None, what: str,
            with_dimension_records: bool = False) -> Any:
    """``results`` ordered and limited as the Rubin butler's query methods take it: ``order_by``
    a name or names (``-`` for descending), ``limit`` at most that many (0: none), a negative
    one at most ``-limit`` with a warning logged when there are more, None no limit; with
    ``with_dimension_records`` each data ID holds its records.  Its ``explain`` is taken and
    does nothing: an empty answer is an empty result here, and ``results.explain()`` says why."""
    if order_by is not None:
        results = results.order_by(*([order_by] if isinstance(order_by, str) else order_by))
    if with_dimension_records:
        results = results.with_dimension_records()
    if limit is None:
        return results
    if limit >= 0:
        return results.limit(limit)
    if results.limit(-limit + 1).count() > -limit:
        logging.getLogger("skybutler.query").warning("More %s are available than the requested limit of %d.",
                                                     what, -limit)
    return results.limit(-limit)


class QueryMethods:
    """Queries of data IDs, datasets, dimension records and calibrations (a base of ``Butler``)."""

    _remote: Any

    def _orders_by_implied(self, order_by: str | Sequence[str] | None) -> bool:
        """Whether ``order_by`` names a dimension that elements imply (``band``, ``-day_obs``):
        the implied dimensions are then made columns of the query, so that it can be ordered
        by one the results only imply (ordering by ``visit`` joins nothing more)."""
        names = [order_by] if isinstance(order_by, str) else list(order_by or ())
        implied = {d for element in self.universe.elements.values() for d in element.implies}
        return any(n.lstrip("-") in implied for n in names)

    def _query_spec(self, **fields: Any) -> QuerySpec:
        # The query machinery (pyarrow, lark, sphgeom) loads with the first query, not with the
        # Butler: a command that lists collections never pays for it.
        from .query.builder import QuerySpec

        collections = fields.pop("collections", None)
        if collections is not None or fields.get("kind") == "datasets" or fields.get("datasets"):
            collections = self._search_path(collections)
        data_id = {**self.default_data_id, **(fields.pop("data_id", None) or {})}
        if "with_dimension_records" in data_id:
            raise QueryError("with_dimension_records= is taken by query_data_ids and query_datasets; "
                             "query_dimension_records gives records already")
        return QuerySpec(collections=tuple(collections or ()), data_id=data_id,
                         **{k: v for k, v in fields.items() if v is not None})

    def query_data_ids(self, dimensions: Iterable[str] | str, where: str = "", *, bind: Mapping[str, Any] | None = None,
                       datasets: Iterable[str] | str | None = None, collections: str | Sequence[str] | None = None,
                       data_id: Mapping[str, Any] | None = None, with_implied: bool = False,
                       order_by: str | Sequence[str] | None = None, limit: int | None = None, explain: bool = False,
                       with_dimension_records: bool = False, **kwargs: Any) -> DataIdQueryResults:
        """Data IDs of ``dimensions`` matching a where-clause (and having ``datasets`` in ``collections``).
        ``order_by``, ``limit``, ``explain`` and ``with_dimension_records`` are the Rubin
        butler's (see :func:`_shaped`)."""
        dims = (dimensions,) if isinstance(dimensions, str) else tuple(dimensions)
        spec = self._query_spec(kind="data_ids", dimensions=dims, where=where, bind=dict(bind or {}),
                                datasets=(datasets,) if isinstance(datasets, str) else tuple(datasets or ()),
                                collections=collections, data_id={**(data_id or {}), **kwargs},
                                with_implied=with_implied or self._orders_by_implied(order_by))
        return _shaped(self.query(spec), order_by, limit, "data IDs", with_dimension_records)

    def query_datasets(self, dataset_type: str | Sequence[str], where_or_collections: Any = "", /, *,
                       where: str | None = None,
                       collections: str | Sequence[str] | None = None, find_first: bool = True,
                       bind: Mapping[str, Any] | None = None, data_id: Mapping[str, Any] | None = None,
                       states: str | Iterable[str] | None = None, timespan: Timespan | Time | None = None,
                       order_by: str | Sequence[str] | None = None, limit: int | None = None, explain: bool = False,
                       with_dimension_records: bool = False, **kwargs: Any) -> DatasetQueryResults:
        """References to datasets of one type, or of several types with the same dimensions,
        in ``collections`` matching a where-clause; with ``find_first`` only the first
        collection's dataset per data ID (for each type).  ``states`` keeps only datasets in
        these retention states (stored, cold, purged-recomputable, purged-lost); by default
        every registered dataset is returned.

        The second argument is the where-clause, or, in the Rubin butler's order, the
        collections: a list of them, ``...``, a string that names a collection (or is a glob
        matching some), or any string when ``where=`` is given too.

        A calibration type in CALIBRATION collections: without ``find_first`` every
        certification is listed (``with_validity()`` gives each one's range); with it, the
        one valid at ``timespan``, or during the exposure or visit the query names.
        ``order_by`` (dimensions, element fields, and the dataset's ``ingest_date``, ``run``,
        ``<type>.timespan.begin``), ``limit``, ``explain`` and ``with_dimension_records`` are
        the Rubin butler's (see :func:`_shaped`)."""
        types = (dataset_type,) if isinstance(dataset_type, str) else tuple(dataset_type)
        if not types:
            raise QueryError("query_datasets needs at least one dataset type")
        where, collections = self._where_and_collections(where_or_collections, where, collections)
        collections = self._expand_wildcards(collections, find_first)
        spec = self._query_spec(kind="datasets", dataset_types=types, where=where, bind=dict(bind or {}),
                                collections=collections, find_first=find_first, timespan=_span_ns(timespan),
                                data_id={**(data_id or {}), **kwargs}, with_implied=self._orders_by_implied(order_by),
                                states=None if states is None else tuple([states] if isinstance(states, str)
                                                                         else states))
        return _shaped(self.query(spec), order_by, limit, "datasets", with_dimension_records)

    def _where_and_collections(self, second: Any, where: str | None, collections: Any) -> tuple[str, Any]:
        """The where-clause and collections of a ``query_datasets`` whose second positional
        argument is either (see its docstring): skybutler's order puts the where-clause there,
        the Rubin butler's the collections."""
        if second is None or (isinstance(second, str) and not second):
            return where or "", collections
        if isinstance(second, str) and where is None and not self._names_collections(second):
            return second, collections
        if collections is not None:
            raise QueryError(f"collections given twice: {second!r} and collections={collections!r}")
        return where or "", second

    def _names_collections(self, text: str) -> bool:
        """Whether ``text`` is the name of a collection, or a glob that matches one."""
        if _GLOB.isdisjoint(text):
            return self.collections.exists(text)
        return bool(self.collections.query(text))

    def _expand_wildcards(self, collections: Any, find_first: bool) -> Any:
        """Collections with each glob (``Cam/*``) or ``...`` (every collection) replaced by the
        collections it matches, as the Rubin butler allows without find-first; with it they are
        refused, since a search order would be made up."""
        items = [collections] if isinstance(collections, str) or collections is ... else collections
        if items is None or not any(c is ... or not _GLOB.isdisjoint(c) for c in items):
            return collections
        if find_first:
            raise QueryError(f"collection wildcards ({', '.join('...' if c is ... else repr(c) for c in items)}) "
                             "need find_first=False: a find-first search follows an order the user gives")
        names: list[str] = []
        for item in items:
            if item is not ... and _GLOB.isdisjoint(item):
                names.append(item)
            else:
                names += sorted(c.name for c in self.collections.query("*" if item is ... else item))
        if not names:
            raise QueryError(f"no collection matches {', '.join('...' if c is ... else repr(c) for c in items)}")
        return list(dict.fromkeys(names))

    @_served
    def query_calibrations(self, dataset_types: str | Sequence[str], dimensions: Iterable[str], where: str = "", *,
                           datasets: Iterable[str] | str | None = None,
                           collections: str | Sequence[str] | None = None, bind: Mapping[str, Any] | None = None,
                           data_id: Mapping[str, Any] | None = None, **kwargs: Any) -> CalibrationQueryResults:
        """For each data ID of ``dimensions`` (e.g. ``["exposure", "detector"]``, with
        ``datasets="raw"`` to keep those with a raw), the calibration of each of
        ``dataset_types`` valid during its exposure or visit, found first in ``collections``.
        An ambiguous lookup raises :class:`~skybutler.errors.CalibrationLookupError`."""
        names = (dataset_types,) if isinstance(dataset_types, str) else tuple(dataset_types)
        dims = tuple(dimensions)
        data_ids = self.query_data_ids(dims, where, bind=bind, datasets=datasets, collections=collections,
                                       data_id=data_id, **kwargs)
        from .query.builder import build as build_query
        from .query.calibrations import CalibrationQueryResults
        from .query.dataset_results import DatasetQueryResults

        per_type = {}
        for name in names:
            spec = self._query_spec(kind="datasets", dataset_types=(name,), dimensions=dims, where=where,
                                    bind=dict(bind or {}), collections=collections, find_first=True,
                                    data_id={**(data_id or {}), **kwargs})
            per_type[name] = DatasetQueryResults(self.registry, build_query(self.registry, spec))
        return CalibrationQueryResults(self.registry, data_ids._built.group, data_ids, per_type)

    def query_dimension_records(self, element: str, where: str = "", *, bind: Mapping[str, Any] | None = None,
                                data_id: Mapping[str, Any] | None = None,
                                datasets: Iterable[str] | str | None = None,
                                collections: str | Sequence[str] | None = None,
                                order_by: str | Sequence[str] | None = None, limit: int | None = None,
                                explain: bool = False, **kwargs: Any) -> DimensionRecordQueryResults:
        """Records of one dimension element matching a where-clause (and, as in
        :meth:`query_data_ids`, related to ``datasets`` in ``collections``).  ``order_by``,
        ``limit`` and ``explain`` are the Rubin butler's (see :func:`_shaped`)."""
        spec = self._query_spec(kind="records", element=element, where=where, bind=dict(bind or {}),
                                datasets=(datasets,) if isinstance(datasets, str) else tuple(datasets or ()),
                                collections=collections, data_id={**(data_id or {}), **kwargs})
        return _shaped(self.query(spec), order_by, limit, "records")

    def query(self, spec: QuerySpec | None = None) -> Any:
        """Run the query a :class:`~skybutler.query.builder.QuerySpec` describes: what
        ``query_data_ids``, ``query_datasets`` and ``query_dimension_records`` build, and
        what a remote client sends its server.  Without a spec, the Rubin butler's query
        context: ``with butler.query() as q: q.datasets(...).where(...)`` (see ``rubin_query.py``)."""
        if spec is None:
            from .rubin_query import rubin_query

            return rubin_query(self)
        return self._run_spec(spec)

    def _run_spec(self, spec: QuerySpec) -> DataIdQueryResults | DatasetQueryResults | DimensionRecordQueryResults:
        if self._remote is not None:  # the server runs it (its transport's ``query``)
            return self._remote.query(spec)
        # The query machinery (pyarrow, lark, sphgeom) loads with the first query, not with the
        # Butler: a command that lists collections never pays for it.
        from .query.builder import build as build_query
        from .query.builder import build_checked_later
        from .query.dataset_results import DatasetQueryResults
        from .query.results import DataIdQueryResults, DimensionRecordQueryResults

        if spec.kind == "datasets" and spec.states is not None:
            built = self.registry.states.filter_query(build_query(self.registry, spec), spec.states)
            return DatasetQueryResults(self.registry, built)
        # a remembered query is checked when it is run (one reading of the read cache's mark)
        built, recheck = build_checked_later(self.registry, spec)
        if spec.kind == "datasets":
            return DatasetQueryResults(self.registry, built, recheck=recheck)
        if spec.kind == "records":
            return DimensionRecordQueryResults(self.registry, built, element=spec.element or "", recheck=recheck)
        return DataIdQueryResults(self.registry, built, recheck=recheck)
