"""The storage class: what kind of in-memory object a dataset is, and how it is kept.

A storage class ties an in-memory type (a dict, a table, an image) to the
formatters allowed to write it, the components and read parameters a reader may
ask for, and a metadata extractor that turns a stored object into queryable facts.
It holds no I/O itself, so the registry and datastore can reason about datasets
without importing any file-format library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..dimensions.regions import Region
from ..errors import StorageClassError
from ..models import SHARED_HDU_PREFIX

MetadataValue = int | float | str | bool | Region | None
"""A value a metadata extractor may produce."""

METADATA_TYPES: tuple[type, ...] = (int, float, str, bool, Region)
"""The Python types a metadata field may be declared with (a Region is a sky footprint, queryable
with ``<dataset_type>.<field> OVERLAPS POINT(ra, dec)``)."""

KEPT_PREFIX = "rubin:"
"""Prefix of the formatters (and storage classes) of files kept unread from a Rubin repository."""
HDU_PREFIX = SHARED_HDU_PREFIX
"""Prefix of the formatters of one HDU of a shared multi-extension file (:mod:`.fits_hdu`)."""

Checker = Callable[[Any], Any]
"""Validates an object and returns it (possibly normalised); raises TypeError or ValueError."""

Extractor = Callable[[Any], Mapping[str, Any]]
"""Returns facts about an already-checked object."""


def type_name(obj: Any) -> str:
    """The qualified name of ``obj``'s type, for error messages (``pandas.core.frame.DataFrame``)."""
    cls = type(obj)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


@dataclass(frozen=True)
class StorageClass:
    """An in-memory type with its formatters, components, read parameters and metadata extractor.

    ``checker`` validates an object before it is written; ``extractor`` produces the
    facts stored with it.  Both are plain functions so adding a storage class is just
    constructing one of these and registering it.
    """

    name: str
    default_formatter: str
    formatters: tuple[str, ...]
    accepts: str
    """Human-readable list of accepted Python types, used in error messages."""
    checker: Checker
    extractor: Extractor
    components: Mapping[str, str] = field(default_factory=dict)
    parameters: frozenset[str] = frozenset()
    metadata_fields: Mapping[str, type] = field(default_factory=dict)
    metadata_component: str | None = None
    """A component that is enough for ``extractor`` (an image's header): files brought in by
    ingest or import are read only that far to extract their facts.  None: the whole object."""

    def __post_init__(self) -> None:
        if not self.formatters:
            raise StorageClassError(f"Storage class {self.name!r} declares no formatters.")
        if self.default_formatter not in self.formatters:
            raise StorageClassError(
                f"Storage class {self.name!r}: default formatter {self.default_formatter!r} "
                f"is not one of its formatters {list(self.formatters)}."
            )
        for key, kind in self.metadata_fields.items():
            if kind not in METADATA_TYPES:
                raise StorageClassError(
                    f"Storage class {self.name!r}: metadata field {key!r} has type {kind!r}; "
                    f"allowed are int, float, str, bool, Region."
                )
        # Freeze the mappings so a shared, registered instance cannot be mutated.
        object.__setattr__(self, "formatters", tuple(self.formatters))
        object.__setattr__(self, "components", MappingProxyType(dict(self.components)))
        object.__setattr__(self, "parameters", frozenset(self.parameters))
        object.__setattr__(self, "metadata_fields", MappingProxyType(dict(self.metadata_fields)))

    def holds(self, formatter: str) -> bool:
        """Whether files of ``formatter`` can be datasets of this class: its own formatters', a file
        kept unread from a Rubin repository (a Rubin dataset type may hold files of several formatters),
        and for a class written as ``fits``, one image HDU of a shared multi-extension file."""
        return formatter in self.formatters or formatter.startswith(KEPT_PREFIX) or (
            formatter.startswith(HDU_PREFIX) and "fits" in self.formatters)

    def check(self, obj: Any) -> Any:
        """Validate ``obj`` for writing and return it (possibly normalised).

        Raises StorageClassError naming this storage class, the object's type and the reason.
        """
        try:
            return self.checker(obj)
        except StorageClassError:
            raise
        except (TypeError, ValueError) as exc:
            raise StorageClassError(
                f"Storage class {self.name!r} cannot hold an object of type {type_name(obj)}: {exc} "
                f"(accepts {self.accepts})."
            ) from exc

    def extract_metadata(self, obj: Any) -> dict[str, MetadataValue]:
        """Facts about ``obj``: exactly the keys of ``metadata_fields``, values coerced or None."""
        raw = self.extractor(obj)
        unknown = set(raw) - set(self.metadata_fields)
        if unknown:
            raise StorageClassError(
                f"Storage class {self.name!r}: extractor produced undeclared fields {sorted(unknown)}."
            )
        return {key: _coerce(raw.get(key), kind) for key, kind in self.metadata_fields.items()}

    def __repr__(self) -> str:
        return f"StorageClass({self.name!r}, formatters={list(self.formatters)})"


def _coerce(value: Any, kind: type) -> MetadataValue:
    """Convert an extracted value (maybe a numpy scalar) to ``kind``; None if it cannot be."""
    if value is None:
        return None
    if kind is Region:
        return value if isinstance(value, Region) else None
    try:
        if kind is bool:
            if isinstance(value, str):
                return {"true": True, "false": False, "t": True, "f": False}.get(value.strip().lower())
            return bool(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            return None
        if kind is str:
            return str(value).strip()
        result = kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if kind is float and result != result:  # NaN is "unknown", and SQL has no NaN
        return None
    return result
