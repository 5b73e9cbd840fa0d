"""JSON and YAML formatters for plain, JSON-compatible Python data (the ``Dict`` storage class).

Both write strict data only: NaN and infinities are refused (by the ``Dict`` storage
class, and again by the JSON writer), because ``NaN`` is not JSON and other readers of
the file would choke on it.  Reading stays lenient, so a file written before that rule
still reads.  ``validate`` parses a file strictly and wants a mapping at the top level.
"""

from __future__ import annotations

import json
import math
from typing import Any, BinaryIO, NoReturn

import yaml

from .formatter import Formatter

#: One encoder for every JSON write: ``json.dumps`` with options builds a new one per call,
#: which costs more than encoding a small document.
_encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


#: Made once: ``json.loads`` with hooks builds a decoder for every call, a sizeable share of
#: checking a small file (an import checks every file it brings in).
_STRICT_JSON = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def _want_mapping(value: Any, what: str) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"the {what} document holds a {type(value).__name__}, not a mapping")


def _no_non_finite(value: Any, path: str = "") -> None:
    """Refuse NaN and infinities anywhere in parsed YAML (``.nan``, ``.inf``), as the Dict class does."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"value at {path or 'top level'} is {value}, which JSON cannot hold")
    if isinstance(value, dict):
        for key, item in value.items():
            _no_non_finite(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_non_finite(item, f"{path}[{index}]")


class JsonFormatter(Formatter):
    """Compact UTF-8 JSON; the fast default for small documents such as configs and metrics."""

    name = "json"
    extension = ".json"

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        stream.write(_encode_json(obj).encode("utf-8"))

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        return json.loads(stream.read())

    def _validate(self, stream: BinaryIO) -> Any:
        data = stream.read()  # decoded as json.loads decodes bytes, then parsed by the one strict decoder
        text = data.decode(json.detect_encoding(data), "surrogatepass") if isinstance(data, bytes) else data
        document = _STRICT_JSON.decode(text)
        _want_mapping(document, "JSON")
        return document  # the whole object: what examine() would read again

    def _examined(self, stream: BinaryIO, component: str | None, checked: Any) -> Any:
        if component is not None:  # JSON has none: refused as read() refuses it
            return super()._examined(stream, component, checked)
        return checked  # the check parsed the whole document already


#: libyaml's safe loader when installed (the same documents, about ten times faster), else PyYAML's.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlFormatter(Formatter):
    """Human-editable YAML, written and read with the safe dumper/loader only."""

    name = "yaml"
    extension = ".yaml"
    also_named = (".yml",)

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        text = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, default_flow_style=False)
        stream.write(text.encode("utf-8"))

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        return yaml.load(stream.read(), Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader

    def _validate(self, stream: BinaryIO) -> None:
        document = yaml.load(stream.read(), Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
        _want_mapping(document, "YAML")
        _no_non_finite(document)
