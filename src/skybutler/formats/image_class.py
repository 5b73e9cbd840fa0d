"""The ``Image`` storage class: a 2-D pixel array, optionally with a FITS header and WCS.

Its metadata extractor records the shape and pixel type, the sky position of the
image centre when the header carries a celestial WCS, and a few observation
header keys, so images can be found by query without opening them.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np

from .storage_class import StorageClass

HEADER_KEYS: dict[str, str] = {"exptime": "EXPTIME", "filter": "FILTER", "obstype": "OBSTYPE"}
"""Metadata field -> FITS header keyword copied into the dataset metadata when present."""


def image_parts(obj: Any) -> tuple[np.ndarray, Any]:
    """The pixel array and FITS header (None for a bare array) of an accepted image."""
    if isinstance(obj, np.ndarray):
        return obj, None
    return obj.data, obj.header


def _is_image_hdu(obj: Any) -> bool:
    """True for a FITS image HDU (primary, extension or tile-compressed), without importing astropy."""
    fits = sys.modules.get("astropy.io.fits")
    return fits is not None and isinstance(obj, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))


def check_image(obj: Any) -> Any:
    """Accept a 2-D numeric numpy array or a FITS image HDU holding one; return it unchanged."""
    if isinstance(obj, np.ndarray):
        data = obj
    elif _is_image_hdu(obj):
        data = obj.data
        if data is None:
            raise ValueError("the HDU has no data")
    else:
        raise TypeError("expected a 2-D numpy array or an astropy.io.fits image HDU")
    if np.ma.isMaskedArray(data):
        raise TypeError("masked arrays cannot be stored in FITS; store the mask as its own image")
    if data.ndim != 2:
        raise ValueError(f"the pixel array has {data.ndim} dimensions (shape {data.shape}); need 2")
    if data.dtype.kind not in "iuf" or data.dtype == np.float16:
        raise ValueError(f"pixel type {data.dtype} cannot be stored in FITS; use an integer, float32 or float64")
    return obj


def extract_image_metadata(obj: Any) -> dict[str, Any]:
    """Shape, pixel type, sky position of the centre, and the selected header keys."""
    data, header = image_parts(obj)
    n_y, n_x = data.shape
    facts: dict[str, Any] = {"n_x": n_x, "n_y": n_y, "dtype": data.dtype.name}
    facts["ra_center"], facts["dec_center"] = sky_center(header, n_x, n_y)
    for field, keyword in HEADER_KEYS.items():
        facts[field] = header.get(keyword) if header is not None else None
    return facts


def sky_center(header: Any, n_x: int, n_y: int) -> tuple[float | None, float | None]:
    """(RA, Dec) in degrees of the image centre, or (None, None) without a usable celestial WCS."""
    if header is None or "CTYPE1" not in header:
        return None, None
    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header)
            if not wcs.has_celestial:
                return None, None
            celestial = wcs.celestial
            lon, lat = celestial.all_pix2world([(n_x - 1) / 2.0], [(n_y - 1) / 2.0], 0)
    except Exception:  # a malformed WCS only means "position unknown"
        return None, None
    # all_pix2world answers in the header's own axis order; make it (RA, Dec).
    if celestial.wcs.lng == 1:
        lon, lat = lat, lon
    ra, dec = float(lon[0]), float(lat[0])
    if not (np.isfinite(ra) and np.isfinite(dec)):
        return None, None
    return ra % 360.0, dec


IMAGE = StorageClass(
    name="Image",
    default_formatter="fits",
    formatters=("fits",),
    accepts="2-D numpy.ndarray, astropy.io.fits.PrimaryHDU or astropy.io.fits.ImageHDU",
    checker=check_image,
    extractor=extract_image_metadata,
    components={
        "header": "the FITS header (astropy.io.fits.Header), read without the pixels",
        "wcs": "the world coordinate system (astropy.wcs.WCS) built from the header",
        "data": "the pixel array (numpy.ndarray)",
    },
    parameters=frozenset({"bbox"}),
    metadata_fields={
        "n_x": int,
        "n_y": int,
        "dtype": str,
        "ra_center": float,
        "dec_center": float,
        "exptime": float,
        "filter": str,
        "obstype": str,
    },
)
