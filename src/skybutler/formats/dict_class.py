"""The ``Dict`` storage class: a JSON-compatible Python dict (configs, metrics, small summaries)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .storage_class import StorageClass

_SCALARS = (str, int, float, bool, type(None))
#: Exact types that are certainly JSON scalars (subclasses go through the full check, and
#: floats are checked for NaN and infinities where they are met).
_SCALAR_TYPES = frozenset((str, int, bool, type(None)))


def check_dict(obj: Any) -> dict[str, Any]:
    """Accept a mapping whose keys are strings and whose values are JSON-compatible.

    Non-string keys are refused rather than silently turned into strings, so what is
    read back equals what was written; NaN and infinities are refused because JSON has
    no such numbers (store None, or a string, instead).  A non-dict Mapping is copied into a dict.
    """
    if not isinstance(obj, Mapping):
        raise TypeError("expected a dict")
    _check_value(obj, "")
    return obj if isinstance(obj, dict) else dict(obj)


def _check_value(value: Any, path: str) -> None:
    """Recursively check ``value``, naming the first offending location."""
    if isinstance(value, _SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"value at {path or 'top level'} is {value}, which JSON cannot hold "
                             "(use None for a missing number)")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"key {key!r} at {path or 'top level'} is not a string")
            kind = type(item)
            if kind is float:  # scalars, the common case, need no recursion
                if not math.isfinite(item):
                    _check_value(item, f"{path}.{key}" if path else key)
            elif kind not in _SCALAR_TYPES:
                _check_value(item, f"{path}.{key}" if path else key)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            kind = type(item)
            if kind is float:
                if not math.isfinite(item):
                    _check_value(item, f"{path}[{index}]")
            elif kind not in _SCALAR_TYPES:
                _check_value(item, f"{path}[{index}]")
        return
    raise TypeError(f"value at {path or 'top level'} has type {type(value).__name__}, which is not JSON-compatible")


def extract_dict_metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Number of top-level keys."""
    return {"n_keys": len(obj)}


DICT = StorageClass(
    name="Dict",
    default_formatter="json",
    formatters=("json", "yaml"),
    accepts="dict with string keys and JSON-compatible values",
    checker=check_dict,
    extractor=extract_dict_metadata,
    metadata_fields={"n_keys": int},
)
