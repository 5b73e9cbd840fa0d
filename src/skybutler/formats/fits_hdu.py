"""One detector's image in a whole-exposure multi-extension FITS file (``fits-hdu:<n>``).

DECam and CFHT MegaPrime write an exposure as one file: an empty primary HDU with the
exposure's cards and one image extension per detector.  Ingest registers one dataset per
detector, all recorded at the same path, each with the formatter of its own HDU:
``fits-hdu:7`` reads HDU 7 (as ``fits`` reads one HDU), its header being the extension's
with every primary card it lacks (the merged header the camera's translator read it from,
INHERIT or not).  The name carries the HDU, so the artifact record needs no column of its own;
such a formatter only reads: the file is the camera's, written once, never by a put.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import FormatterError, TransferError
from .file_facts import ExaminedFile, check_regular, facts_of
from .fits_formatter import read_image
from .fits_io import FITS_SUFFIXES, image_hdu, open_fits
from .fits_validation import FitsCheck, validate_fits
from .formatter import Formatter
from .storage_class import HDU_PREFIX

if TYPE_CHECKING:
    from .storage_class import StorageClass

def hdu_formatter_name(hdu: int) -> str:
    """The name of the formatter reading HDU ``hdu`` of a shared file."""
    return f"{HDU_PREFIX}{hdu}"


class FitsHduFormatter(Formatter):
    """Reads HDU ``hdu`` of a multi-extension file as an ``Image``; never writes."""

    extension = ".fits"
    also_named = FITS_SUFFIXES
    components = frozenset({"header", "wcs", "data"})
    parameters = frozenset({"bbox", "wcs_key", "bin"})

    def __init__(self, hdu: int) -> None:
        if hdu < 1:
            raise FormatterError(f"formatter {HDU_PREFIX}{hdu}: a shared file's detector is in an extension (HDU >= 1)")
        self.hdu = hdu
        self.name = hdu_formatter_name(hdu)

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        raise FormatterError(f"formatter {self.name!r} only reads one detector of an ingested multi-extension "
                             "file; it writes nothing (put the image with formatter 'fits')")

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        with open_fits(stream) as hdus:
            image_hdu(hdus, self.hdu)  # a clear error if the HDU is gone or not an image
            _inherit_everything(hdus, self.hdu)
            return read_image(hdus, self.hdu, component, parameters)

    def _validate(self, stream: BinaryIO) -> FitsCheck:
        return validate_fits(stream, self.name, lambda headers: [self.hdu] if self.hdu < len(headers) else [])

    def _examined(self, stream: BinaryIO, component: str | None, checked: FitsCheck) -> Any:
        """The header component from the check's own walk (with the WCSs it built)."""
        if component == "header" and self.hdu in checked.images:
            return checked.images[self.hdu]
        return super()._examined(stream, component, checked)


def _inherit_everything(hdus: Any, index: int) -> None:
    """Make HDU ``index`` of an open (read-only) file inherit the primary's cards it lacks, in memory:
    a raw's extension holds the detector's cards, its primary the exposure's, and readers want both."""
    header = hdus[index].header
    if header.get("INHERIT") is not True:
        header["INHERIT"] = True



def examine_hdus(path: str | Path, hdus: Sequence[int], storage_class: StorageClass) -> dict[int, ExaminedFile]:
    """Check the image HDUs ``hdus`` of the file at ``path`` (in one open: every header walked once,
    each image's WCSs built, compressed tiles decoded) and take ``storage_class``'s facts of each,
    as its ``fits-hdu:<n>`` dataset; ``FormatterError`` names the HDU that fails."""
    check_regular(path)
    wanted = list(hdus)
    try:
        with open(path, "rb") as stream:
            checked = validate_fits(stream, "fits", lambda headers: [i for i in wanted if i < len(headers)])
    except OSError as exc:
        raise TransferError(f"cannot ingest {path}: {exc.strerror or exc}") from exc
    missing = [i for i in wanted if i not in checked.images]
    if missing:
        raise FormatterError(f"the file has no HDU {missing[0]}")
    return {i: ExaminedFile(facts_of(checked.images[i], storage_class) if storage_class.metadata_fields else None,
                            hdu=i) for i in wanted}
