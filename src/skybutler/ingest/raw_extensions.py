"""The detectors of a whole-exposure raw file: one image extension per detector (DECam, MegaPrime).

Such a file is ingested as one ``raw`` dataset per detector, all sharing the file
(:mod:`skybutler.shared_files`).  Each image extension's header, merged over the primary's
(the extension's cards win, as astro-metadata-translator merges a DECam CCD's), is translated
on its own; an extension whose detector the camera's description does not have (DECam's
guide and focus CCDs, which astro-metadata-translator leaves out too) is not a dataset, though
its pixels stay in the stored file.  Any other extension that cannot be translated, or two
extensions of one detector, refuse the whole file by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..formats import ExaminedFile, get_storage_class
from ..instruments import ObservationMetadata, RawHeaderError, metadata_from_header
from ..instruments.errors import InstrumentError
from ..instruments.headers import translator_for
from ..instruments.instrument import get_instrument

#: Cards that describe one HDU's layout or checksum, never taken from another HDU.
_OWN = frozenset({"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "PCOUNT", "GCOUNT",
                  "CHECKSUM", "DATASUM", "COMMENT", "HISTORY", ""})


def extension_header(headers: Sequence[Any], index: int) -> dict[str, Any]:
    """The cards a translator reads for the detector of HDU ``index``: the primary's, overwritten by
    the extension's (commentary and layout cards left out)."""
    merged: dict[str, Any] = {}
    for header in (headers[0], headers[index]):
        for card in header.cards:
            if card.keyword not in _OWN:
                merged[card.keyword] = card.value
    return merged


def read_detectors(path: str | Path, headers: Sequence[Any],
                   storage_class: str) -> list[tuple[ObservationMetadata, ExaminedFile]]:
    """Each detector of a whole-exposure file whose ``headers`` were walked: its metadata and its
    check (``examined.hdu``: its HDU), in HDU order.  Raises :class:`RawHeaderError` naming the HDU
    that stops the file."""
    from ..formats.fits_hdu import examine_hdus
    from ..formats.fits_validation import is_2d_image

    found: list[tuple[int, ObservationMetadata]] = []
    first_hdu: dict[int, int] = {}
    for index in range(1, len(headers)):
        if not is_2d_image(headers[index]):
            continue
        header = extension_header(headers, index)
        if not _described(header, path):
            continue
        try:
            meta = metadata_from_header(header, path)
        except RawHeaderError as err:
            raise RawHeaderError(path, f"HDU {index}: {err.reason}") from err
        if meta.detector in first_hdu:
            raise RawHeaderError(path, f"HDUs {first_hdu[meta.detector]} and {index} both hold detector "
                                       f"{meta.detector}: which one is the raw is not known")
        first_hdu[meta.detector] = index
        found.append((index, meta))
    if not found:
        raise RawHeaderError(path, "none of its image extensions holds a detector of its camera")
    try:
        examined = examine_hdus(path, [i for i, _ in found], get_storage_class(storage_class))
    except Exception as err:
        raise RawHeaderError(path, f"not a readable FITS file: {err}") from err
    return [(meta, examined[index]) for index, meta in found]


def _described(header: dict[str, Any], path: str | Path) -> bool:
    """Whether the detector the header's translator reads is one of its camera's description (a
    header it cannot read a detector from is left to the full translation, which says why)."""
    try:
        translator = translator_for(header, str(path))(header, filename=str(path))
        camera = get_instrument(translator.to_instrument())
        number = translator.to_detector_num()
    except Exception:
        return True
    try:
        camera.detector(number)
    except InstrumentError:
        return False
    return True
