"""JSON and YAML formatters for plain, JSON-compatible Python data (the ``Dict`` storage class)."""

from __future__ import annotations

import json
from typing import Any, BinaryIO

import yaml

from .formatter import Formatter


class JsonFormatter(Formatter):
    """Compact UTF-8 JSON; the fast default for small documents such as configs and metrics."""

    name = "json"
    extension = ".json"

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        stream.write(json.dumps(obj, ensure_ascii=False, allow_nan=True).encode("utf-8"))

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        return json.loads(stream.read())


class YamlFormatter(Formatter):
    """Human-editable YAML, written and read with the safe dumper/loader only."""

    name = "yaml"
    extension = ".yaml"

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        text = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, default_flow_style=False)
        stream.write(text.encode("utf-8"))

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        return yaml.safe_load(stream.read())
