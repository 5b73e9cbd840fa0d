"""Dimension records: one validated row of a dimension element."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..errors import DimensionRecordError
from ..timespan import Timespan
from .data_id import INT64_MAX, INT64_MIN, normalize_value
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
        return cls.validate_many(universe, element_name, [row])[0]

    @classmethod
    def validate_many(cls, universe: DimensionUniverse, element_name: str,
                      rows: Iterable[Mapping[str, Any]]) -> list[DimensionRecord]:
        """Check user-given rows of one element (as :meth:`validate` does each); what every row
        needs to know of the element (its keys' types, fields, region and timespan) is looked
        up once, since a visit's definition inserts a record per detector."""
        element = universe[element_name]
        if element.skypix is not None:
            raise DimensionRecordError(f"{element.name} is a sky-pixel dimension; its records are computed, not inserted")
        alias = element.key.name if element.key is not None and element.key.name != element.name else None
        keys = [(dim, _key_check(universe, dim)) for dim in element.identity]
        implied = [(dim, _key_check(universe, dim)) for dim in element.implies]
        fields = [(name, PYTHON_TYPES[type_name]) for name, type_name in element.fields.items()]
        region_type = _region_type() if element.region else None
        out = []
        for row in rows:
            row = dict(row)
            if alias is not None and alias in row:
                row.setdefault(element.name, row.pop(alias))
            values: dict[str, Any] = {}
            for dim, check in keys:
                if dim not in row:
                    raise DimensionRecordError(f"{element.name} record {row} is missing {dim!r}")
                values[dim] = check(row.pop(dim))
            for dim, check in implied:
                value = row.pop(dim, None)
                if value is None:
                    raise DimensionRecordError(f"{element.name} record {values} is missing implied dimension {dim!r}")
                values[dim] = check(value)
            for name, kind in fields:
                value = row.pop(name, None)
                if value is not None and type(value) is not kind:  # the exact type needs no coercion
                    value = _coerce_field(element, name, kind, value)
                values[name] = value
            if region_type is not None:
                region = row.pop("region", None)
                if region is not None and not isinstance(region, region_type):
                    raise DimensionRecordError(
                        f"{element.name}.region must be an lsst.sphgeom Region, got {type(region).__name__}")
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
                    f"{element.name} has no field(s) {', '.join(sorted(row))}; fields are "
                    f"{', '.join(list(element.identity) + list(element.implies) + list(element.fields)) or 'none'}")
            out.append(cls(element, values))
        return out

    @property
    def identity(self) -> tuple:
        return tuple(self._values[d] for d in self.element.identity)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, name: str) -> Any:
        """A value as an attribute, as the Rubin butler's records give them: ``record.exposure_time``,
        ``record.timespan``, ``record.id`` (the key, by its key name) and ``record.instrument``."""
        if name.startswith("_") or name == "element":  # slots not yet set (unpickling)
            raise AttributeError(name)
        values = self._values
        if name in values:
            return values[name]
        element = self.element
        if element.key is not None and name == element.key.name and element.name in values:
            return values[element.name]
        if name in element.fields or (name == "region" and element.region) or (name == "timespan" and element.timespan):
            return None
        raise AttributeError(f"a {element.name} record has no field {name!r}")

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

    # -- the Rubin butler's record names -----------------------------------------

    @property
    def dataId(self) -> dict[str, Any]:  # noqa: N802 - the Rubin butler's name
        """The values identifying the record (its element's required dimensions), as the Rubin
        butler's ``record.dataId``: a data ID to pass on (``butler.get(..., dataId=record.dataId)``)."""
        return {d: self._values[d] for d in self.element.identity}

    @property
    def definition(self) -> DimensionElement:
        """The record's element (``record.definition.name``), as the Rubin butler names it."""
        return self.element

    def toDict(self, splitTimespan: bool = False) -> dict[str, Any]:  # noqa: N802, N803 - the Rubin names
        """The record as the Rubin butler's ``toDict`` gives it: the element's own key under its key
        name (``id``, ``name``), and with ``splitTimespan`` the timespan as ``datetime_begin`` and
        ``datetime_end`` (astropy Times; None for an unbounded side)."""
        key = self.element.key
        out: dict[str, Any] = {}
        for name, value in self._values.items():
            if key is not None and name == self.element.name:
                out[key.name] = value
            elif name == "timespan" and splitTimespan:
                out["datetime_begin"] = None if value is None else value.begin
                out["datetime_end"] = None if value is None else value.end
            else:
                out[name] = value
        return out

    def values_of(self, keys: Sequence[str]) -> list[Any]:
        """The values of ``keys`` in their order (None for a key the record lacks): a table row."""
        get = self._values.get
        return [get(k) for k in keys]


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


def _key_check(universe: DimensionUniverse, dimension: str) -> Callable[[Any], Any]:
    """Checks and normalises one dimension's values as :func:`normalize_value` does, with the
    common case (a plain ``int`` in range, a short enough ``str``) tested inline."""
    key = universe[dimension].key
    assert key is not None

    if key.type == "int":
        def check(value: Any) -> Any:
            if type(value) is int and INT64_MIN <= value <= INT64_MAX:
                return value
            return normalize_value(universe, dimension, value)
    else:
        length = key.length

        def check(value: Any) -> Any:
            if type(value) is str and len(value) <= length:
                return value
            return normalize_value(universe, dimension, value)
    return check


def _region_type() -> type:
    """lsst.sphgeom's Region (imported here: only spatial records need it)."""
    import lsst.sphgeom as sphgeom

    return sphgeom.Region
