"""Background subtraction, source detection and measurement, and the PSF width.

:func:`calibrate` takes an ISR-processed image (electrons, with a celestial WCS in
its header) and returns the background-subtracted image and a source catalog as
a pyarrow Table.  Detection and measurement use ``sep`` (Source Extractor as a
library): a mesh background, a matched-filter threshold at
``detection_threshold`` times the background RMS, deblending, circular-aperture
fluxes, and half-light radii turned into FWHM estimates.  Everything is
deterministic: the same image and config give the same catalog, row for row.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import sep
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from .config import CalibrateConfig

__all__ = [
    "FLAG_BLENDED",
    "FLAG_CROWDED",
    "FLAG_EDGE",
    "FLAG_SATURATED",
    "FLAG_TRUNCATED",
    "SOURCE_SCHEMA",
    "calibrate",
    "celestial_wcs",
    "estimate_psf_fwhm",
]

FLAG_BLENDED = 1  # deblended from, or merged with, another source
FLAG_TRUNCATED = 2  # footprint or aperture runs off the image
FLAG_SATURATED = 4  # a footprint pixel may be saturated (>= SATLEVEL)
FLAG_EDGE = 8  # centre within edge_margin of the border
FLAG_CROWDED = 16  # a neighbour within psf_isolation pixels

SOURCE_SCHEMA = pa.schema(
    [
        ("id", pa.int32()),
        ("x", pa.float64()),  # 0-based column of the centroid
        ("y", pa.float64()),  # 0-based row
        ("ra", pa.float64()),  # degrees (NaN without a celestial WCS)
        ("dec", pa.float64()),
        ("flux", pa.float64()),  # aperture flux, electrons
        ("flux_err", pa.float64()),
        ("a", pa.float64()),  # second-moment semi-axes, pixels
        ("b", pa.float64()),
        ("theta", pa.float64()),  # radians, counter-clockwise from +x
        ("fwhm", pa.float64()),  # 2 x half-light radius, pixels
        ("peak", pa.float64()),  # highest background-subtracted pixel
        ("npix", pa.int32()),  # pixels above threshold
        ("flags", pa.int32()),
    ]
)


def celestial_wcs(header: fits.Header) -> WCS | None:
    """The celestial WCS of a header, or None if it has none."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header, naxis=2)
    return wcs if wcs.has_celestial else None


def _isolated(x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """True where no other source lies within ``radius`` pixels (chunked, O(n^2) memory-bounded)."""
    n = len(x)
    out = np.ones(n, dtype=bool)
    if n < 2 or radius <= 0:
        return out
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n, chunk):
        dx = x[start:start + chunk, None] - x[None, :]
        dy = y[start:start + chunk, None] - y[None, :]
        close = dx * dx + dy * dy < radius * radius
        out[start:start + chunk] = close.sum(axis=1) <= 1  # only itself
    return out


