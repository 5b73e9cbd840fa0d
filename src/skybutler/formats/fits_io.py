"""Opening FITS files for reading: decompression, HDU selection, header inheritance, validation.

astropy decompresses gzip and bzip2 files only when it opens a path or a real OS file;
a stream (an S3 object, a checksum buffer, the caller's borrowed file) it reads as
plain FITS, and a compressed one fails with "No SIMPLE card found".  So the magic
bytes are sniffed here and a compressed stream is handed to astropy through
``gzip``/``bz2`` decompressors.  Tile-compressed files (``.fz``, ``CompImageHDU``)
need nothing: astropy reads their tiles itself, only those a section needs.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import re
import warnings
from collections.abc import Iterator
from typing import Any, BinaryIO

from ..errors import FormatterError

GZIP_MAGIC = b"\x1f\x8b"
#: Extensions FITS files carry besides ``.fits`` (``.fz``: fpack's tile-compressed files).
FITS_SUFFIXES = (".fit", ".fts", ".fz")
BZIP2_MAGIC = b"BZh"

STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|BSCALE|BZERO|BLANK|CHECKSUM|DATASUM)$"
)
"""Keywords astropy derives from the data; copying them from another HDU would be wrong."""

NOT_INHERITED = re.compile(r"^(INHERIT|EXTNAME|EXTVER|EXTLEVEL|TFIELDS|THEAP)$")
"""Keywords naming or shaping one extension, which the INHERIT convention never passes on."""

HduKey = int | str | tuple[str, int]
"""An HDU named by index (0 = primary), EXTNAME, or (EXTNAME, EXTVER)."""


class Borrowed:
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


def compression_of(stream: BinaryIO) -> str | None:
    """``"gzip"``, ``"bzip2"`` or None (plain or tile-compressed FITS), from the first bytes."""
    start = stream.tell()
    magic = stream.read(3)
    stream.seek(start)
    if magic.startswith(GZIP_MAGIC):
        return "gzip"
    if magic.startswith(BZIP2_MAGIC):
        return "bzip2"
    return None


def decompressed(stream: BinaryIO) -> Any:
    """A file object astropy can read as plain FITS: the stream itself, or a decompressor over it."""
    kind = compression_of(stream)
    view = Borrowed(stream)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=view, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(view, mode="rb")
    return view


@contextlib.contextmanager
def open_fits(stream: BinaryIO) -> Iterator[Any]:
    """The HDUList of a (possibly gzip/bzip2-compressed) FITS stream; the stream stays open."""
    from astropy.io import fits

    source = decompressed(stream)
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hdus = fits.open(source, memmap=False, lazy_load_hdus=True)
        except (OSError, EOFError, ValueError, TypeError) as exc:
            raise FormatterError(f"not a readable FITS file: {exc}") from None
        with hdus:
            yield hdus
    finally:
        if not isinstance(source, Borrowed):
            source.close()


def hdu_names(hdus: Any) -> list[str]:
    """``index:EXTNAME`` of every HDU, for error messages."""
    return [f"{i}:{hdu.name or '-'}" for i, hdu in enumerate(hdus)]


def normalise_hdu_key(key: Any) -> HduKey:
    """Validate the ``hdu`` read parameter: an index, an EXTNAME, or (EXTNAME, EXTVER)."""
    if isinstance(key, bool):
        raise FormatterError(f"hdu must be an index, an EXTNAME or (EXTNAME, EXTVER), not {key!r}")
    if isinstance(key, int) or (hasattr(key, "__index__") and not isinstance(key, str)):
        index = int(key)
        if index < 0:
            raise FormatterError(f"hdu index must be >= 0, got {index}")
        return index
    if isinstance(key, str):
        if key.strip().lstrip("-").isdigit():
            return normalise_hdu_key(int(key))
        return key
    if isinstance(key, (tuple, list)) and len(key) == 2 and isinstance(key[0], str) \
            and isinstance(key[1], int) and not isinstance(key[1], bool):
        return key[0], int(key[1])
    raise FormatterError(f"hdu must be an index, an EXTNAME or (EXTNAME, EXTVER), not {key!r}")


def select_hdu(hdus: Any, key: HduKey | None) -> tuple[int, Any]:
    """(index, HDU) for ``key``; None picks the first HDU holding a 2-D image."""
    if key is None:
        for index, hdu in enumerate(hdus):
            if hdu.is_image and hdu.header.get("NAXIS") == 2:
                return index, hdu
        raise FormatterError(f"the file holds no 2-D image HDU (HDUs: {', '.join(hdu_names(hdus))})")
    if isinstance(key, int):
        for index, hdu in enumerate(hdus):
            if index == key:
                return index, hdu
        raise FormatterError(f"no HDU {key} in the file (HDUs: {', '.join(hdu_names(hdus))})")
    name, version = (key, None) if isinstance(key, str) else key
    for index, hdu in enumerate(hdus):
        if hdu.name.upper() == name.strip().upper() and (version is None or hdu.ver == version):
            return index, hdu
    raise FormatterError(f"no HDU {key!r} in the file (HDUs: {', '.join(hdu_names(hdus))})")


def image_hdu(hdus: Any, key: HduKey | None) -> tuple[int, Any]:
    """The 2-D image HDU for ``key``; a clear error for a table, an empty or an N-D HDU."""
    index, hdu = select_hdu(hdus, key)
    label = f"HDU {index} ({hdu.name or 'unnamed'})"
    if not hdu.is_image:
        raise FormatterError(f"{label} is a {type(hdu).__name__}, not an image")
    naxis = hdu.header.get("NAXIS", 0)
    if naxis != 2:
        raise FormatterError(f"{label} holds a {naxis}-D array, not a 2-D image")
    return index, hdu


def table_hdu(hdus: Any, key: HduKey | None) -> tuple[int, Any]:
    """The binary/ASCII table HDU for ``key`` (None: the first table)."""
    from astropy.io import fits

    if key is None:
        for index, hdu in enumerate(hdus):
            if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                return index, hdu
        raise FormatterError(f"the file holds no table HDU (HDUs: {', '.join(hdu_names(hdus))})")
    index, hdu = select_hdu(hdus, key)
    if not isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
        raise FormatterError(f"HDU {index} ({hdu.name or 'unnamed'}) is a {type(hdu).__name__}, not a table")
    return index, hdu


def merged_header(hdus: Any, index: int) -> Any:
    """The header of HDU ``index`` with the primary header's cards it lacks when it says INHERIT = T.

    The FITS inheritance convention: an extension inherits the primary header's
    keywords it does not itself define; layout keywords are never inherited.
    """
    header = hdus[index].header.copy()
    if index == 0 or header.get("INHERIT") is not True:
        return header
    for card in hdus[0].header.cards:
        keyword = card.keyword
        if (not keyword or keyword in ("COMMENT", "HISTORY") or STRUCTURAL.match(keyword)
                or NOT_INHERITED.match(keyword) or keyword in header):
            continue
        header.append((keyword, card.value, card.comment))
    return header


def without_structural(header: Any) -> Any:
    """A copy of ``header`` without the layout keywords astropy must derive from the pixel data."""
    from astropy.io import fits

    if header is None:
        return fits.Header()
    clean = header.copy()
    for keyword in {card.keyword for card in header.cards if STRUCTURAL.match(card.keyword)}:
        clean.remove(keyword, ignore_missing=True, remove_all=True)
    return clean
