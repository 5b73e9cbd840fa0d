"""Instrument signature removal and the master calibrations it uses.

Raw SimCam files (and any raw with the same conventions) hold one detector: a data
section followed by overscan columns, described by the ``DATASEC`` and ``BIASSEC``
keywords (FITS ``[x1:x2,y1:y2]``, 1-based, inclusive, x = column), with ``GAIN``
(electrons per ADU) and ``SATURATE`` (ADU).

- :func:`isr` turns one raw into an image in electrons: overscan, trim, bias, flat, gain.
- :func:`make_bias` median-combines overscan-subtracted, trimmed biases (ADU).
- :func:`make_flat` median-combines bias-subtracted flats, each scaled to median 1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from astropy.io import fits

from .config import IsrConfig

__all__ = ["isr", "make_bias", "make_flat", "overscan_correct", "overscan_levels", "parse_section"]

_SECTION = re.compile(r"^\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$")
#: Structural and raw-only keywords never copied to a processed image.
_DROP = {"SIMPLE", "EXTEND", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT",
         "BZERO", "BSCALE", "BLANK", "DATASEC", "BIASSEC", "CHECKSUM", "DATASUM"}
#: Keywords a master calibration keeps from its first input.
_CALIB_KEYS = ("INSTRUME", "TELESCOP", "FILTER", "CCDNUM", "DETECTOR", "RAFTNAME", "BINNING", "GAIN",
               "RDNOISE", "SATURATE", "DAYOBS")

Hdu = fits.ImageHDU | fits.PrimaryHDU | fits.CompImageHDU


def parse_section(text: str) -> tuple[slice, slice]:
    """A FITS section ``[x1:x2,y1:y2]`` as numpy ``(rows, columns)`` slices."""
    match = _SECTION.match(str(text).strip())
    if match is None:
        raise ValueError(f"not a FITS section: {text!r}")
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    if x1 < 1 or y1 < 1 or x2 < x1 or y2 < y1:
        raise ValueError(f"empty or reversed FITS section: {text!r}")
    return slice(y1 - 1, y2), slice(x1 - 1, x2)


def _data_section(raw: Hdu) -> tuple[slice, slice]:
    header = raw.header
    return parse_section(header["DATASEC"]) if "DATASEC" in header else (slice(None), slice(None))


def overscan_levels(raw: Hdu) -> np.ndarray:
    """The overscan level of each data-section row: the median of its ``BIASSEC`` columns (ADU)."""
    if "BIASSEC" not in raw.header:
        raise ValueError("overscan correction asked for, but the raw has no BIASSEC keyword")
    rows, _ = _data_section(raw)
    o_rows, o_cols = parse_section(raw.header["BIASSEC"])
    data = np.asarray(raw.data)
    overscan = np.asarray(data[o_rows, o_cols], dtype=np.float64)
    n_rows = len(range(*rows.indices(data.shape[0])))
    if overscan.shape[0] != n_rows:
        raise ValueError(f"BIASSEC rows {overscan.shape[0]} do not match DATASEC rows {n_rows}")
    return np.median(overscan, axis=1)


def overscan_correct(raw: Hdu, do_overscan: bool = True) -> np.ndarray:
    """The raw data section in ADU (float64), minus the per-row overscan median if asked.

    Without ``DATASEC`` the whole array is the data section; ``do_overscan`` then
    needs a ``BIASSEC``.
    """
    data = np.asarray(raw.data)
    if data.ndim != 2:
        raise ValueError(f"expected a 2-d raw image, got shape {data.shape}")
    trimmed = np.array(data[_data_section(raw)], dtype=np.float64)
    if do_overscan:
        trimmed -= overscan_levels(raw)[:, None]
    return trimmed


def _saturated(raw: Hdu) -> np.ndarray:
    """Boolean mask of saturated data-section pixels (raw ADU >= SATURATE)."""
    pixels = np.asarray(raw.data[_data_section(raw)])
    if "SATURATE" not in raw.header:
        return np.zeros(pixels.shape, dtype=bool)
    return pixels >= float(raw.header["SATURATE"])


def _processed_header(header: fits.Header) -> fits.Header:
    """A copy of ``header`` without structural and raw-layout keywords, WCS shifted for the trim."""
    out = fits.Header()
    for card in header.cards:
        if card.keyword not in _DROP and card.keyword not in out:
            out.append(card)
    if "DATASEC" in header:
        rows, cols = parse_section(header["DATASEC"])
        for axis, start in (("1", cols.start), ("2", rows.start)):
            if start and f"CRPIX{axis}" in out:
                out[f"CRPIX{axis}"] = float(out[f"CRPIX{axis}"]) - start
    return out


def _pixels(hdu: Hdu | None, shape: tuple[int, ...], what: str) -> np.ndarray:
    """The data of a calibration HDU as float64, checked against the trimmed shape."""
    if hdu is None or hdu.data is None:
        raise ValueError(f"{what} correction asked for, but no {what} was given")
    data = np.asarray(hdu.data, dtype=np.float64)
    if data.shape != shape:
        raise ValueError(f"{what} has shape {data.shape}, the trimmed raw {shape}")
    return data


def isr(raw: Hdu, bias: Hdu | None = None, flat: Hdu | None = None, config: IsrConfig | None = None) -> fits.ImageHDU:
    """Remove the instrument signature of one raw detector image.

    Steps: overscan (median of the ``BIASSEC`` columns, per row), trim to ``DATASEC``,
    subtract ``bias`` (ADU), divide by ``flat``, multiply by ``GAIN``.  Returns float32
    electrons; the header keeps the raw's keywords with ``CRPIX`` shifted for the trim
    and adds ``BUNIT``, ``N_SAT`` (saturated pixels), ``SATLEVEL`` (the lowest
    value a saturated pixel can have after the corrections) and ``ISR_*`` switches.
    """
    config = config or IsrConfig()
    header = raw.header
    image = overscan_correct(raw, config.do_overscan)
    saturated = _saturated(raw)
    gain = float(header.get("GAIN", config.default_gain)) if config.do_gain else 1.0
    # Per-pixel saturation level carried through the same arithmetic as the image.
    sat_level = np.full(image.shape, float(header.get("SATURATE", np.inf)))
    if config.do_overscan:
        sat_level -= overscan_levels(raw)[:, None]
    if config.do_bias:
        bias_data = _pixels(bias, image.shape, "bias")
        image -= bias_data
        sat_level -= bias_data
    if config.do_flat:
        flat_data = _pixels(flat, image.shape, "flat")
        if np.any(flat_data <= 0) or not np.all(np.isfinite(flat_data)):
            raise ValueError("flat has non-positive or non-finite pixels")
        image /= flat_data
        sat_level /= flat_data
    image *= gain
    sat_level *= gain
    out = _processed_header(header)
    out["BUNIT"] = ("electron" if config.do_gain else "adu", "pixel unit after ISR")
    out["N_SAT"] = (int(saturated.sum()), "saturated pixels (raw >= SATURATE)")
    if np.isfinite(sat_level).all():
        out["SATLEVEL"] = (float(sat_level.min()), "pixels above this may be saturated")
    if config.do_gain:
        out["ISRGAIN"] = (gain, "e-/ADU applied by ISR")
        out["GAIN"] = (1.0, "e-/unit of this image")
    for key, on in (("ISR_OSCN", config.do_overscan), ("ISR_BIAS", config.do_bias), ("ISR_FLAT", config.do_flat)):
        out[key] = (bool(on), "ISR step applied")
    return fits.ImageHDU(data=image.astype(np.float32), header=out)


def _calib_header(raws: Sequence[Hdu], obstype: str) -> fits.Header:
    first = raws[0].header
    out = fits.Header()
    for key in _CALIB_KEYS:
        if key in first:
            out[key] = first[key]
    out["OBSTYPE"] = obstype
    out["NCOMBINE"] = (len(raws), "inputs median-combined")
    mjds = [float(r.header["MJD-OBS"]) for r in raws if "MJD-OBS" in r.header]
    if mjds:
        out["MJD-BEG"] = (min(mjds), "first input MJD-OBS")
        out["MJD-END"] = (max(mjds), "last input MJD-OBS")
    return out


def _check_inputs(raws: Sequence[Hdu], what: str) -> None:
    if not raws:
        raise ValueError(f"make_{what} needs at least one raw")
    detectors = {r.header.get("CCDNUM") for r in raws}
    if len(detectors) > 1:
        raise ValueError(f"make_{what} inputs come from several detectors: {sorted(map(str, detectors))}")


def make_bias(raws: Sequence[Hdu], config: IsrConfig | None = None) -> fits.ImageHDU:
    """Master bias in ADU: the median of overscan-subtracted, trimmed bias frames."""
    _check_inputs(raws, "bias")
    do_overscan = (config or IsrConfig()).do_overscan
    stack = np.stack([overscan_correct(r, do_overscan) for r in raws])
    return fits.ImageHDU(data=np.median(stack, axis=0).astype(np.float32), header=_calib_header(raws, "BIAS"))


def make_flat(raws: Sequence[Hdu], bias: Hdu | None = None, config: IsrConfig | None = None) -> fits.ImageHDU:
    """Master flat: bias-subtracted flats, each scaled to median 1, median-combined and
    renormalised to median 1.  ``bias`` may be None (then only the overscan is removed)."""
    _check_inputs(raws, "flat")
    do_overscan = (config or IsrConfig()).do_overscan
    frames = []
    for raw in raws:
        frame = overscan_correct(raw, do_overscan)
        if bias is not None:
            frame -= _pixels(bias, frame.shape, "bias")
        level = float(np.median(frame))
        if not level > 0:
            raise ValueError(f"flat {raw.header.get('OBSID', '?')} has non-positive median {level}")
        frames.append(frame / level)
    combined = np.median(np.stack(frames), axis=0)
    combined /= np.median(combined)
    header = _calib_header(raws, "FLAT")
    filters = {r.header.get("FILTER") for r in raws}
    if len(filters) > 1:
        raise ValueError(f"make_flat inputs have several filters: {sorted(map(str, filters))}")
    return fits.ImageHDU(data=combined.astype(np.float32), header=header)
