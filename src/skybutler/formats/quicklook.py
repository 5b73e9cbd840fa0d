"""Quicklook pictures of images: pixels binned while they are read, stretched and encoded as PNG.

A quicklook never holds a huge image whole.  ``binned_pixels`` reads ``factor`` rows at
a time through astropy's ``HDU.section`` (for plain FITS only those rows, for a
tile-compressed image only the tiles they touch) and averages each ``factor`` x
``factor`` block, so memory stays at one band of rows plus the small result.  The
stretches are astropy.visualization's: ``zscale`` (IRAF's zscale interval, linear) and
``asinh`` (a 99.5 % percentile interval, arcsinh stretch).  PNGs are written by Pillow,
in memory; north-up display convention: the first FITS row is the bottom row of the PNG.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import numpy as np

from ..errors import FormatterError
from ..extras import require

STRETCHES = ("zscale", "asinh")
"""The stretches a quicklook may use."""

SIZES = (128, 256, 512, 1024)
"""The longest side, in pixels, a quicklook may have (a few sizes, so a cache holds few variants)."""


def check_bin(value: Any) -> int:
    """Validate the ``bin`` read parameter: a positive integer number of pixels per block side."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise FormatterError(f"bin must be a positive integer (pixels per side of a block), not {value!r}")
    return int(value)


def bin_factor(n_x: int, n_y: int, size: int) -> int:
    """The smallest block side that brings an ``n_x`` x ``n_y`` image within ``size`` pixels a side."""
    return max(1, math.ceil(max(n_x, n_y) / size))


def binned_pixels(section: Any, box: tuple[int, int, int, int], factor: int) -> np.ndarray:
    """The mean of each ``factor`` x ``factor`` block of the pixels of ``box`` (``x_min, y_min,
    x_max, y_max``) read from ``section`` (an ``HDU.section`` or an array); partial blocks at
    the far edges average what they hold, and blank (NaN) pixels are left out of the mean."""
    x_min, y_min, x_max, y_max = box
    n_x, n_y = x_max - x_min, y_max - y_min
    out_x, out_y = -(-n_x // factor), -(-n_y // factor)
    out = np.empty((out_y, out_x), dtype=np.float32)
    pad_x = out_x * factor - n_x
    for row in range(out_y):
        top = y_min + row * factor
        band = np.asarray(section[top:min(top + factor, y_max), x_min:x_max], dtype=np.float32)
        if pad_x:
            band = np.pad(band, ((0, 0), (0, pad_x)), constant_values=np.nan)
        blocks = band.reshape(band.shape[0], out_x, factor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-blank block is NaN, as it should be
            out[row] = np.nanmean(blocks, axis=(0, 2))
    return out


def stretched(data: np.ndarray, stretch: str) -> np.ndarray:
    """``data`` scaled to 0..255 (uint8) by ``stretch``; blank pixels black."""
    from astropy.visualization import AsinhStretch, LinearStretch, PercentileInterval, ZScaleInterval

    if stretch not in STRETCHES:
        raise FormatterError(f"unknown stretch {stretch!r}; choose one of {', '.join(STRETCHES)}")
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(data.shape, dtype=np.uint8)
    values = data[finite]
    interval, curve = ((ZScaleInterval(), LinearStretch()) if stretch == "zscale"
                       else (PercentileInterval(99.5), AsinhStretch()))
    low, high = interval.get_limits(values)
    with np.errstate(all="ignore"):
        scaled = np.clip((np.where(finite, data, low) - low) / ((high - low) or 1.0), 0.0, 1.0)
        scaled = np.nan_to_num(np.asarray(curve(scaled, clip=True)), nan=0.0)
    return np.where(finite, np.round(scaled * 255.0), 0).astype(np.uint8)


def png_bytes(data: np.ndarray, stretch: str) -> bytes:
    """A greyscale PNG of ``data`` (FITS row order: row 0 at the bottom) under ``stretch``."""
    image = require("PIL.Image", "quicklook PNGs")
    out = io.BytesIO()
    image.fromarray(np.ascontiguousarray(stretched(data, stretch)[::-1]), mode="L").save(out, format="PNG")
    return out.getvalue()
