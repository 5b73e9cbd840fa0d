"""File path templates: where a dataset's artifact goes inside the datastore.

A template is a ``/``-separated string of literal text and fields.  ``{name}`` is a
required field, ``{name?}`` an optional one: when its value is missing the whole
path segment holding it is dropped.  Fields are ``run``, ``dataset_type``,
``component``, any dimension of the (expanded) data ID, and ``data_id`` (all
required data-ID values joined by ``_``).  The default keeps a run's files together
and groups them by band and night, as observers browse them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..dimensions import DataCoordinate
from ..errors import DatastoreError

DEFAULT_TEMPLATE = "{run}/{dataset_type}/{band?}/{day_obs?}/{dataset_type}_{data_id}"

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\?)?\}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=@,-]")


def _safe(value: Any) -> str:
    """A value as a path-safe string (slashes in RUN names become directories).

    Empty, ``.`` and ``..`` segments are neutralised so that no value (a RUN named
    ``../x`` or ``/abs``) can place a file outside the datastore root.
    """
    if type(value) is int:
        return str(value)
    text = str(value)
    done = _SAFE_CACHE.get(text)
    if done is None:
        parts = (_UNSAFE.sub("_", part) for part in text.split("/") if part)
        done = "/".join("_" * len(part) if part in (".", "..") else part for part in parts)
        if len(_SAFE_CACHE) > 100_000:
            _SAFE_CACHE.clear()
        _SAFE_CACHE[text] = done
    return done


#: Safe forms of the strings seen so far (RUN names, dataset types, bands repeat for every file).
_SAFE_CACHE: dict[str, str] = {}


class PathTemplate:
    """A compiled template; ``format`` turns a dataset's fields into a relative path."""

    def __init__(self, template: str = DEFAULT_TEMPLATE):
        if not _FIELD.search(template):
            raise DatastoreError(f"path template {template!r} has no fields")
        self.template = template
        # Each segment: a list of (literal text, field name or None, optional?) pieces.
        self._segments: list[list[tuple[str, str | None, bool]]] = []
        for segment in template.split("/"):
            pieces, pos = [], 0
            for match in _FIELD.finditer(segment):
                pieces.append((segment[pos:match.start()], match.group(1), bool(match.group(2))))
                pos = match.end()
            pieces.append((segment[pos:], None, False))
            self._segments.append(pieces)

    def format(self, fields: Mapping[str, Any]) -> str:
        out = []
        get = fields.get
        for pieces in self._segments:
            text: str | None = ""
            for literal, name, optional in pieces:
                if name is None:
                    text += literal
                    continue
                value = get(name)
                if value is None:
                    if not optional:
                        raise DatastoreError(
                            f"path template {self.template!r} needs {name!r}, which this dataset does not have "
                            f"(fields: {', '.join(k for k, v in fields.items() if v is not None)})")
                    text = None
                    break
                text += literal + _safe(value)
            if text:
                out.append(text)
        return "/".join(out)


def template_fields(run: str, dataset_type: str, data_id: Mapping[str, Any], required: tuple[str, ...],
                    component: str | None = None) -> dict[str, Any]:
    """The values a template may use for one dataset."""
    fields: dict[str, Any] = data_id.as_dict() if isinstance(data_id, DataCoordinate) else dict(data_id)
    fields["run"] = run
    fields["dataset_type"] = dataset_type
    fields["component"] = component
    fields["data_id"] = "_".join([str(data_id[d]) for d in required])
    return fields
