"""Dimension records: one validated row of a dimension element."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import DimensionRecordError
from ..timespan import Timespan
from .data_id import normalize_value
from .universe import PYTHON_TYPES, DimensionElement, DimensionUniverse


class DimensionRecord(Mapping[str, Any]):
    """A row of an element: identity values, implied values, fields, region, timespan.

    Keys are the dimension names for identity and implied values (the element's own
    key under its dimension name, e.g. ``visit`` rather than ``id``), then fields,
    then ``region`` and ``timespan`` where the element has them.
    """

    __slots__ = ("element", "_values")

    def __init__(self, element: DimensionElement, values: dict[str, Any]):
        self.element = element
        self._values = values

    @classmethod
    def validate(cls, universe: DimensionUniverse, element_name: str, row: Mapping[str, Any]) -> DimensionRecord:
        """Check a user-given row; the element's key may be given as its key name (``id``) or its name."""
        element = universe[element_name]
        if element.skypix is not None:
            raise DimensionRecordError(f"{element.name} is a sky-pixel dimension; its records are computed, not inserted")
        row = dict(row)
        if element.key is not None and element.key.name in row and element.key.name != element.name:
            row.setdefault(element.name, row.pop(element.key.name))
        values: dict[str, Any] = {}
        for dim in element.identity:
            if dim not in row:
                raise DimensionRecordError(f"{element.name} record {row} is missing {dim!r}")
            values[dim] = normalize_value(universe, dim, row.pop(dim))
        for dim in element.implies:
            value = row.pop(dim, None)
            if value is None:
                raise DimensionRecordError(f"{element.name} record {values} is missing implied dimension {dim!r}")
            values[dim] = normalize_value(universe, dim, value)
        for name, type_name in element.fields.items():
            value = row.pop(name, None)
            if value is not None:
                value = _coerce_field(element, name, PYTHON_TYPES[type_name], value)
            values[name] = value
        if element.region:
            region = row.pop("region", None)
            if region is not None and not _is_region(region):
                raise DimensionRecordError(f"{element.name}.region must be an lsst.sphgeom Region, got {type(region).__name__}")
            values["region"] = region
        if element.timespan:
            span = row.pop("timespan", None)
            if span is not None and not isinstance(span, Timespan):
                if isinstance(span, (tuple, list)) and len(span) == 2:
                    span = Timespan(*span)
                else:
                    raise DimensionRecordError(f"{element.name}.timespan must be a Timespan, got {span!r}")
            values["timespan"] = span
        if row:
            raise DimensionRecordError(
                f"{element.name} has no field(s) {', '.join(sorted(row))}; "
                f"fields are {', '.join(list(element.identity) + list(element.implies) + list(element.fields)) or 'none'}")
        return cls(element, values)

    @property
    def identity(self) -> tuple:
        return tuple(self._values[d] for d in self.element.identity)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DimensionRecord):
            return self.element.name == other.element.name and _comparable(self._values) == _comparable(other._values)
        return NotImplemented

    def __repr__(self) -> str:
        shown = {k: v for k, v in self._values.items() if k != "region"}
        return f"{self.element.name}({shown})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)


def _coerce_field(element: DimensionElement, name: str, kind: type, value: Any) -> Any:
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and hasattr(value, "__index__") and not isinstance(value, bool):
        return int(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise DimensionRecordError(f"{element.name}.{name} must be {kind.__name__}, got {value!r}")


def _comparable(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if out.get("region") is not None:
        out["region"] = bytes(out["region"].encode())
    return out


def _is_region(value: Any) -> bool:
    """Whether ``value`` is an lsst.sphgeom Region (imported here: only spatial records need it)."""
    import lsst.sphgeom as sphgeom

    return isinstance(value, sphgeom.Region)
