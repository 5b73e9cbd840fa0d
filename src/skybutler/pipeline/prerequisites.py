"""Set-based lookup of prerequisite inputs (calibrations and other existing datasets).

Instead of one ``find_dataset`` per quantum, every collection of the input search path
is read once per dataset type -- a CALIBRATION collection's validity ranges, a RUN's or
TAGGED collection's datasets -- and each wanted (data ID, observation time) is then
matched in Python, in search order, with a cache.  The result is what ``find_dataset``
with the observation timespan would return for each quantum.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..models import CollectionType, DatasetType
from .errors import QuantumGraphError

if TYPE_CHECKING:
    from ..butler import Butler

Key = tuple
Span = tuple[int, int] | None


class PrerequisiteFinder:
    """Finds prerequisite datasets for many data IDs with one query per collection and type."""

    def __init__(self, butler: Butler, collections: Sequence[str]):
        self.butler = butler
        self.path = [(name, butler.collections.info(name).type) for name in butler.collections.flatten(collections)]
        self._tables: dict[str, list[tuple[str, CollectionType, dict]]] = {}
        self._cache: dict[tuple[str, Key, Span], uuid.UUID | None] = {}

    def _load(self, dtype: DatasetType) -> list[tuple[str, CollectionType, dict]]:
        tables = self._tables.get(dtype.name)
        if tables is not None:
            return tables
        tables = []
        for name, kind in self.path:
            if kind is CollectionType.CALIBRATION:
                if not dtype.is_calibration:
                    continue
                ranges: dict[Key, list[tuple[int, int, uuid.UUID]]] = {}
                for ref, span in self.butler.collections.validity(name, dtype.name):
                    ranges.setdefault(ref.data_id.required_values, []).append((*span.to_ns(), ref.id))
                tables.append((name, kind, ranges))
            elif kind in (CollectionType.RUN, CollectionType.TAGGED):
                found = {ref.data_id.required_values: ref.id
                         for ref in self.butler.query_datasets(dtype.name, collections=[name])}
                tables.append((name, kind, found))
        self._tables[dtype.name] = tables
        return tables

    def find(self, dtype: DatasetType, key: Key, span: Span) -> uuid.UUID | None:
        """The dataset ID of ``dtype`` for data-ID values ``key`` valid over ``span`` (TAI ns), or None."""
        cache_key = (dtype.name, key, span)
        if cache_key in self._cache:
            return self._cache[cache_key]
        found = None
        for name, kind, table in self._load(dtype):
            if kind is CollectionType.CALIBRATION:
                if span is None:
                    continue
                begin, end = span if span[1] > span[0] else (span[0], span[0] + 1)
                hits = [i for b, e, i in table.get(key, ()) if b < end and begin < e]
                if len(hits) > 1:
                    where = dict(zip(dtype.group(self.butler.universe).required, key))
                    raise QuantumGraphError(
                        f"{dtype.name} for {where}: {len(hits)} calibrations in {name!r} are valid at the same "
                        "observation time; fix their validity ranges")
                if hits:
                    found = hits[0]
                    break
            elif key in table:
                found = table[key]
                break
        self._cache[cache_key] = found
        return found
