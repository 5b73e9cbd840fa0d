"""File path templates: where a dataset's artifact goes inside the datastore.

A template is a ``/``-separated string of literal text and fields.  ``{name}`` is a
required field, ``{name?}`` an optional one: when its value is missing the whole
path segment holding it is dropped.  Fields are ``run``, ``dataset_type``,
``component``, any dimension of the (expanded) data ID, and ``data_id`` (all
required data-ID values joined by ``_``).  The default keeps a run's files together
and groups them by band and night, as observers browse them.

Values are written into paths by an escaping scheme, never a lossy fold, so that two
different names never share a path and no name can leave the datastore root:

- every character other than ASCII letters, digits and ``. - _ + = @ ,`` is written as
  the ``%XX`` bytes of its UTF-8 form (``a b`` -> ``a%20b``, ``ü`` -> ``%C3%BC``; ``%``
  itself -> ``%25``, ``/`` -> ``%2F``);
- a value made only of dots (``.``, ``..``) has its dots written ``%2E``;
- a RUN name's ``/`` make directories when every part between them is non-empty, and
  every part but the last is marked with a trailing ``~`` (``u/ana/run1`` ->
  ``u~/ana~/run1``), a character no encoded value holds (it is escaped, ``%7E``);
  otherwise (``a//b``, ``/abs``, ``x/``) the whole name is one escaped directory
  (``a%2F%2Fb``).  So the layout is prefix-free as well as injective: the directory of
  RUN ``u/ana`` (``u~/ana``) never holds the files of RUN ``u/ana/run1`` (under
  ``u~/ana~/run1``), and no RUN's directory is inside another's -- whatever works on
  one RUN's files cannot meet another's, and a file of one RUN is never where another
  RUN needs a directory;
- in a template, ``{run}`` must end its path segment (``{run}/...``, ``x{run}/...``):
  text after it (``{run}_{dataset_type}``) would let RUN ``a`` with type ``b_c`` and
  RUN ``a_b`` with type ``c`` share files.  Such a template is refused when a dataset
  is written (not when the repository is opened, so its files stay readable);
- inside ``{data_id}`` the values are joined by ``_``, so ``_`` inside a value is
  written ``%5F`` there;
- an empty value names no path: it is an error.

Each rule can be undone, so the mapping is injective.  Paths already recorded in the
registry are read as recorded; only new writes use these rules (a nested RUN written
before the ``~`` mark keeps its old files where they are, inside its parent's directory:
nothing in skybutler works on a directory, every removal, purge, move and check goes by
a dataset's recorded path, so they stay apart; its new files go to the marked tree).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..dimensions import DataCoordinate
from ..errors import DatastoreError

DEFAULT_TEMPLATE = "{run}/{dataset_type}/{band?}/{day_obs?}/{dataset_type}_{data_id}"

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\?)?\}")
#: Characters a value keeps as they are (outside ``{data_id}``).
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=@,-]")
#: Inside ``{data_id}``, where ``_`` separates the values, ``_`` is escaped too.
_UNSAFE_IN_DATA_ID = re.compile(r"[^A-Za-z0-9.+=@,-]")


def _percent(match: re.Match) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8"))


def encode_value(text: str, unsafe: re.Pattern = _UNSAFE) -> str:
    """One value as one path segment (see the module doc); DatastoreError if it is empty."""
    if not text:
        raise DatastoreError("an empty value cannot name a file or directory in the datastore")
    if text.strip(".") == "":
        return "%2E" * len(text)
    return unsafe.sub(_percent, text)


def encode_run(run: str) -> str:
    """A RUN name as a relative directory path: its ``/`` make directories when no part
    between them is empty, else the whole name is one escaped segment."""
    parts = run.split("/")
    if all(parts):
        return "~/".join(encode_value(part) for part in parts)
    return encode_value(run)


def _remember(cache: dict[Any, str], key: Any, encoded: str) -> str:
    if len(cache) > 100_000:
        cache.clear()
    cache[key] = encoded
    return encoded


#: Encoded forms of the values seen so far (RUN names, dataset types, bands repeat for every file).
_RUN_CACHE: dict[str, str] = {}
_VALUE_CACHE: dict[str, str] = {}
_DATA_ID_CACHE: dict[str, str] = {}


def _in_data_id(value: Any) -> str:
    if type(value) is int:
        return str(value)
    done = _DATA_ID_CACHE.get(value)
    return done if done is not None else _remember(_DATA_ID_CACHE, value,
                                                   encode_value(str(value), _UNSAFE_IN_DATA_ID))


def _encoded(name: str, value: Any) -> str:
    """The path text of one field's value (looked up first: the same values recur for every file)."""
    if type(value) is int:
        return str(value)
    if name == "data_id":
        return "_".join(map(_in_data_id, value))
    if name == "run":
        done = _RUN_CACHE.get(value)
        return done if done is not None else _remember(_RUN_CACHE, value, encode_run(str(value)))
    done = _VALUE_CACHE.get(value)
    return done if done is not None else _remember(_VALUE_CACHE, value, encode_value(str(value)))


