"""The ``Image`` and ``MultiExtensionImage`` storage classes and their metadata extractors.

``Image`` is one 2-D pixel array, optionally with a FITS header and WCS; a
``MultiExtensionImage`` is a whole FITS file of several image HDUs (a raw with one
HDU per amplifier).  Their facts are the shape and pixel type, the ICRS footprint
(centre and polygon, see :mod:`.footprints`) and a few observation header keys.
They are extracted from the object being put, or from the header alone for a file
that is ingested, so both ways in give the same facts.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..dimensions import regions as sky
from .fits_cards import FitsHeader
from .fits_wcs import CheckedHeader
from .footprints import Footprint, image_footprint
from .storage_class import StorageClass

HEADER_KEYS: dict[str, str] = {"exptime": "EXPTIME", "filter": "FILTER", "obstype": "OBSTYPE"}
"""Metadata field -> FITS header keyword copied into the dataset metadata when present."""

HEADER_FIELDS: dict[str, type] = {"exptime": float, "filter": str, "obstype": str}
"""The types of the ``HEADER_KEYS`` fields."""

FOOTPRINT_FIELDS: dict[str, type] = {
    "ra_center": float,
    "dec_center": float,
    "region": sky.Region,
    "wcs_frame": str,
    "footprint_problem": str,
}
"""ICRS centre and polygon, the WCS's own frame, and why there is no footprint (None if there is)."""

_BITPIX_TYPES = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32", -64: "float64"}
_UNSIGNED = {16: ("uint16", 2**15), 32: ("uint32", 2**31), 64: ("uint64", 2**63)}


def image_parts(obj: Any) -> tuple[np.ndarray, Any]:
    """The pixel array and FITS header (None for a bare array) of an accepted image."""
    if isinstance(obj, np.ndarray):
        return obj, None
    return obj.data, obj.header


def _fits() -> Any:
    return sys.modules.get("astropy.io.fits")


def _is_image_hdu(obj: Any) -> bool:
    """True for a FITS image HDU (primary, extension or tile-compressed), without importing astropy."""
    fits = _fits()
    return fits is not None and isinstance(obj, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))


def _is_header(obj: Any) -> bool:
    """An astropy Header, or a header read block by block at ingest (:class:`.fits_cards.FitsHeader`)."""
    if isinstance(obj, FitsHeader):
        return True
    fits = _fits()
    return fits is not None and isinstance(obj, fits.Header)


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


def header_dtype(header: Any) -> str | None:
    """The numpy pixel type astropy reads for a header's BITPIX, BZERO and BSCALE."""
    bitpix = header.get("BITPIX")
    bzero, bscale = header.get("BZERO", 0), header.get("BSCALE", 1)
    if bitpix not in _BITPIX_TYPES:
        return None
    if bscale == 1 and bitpix in _UNSIGNED and bzero == _UNSIGNED[bitpix][1]:
        return _UNSIGNED[bitpix][0]
    if bitpix > 0 and (bscale != 1 or bzero != 0):
        return "float32" if bitpix <= 16 else "float64"
    return _BITPIX_TYPES[bitpix]


def footprint_facts(footprint: Footprint) -> dict[str, Any]:
    return {"ra_center": footprint.ra, "dec_center": footprint.dec, "region": footprint.region,
            "wcs_frame": footprint.frame, "footprint_problem": footprint.problem}


def extract_image_metadata(obj: Any) -> dict[str, Any]:
    """Shape, pixel type, ICRS footprint and selected header keys, of an image or of its header alone
    (an astropy Header, or a :class:`CheckedHeader` with its WCSs already built)."""
    built = None
    if isinstance(obj, CheckedHeader):  # an ingested file's header, its WCSs built by the file's check
        obj, built = obj.header, obj.wcs
    if _is_header(obj):
        header = obj
        n_x, n_y, dtype = header.get("NAXIS1", 0), header.get("NAXIS2", 0), header_dtype(header)
    else:
        data, header = image_parts(obj)
        (n_y, n_x), dtype = data.shape, data.dtype.name
    facts: dict[str, Any] = {"n_x": n_x, "n_y": n_y, "dtype": dtype}
    facts.update(footprint_facts(image_footprint(header, n_x, n_y, built=built)))
    for field, keyword in HEADER_KEYS.items():
        facts[field] = header.get(keyword) if header is not None else None
    return facts


