"""Facts of a file that enters the repository without being put: ingest and import.

A put extracts facts from the object in memory; a file brought in is first validated
by its formatter (so a file that cannot be read is refused at once, not at its first
read) and then read only as far as its storage class needs for its facts (an image's
header, not its pixels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FormatterError, SkybutlerError
from .formatter import Formatter
from .storage_class import StorageClass


def file_facts(path: str | Path, formatter: Formatter, storage_class: StorageClass) -> dict[str, Any]:
    """Validate ``path`` for ``formatter`` and extract ``storage_class``'s facts from it."""
    formatter.validate(path)
    if not storage_class.metadata_fields:
        return {}
    return read_facts(path, formatter, storage_class)


def read_facts(path: str | Path, formatter: Formatter, storage_class: StorageClass) -> dict[str, Any]:
    """``storage_class``'s facts of the file at ``path``, read as far as they need."""
    component = storage_class.metadata_component
    if component not in formatter.components:
        component = None
    try:
        with open(path, "rb") as stream:
            return storage_class.extract_metadata(formatter.read(stream, component=component))
    except OSError as exc:
        raise FormatterError(f"{path}: {exc.strerror or exc}") from None
    except SkybutlerError as exc:
        raise FormatterError(f"{path}: {exc}") from None
    except Exception as exc:  # an extractor's own failure on an odd file
        raise FormatterError(f"{path}: cannot extract {storage_class.name} facts: {exc}") from None
