"""Facts of a file that enters the repository without being put: ingest and import.

A put extracts facts from the object in memory; a file brought in is read only as
far as its storage class needs for its facts (an image's header, not its pixels).
Whether a file is accepted is its formatter's ``validate`` (run on every file by
ingest and import); a file accepted whose facts cannot be extracted goes in without
facts, which ``extract-metadata`` can fill in later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SkybutlerError, TransferError
from .formatter import Formatter

if TYPE_CHECKING:
    from .storage_class import StorageClass


def file_facts(path: str | Path, formatter: Formatter, storage_class: StorageClass) -> dict[str, Any] | None:
    """``storage_class``'s facts of the file at ``path``, or None if there are none."""
    if not os.path.isfile(path):
        reason = "not a regular file" if os.path.exists(path) else "no such file"
        raise TransferError(f"cannot ingest {path}: {reason}")
    if not storage_class.metadata_fields:
        return None
    component = storage_class.metadata_component
    if component not in formatter.components:
        component = None
    try:
        with open(path, "rb") as stream:
            return storage_class.extract_metadata(formatter.read(stream, component=component))
    except (OSError, SkybutlerError, ValueError, TypeError, KeyError):
        return None


def read_file(path: str | Path, formatter: Formatter) -> Any:
    """The whole object in the file at ``path`` (ingest checks a catalog against its declared schema)."""
    try:
        with open(path, "rb") as stream:
            return formatter.read(stream)
    except OSError as err:
        raise TransferError(f"cannot ingest {path}: {err.strerror or err}") from None
