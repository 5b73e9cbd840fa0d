"""FITS formatter for images: header, WCS and pixel boxes are read without the whole image.

FITS stores pixels row by row after a header, so astropy's ``HDU.section`` on a
seekable stream reads only the rows (and, within them, the columns) of a box.  The
header and WCS components stop after the header blocks.  memmap is never used,
because the stream may be a remote (fsspec) file rather than a real one.
"""

from __future__ import annotations

import gzip
import io
import re
import warnings
from typing import Any, BinaryIO

import numpy as np

from ..errors import FormatterError
from .formatter import Formatter
from .image_class import check_image, image_parts

BBox = tuple[int, int, int, int]

_STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|BSCALE|BZERO|BLANK|CHECKSUM|DATASUM)$"
)
"""Keywords astropy derives from the data; copying them from another HDU would be wrong."""

_BLOCK = 2880
"""FITS headers and data come in blocks of this many bytes."""

_GZIP_MAGIC = b"\x1f\x8b"

_ALT_KEYS = " ABCDEFGHIJKLMNOPQRSTUVWXYZ"
"""Primary WCS (blank) and the 26 alternate WCS letters, all shifted by a cut-out."""


class FitsFormatter(Formatter):
    """Writes a 2-D image as a single-HDU FITS file; reads an ImageHDU, a component or a box."""

    name = "fits"
    extension = ".fits"
    components = frozenset({"header", "wcs", "data"})
    parameters = frozenset({"bbox"})

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        from astropy.io import fits

        try:
            check_image(obj)
        except (TypeError, ValueError) as exc:
            raise FormatterError(f"Formatter {self.name!r} cannot write this object: {exc}") from exc
        data, header = image_parts(obj)
        hdu = fits.PrimaryHDU(data=data, header=_without_structural(header))
        fits.HDUList([hdu]).writeto(stream, output_verify="silentfix")

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        from astropy.io import fits

        with fits.open(_Borrowed(stream), memmap=False, lazy_load_hdus=True) as hdus:
            hdu = _image_hdu(hdus)
            header = hdu.header.copy()
            n_y, n_x = header["NAXIS2"], header["NAXIS1"]
            box = None
            if "bbox" in parameters:
                box = _check_bbox(parameters["bbox"], n_x, n_y)
                _shift_header(header, box)
            if component == "header":
                return header
            if component == "wcs":
                return _wcs(header)
            if box is None:
                data = np.asarray(hdu.data)
            else:
                x_min, y_min, x_max, y_max = box
                data = np.asarray(hdu.section[y_min:y_max, x_min:x_max])
        data = data.astype(data.dtype.newbyteorder("="), copy=False)  # FITS is big-endian; hand out native
        if component == "data":
            return data
        return fits.ImageHDU(data=data, header=_without_structural(header))


    def _validate(self, stream: BinaryIO) -> None:
        """Walk the file's HDUs by their headers alone: every header parses, the file holds all
        the data each header declares, and one HDU is a 2-D image (plain or tile-compressed).

        No pixel is read: each header's declared data size (and padding) is skipped over.
        A gzip-compressed file is decompressed first, since only then are sizes known.
        """
        from astropy.io import fits

        stream.seek(0)
        if stream.read(2) == _GZIP_MAGIC:
            stream.seek(0)
            stream = io.BytesIO(gzip.decompress(stream.read()))
        length = stream.seek(0, 2)
        if not length:
            raise FormatterError("Formatter 'fits': the file is empty.")
        offset, number, has_image = 0, 0, False
        while offset < length:
            stream.seek(offset)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # astropy's note of blank padding, handled below
                    header = fits.Header.fromfile(stream, padding=True)
            except (ValueError, OSError, EOFError) as err:
                stream.seek(offset)
                if number and not stream.read().strip(b"\0 "):
                    break  # blank padding after the last HDU
                where = "the primary header" if not number else f"the header of HDU {number}"
                raise FormatterError(f"Formatter 'fits': {where} does not parse: {err}") from None
            has_image = has_image or _is_2d_image(header)
            data_end = stream.tell() + _data_bytes(header)
            if data_end > length:
                raise FormatterError(f"Formatter 'fits': truncated: HDU {number} declares data up to byte "
                                     f"{data_end}, but the file has {length} bytes")
            offset = -(-data_end // _BLOCK) * _BLOCK
            number += 1
        if not has_image:
            raise FormatterError("Formatter 'fits': the file holds no 2-D image HDU.")


class _Borrowed:
    """A read-only view of the caller's stream whose ``close`` does nothing.

    astropy closes the file object it was given when its HDUList closes; the stream
    belongs to the caller (the datastore), so astropy only gets this view of it.
    """

    mode = "rb"

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return False

    def close(self) -> None:
        """Leave the underlying stream open for its owner."""


def _image_hdu(hdus: Any) -> Any:
    """The first HDU holding a 2-D image (the primary for our files; an extension for ingested raws)."""
    for hdu in hdus:
        if hdu.header.get("NAXIS") == 2 and hdu.is_image:
            return hdu
    raise FormatterError("Formatter 'fits': the file holds no 2-D image HDU.")


def _data_bytes(header: Any) -> int:
    """The size in bytes of the data an HDU's header declares (FITS standard, section 4.4.1),
    without the padding to 2880-byte blocks."""
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    pixels = 1
    for axis in range(1, naxis + 1):
        pixels *= int(header.get(f"NAXIS{axis}", 0))
    bits = abs(int(header.get("BITPIX", 8)))
    return bits // 8 * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + pixels)


def _is_2d_image(header: Any) -> bool:
    """Whether a raw header is a 2-D image: a primary or IMAGE extension, or a tile-compressed one."""
    if header.get("ZIMAGE") is True:
        return header.get("ZNAXIS") == 2
    return ("SIMPLE" in header or header.get("XTENSION") == "IMAGE") and header.get("NAXIS") == 2


def _check_bbox(bbox: Any, n_x: int, n_y: int) -> BBox:
    """Validate ``(x_min, y_min, x_max, y_max)``: integers, half-open, non-empty, inside the image."""
    if isinstance(bbox, (str, bytes)) or not hasattr(bbox, "__len__") or len(bbox) != 4:
        raise FormatterError(
            f"Formatter 'fits': bbox must be (x_min, y_min, x_max, y_max), got {bbox!r}."
        )
    values = []
    for value in bbox:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise FormatterError(f"Formatter 'fits': bbox {tuple(bbox)!r} must hold integers.")
        values.append(int(value))
    x_min, y_min, x_max, y_max = values
    if x_min >= x_max or y_min >= y_max:
        raise FormatterError(
            f"Formatter 'fits': bbox {tuple(values)} is empty (need x_min < x_max and y_min < y_max)."
        )
    if x_min < 0 or y_min < 0 or x_max > n_x or y_max > n_y:
        raise FormatterError(
            f"Formatter 'fits': bbox {tuple(values)} is outside the {n_x}x{n_y} image "
            f"(valid: 0 <= x < {n_x}, 0 <= y < {n_y})."
        )
    return x_min, y_min, x_max, y_max


def _shift_header(header: Any, box: BBox) -> None:
    """Make ``header`` describe the cut-out: new size, WCS reference pixels and IRAF LTV offsets."""
    x_min, y_min, x_max, y_max = box
    header["NAXIS1"] = x_max - x_min
    header["NAXIS2"] = y_max - y_min
    for alt in _ALT_KEYS:
        suffix = alt.strip()
        for axis, offset in ((1, x_min), (2, y_min)):
            key = f"CRPIX{axis}{suffix}"
            if key in header:
                header[key] = header[key] - offset
    header["LTV1"] = (header.get("LTV1", 0) - x_min, "cut-out offset: logical = physical + LTV")
    header["LTV2"] = (header.get("LTV2", 0) - y_min, "cut-out offset: logical = physical + LTV")


def _wcs(header: Any) -> Any:
    """The WCS of ``header``; the benign FITS-fixing warnings astropy emits are silenced."""
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(header)


def _without_structural(header: Any) -> Any:
    """A copy of ``header`` without the keywords astropy must derive from the pixel data."""
    from astropy.io import fits

    if header is None:
        return fits.Header()
    clean = header.copy()
    for keyword in {card.keyword for card in header.cards if _STRUCTURAL.match(card.keyword)}:
        clean.remove(keyword, ignore_missing=True, remove_all=True)
    return clean
