"""Resample calibrated images onto a patch grid and combine them, with a coverage map.

Resampling uses ``reproject.reproject_interp`` (bilinear by default) through each
input's celestial WCS.  Pixel values are surface brightness per pixel, so each
resampled image is scaled by the ratio of output to input pixel area (the local
Jacobian at the image centre): a star's summed flux is the same in the input and
the coadd.  Combination is a mean (or median) over the inputs covering a pixel;
pixels no input covers are NaN in the image and 0 in the coverage map.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from .calibrate import celestial_wcs
from .config import CoaddConfig

__all__ = ["coadd", "pixel_area"]

Hdu = fits.ImageHDU | fits.PrimaryHDU


def pixel_area(wcs: WCS) -> float:
    """Pixel area in square degrees at the reference pixel (from the linear WCS matrix)."""
    return float(abs(np.linalg.det(wcs.celestial.pixel_scale_matrix)))


def coadd(images: Sequence[Hdu], patch_wcs: WCS, shape: tuple[int, int],
          config: CoaddConfig | None = None) -> tuple[fits.ImageHDU, fits.ImageHDU]:
    """Coadd ``images`` on the grid of ``patch_wcs`` with ``shape`` = (rows, columns).

    Returns ``(image, coverage)``: the float32 combined image (header: the patch
    WCS, ``NINPUTS``, ``COMBINE``, ``RESAMPLE``, ``BUNIT`` of the first input) and
    an int16 map of how many inputs cover each pixel (same WCS).  Inputs without a
    celestial WCS are refused.
    """
    from reproject import reproject_interp  # imported here: it pulls in dask, ~2 s

    config = config or CoaddConfig()
    if not images:
        raise ValueError("coadd needs at least one image")
    ny, nx = (int(v) for v in shape)
    target = patch_wcs.celestial
    target_area = pixel_area(target)
    stack = np.full((len(images), ny, nx), np.nan, dtype=np.float32)
    for i, hdu in enumerate(images):
        wcs = celestial_wcs(hdu.header)
        if wcs is None:
            raise ValueError(f"coadd input {i} has no celestial WCS")
        data = np.asarray(hdu.data, dtype=np.float64)
        resampled, footprint = reproject_interp((data, wcs), target, shape_out=(ny, nx), order=config.resampling)
        resampled = resampled * (target_area / pixel_area(wcs))
        stack[i] = np.where(footprint > 0, resampled, np.nan)
    good = np.isfinite(stack)
    coverage = good.sum(axis=0).astype(np.int16)
    combine = np.nanmedian if config.combine == "median" else np.nanmean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (uncovered) pixels
        combined = combine(stack, axis=0).astype(np.float32)
    header = target.to_header()
    header["NINPUTS"] = (len(images), "images combined")
    header["COMBINE"] = (config.combine, "combination of resampled inputs")
    header["RESAMPLE"] = (config.resampling, "reproject_interp order")
    if "BUNIT" in images[0].header:
        header["BUNIT"] = images[0].header["BUNIT"]
    cov_header = target.to_header()
    cov_header["BUNIT"] = ("count", "inputs covering the pixel")
    return fits.ImageHDU(data=combined, header=header, name="IMAGE"), fits.ImageHDU(
        data=coverage, header=cov_header, name="COVERAGE")

