"""Data IDs: validated, normalised dimension values that identify something.

A :class:`DataCoordinate` holds the values of a :class:`DimensionGroup`'s required
dimensions (its identity) and, once expanded, its implied ones too.  Validation is
strict on types (an ``int`` dimension rejects ``'abc'`` and ``True``) and on keys
(unknown names and dimensions outside the group are refused, except implied ones,
which are kept and checked against the records when the data ID is expanded).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import DataIdError, UnknownDimensionError
from .universe import DimensionGroup, DimensionUniverse

DataIdValue = int | str

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def normalize_value(universe: DimensionUniverse, dimension: str, value: Any) -> DataIdValue:
    """Check one data-ID value against its dimension's key type and return it normalised."""
    key = universe[dimension].key
    assert key is not None
    if key.type == "int":
        if type(value) is int and INT64_MIN <= value <= INT64_MAX:  # the common case, without an ABC check
            return value
        # numbers.Integral covers numpy's integers without importing numpy (its bool_ is no Integral)
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            if not INT64_MIN <= value <= INT64_MAX:  # keys are 64-bit integer columns
                raise DataIdError(f"{dimension} value {value} does not fit in a 64-bit integer")
            return int(value)
        raise DataIdError(f"{dimension} must be an integer, got {value!r} ({type(value).__name__})")
    if isinstance(value, str):
        if len(value) > key.length:
            raise DataIdError(f"{dimension} value {value!r} is longer than {key.length} characters")
        return value
    raise DataIdError(f"{dimension} must be a string, got {value!r} ({type(value).__name__})")


class DataCoordinate(Mapping[str, DataIdValue]):
    """An immutable mapping from dimension name to value, for one dimension group.

    ``required`` values identify the data ID; ``implied`` ones are filled in by
    expansion (or given by the caller, in which case expansion checks them).
    """

    __slots__ = ("group", "_values", "_hash")

    def __init__(self, group: DimensionGroup, values: dict[str, DataIdValue]):
        self.group = group
        self._values = values
        self._hash: int | None = None

    @classmethod
    def standardize(cls, group: DimensionGroup, *mappings: Mapping[str, Any] | None,
                    **kwargs: Any) -> DataCoordinate:
        """Validate and normalise user-given values for ``group``.

        Raises :class:`DataIdError` for a missing required key or a bad value type and
        :class:`UnknownDimensionError` for a name outside the group.
        """
        given: dict[str, Any] = {}
        for mapping in mappings:
            if mapping:
                given.update(mapping)
        given.update(kwargs)
        universe = group.universe
        values: dict[str, DataIdValue] = {}
        for name, value in given.items():
            if name not in group.names:
                if name not in universe.elements:
                    raise UnknownDimensionError(f"{name!r} is not a dimension (data ID {given})")
                raise UnknownDimensionError(
                    f"{name!r} is not a dimension of {group} (data ID {given})")
            values[name] = normalize_value(universe, name, value)
        missing = [name for name in group.required if name not in values]
        if missing:
            raise DataIdError(f"data ID {given} is missing required dimension(s) {', '.join(missing)} of {group}")
        ordered = {name: values[name] for name in group.names if name in values}
        return cls(group, ordered)

    @classmethod
    def from_required(cls, group: DimensionGroup, values: tuple[DataIdValue, ...]) -> DataCoordinate:
        """Build from already-validated required values in canonical order (no checks)."""
        return cls(group, dict(zip(group.required, values)))

    @property
    def universe(self) -> DimensionUniverse:
        return self.group.universe

    @property
    def required(self) -> dict[str, DataIdValue]:
        """The identifying values, in canonical order."""
        return {name: self._values[name] for name in self.group.required}

    @property
    def required_values(self) -> tuple[DataIdValue, ...]:
        return tuple(self._values[name] for name in self.group.required)

    def as_dict(self) -> dict[str, DataIdValue]:
        """Every known value (required and implied) as a new plain dict."""
        return dict(self._values)

    @property
    def has_full(self) -> bool:
        """Whether every implied value is known."""
        return all(name in self._values for name in self.group.implied)

    @property
    def mapping(self) -> dict[str, DataIdValue]:
        """Every value, required and implied (as far as known), as a new plain dict."""
        return {name: self[name] for name in self.group.names if name in self}

    def with_values(self, extra: Mapping[str, DataIdValue]) -> DataCoordinate:
        """A copy with more (implied) values; a value that contradicts one given raises."""
        merged = dict(self._values)
        for name, value in extra.items():
            old = merged.get(name)
            if old is not None and old != value:
                raise DataIdError(
                    f"data ID {self.required} has {name}={value!r} in the registry, but {old!r} was given")
            merged[name] = value
        return DataCoordinate(self.group, {n: merged[n] for n in self.group.names if n in merged})

    def has_records(self) -> bool:
        """Whether this data ID holds its elements' records (see :class:`DataCoordinateWithRecords`)."""
        return False

    def subset(self, group: DimensionGroup) -> DataCoordinate:
        """The values of a smaller group (all of whose required dimensions are known here)."""
        return DataCoordinate(group, {n: self._values[n] for n in group.names if n in self._values})

    # -- Mapping --------------------------------------------------------------

    def __getitem__(self, name: str) -> DataIdValue:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DataCoordinate):
            return self.required_values == other.required_values and self.group == other.group
        if isinstance(other, Mapping):
            return self.required == dict(other) or self._values == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash((self.group.required, self.required_values))
        return self._hash

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: {v!r}" for k, v in self._values.items()) + "}"

    # -- pydantic: serialise as a plain mapping -------------------------------

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema  # only a server or client model asks: opening a repository does not

        def validate(value: Any) -> DataCoordinate:
            if isinstance(value, DataCoordinate):
                return value
            if isinstance(value, Mapping):
                universe = DimensionUniverse.default()
                group = universe.group(k for k in value if k in universe.elements)
                return cls.standardize(group, value)
            raise DataIdError(f"not a data ID: {value!r}")

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(lambda v: dict(v._values)))