def check_multi_extension(obj: Any) -> Any:
    """Accept an astropy HDUList holding at least one 2-D image HDU (each checked like an Image)."""
    fits = _fits()
    if fits is None or not isinstance(obj, fits.HDUList):
        raise TypeError("expected an astropy.io.fits.HDUList")
    images = [hdu for hdu in obj if _is_image_hdu(hdu) and hdu.data is not None]
    if not images:
        raise ValueError("the HDUList holds no image HDU with data")
    for hdu in images:
        try:
            check_image(hdu)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"HDU {hdu.name or obj.index(hdu)}: {exc}") from None
    return obj


def extract_multi_extension_metadata(obj: Any) -> dict[str, Any]:
    """HDU counts, the union footprint of every image HDU, and the primary header's keys.

    ``obj`` is an HDUList, or (for an ingested file) the list of its HDU headers.
    """
    fits = _fits()
    headers = [hdu.header for hdu in obj] if fits is not None and isinstance(obj, fits.HDUList) else list(obj)
    images = [h for h in headers if h.get("NAXIS") == 2 and str(h.get("XTENSION", "IMAGE")).strip() == "IMAGE"]
    prints = [image_footprint(h, h["NAXIS1"], h["NAXIS2"]) for h in images]
    facts: dict[str, Any] = {"n_hdus": len(headers), "n_images": len(images)}
    facts.update(footprint_facts(union_footprint(prints)))
    primary = headers[0] if headers else {}
    for field, keyword in HEADER_KEYS.items():
        facts[field] = primary.get(keyword)
    return facts


def union_footprint(prints: list[Footprint]) -> Footprint:
    """One footprint covering several (the amplifiers of a detector): the hull of their vertices."""
    found = [p for p in prints if p.problem is None]
    if not found:
        return prints[0] if prints else Footprint(problem="no image HDU")
    if len(found) == 1:
        return found[0]
    vectors = np.array([[np.cos(np.radians(p.dec)) * np.cos(np.radians(p.ra)),
                         np.cos(np.radians(p.dec)) * np.sin(np.radians(p.ra)), np.sin(np.radians(p.dec))]
                        for p in found]).sum(axis=0)
    ra = float(np.degrees(np.arctan2(vectors[1], vectors[0])) % 360.0)
    dec = float(np.degrees(np.arctan2(vectors[2], np.hypot(vectors[0], vectors[1]))))
    try:
        vertices = [v for p in found for v in sky.vertices_of(p.region)]
        region = sky.polygon(vertices)
    except Exception:  # a circle among them, or more than a hemisphere: a circle holding them all
        region = sky.circle(ra, dec, 180.0)
    return Footprint(ra=ra, dec=dec, region=region, frame=found[0].frame)


IMAGE = StorageClass(
    name="Image",
    default_formatter="fits",
    formatters=("fits",),
    accepts="2-D numpy.ndarray, astropy.io.fits.PrimaryHDU, ImageHDU or CompImageHDU",
    checker=check_image,
    extractor=extract_image_metadata,
    components={
        "header": "the FITS header (astropy.io.fits.Header), read without the pixels",
        "wcs": "the world coordinate system (astropy.wcs.WCS) built from the header",
        "data": "the pixel array (numpy.ndarray)",
    },
    parameters=frozenset({"bbox", "hdu", "wcs_key", "bin"}),
    metadata_fields={"n_x": int, "n_y": int, "dtype": str, **FOOTPRINT_FIELDS, **HEADER_FIELDS},
    metadata_component="header",
)

MULTI_EXTENSION_IMAGE = StorageClass(
    name="MultiExtensionImage",
    default_formatter="fits-mef",
    formatters=("fits-mef",),
    accepts="astropy.io.fits.HDUList holding 2-D image HDUs",
    checker=check_multi_extension,
    extractor=extract_multi_extension_metadata,
    components={
        "headers": "every HDU's header (a list of astropy.io.fits.Header), primary cards inherited",
        "header": "one HDU's header (parameter hdu; default the primary)",
        "wcs": "one image HDU's WCS (parameter hdu)",
        "data": "one image HDU's pixels (parameter hdu)",
    },
    parameters=frozenset({"hdu", "bbox", "wcs_key", "bin"}),
    metadata_fields={"n_hdus": int, "n_images": int, **FOOTPRINT_FIELDS, **HEADER_FIELDS},
    metadata_component="headers",
)