def check_inside(path: str) -> str:
    """``path`` if it stays inside the datastore root (relative, no empty, ``.`` or ``..``
    segment); DatastoreError otherwise.  Checked on every path a template makes."""
    framed = f"/{path}/"
    if path.startswith("/") or "//" in framed or "/./" in framed or "/../" in framed:
        raise DatastoreError(f"path {path!r} would leave the datastore root; refusing to write it")
    return path


class PathTemplate:
    """A compiled template; ``format`` turns a dataset's fields into a relative path.

    A template must name the RUN (``{run}``), and nothing in it may lead outside the
    datastore root: no leading ``/``, no empty, ``.`` or ``..`` segment of literal text.
    """

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
            if len(pieces) == 1 and segment in ("", ".", ".."):
                what = "starts with '/'" if not self._segments and not segment else (
                    "has an empty segment ('//' or a trailing '/')" if not segment else f"has a {segment!r} segment")
                raise DatastoreError(f"path template {template!r} {what}: its paths could leave the datastore root")
            self._segments.append(pieces)
        self.fields = frozenset(name for pieces in self._segments for _, name, _ in pieces if name)
        if "run" not in self.fields:
            raise DatastoreError(f"path template {template!r} has no {{run}}: two RUNs' datasets would share files")
        #: why this template could make two RUNs share files, or None (checked at put, not at load)
        self.run_problem = None
        if any(name == "run" and (k < len(pieces) - 2 or pieces[-1][0]) for pieces in self._segments
               for k, (_, name, _) in enumerate(pieces)):
            self.run_problem = (f"path template {template!r} has text after {{run}} in its path segment: RUN 'a' "
                                "with 'b_c' and RUN 'a_b' with 'c' could share files; end the segment after {run} "
                                "(e.g. '{run}/...')")

    def identifies(self, required: Sequence[str]) -> list[str]:
        """The required dimensions a dataset's path would not tell apart (empty: every data ID
        gets its own path)."""
        return [] if "data_id" in self.fields else [d for d in required if d not in self.fields]

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
                text += literal + _encoded(name, value)
            if text:
                out.append(text)
        return check_inside("/".join(out))


def template_fields(run: str, dataset_type: str, data_id: Mapping[str, Any], required: tuple[str, ...],
                    component: str | None = None) -> dict[str, Any]:
    """The values a template may use for one dataset (``data_id``: the required values, in order)."""
    fields: dict[str, Any] = data_id.as_dict() if isinstance(data_id, DataCoordinate) else dict(data_id)
    fields["run"] = run
    fields["dataset_type"] = dataset_type
    fields["component"] = component
    fields["data_id"] = tuple([data_id[d] for d in required])
    return fields
