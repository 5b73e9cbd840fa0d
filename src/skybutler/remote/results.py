"""Query results of a remote butler: the same methods as a local butler's results
(iteration, ``count``, ``any``, ``order_by``, ``limit``, ``after``, ``to_arrow``, ``explain``),
each one request to the server, whose answer is read as it streams in."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import QueryError, ServerError
from ..query.list_habits import ListHabits
from . import wire
from .wire import raise_error

if TYPE_CHECKING:
    import pyarrow as pa

    from ..query.builder import QuerySpec
    from .client import RemoteTransport


class RemoteQueryResults(ListHabits):
    """The results of one query spec on a server."""

    def __init__(self, transport: RemoteTransport, spec: QuerySpec, order: tuple[str, ...] = (),
                 limit: int | None = None, offset: int = 0, after: tuple[Any, ...] | None = None,
                 records: bool = False):
        self._transport = transport
        self._records = records
        self._spec = spec
        self._order = order
        self._limit = limit
        self._offset = offset
        self._after = after

    def _body(self) -> dict[str, Any]:
        fields = self._spec.model_dump(mode="python")
        fields["bind"] = wire.encode(fields["bind"])
        fields["data_id"] = wire.encode(fields["data_id"])
        body = {"spec": fields, "order": list(self._order), "limit": self._limit, "offset": self._offset}
        if self._after is not None:
            body["after"] = [_key_json(v) for v in self._after]
        if self._records:
            body["records"] = True
        return body

    def _copy(self, **changes: Any) -> RemoteQueryResults:
        args = {"order": self._order, "limit": self._limit, "offset": self._offset, "after": self._after,
                "records": self._records, **changes}
        return type(self)(self._transport, self._spec, **args)

    def order_by(self, *names: str) -> RemoteQueryResults:
        """Sort by result columns (dimension names); a leading ``-`` sorts descending."""
        return self._copy(order=tuple(names))

    def with_dimension_records(self) -> RemoteQueryResults:
        """The same results, each data ID (a ref's too) holding its records, sent with it."""
        return self._copy(records=True)

    def limit(self, limit: int, offset: int = 0) -> RemoteQueryResults:
        """At most ``limit`` results, after skipping ``offset``."""
        if limit < 0 or offset < 0:
            raise QueryError("limit and offset must not be negative")
        return self._copy(limit=limit, offset=offset)

    def after(self, key: Any) -> RemoteQueryResults:
        """The results that follow ``key`` in this order (keyset paging; the order ends with
        ``dataset_id``): checked by the server, as a local butler checks it."""
        return self._copy(after=tuple(key))

    def _stream(self) -> Iterator[Any]:
        convert = self._converter()
        count = 0
        for line in self._transport.stream_lines("query/rows", self._body()):
            item = json.loads(line)
            if "$end" in item:
                if item["$end"] != count:
                    break
                return
            if "$error" in item:
                raise_error(item["$error"], item.get("message", ""))
            count += 1
            yield convert(item)
        raise ServerError(f"the server's answer was cut short after {count} results")

    def count(self) -> int:
        return self._transport.post_json("query/count", self._body())

    def any(self) -> bool:
        return self._transport.post_json("query/any", self._body())

    def explain(self) -> list[str]:
        """Reasons the query returns nothing (empty if it returns rows)."""
        return self._transport.post_json("query/explain", self._body())

    def to_arrow(self) -> pa.Table:
        return self._transport.arrow("query/arrow", self._body())

    def to_astropy(self) -> Any:
        from astropy.table import Table

        return Table(self.to_arrow().to_pydict())

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()

    def _converter(self) -> Any:
        raise NotImplementedError


class RemoteDataIdQueryResults(RemoteQueryResults):
    def _converter(self) -> Any:
        from ..dimensions import DataCoordinate

        universe = self._transport.universe
        group = universe.group(self._spec.dimensions)
        names = group.names
        if not self._records:
            return lambda values: DataCoordinate(group, {n: values[n] for n in names if n in values})
        return lambda values: wire.with_records(DataCoordinate(group, {n: values[n] for n in names if n in values}),
                                                values["$records"], universe)


class RemoteDatasetQueryResults(RemoteQueryResults):
    def _converter(self) -> Any:
        if not self._records:
            return self._transport.ref_from_json
        universe = self._transport.universe

        def convert(item: dict[str, Any]) -> Any:
            ref = self._transport.ref_from_json(item)
            if "records" not in item:  # a ref an embargo put in place of a hidden one: looked up alone
                return ref
            return ref.with_data_id(wire.with_records(ref.data_id, item["records"], universe))

        return convert

    def with_validity(self) -> list[tuple[Any, Any]]:
        """Each result with the validity range it was found with in a CALIBRATION collection
        (None when found in a RUN or TAGGED one), as a local butler's results give them: read
        from the answer's table, whose bounds are exact TAI times."""
        from astropy.time import Time

        from ..timespan import Timespan

        out = []
        for row in self.to_arrow().to_pylist():
            name = row.get("dataset_type") or self._spec.dataset_types[0]
            names = self._transport.get_dataset_type(name).group(self._transport.universe).names
            item = {"id": row["dataset_id"], "dataset_type": name, "run": row["run"],
                    "data_id": {n: row[n] for n in names if row.get(n) is not None}}
            begin, end = row.get("validity_begin"), row.get("validity_end")
            span = None if begin is None and end is None else Timespan(
                None if begin is None else Time(begin, scale="tai"), None if end is None else Time(end, scale="tai"))
            out.append((self._transport.ref_from_json(item), span))
        return out


class RemoteDimensionRecordQueryResults(RemoteQueryResults):
    def _converter(self) -> Any:
        from ..dimensions import DimensionRecord

        element = self._transport.universe[self._spec.element]
        return lambda values: DimensionRecord(element, wire.decode(values))


def results_for(transport: RemoteTransport, spec: QuerySpec) -> RemoteQueryResults:
    kind = {"datasets": RemoteDatasetQueryResults, "records": RemoteDimensionRecordQueryResults}
    return kind.get(spec.kind, RemoteDataIdQueryResults)(transport, spec)


class RemoteCalibrationResults:
    """``query_calibrations`` answered by a server: the matches it sent, with the local results'
    iteration and ``to_arrow``."""

    def __init__(self, group: Any, names: tuple[str, ...], matches: list[Any]):
        from ..query.calibrations import CalibrationQueryResults

        self._local = CalibrationQueryResults(None, group, [], dict.fromkeys(names))  # type: ignore[arg-type]
        self._local._matches = lambda: matches  # type: ignore[method-assign]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._local._matches())

    def to_arrow(self) -> pa.Table:
        return self._local.to_arrow()


def calibration_results(transport: RemoteTransport, names: tuple[str, ...], dimensions: tuple[str, ...],
                        answer: list[dict[str, Any]]) -> RemoteCalibrationResults:
    """The server's answer to a calibration query as matches of refs, data IDs and validities."""
    from ..dimensions import DataCoordinate
    from ..query.calibrations import CalibrationMatch

    group = transport.universe.group(dimensions)
    matches = []
    for item in answer:
        values = wire.decode(item["data_id"])
        matches.append(CalibrationMatch(
            DataCoordinate(group, {n: values[n] for n in group.names if n in values}),
            {n: None if r is None else transport.ref_from_json(r) for n, r in item["refs"].items()},
            {n: wire.decode(v) for n, v in item["validity"].items()}))
    return RemoteCalibrationResults(group, names, matches)


def _key_json(value: Any) -> Any:
    """A keyset value as JSON carries it: a dataset ID as text, a time (a validity bound) as
    its exact TAI nanoseconds."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if type(value).__module__.startswith("astropy.time"):
        from ..timespan import time_to_ns

        return time_to_ns(value)
    return value
