"""Checking a FITS file at ingest, before it is placed: cheap, and naming what is wrong.

The HDUs are walked by their headers alone: every header parses, the file holds
all the data each header declares (a truncated copy is refused), and the HDUs the
storage class needs are there (a 2-D image, a table).  A gzip or bzip2 file is
decompressed first, which also checks its CRC; an image's WCSs must parse in
astropy; a tile-compressed image's tiles must decode.  Pixels of plain files are
never decoded; the data of an HDU with a DATASUM card (the FITS checksum convention, written by
cameras and archives) are summed as read and must match it, so corrupt pixels or compressed tiles
of any HDU are refused (~2 ms of CPU for 15 MB).
"""

from __future__ import annotations

import bz2
import gzip
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..errors import FormatterError
from .fits_cards import BLOCK, FitsHeader, read_header
from .fits_io import BZIP2_MAGIC, GZIP_MAGIC, NOT_INHERITED, STRUCTURAL
from .fits_wcs import CheckedHeader

SPOOL_BYTES = 64 << 20
"""Decompressed content up to this size is checked in memory, beyond it in a temporary file."""
SUM_CHUNK = 16 << 20
"""Data are summed for their DATASUM in reads of this many bytes."""


def walk_headers(stream: BinaryIO, name: str) -> tuple[list[FitsHeader], BinaryIO]:
    """Every HDU header of a (possibly gzip/bzip2-compressed) FITS stream, after checking that each
    parses and that the file holds the data each declares; also the plain stream they came from."""
    stream.seek(0)
    magic = stream.read(3)
    stream.seek(0)
    for kind, prefix, opener in (("gzip", GZIP_MAGIC, lambda s: gzip.GzipFile(fileobj=s, mode="rb")),
                                 ("bzip2", BZIP2_MAGIC, lambda s: bz2.BZ2File(s, mode="rb"))):
        if magic.startswith(prefix):
            stream = _decompressed_copy(opener(stream), kind, name)
    length = stream.seek(0, 2)
    if not length:
        raise FormatterError(f"Formatter {name!r}: the file is empty.")
    offset, headers = 0, []
    while offset < length:
        stream.seek(offset)
        try:
            header = read_header(stream)
        except (ValueError, OSError, EOFError) as err:
            stream.seek(offset)
            if headers and not stream.read().strip(b"\0 "):
                break  # blank padding after the last HDU
            where = "the primary header" if not headers else f"the header of HDU {len(headers)}"
            raise FormatterError(f"Formatter {name!r}: {where} does not parse: {err}") from None
        data_end = stream.tell() + data_bytes(header)
        if data_end > length:
            raise FormatterError(f"Formatter {name!r}: truncated: HDU {len(headers)} declares data up to byte "
                                 f"{data_end}, but the file has {length} bytes")
        if "DATASUM" in header:
            _check_datasum(stream, header, data_end, len(headers), name)
        headers.append(header)
        offset = -(-data_end // BLOCK) * BLOCK
        if len(headers) == 1 and offset < length and _stray_group_cards(header):
            stream.seek(offset)
            if stream.read(BLOCK).strip(b"\0 "):  # an extension follows, which astropy would not find
                raise FormatterError(
                    f"Formatter {name!r}: the primary HDU has PCOUNT/GCOUNT cards but is not random groups "
                    "(GROUPS = T): astropy reads them as part of its data size and would not find the "
                    "extensions after it; remove them")
    return headers, stream


def _check_datasum(stream: BinaryIO, header: Any, data_end: int, index: int, name: str) -> None:
    """The HDU's data (up to ``data_end``; its zero fill adds nothing) summed as the FITS checksum
    convention sums them (32-bit big-endian words, ones' complement) must be its DATASUM card's value."""
    import numpy as np

    try:
        expected = int(str(header["DATASUM"]).strip())
    except ValueError:
        return  # blank or not a number: no checksum to check
    size = data_bytes(header)
    if not size:
        return
    stream.seek(data_end - size)
    total, pending, remaining = 0, b"", size
    while remaining:
        chunk = stream.read(min(remaining, SUM_CHUNK))
        if not chunk:
            break
        remaining -= len(chunk)
        chunk = pending + chunk
        whole = len(chunk) - len(chunk) % 4 if remaining else len(chunk) + (-len(chunk)) % 4
        chunk = chunk.ljust(whole, b"\0")
        pending = chunk[whole:]
        total += int(np.frombuffer(chunk[:whole], dtype=">u4").sum(dtype=np.uint64))
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    if total != expected:
        raise FormatterError(f"Formatter {name!r}: the data of HDU {index} do not match its DATASUM card "
                             f"({expected}; they sum to {total}): the file is corrupt, or its data were "
                             "changed without their checksum")


def _stray_group_cards(header: Any) -> bool:
    """Whether a primary header that is not random groups carries PCOUNT/GCOUNT of another value than
    the standard's (0 and 1)."""
    return not (header.get("GROUPS") is True and int(header.get("NAXIS1", 0)) == 0) and (
        int(header.get("PCOUNT", 0)) != 0 or int(header.get("GCOUNT", 1)) != 1)


def _decompressed_copy(source: Any, kind: str, name: str) -> BinaryIO:
    """The whole decompressed content (checking the stream's CRC), in memory up to 64 MiB and in a
    temporary file beyond, so a big raw is not held in memory twice."""
    copy = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    try:
        while chunk := source.read(1 << 20):
            copy.write(chunk)
    except (OSError, EOFError, ValueError) as exc:
        copy.close()
        raise FormatterError(f"Formatter {name!r}: the {kind} stream is corrupt: {exc}") from None
    copy.seek(0)
    return copy


def data_bytes(header: Any) -> int:
    """The size in bytes of the data an HDU's header declares (FITS standard, section 4.4.1),
    without the padding to 2880-byte blocks.

    PCOUNT and GCOUNT count only in extensions and random groups: in a primary array they mean
    nothing (a raw header merged from a primary and a compressed extension, written back as one
    primary HDU, carries the extension's heap size in PCOUNT; its data are still NAXIS1 x NAXIS2)."""
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    groups = "SIMPLE" in header and header.get("GROUPS") is True and int(header.get("NAXIS1", 0)) == 0
    pixels = 1
    for axis in range(2 if groups else 1, naxis + 1):
        pixels *= int(header.get(f"NAXIS{axis}", 0))
    bits = abs(int(header.get("BITPIX", 8)))
    if "SIMPLE" in header and not groups:
        return bits // 8 * pixels
    return bits // 8 * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + pixels)


def is_2d_image(header: Any) -> bool:
    """Whether a raw header is a 2-D image: a primary or IMAGE extension, or a tile-compressed one."""
    if header.get("ZIMAGE") is True:
        return header.get("ZNAXIS") == 2
    return ("SIMPLE" in header or header.get("XTENSION") == "IMAGE") and header.get("NAXIS") == 2


def is_table(header: Any) -> bool:
    return header.get("XTENSION") in ("BINTABLE", "TABLE") and header.get("ZIMAGE") is not True


@dataclass(frozen=True)
class FitsCheck:
    """What checking a FITS file learnt: every HDU's header, and each checked image HDU's header
    (primary cards inherited) with its WCSs, by HDU index."""

    headers: list[FitsHeader]
    images: dict[int, CheckedHeader]


def validate_fits(stream: BinaryIO, name: str, images: Callable[[list[Any]], list[int]] | None) -> FitsCheck:
    """Walk the headers; then check the WCSs and tiles of the image HDUs ``images(headers)`` picks
    (None: the file must hold a table instead)."""
    headers, plain = walk_headers(stream, name)
    try:
        if images is None:
            if not any(is_table(h) for h in headers):
                raise FormatterError(f"Formatter {name!r}: the file holds no table HDU.")
            return FitsCheck(headers, {})
        chosen = images(headers)
        if not chosen:
            raise FormatterError(f"Formatter {name!r}: the file holds no 2-D image HDU.")
        with _Opened(plain) as opened:
            return FitsCheck(headers, {index: _check_image(opened, headers, index, name) for index in chosen})
    finally:
        if plain is not stream:  # the decompressed copy
            plain.close()


class _Opened:
    """The file opened by astropy once, when a tile-compressed image is first checked, for every image
    checked after it: each reopening would parse again every header before its HDU (a whole DECam
    exposure's 62 CCDs: ~2,000 header parses instead of 62)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self._hdus: Any = None
        self._context: Any = None

    def hdus(self) -> Any:
        if self._hdus is None:
            from .fits_io import open_fits

            self.stream.seek(0)
            self._context = open_fits(self.stream)
            self._hdus = self._context.__enter__()
        return self._hdus

    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._context is not None:
            self._context.__exit__(*exc)


def first_image(headers: list[Any]) -> list[int]:
    return next(([i] for i, h in enumerate(headers) if is_2d_image(h)), [])


def every_image(headers: list[Any]) -> list[int]:
    return [i for i, h in enumerate(headers) if is_2d_image(h)]


def _check_image(opened: _Opened, headers: list[FitsHeader], index: int, name: str) -> CheckedHeader:
    from .fits_wcs import build_wcs_of_cards, wcs_keys

    label = f"Formatter {name!r}: HDU {index} ({headers[index].get('EXTNAME', 'PRIMARY' if not index else '-')})"
    header = headers[index]
    if header.get("ZIMAGE") is True:
        hdu = opened.hdus()[index]
        header = FitsHeader.from_astropy(hdu.header)  # the image's header, not the table's
        try:
            hdu.data
        except Exception as exc:
            raise FormatterError(f"{label}: its compressed tiles cannot be decoded: {exc}") from None
        del hdu.data  # decoded to check its tiles, not kept (a whole exposure's would all be held)
    if index and header.get("INHERIT") is True:
        inherited: dict[str, Any] = {}
        for card in headers[0].cards:
            if card.keyword and not (STRUCTURAL.match(card.keyword) or NOT_INHERITED.match(card.keyword)) \
                    and card.keyword not in header and card.keyword not in ("COMMENT", "HISTORY"):
                inherited.setdefault(card.keyword, card)
        header = header.with_cards(list(inherited.values()))
    built = {}
    for key in wcs_keys(header):
        try:
            built[key] = build_wcs_of_cards(header, key)
        except FormatterError as exc:
            raise FormatterError(f"{label}: {exc}") from None
    return CheckedHeader(header, built)
