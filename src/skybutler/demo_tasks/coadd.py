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


def _footprint_box(wcs: WCS, shape: tuple[int, int], target: WCS, ny: int, nx: int
                   ) -> tuple[int, int, int, int] | None:
    """The box (x0, y0, x1, y1), half-open, of the target grid an input image can touch:
    its border mapped through both WCSs, widened by two pixels, clipped to the grid."""
    rows, cols = shape
    t = np.linspace(0.0, 1.0, 33)
    along_x, along_y = t * cols - 0.5, t * rows - 0.5
    xs = np.concatenate([along_x, np.full(33, cols - 0.5), along_x[::-1], np.full(33, -0.5)])
    ys = np.concatenate([np.full(33, -0.5), along_y, np.full(33, rows - 0.5), along_y[::-1]])
    ra, dec = wcs.all_pix2world(xs, ys, 0)
    px, py = target.all_world2pix(ra, dec, 0)
    if not (np.isfinite(px).all() and np.isfinite(py).all()):
        return 0, 0, nx, ny
    x0, x1 = max(0, int(np.floor(px.min())) - 2), min(nx, int(np.ceil(px.max())) + 3)
    y0, y1 = max(0, int(np.floor(py.min())) - 2), min(ny, int(np.ceil(py.max())) + 3)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def coadd(images: Sequence[Hdu], patch_wcs: WCS, shape: tuple[int, int],
          config: CoaddConfig | None = None, crop: bool = False) -> tuple[fits.ImageHDU, fits.ImageHDU]:
    """Coadd ``images`` on the grid of ``patch_wcs`` with ``shape`` = (rows, columns).

    Returns ``(image, coverage)``: the float32 combined image (header: the patch
    WCS, ``NINPUTS``, ``COMBINE``, ``RESAMPLE``, ``BUNIT`` of the first input) and
    an int16 map of how many inputs cover each pixel (same WCS).  Inputs without a
    celestial WCS are refused.  Each input is resampled only onto the box of the
    grid it can touch.  With ``crop`` the result is the smallest box of the grid
    holding every input (WCS shifted to match; ``GRID_X0``/``GRID_Y0`` give its
    corner on the full grid, ``GRID_NX``/``GRID_NY`` the full grid's size).
    """
    from reproject import reproject_interp  # imported here: it pulls in dask, ~2 s

    config = config or CoaddConfig()
    if not images:
        raise ValueError("coadd needs at least one image")
    ny, nx = (int(v) for v in shape)
    target = patch_wcs.celestial
    target_area = pixel_area(target)
    boxes = []
    for i, hdu in enumerate(images):
        wcs = celestial_wcs(hdu.header)
        if wcs is None:
            raise ValueError(f"coadd input {i} has no celestial WCS")
        boxes.append((wcs, _footprint_box(wcs, np.shape(hdu.data), target, ny, nx)))
    used = [box for _, box in boxes if box is not None]
    if crop and used:
        gx0, gy0 = min(b[0] for b in used), min(b[1] for b in used)
        gx1, gy1 = max(b[2] for b in used), max(b[3] for b in used)
    else:
        gx0, gy0, gx1, gy1 = 0, 0, nx, ny
    height, width = gy1 - gy0, gx1 - gx0
    median = config.combine == "median"
    stack = np.full((len(images), height, width), np.nan, dtype=np.float32) if median else None
    total = np.zeros((height, width), dtype=np.float64)
    coverage = np.zeros((height, width), dtype=np.int16)
    for i, (hdu, (wcs, box)) in enumerate(zip(images, boxes, strict=True)):
        if box is None:
            continue
        x0, y0, x1, y1 = box
        sub = target.slice((slice(y0, y1), slice(x0, x1)))
        data = np.asarray(hdu.data, dtype=np.float64)
        resampled, footprint = reproject_interp((data, wcs), sub, shape_out=(y1 - y0, x1 - x0),
                                                order=config.resampling)
        resampled = resampled * (target_area / pixel_area(wcs))
        good = (footprint > 0) & np.isfinite(resampled)
        rows, cols = slice(y0 - gy0, y1 - gy0), slice(x0 - gx0, x1 - gx0)
        coverage[rows, cols] += good
        total[rows, cols] += np.where(good, resampled, 0.0)
        if stack is not None:
            stack[i, rows, cols] = np.where(good, resampled, np.nan)
    if stack is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (uncovered) pixels
            combined = np.nanmedian(stack, axis=0).astype(np.float32)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            combined = np.where(coverage > 0, total / coverage, np.nan).astype(np.float32)
    grid = target.slice((slice(gy0, gy1), slice(gx0, gx1))) if (gx0, gy0, gx1, gy1) != (0, 0, nx, ny) else target
    header = grid.to_header()
    header["NINPUTS"] = (len(images), "images combined")
    header["COMBINE"] = (config.combine, "combination of resampled inputs")
    header["RESAMPLE"] = (config.resampling, "reproject_interp order")
    if "BUNIT" in images[0].header:
        header["BUNIT"] = images[0].header["BUNIT"]
    cov_header = grid.to_header()
    cov_header["BUNIT"] = ("count", "inputs covering the pixel")
    for h in (header, cov_header):
        h["GRID_X0"] = (gx0, "column of pixel 0 on the full patch grid")
        h["GRID_Y0"] = (gy0, "row of pixel 0 on the full patch grid")
        h["GRID_NX"] = (nx, "columns of the full patch grid")
        h["GRID_NY"] = (ny, "rows of the full patch grid")
    return fits.ImageHDU(data=combined, header=header, name="IMAGE"), fits.ImageHDU(
        data=coverage, header=cov_header, name="COVERAGE")
