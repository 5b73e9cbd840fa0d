"""``with butler.query() as q:``: the Rubin butler's query context, answered by skybutler's
``query_datasets``, ``query_data_ids`` and ``query_dimension_records``.

``q.datasets(type, collections)``, ``q.data_ids(dimensions)`` and
``q.dimension_records(element)`` give results that take ``where(...)`` (strings, data IDs
and data-ID keywords, each narrowing further), ``order_by``, ``limit``,
``with_dimension_records`` and ``find_first``, and run when iterated, counted or asked
``any()``; ``q.where(...)`` narrows every result made from the query it returns.  Each result is
one call of a public Butler method, so it answers the same through a server.  The parts of the
Rubin query system built on expression objects (``expression_factory``, ``join_*``, ``general``)
are refused by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .errors import NotOfferedError, QueryError

if TYPE_CHECKING:
    from .butler import Butler


def _refused(what: str, instead: str) -> NotOfferedError:
    return NotOfferedError(f"{what} is not offered by skybutler; use {instead}")


@dataclasses.dataclass(frozen=True)
class _Constraints:
    """What ``where`` calls gave: where-clauses (AND-ed), bind values and data-ID values."""

    clauses: tuple[str, ...] = ()
    bind: tuple[tuple[str, Any], ...] = ()
    data_id: tuple[tuple[str, Any], ...] = ()

    def narrowed(self, args: tuple[Any, ...], bind: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> _Constraints:
        clauses, data_id, binds = list(self.clauses), dict(self.data_id), dict(self.bind)
        for arg in args:
            if isinstance(arg, str):
                clauses += [arg] if arg.strip() else []
            elif isinstance(arg, Mapping) or hasattr(arg, "required"):
                data_id.update(dict(getattr(arg, "mapping", arg)))
            else:
                raise _refused(f"where() with {type(arg).__name__} expressions",
                               "a where-clause string (the Rubin butler's expression language), with bind=")
        for name, value in {**(bind or {}), **kwargs}.items():
            target = binds if bind and name in bind else data_id
            if name in target and target[name] != value:
                raise QueryError(f"where(): {name!r} given twice, as {target[name]!r} and {value!r}")
            target[name] = value
        return _Constraints(tuple(clauses), tuple(binds.items()), tuple(data_id.items()))

    def where(self) -> str:
        return " AND ".join(f"({c})" for c in self.clauses)


class _Results:
    """Results of one kind, run by ``butler.<method>`` when read; each call returns a new one."""

    _method = ""

    def __init__(self, butler: Butler, target: Any, constraints: _Constraints, options: Mapping[str, Any]):
        self._butler = butler
        self._target = target
        self._constraints = constraints
        self._options = dict(options)

    def _with(self, constraints: _Constraints | None = None, **options: Any) -> Any:
        return type(self)(self._butler, self._target, constraints or self._constraints, {**self._options, **options})

    def where(self, *args: Any, bind: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """Narrowed by where-clauses, data IDs and data-ID keywords (``bind`` for ``:name``s)."""
        return self._with(self._constraints.narrowed(args, bind, kwargs))

    def order_by(self, *names: str) -> Any:
        return self._with(order_by=[n for arg in names for n in ([arg] if isinstance(arg, str) else arg)])

    def limit(self, limit: int | None = None) -> Any:
        return self._with(limit=limit)

    def _run(self) -> Any:
        c = self._constraints
        return getattr(self._butler, self._method)(self._target, where=c.where(), bind=dict(c.bind),
                                                   data_id=dict(c.data_id), **self._options)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._run())

    def count(self, *, exact: bool = True, discard: bool = False) -> int:
        return self._run().count()

    def any(self, *, execute: bool = True, exact: bool = True) -> bool:
        return self._run().any()

    def explain_no_results(self, execute: bool = True) -> list[str]:
        return list(self._run().explain())


class DataIdResults(_Results):
    """Data IDs (``q.data_ids(dimensions)``)."""

    _method = "query_data_ids"

    def with_dimension_records(self) -> DataIdResults:
        return self._with(with_dimension_records=True)

    @property
    def dimensions(self) -> Any:
        return self._butler.universe.group(self._target)


class DatasetRefResults(_Results):
    """Dataset refs of one dataset type (``q.datasets(type, collections)``)."""

    _method = "query_datasets"

    def with_dimension_records(self) -> DatasetRefResults:
        return self._with(with_dimension_records=True)

    @property
    def dataset_type(self) -> Any:
        return self._butler.get_dataset_type(self._target)

    @property
    def data_ids(self) -> DataIdResults:
        """The data IDs of these datasets (the dataset type's dimensions)."""
        dims = list(self.dataset_type.dimensions)
        return DataIdResults(self._butler, dims, self._constraints,
                             {"datasets": [self._target], "collections": self._options.get("collections")})


class DimensionRecordResults(_Results):
    """Dimension records of one element (``q.dimension_records(element)``)."""

    _method = "query_dimension_records"


class Query:
    """The Rubin butler's query object: makes results, each narrowed by this query's ``where``."""

    def __init__(self, butler: Butler, constraints: _Constraints | None = None):
        self._butler = butler
        self._constraints = constraints or _Constraints()

    def where(self, *args: Any, bind: Mapping[str, Any] | None = None, **kwargs: Any) -> Query:
        return Query(self._butler, self._constraints.narrowed(args, bind, kwargs))

    def datasets(self, dataset_type: Any, collections: str | Iterable[str] | None = None, *,
                 find_first: bool = True) -> DatasetRefResults:
        name = dataset_type if isinstance(dataset_type, str) else dataset_type.name
        collections = [collections] if isinstance(collections, str) else collections
        return DatasetRefResults(self._butler, name, self._constraints,
                                 {"collections": None if collections is None else list(collections),
                                  "find_first": find_first})

    def data_ids(self, dimensions: Any = None) -> DataIdResults:
        if dimensions is None:
            raise _refused("data_ids() without dimensions", "data_ids(['visit', 'detector'])")
        dims = [dimensions] if isinstance(dimensions, str) else list(getattr(dimensions, "names", dimensions))
        return DataIdResults(self._butler, dims, self._constraints, {})

    def dimension_records(self, element: str) -> DimensionRecordResults:
        return DimensionRecordResults(self._butler, element, self._constraints, {})

    def __getattr__(self, name: str) -> Any:
        if name in _INSTEAD:
            raise _refused(f"Query.{name}", _INSTEAD[name])
        raise AttributeError(f"the query object has no {name!r}")


#: Parts of the Rubin query object not offered, and what to use instead.
_INSTEAD = {
    "expression_factory": "a where-clause string (the Rubin butler's expression language), with bind=",
    "join_dimensions": "data_ids(dimensions) naming every dimension wanted",
    "join_data_coordinates": "where(data_id) or a where-clause with IN (...) and bind=",
    "join_dataset_search": "datasets(...) or data_ids(...) with butler.query_data_ids(..., datasets=...)",
    "general": "data_ids(...).with_dimension_records() or datasets(...).with_dimension_records()",
    "materialize": "the results themselves (each read runs the query again)",
}


@contextlib.contextmanager
def rubin_query(butler: Butler) -> Iterator[Query]:
    """``with butler.query() as q:`` -- a :class:`Query` on ``butler``."""
    yield Query(butler)
