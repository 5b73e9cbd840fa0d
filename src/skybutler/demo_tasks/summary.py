"""Per-visit summaries of calibrated detectors, shaped to be stored as metrics.

:func:`visit_summary` gives one row per detector (what a query over detectors
needs: a cut on ``n_sources`` finds the glint-crossed ones); :func:`visit_metrics`
folds a summary into a flat, JSON-safe dict of per-visit numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from astropy.io import fits

from .calibrate import estimate_psf_fwhm

__all__ = ["SUMMARY_SCHEMA", "visit_metrics", "visit_summary"]

SUMMARY_SCHEMA = pa.schema(
    [
        ("detector", pa.int32()),
        ("n_sources", pa.int64()),
        ("psf_fwhm", pa.float64()),  # pixels
        ("psf_fwhm_arcsec", pa.float64()),
        ("background", pa.float64()),  # mean background, image units (electrons)
        ("background_rms", pa.float64()),
        ("n_saturated", pa.int64()),  # saturated pixels found by ISR
    ]
)


def _header(item: Any) -> Mapping[str, Any]:
    """A header from an HDU, a header, a plain mapping, or None (empty)."""
    if item is None:
        return {}
    if isinstance(item, fits.Header | Mapping):
        return item
    header = getattr(item, "header", None)
    if header is None:
        raise TypeError(f"cannot read a header from {type(item).__name__}")
    return header


def _float(header: Mapping[str, Any], key: str) -> float:
    value = header.get(key)
    return math.nan if value is None else float(value)


def visit_summary(sources_by_detector: Mapping[int, pa.Table],
                  images_by_detector: Mapping[int, Any] | None = None,
                  psf_min_snr: float = 30.0) -> pa.Table:
    """One row per detector (sorted by detector) of a visit's calibrated outputs.

    ``sources_by_detector`` maps detector -> source table from
    :func:`~.calibrate.calibrate`; ``images_by_detector`` maps detector -> the
    calibrated image, its header, or a plain dict of its header keywords.  The PSF
    width and background come from the image header (``PSF_FWHM``, ``FWHM_ARC``,
    ``BKG_MEAN``, ``BKG_RMS``, ``N_SAT``); without a header the PSF width is
    re-estimated from the sources and the other values are NaN (or 0 saturated).
    """
    images_by_detector = images_by_detector or {}
    unknown = set(images_by_detector) - set(sources_by_detector)
    if unknown:
        raise ValueError(f"images given for detectors without sources: {sorted(unknown)}")
    rows: dict[str, list] = {name: [] for name in SUMMARY_SCHEMA.names}
    for detector in sorted(sources_by_detector):
        sources = sources_by_detector[detector]
        header = _header(images_by_detector.get(detector))
        fwhm = _float(header, "PSF_FWHM")
        if math.isnan(fwhm) and "PSF_FWHM" not in header:
            fwhm, _ = estimate_psf_fwhm(sources, psf_min_snr)
        rows["detector"].append(int(detector))
        rows["n_sources"].append(int(sources.num_rows))
        rows["psf_fwhm"].append(fwhm)
        rows["psf_fwhm_arcsec"].append(_float(header, "FWHM_ARC"))
        rows["background"].append(_float(header, "BKG_MEAN"))
        rows["background_rms"].append(_float(header, "BKG_RMS"))
        rows["n_saturated"].append(int(header.get("N_SAT", 0)))
    return pa.table(rows, schema=SUMMARY_SCHEMA)


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _json_number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def visit_metrics(summary: pa.Table) -> dict[str, Any]:
    """Flat per-visit metrics from a :func:`visit_summary` table (NaN becomes None).

    Keys: ``n_detectors``, ``n_sources_total``, ``n_sources_median``,
    ``n_sources_max``, ``median_fwhm`` (pixels), ``median_fwhm_arcsec``,
    ``mean_background``, ``mean_background_rms``, ``n_saturated_total``.
    """
    n_sources = np.asarray(summary["n_sources"], dtype=float)
    fwhm = _finite(np.asarray(summary["psf_fwhm"], dtype=float))
    fwhm_arcsec = _finite(np.asarray(summary["psf_fwhm_arcsec"], dtype=float))
    background = _finite(np.asarray(summary["background"], dtype=float))
    rms = _finite(np.asarray(summary["background_rms"], dtype=float))
    empty = summary.num_rows == 0
    return {
        "n_detectors": int(summary.num_rows),
        "n_sources_total": int(n_sources.sum()),
        "n_sources_median": None if empty else float(np.median(n_sources)),
        "n_sources_max": None if empty else int(n_sources.max()),
        "median_fwhm": _json_number(float(np.median(fwhm))) if fwhm.size else None,
        "median_fwhm_arcsec": _json_number(float(np.median(fwhm_arcsec))) if fwhm_arcsec.size else None,
        "mean_background": float(background.mean()) if background.size else None,
        "mean_background_rms": float(rms.mean()) if rms.size else None,
        "n_saturated_total": int(np.asarray(summary["n_saturated"]).sum()),
    }
