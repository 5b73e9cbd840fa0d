"""FITS formatters for images: one image HDU (``fits``) or a whole multi-extension file (``fits-mef``).

Both read any HDU (by index, EXTNAME or (EXTNAME, EXTVER)) of plain, gzip, bzip2 or
tile-compressed FITS.  A pixel box is read with astropy's ``HDU.section``: for plain
FITS only the rows (and columns) of the box, for a tile-compressed image only the
tiles it touches.  The header and WCS components stop after the headers.  memmap is
never used, because the stream may be a remote (fsspec) file rather than a real one.
Cut-outs slice every WCS of the header with astropy (:mod:`.fits_wcs`).  ``bin`` reads the
pixels (of the box) averaged in blocks, a band of rows at a time (:mod:`.quicklook`).
"""

from __future__ import annotations

from typing import Any, BinaryIO

import numpy as np

from ..errors import FormatterError
from .fits_io import (
    FITS_SUFFIXES,
    image_hdu,
    merged_header,
    normalise_hdu_key,
    open_fits,
    select_hdu,
    without_structural,
)
from .fits_validation import FitsCheck, every_image, first_image, validate_fits
from .fits_wcs import build_wcs, check_key, cutout_header, default_key, sliced_wcs
from .formatter import Formatter
from .image_class import check_image, check_multi_extension, image_parts
from .quicklook import binned_pixels, check_bin

BBox = tuple[int, int, int, int]


class FitsFormatter(Formatter):
    """Writes a 2-D image as a single-HDU FITS file; reads an image HDU, a component or a box."""

    name = "fits"
    extension = ".fits"
    also_named = FITS_SUFFIXES
    components = frozenset({"header", "wcs", "data"})
    parameters = frozenset({"bbox", "hdu", "wcs_key", "bin"})

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        from astropy.io import fits

        with self._refusing(TypeError, ValueError):
            check_image(obj)
        data, header = image_parts(obj)
        hdu = fits.PrimaryHDU(data=data, header=without_structural(header))
        fits.HDUList([hdu]).writeto(stream, output_verify="silentfix")

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        key = normalise_hdu_key(parameters["hdu"]) if "hdu" in parameters else None
        with open_fits(stream) as hdus:
            return read_image(hdus, key, component, parameters)

    def _validate(self, stream: BinaryIO) -> FitsCheck:
        return validate_fits(stream, self.name, first_image)

    def _examined(self, stream: BinaryIO, component: str | None, checked: FitsCheck) -> Any:
        """The header component comes from the check's own header walk, with the WCSs it built."""
        if component == "header" and checked.images:
            return next(iter(checked.images.values()))
        return super()._examined(stream, component, checked)


class MultiExtensionFitsFormatter(Formatter):
    """Writes an HDUList as it is; reads it whole, every header, or one HDU like ``fits`` does."""

    name = "fits-mef"
    extension = ".fits"
    also_named = FITS_SUFFIXES
    components = frozenset({"headers", "header", "wcs", "data"})
    parameters = frozenset({"bbox", "hdu", "wcs_key", "bin"})

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        from astropy.io import fits

        with self._refusing(TypeError, ValueError):
            check_multi_extension(obj)
        hdus = list(obj)
        if not isinstance(hdus[0], fits.PrimaryHDU):
            hdus.insert(0, fits.PrimaryHDU())
        # CHECKSUM/DATASUM cards the HDUs were read with describe other bytes: not written (as by ``fits``).
        fits.HDUList(hdus).writeto(stream, output_verify="silentfix", checksum="remove")

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        key = normalise_hdu_key(parameters["hdu"]) if "hdu" in parameters else None
        with open_fits(stream) as hdus:
            if component == "headers":
                return [merged_header(hdus, i) for i, _ in enumerate(hdus)]
            if component == "header":
                index, _ = select_hdu(hdus, 0 if key is None else key)
                return merged_header(hdus, index)
            if key is None and component is None:
                if "bbox" in parameters:
                    raise FormatterError("bbox needs an hdu parameter naming the image to cut out")
                return _in_memory(hdus)
            return read_image(hdus, key, component, parameters)

    def _validate(self, stream: BinaryIO) -> FitsCheck:
        return validate_fits(stream, self.name, every_image)


def read_image(hdus: Any, key: Any, component: str | None, parameters: dict[str, Any]) -> Any:
    """One image HDU of an open file (``key``: None for the first 2-D image): whole, a component, a box."""
    from astropy.io import fits

    index, hdu = image_hdu(hdus, key)
    header = merged_header(hdus, index)
    box = _check_bbox(parameters["bbox"], header["NAXIS1"], header["NAXIS2"]) if "bbox" in parameters else None
    if component == "wcs":
        wcs_key = check_key(header, parameters["wcs_key"]) if "wcs_key" in parameters else default_key(header)
        wcs = build_wcs(header, wcs_key, hdus)
        return wcs if box is None else sliced_wcs(wcs, box)
    if "wcs_key" in parameters:
        check_key(header, parameters["wcs_key"])
    if "bin" in parameters:
        factor = check_bin(parameters["bin"])
        if component != "data":
            raise FormatterError("bin reads binned pixels only: ask for component='data'")
        return binned_pixels(hdu.section, box or (0, 0, header["NAXIS1"], header["NAXIS2"]), factor)
    if box is not None:
        header = cutout_header(header, box, hdus)
    if component == "header":
        return header
    if box is None:
        data = np.asarray(hdu.data)
    else:
        x_min, y_min, x_max, y_max = box
        data = np.asarray(hdu.section[y_min:y_max, x_min:x_max])
    data = data.astype(data.dtype.newbyteorder("="), copy=False)  # FITS is big-endian; hand out native
    if component == "data":
        return data
    return fits.ImageHDU(data=data, header=without_structural(header))


def _in_memory(hdus: Any) -> Any:
    """A detached copy of every HDU (tile-compressed images decompressed), primary cards inherited."""
    from astropy.io import fits

    out = []
    for index, hdu in enumerate(hdus):
        header = without_structural(merged_header(hdus, index))
        if hdu.is_image:
            data = None if hdu.data is None else np.array(hdu.data)
            kind = fits.PrimaryHDU if index == 0 else fits.ImageHDU
            out.append(kind(data=data, header=header))
        elif isinstance(hdu, fits.BinTableHDU):
            out.append(fits.BinTableHDU(data=hdu.data.copy(), header=hdu.header.copy()))
        else:
            out.append(hdu.copy())
    return fits.HDUList(out)


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
