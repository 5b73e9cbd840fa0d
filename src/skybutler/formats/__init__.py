"""Storage classes, formatters and metadata extractors.

A storage class names an in-memory type (``Dict``, ``Table``, ``Image``), the
formatters that may write it, its components and read parameters, and the facts
extracted from it when it is stored.  A formatter writes an object to an open
binary stream and reads it (or a component, or a column/pixel subset) back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .file_facts import ExaminedFile, examine_file
from .formatter import Formatter
from .registry import (
    formatter_names,
    get_formatter,
    get_storage_class,
    register_formatter,
    register_storage_class,
    storage_class_names,
)

if TYPE_CHECKING:
    from .storage_class import MetadataValue, StorageClass

__all__ = [
    "ExaminedFile",
    "Formatter",
    "MetadataValue",
    "StorageClass",
    "examine_file",
    "formatter_names",
    "get_formatter",
    "get_storage_class",
    "register_formatter",
    "register_storage_class",
    "storage_class_names",
]


def __getattr__(name: str) -> Any:
    """``StorageClass`` and ``MetadataValue``, imported on first use (they bring sphgeom)."""
    if name in ("StorageClass", "MetadataValue"):
        from . import storage_class

        return getattr(storage_class, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