def estimate_psf_fwhm(sources: pa.Table | dict, min_snr: float) -> tuple[float, int]:
    """Median FWHM (pixels) of unflagged sources with S/N >= ``min_snr``, and how many were used.

    Falls back to every unflagged source if none is bright enough; NaN if none at all.
    """
    fwhm = np.asarray(sources["fwhm"], dtype=float)
    flux = np.asarray(sources["flux"], dtype=float)
    err = np.asarray(sources["flux_err"], dtype=float)
    clean = (np.asarray(sources["flags"]) == 0) & np.isfinite(fwhm) & (fwhm > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        good = clean & (flux / err >= min_snr)
    for selection in (good, clean):
        if selection.any():
            return float(np.median(fwhm[selection])), int(selection.sum())
    return math.nan, 0


def _segment_maxima(image: np.ndarray, segmap: np.ndarray, n: int) -> np.ndarray:
    """The highest ``image`` value within each of the ``n`` segments of ``segmap``."""
    peaks = np.full(n, -np.inf)
    inside = segmap > 0
    np.maximum.at(peaks, segmap[inside] - 1, image[inside])
    return peaks


def calibrate(exposure: fits.ImageHDU | fits.PrimaryHDU,
              config: CalibrateConfig | None = None) -> tuple[fits.ImageHDU, pa.Table]:
    """Subtract the background of ``exposure``, detect and measure its sources.

    Returns the background-subtracted image (float32; header gains ``PSF_FWHM``
    and ``FWHM_ARC`` (pixels, arcsec; omitted if no source qualifies), ``N_PSF``,
    ``BKG_MEAN``, ``BKG_RMS``, ``N_SRC`` and the detection settings) and the
    source table (:data:`SOURCE_SCHEMA`; schema metadata repeats the header results).
    """
    config = config or CalibrateConfig()
    image = np.ascontiguousarray(exposure.data, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-d image, got shape {image.shape}")
    box = min(config.background_box, *image.shape)
    background = sep.Background(image, bw=box, bh=box, fw=config.background_filter, fh=config.background_filter)
    subtracted = image - background.back()
    rms = float(background.globalrms)
    kernel = None if config.filter_kernel == "none" else _gauss_kernel()
    objects, segmap = sep.extract(
        subtracted, config.detection_threshold, err=rms, minarea=config.min_area,
        deblend_nthresh=config.deblend_nthresh, deblend_cont=config.deblend_cont,
        filter_kernel=kernel, segmentation_map=True, clean=config.clean,
    )
    n = len(objects)
    x, y = objects["x"].astype(float), objects["y"].astype(float)
    flux, flux_err, aper_flags = sep.sum_circle(subtracted, x, y, config.aperture_radius, err=rms, gain=1.0)
    radius, radius_flags = sep.flux_radius(subtracted, x, y, np.full(n, config.fwhm_radius_max), 0.5,
                                           normflux=None, subpix=5)
    flags = np.zeros(n, dtype=np.int32)
    flags[(objects["flag"] & sep.OBJ_MERGED) != 0] |= FLAG_BLENDED
    flags[((objects["flag"] & sep.OBJ_TRUNC) != 0) | ((aper_flags & sep.APER_TRUNC) != 0)] |= FLAG_TRUNCATED
    satlevel = exposure.header.get("SATLEVEL")
    if satlevel is not None and n:
        flags[_segment_maxima(image, segmap, n) >= float(satlevel)] |= FLAG_SATURATED
    ny, nx = image.shape
    m = config.edge_margin
    flags[(x < m) | (y < m) | (x > nx - 1 - m) | (y > ny - 1 - m)] |= FLAG_EDGE
    flags[~_isolated(x, y, config.psf_isolation)] |= FLAG_CROWDED
    wcs = celestial_wcs(exposure.header)
    if wcs is not None and n:
        ra, dec = wcs.all_pix2world(x, y, 0)
    else:
        ra = dec = np.full(n, np.nan)
    table = pa.table(
        {
            "id": np.arange(1, n + 1, dtype=np.int32), "x": x, "y": y,
            "ra": np.asarray(ra, dtype=float), "dec": np.asarray(dec, dtype=float),
            "flux": flux.astype(float), "flux_err": flux_err.astype(float),
            "a": objects["a"].astype(float), "b": objects["b"].astype(float),
            "theta": objects["theta"].astype(float), "fwhm": 2.0 * radius.astype(float),
            "peak": objects["peak"].astype(float), "npix": objects["npix"].astype(np.int32), "flags": flags,
        },
        schema=SOURCE_SCHEMA,
    )
    fwhm, n_psf = estimate_psf_fwhm(table, config.psf_min_snr)
    header = exposure.header.copy()
    for key in ("EXTEND", "SIMPLE", "XTENSION", "BZERO", "BSCALE"):
        header.remove(key, ignore_missing=True)
    results: dict[str, object] = {
        "N_SRC": (n, "sources detected"),
        "BKG_MEAN": (float(background.globalback), "mean background, image units"),
        "BKG_RMS": (rms, "background RMS, image units"),
        "N_PSF": (n_psf, "sources used for PSF_FWHM"),
        "DET_SIG": (config.detection_threshold, "detection threshold, sigma"),
        "DET_AREA": (config.min_area, "minimum detection area, pixels"),
    }
    if math.isfinite(fwhm):
        results["PSF_FWHM"] = (fwhm, "median FWHM of clean bright sources, pixels")
        if wcs is not None:
            scale = float(np.sqrt(abs(np.linalg.det(wcs.celestial.pixel_scale_matrix)))) * 3600.0
            results["FWHM_ARC"] = (fwhm * scale, "PSF_FWHM in arcsec")
    for key, value in results.items():
        header[key] = value
    table = table.replace_schema_metadata({f"skybutler.{k.lower()}": str(v[0]) for k, v in results.items()})
    return fits.ImageHDU(data=subtracted.astype(np.float32), header=header), table


def _gauss_kernel() -> np.ndarray:
    """The default 3x3 matched-filter kernel (a Gaussian of FWHM 2 pixels, as in SExtractor)."""
    return np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])
