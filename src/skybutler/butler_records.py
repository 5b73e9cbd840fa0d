"""Dimension records and data IDs through the facade: inserting and reading records,
registering a camera, and turning a data ID as a user gives it into a checked coordinate.

:class:`RecordMethods` is a base of :class:`~skybutler.Butler`.  ``_standardize`` is what every
put, ingest and look-up of the facade checks its data IDs with: the given values with the
butler's defaults, a sole instrument or sky map filled in, and else the Rubin butler's
alternate keys and record fields looked up (``data_id_lookup.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .dimensions import DataCoordinate, DimensionRecord, DimensionUniverse
from .errors import DataIdError, UnknownDimensionError
from .registry import Registry
from .remote.served import served as _served


class RecordMethods:
    """Dimension records, cameras and data IDs (a base of :class:`~skybutler.Butler`)."""

    _remote: Any
    registry: Registry
    universe: DimensionUniverse
    default_data_id: dict[str, Any]

    @_served
    def insert_records(self, element: str, records: Iterable[Mapping[str, Any]], *,
                       skip_existing: bool = False) -> int:
        """Insert dimension records of one element in one transaction; returns how many were new."""
        return self.registry.dimensions.insert(element, records, skip_existing=skip_existing)

    @_served
    def sync_record(self, element: str, record: Mapping[str, Any], *, update: bool = False) -> bool:
        """Insert a record unless an identical one exists; a different one raises (or is replaced)."""
        return self.registry.dimensions.sync(element, record, update=update)

    @_served
    def get_record(self, element: str, **identity: Any) -> DimensionRecord | None:
        """One dimension record by its identifying values (e.g. ``instrument=..., visit=42``)."""
        el = self.universe[element]
        if el.key is not None and el.key.name in identity:
            identity[element] = identity.pop(el.key.name)
        values = {**{k: v for k, v in self.default_data_id.items() if k in el.identity}, **identity}
        missing = [d for d in el.identity if d not in values]
        if missing:
            raise DataIdError(f"{element} record lookup needs {', '.join(missing)}")
        return self.registry.dimensions.fetch_one(element, tuple(values[d] for d in el.identity))

    def register_instrument(self, camera: Any, *, update: bool = False) -> bool:
        """Register a camera (an ``Instrument``, a YAML file, or a known camera's name): its
        instrument, band, physical-filter and detector records and its description; False if
        it was registered already with the same description (a different one raises).

        ``update=True`` replaces the stored description and records of a registered camera
        instead, in one transaction (True if anything changed); a change that contradicts what
        the repository holds (a detector or filter removed, a used filter moved to another
        band, an ID bound below IDs in use) raises ``ConflictingDefinitionError`` naming it."""
        from .ingest.instruments import register_instrument, update_instrument

        if update:
            return bool(update_instrument(self, camera)[1])
        return bool(register_instrument(self, camera)[1])

    @_served
    def expand_data_id(self, dimensions: Iterable[str], data_id: Mapping[str, Any] | None = None,
                       **kwargs: Any) -> DataCoordinate:
        """Validate a data ID for ``dimensions`` and fill in its implied values from the records."""
        group = self.universe.group(dimensions)
        return self.registry.dimensions.expand(self._standardize(group, data_id, kwargs))

    def _standardize(self, group, data_id: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> DataCoordinate:
        defaults = {k: v for k, v in self.default_data_id.items() if k in group.names}
        try:
            return DataCoordinate.standardize(group, defaults, data_id, kwargs)
        except (DataIdError, UnknownDimensionError) as first:
            refused: DataIdError | UnknownDimensionError = first
            given = {**defaults, **(data_id or {}), **kwargs}
            filled = self._fill_governors(group, given)
            if filled is not None:
                try:
                    return DataCoordinate.standardize(group, filled)
                except (DataIdError, UnknownDimensionError) as again:
                    given, refused = filled, again
        from .data_id_lookup import look_up  # the Rubin butler's alternate keys and record fields

        try:
            found = look_up(self, group, given)
        except DataIdError as missing:
            raise DataIdError(f"{refused}; looked up as the Rubin butler would: {missing}") from None
        if found is None:
            raise refused
        return DataCoordinate.standardize(group, found)

    def _fill_governors(self, group, given: dict[str, Any]) -> dict[str, Any] | None:
        """Fill a missing instrument/skymap when the repository has exactly one of them."""
        out = dict(given)
        for dim in group.required:
            element = self.universe[dim]
            if dim in out or element.requires:
                continue
            records = self.registry.dimensions.fetch_all(dim)
            if len(records) != 1:
                return None
            out[dim] = records[0][dim]
        return out