class DataCoordinateWithRecords(DataCoordinate):
    """A data ID holding every value and the record of each element it identifies, as the
    Rubin butler's ``with_dimension_records=True`` gives them: ``data_id.records["visit"]``
    is the visit's :class:`~skybutler.dimensions.DimensionRecord` (``.exposure_time``)."""

    __slots__ = ("records",)

    def __init__(self, group: DimensionGroup, values: dict[str, DataIdValue], records: Mapping[str, Any]):
        super().__init__(group, values)
        self.records = records

    def has_records(self) -> bool:
        """True: the records of every element of the group are here (None for one not stored)."""
        return True

    def __reduce__(self) -> tuple[Any, ...]:
        return DataCoordinateWithRecords, (self.group, dict(self._values), dict(self.records))


class RowShape:
    """What the data IDs made from one batch of result rows share: the names of their
    row's values, in order, and (for a group with implied dimensions) the batch's look-up
    of the implied values (given a data ID, all its values), or None.

    Nothing here may refer back to the data IDs: a reference cycle through a batch would
    keep all of its data IDs (and refs) alive until a full collection of the cyclic
    garbage collector, which a long session of queries rarely triggers; with a class made
    per batch that held its batch, the query benchmark's memory grew from 190 to 330 MiB."""

    __slots__ = ("names", "expand")

    def __init__(self, names: tuple[str, ...],
                 expand: Callable[[DataCoordinate], Mapping[str, DataIdValue]] | None = None):
        self.names = names
        self.expand = expand


class FromRow(DataCoordinate):
    """A data ID made from one result row (a tuple of values named by its :class:`RowShape`):
    its dict of values is made the first time it is needed, so a query result of 30,000
    data IDs costs a small object each, and only the data IDs a caller reads cost more.

    The ``_values`` slot is left unset until then; reading it falls through to
    ``__getattr__``, which fills it.  ``FromRow(group, row, shape)``; the values must be
    valid for the group (they come from the registry's own columns)."""

    __slots__ = ("_row", "_shape")

    def __init__(self, group: DimensionGroup, row: tuple[DataIdValue, ...], shape: RowShape):
        self.group = group
        self._row = row
        self._shape = shape

    def __getattr__(self, name: str) -> Any:
        # only for slots not yet filled: the values dict and the hash
        if name == "_values":
            values = self._values = dict(zip(self._shape.names, self._row))
            return values
        if name == "_hash":
            return None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getitem__(self, name: str) -> DataIdValue:
        try:
            return self._values[name]
        except KeyError:
            expand = self._shape.expand
            if expand is not None and name in self.group.implied:
                return expand(self)[name]
            raise

    @property
    def has_full(self) -> bool:
        return self._shape.expand is not None or super().has_full

    def __reduce__(self) -> tuple[Any, ...]:
        # a plain data ID: the shape's look-up holds a registry
        return DataCoordinate, (self.group, self.mapping)


def lazily_expanded(data_id: DataCoordinate,
                    expand: Callable[[DataCoordinate], Mapping[str, DataIdValue]]) -> DataCoordinate:
    """``data_id`` with its implied values (``band`` of a ``visit``'s) looked up by ``expand`` the
    first time one is read, as a query's data IDs have them; unchanged when it has them all."""
    if data_id.has_full:
        return data_id
    return FromRow(data_id.group, tuple(data_id.as_dict().values()),
                   RowShape(tuple(data_id.as_dict()), expand))
