"""Calibration datasets in queries: CALIBRATION collections searched by validity range.

A calibration dataset type searched in CALIBRATION collections is read from the union
of its RUN/TAGGED memberships (valid at all times) and its certifications (one row per
validity range), with the validity as two integer TAI-nanosecond columns.  The range
must overlap the query's time: a ``timespan`` given with the query, and the timespan of
the query's exposure (or else visit) when one is named anywhere in it, which is how a
query asks "the calibration valid during this exposure".  Without a time, a find-first
search is refused (several ranges would compete); without find-first, every
certification is listed with its validity.

With find-first, the first collection of the search path that has a valid calibration
wins for each data ID (and each exposure or visit); two valid ones in that collection
are an ambiguity, reported by :class:`~skybutler.errors.CalibrationLookupError` with
the candidates, never settled silently.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from ..dimensions import DataCoordinate, DimensionGroup
from ..errors import CalibrationLookupError, CalibrationTimeError
from ..models import CollectionType, DatasetRef, DatasetType
from ..registry import Registry
from ..timespan import NS_MAX, NS_MIN, Timespan
from .joins import JoinBuilder

#: The dimensions whose timespan a calibration's validity is matched with, most specific first.
TEMPORAL_DIMENSIONS = ("exposure", "visit")


def calibration_ids(dtype: DatasetType, ids: Sequence[tuple[int, CollectionType]]) -> list[int]:
    """The CALIBRATION collections of a search path that can hold ``dtype``."""
    if not dtype.is_calibration:
        return []
    return [cid for cid, kind in ids if kind is CollectionType.CALIBRATION]


def membership(registry: Registry, dtype: DatasetType, type_id: int, run_ids: list[int],
               calib_ids: list[int]) -> sa.Subquery:
    """RUN/TAGGED membership (valid always) and certifications of ``dtype`` as one relation
    with ``validity_begin``/``validity_end`` columns."""
    group = registry.dataset_types.group(dtype)
    dims = list(group.required)
    tags = registry.schema.tags_table(group)
    calibs = registry.schema.calibs_table(group)
    parts = [sa.select(calibs.c.collection_id, calibs.c.dataset_id, *[calibs.c[d] for d in dims],
                       calibs.c.validity_begin, calibs.c.validity_end)
             .where(calibs.c.dataset_type_id == type_id, calibs.c.collection_id.in_(calib_ids))]
    if run_ids:
        parts.insert(0, sa.select(tags.c.collection_id, tags.c.dataset_id, *[tags.c[d] for d in dims],
                                  sa.literal(NS_MIN, sa.BigInteger).label("validity_begin"),
                                  sa.literal(NS_MAX, sa.BigInteger).label("validity_end"))
                     .where(tags.c.dataset_type_id == type_id, tags.c.collection_id.in_(run_ids)))
    return (sa.union_all(*parts) if len(parts) > 1 else parts[0]).subquery(f"calib_{dtype.name}")


def temporal_dimension(names: Sequence[str]) -> str | None:
    """The dimension whose timespan a calibration must be valid during, if the query has one."""
    return next((d for d in TEMPORAL_DIMENSIONS if d in names), None)


def validity_conditions(joins: JoinBuilder, member: sa.FromClause, names: Sequence[str],
                        timespan: tuple[int, int] | None) -> tuple[list[sa.ColumnElement], str | None]:
    """Conditions that a membership row's validity overlaps the query's time (half-open),
    and the temporal dimension they use (None if only ``timespan`` or nothing applies)."""
    begin, end = member.c.validity_begin, member.c.validity_end
    out: list[sa.ColumnElement] = []
    if timespan is not None:
        t0, t1 = timespan
        out += [begin < (t1 if t1 > t0 else t0 + 1), end > t0]
    element = temporal_dimension(names)
    if element is not None:
        table = joins.join_element(element)
        out += [begin < table.c.timespan_end, table.c.timespan_begin < end]
    return out, element


def exists_valid(registry: Registry, joins: JoinBuilder, dtype: DatasetType, type_id: int, run_ids: list[int],
                 calib_ids: list[int], names: Sequence[str], timespan: tuple[int, int] | None) -> sa.ColumnElement:
    """EXISTS a ``dtype`` dataset for the query's data ID, valid at the query's time."""
    member = membership(registry, dtype, type_id, run_ids, calib_ids)
    group = registry.dataset_types.group(dtype)
    cond, _ = validity_conditions(joins, member, names, timespan)
    cond += [member.c[d] == joins.ensure(d) for d in group.required]
    return sa.exists(sa.select(sa.literal(1)).select_from(member).where(*cond))


def ambiguity_check(stmt: sa.Select, partition: list[str]) -> sa.Select:
    """Rows of ``stmt`` (with ``collection_rank``) that tie in the first collection holding
    one for their partition: more than one calibration valid there.  Two certifications of
    one data ID in one collection never overlap, so they differ in ``validity_begin``; rows
    that repeat one certification (an exposure in two visits) do not."""
    cols = stmt.selected_columns
    keys = [cols[d] for d in partition]
    at_rank = [*keys, cols["collection_rank"]]
    inner = stmt.add_columns(
        sa.func.min(cols["collection_rank"]).over(partition_by=keys).label("best_rank"),
        sa.func.min(cols["validity_begin"]).over(partition_by=at_rank).label("first_begin"),
        sa.func.max(cols["validity_begin"]).over(partition_by=at_rank).label("last_begin"),
    ).subquery("tied")
    return (sa.select(inner).where(inner.c.collection_rank == inner.c.best_rank,
                                   inner.c.first_begin != inner.c.last_begin).distinct().limit(20))


def raise_if_ambiguous(registry: Registry, dtype: DatasetType, check: sa.Select, partition: list[str]) -> None:
    """Run an :func:`ambiguity_check`; an ambiguous lookup raises, naming the candidates."""
    with registry.db.reading() as conn:
        rows = conn.execute(check).mappings().all()
    if not rows:
        return
    first = {d: rows[0][d] for d in partition}
    tied = [r for r in rows if all(r[d] == first[d] for d in partition)]
    candidates = [f"{r['dataset_id']} valid {Timespan.from_ns(r['validity_begin'], r['validity_end'])}"
                  for r in tied]
    raise CalibrationLookupError(
        f"{dtype.name} for {first}: {len(tied)} calibrations are valid at the query's time in one collection: "
        + "; ".join(candidates) + ". Give a narrower timespan, or find_first=False to list them all")


def require_time(dtype: DatasetType, calib_names: list[str], element: str | None,
                 timespan: tuple[int, int] | None) -> None:
    if element is None and timespan is None:
        raise CalibrationTimeError(
            f"{dtype.name} is searched in CALIBRATION collection(s) {', '.join(calib_names)} with find_first: "
            "give a timespan (query-datasets --valid-at), or name an exposure or visit in the query (the "
            "calibration valid during it), or pass find_first=False (--no-find-first, the Rubin command's "
            "default) to list every certified one with its validity range")


@dataclass(frozen=True)
class CalibrationMatch:
    """One data ID of a calibration query and the calibration of each type valid for it
    (None where there is none)."""

    data_id: DataCoordinate
    refs: dict[str, DatasetRef | None]
    validity: dict[str, Timespan | None]


class CalibrationQueryResults:
    """For each data ID of a query (an exposure and detector, say), the calibrations of the
    given types valid during it: one find-first query per calibration type, merged by data ID."""

    def __init__(self, registry: Registry, group: DimensionGroup, data_ids: Any, per_type: dict[str, Any]):
        self._registry = registry
        self._group = group
        self._data_ids = data_ids
        self._per_type = per_type

    def _matches(self) -> list[CalibrationMatch]:
        found: dict[str, dict[tuple, tuple[DatasetRef, Timespan]]] = {}
        for name, results in self._per_type.items():
            found[name] = {}
            for data_id, ref, span in results.rows_with_validity(self._group):
                found[name][data_id.required_values] = (ref, span)
        out = []
        for data_id in self._data_ids:
            key = data_id.required_values
            hits = {name: found[name].get(key) for name in self._per_type}
            out.append(CalibrationMatch(data_id, {n: h[0] if h else None for n, h in hits.items()},
                                        {n: h[1] if h else None for n, h in hits.items()}))
        return out

    def __iter__(self) -> Iterator[CalibrationMatch]:
        return iter(self._matches())

    def to_arrow(self) -> pa.Table:
        """One row per data ID: its dimensions, then per calibration type its dataset ID,
        RUN and validity (ISO TAI, empty for an unbounded side)."""
        matches = self._matches()
        columns: dict[str, list[Any]] = {d: [m.data_id[d] for m in matches] for d in self._group.required}
        for name in self._per_type:
            refs = [m.refs[name] for m in matches]
            spans = [m.validity[name] for m in matches]
            columns[f"{name}_id"] = [None if r is None else str(r.id) for r in refs]
            columns[f"{name}_run"] = [None if r is None else r.run for r in refs]
            columns[f"{name}_valid_from"] = [None if s is None or s.begin is None else s.begin.tai.isot for s in spans]
            columns[f"{name}_valid_until"] = [None if s is None or s.end is None else s.end.tai.isot for s in spans]
        return pa.table(columns)
