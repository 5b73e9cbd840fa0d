"""Facts of a file that enters the repository without being put: ingest and import.

A put extracts facts from the object in memory; a file brought in is read only as
far as its storage class needs for its facts (an image's header, not its pixels).
Whether a file is accepted is its formatter's ``validate`` (run on every file by
ingest and import); a file accepted whose facts cannot be extracted goes in without
facts, which ``extract-metadata`` can fill in later.  :func:`examine_file` does both
in one open of the file (for FITS, one walk of its headers, each WCS built once), for
``ingest-raws`` and imports; an ingest checks each file from the bytes read to copy it or
for its checksum (:func:`check_file`), so that one read serves both.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SkybutlerError, TransferError
from .formatter import Formatter

if TYPE_CHECKING:
    from .storage_class import StorageClass


@dataclass(frozen=True)
class ExaminedFile:
    """A file its formatter accepted: its facts (None if it has none) and what the check learnt of it
    (a FITS file's :class:`~.fits_validation.FitsCheck`: every HDU header)."""

    facts: dict[str, Any] | None
    checked: Any = None
    #: The image HDU the dataset is, of a multi-extension file other datasets of the same ingest
    #: share (one detector of a DECam exposure); None: the file is the dataset's alone.
    hdu: int | None = None


def check_regular(path: str | Path) -> None:
    if not os.path.isfile(path):
        reason = "not a regular file" if os.path.exists(path) else "no such file"
        raise TransferError(f"cannot ingest {path}: {reason}")


def facts_of(component: Any, storage_class: StorageClass) -> dict[str, Any] | None:
    try:
        return storage_class.extract_metadata(component)
    except (SkybutlerError, ValueError, TypeError, KeyError):
        return None


def read_file(path: str | Path, formatter: Formatter) -> Any:
    """The whole object in the file at ``path`` (ingest checks a catalog against its declared schema)."""
    try:
        with open(path, "rb") as stream:
            return formatter.read(stream)
    except OSError as err:
        raise TransferError(f"cannot ingest {path}: {err.strerror or err}") from None


def examine_file(path: str | Path, formatter: Formatter, storage_class: StorageClass,
                 data: bytes | None = None) -> ExaminedFile:
    """Check the file at ``path`` with ``formatter`` and take ``storage_class``'s facts of it, in one
    open (none when ``data``, its bytes read already, is given: an import reads each file once).
    Raises :class:`TransferError` for a missing file and ``FormatterError`` (the reason) for one the
    formatter refuses."""
    component = storage_class.metadata_component if storage_class.metadata_fields else None
    if component not in formatter.components:
        component = None
    if data is not None:
        read, checked = formatter.examine(io.BytesIO(data), component)
    else:
        check_regular(path)
        try:
            with open(path, "rb") as stream:
                read, checked = formatter.examine(stream, component)
        except OSError as exc:
            raise TransferError(f"cannot ingest {path}: {exc.strerror or exc}") from exc
    facts = facts_of(read, storage_class) if storage_class.metadata_fields and read is not None else None
    return ExaminedFile(facts, checked)


def check_file(path: str | Path, formatter: Formatter, storage_class: StorageClass,
               data: bytes | None = None) -> ExaminedFile:
    """One file's check at ingest: its facts when the storage class keeps some, else the formatter's
    check alone (examining would read the whole object); from ``data``, its bytes read already (to
    be copied, or for their checksum), else from the file (one open).  Raises
    :class:`TransferError` for a missing file and ``FormatterError`` for one the formatter refuses."""
    if storage_class.metadata_fields:
        return examine_file(path, formatter, storage_class, data)
    if data is not None:
        return ExaminedFile(None, formatter.validate(io.BytesIO(data)))
    return ExaminedFile(None, _validate(path, formatter))


def _validate(path: str | Path, formatter: Formatter) -> Any:
    check_regular(path)
    try:
        with open(path, "rb") as stream:
            return formatter.validate(stream)
    except OSError as exc:
        raise TransferError(f"cannot ingest {path}: {exc.strerror or exc}") from exc
