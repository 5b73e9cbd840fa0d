"""Real FITS images for the FITS tests, built with astropy: one header per WCS kind, images, raws of
several HDUs, and astropy's own WCS and sky positions (the tests' oracle).
"""

from __future__ import annotations

import bz2
import gzip
import io
import warnings
from pathlib import Path
from typing import Any

import astropy
import numpy as np
from astropy import units as u
from astropy.coordinates import ICRS, BarycentricMeanEcliptic, SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skybutler.formats import get_formatter

MAS = 1.0 / 3600 / 1000  # one milli-arcsecond in degrees
N_X, N_Y = 120, 90


def _wcs_header(ctype: tuple[str, str], crval: tuple[float, float], cdelt: float = 2e-4,
                crpix: tuple[float, float] = (60.5, 45.5), **cards: Any) -> fits.Header:
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = ctype
    header["CRVAL1"], header["CRVAL2"] = crval
    header["CRPIX1"], header["CRPIX2"] = crpix
    header["CD1_1"], header["CD1_2"] = -cdelt, 0.1 * cdelt
    header["CD2_1"], header["CD2_2"] = -0.05 * cdelt, cdelt
    for key, value in cards.items():
        header[key.replace("__", "-")] = value
    return header


def tan() -> fits.Header:
    return _wcs_header(("RA---TAN", "DEC--TAN"), (150.1, 2.2), RADESYS="ICRS", EXPTIME=30.0, FILTER="r")


def sip() -> fits.Header:
    h = _wcs_header(("RA---TAN-SIP", "DEC--TAN-SIP"), (210.8, 54.3), cdelt=3e-4)
    h.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 2e-5, "A_1_1": -1e-5, "A_0_2": 3e-6,
              "B_2_0": -4e-6, "B_1_1": 1.5e-5, "B_0_2": 2e-5})
    return h


def tpv() -> fits.Header:
    h = _wcs_header(("RA---TPV", "DEC--TPV"), (35.0, -4.5), cdelt=7e-5)
    h.update({"PV1_0": 0.0, "PV1_1": 1.0, "PV1_2": 0.0, "PV1_4": 2e-3, "PV1_5": -1e-3, "PV1_7": 5e-3,
              "PV2_0": 0.0, "PV2_1": 1.0, "PV2_2": 0.0, "PV2_4": -3e-3, "PV2_6": 1e-3, "PV2_10": 4e-3})
    return h


def zpn() -> fits.Header:
    h = _wcs_header(("RA---ZPN", "DEC--ZPN"), (83.6, 22.0), cdelt=1e-3, crpix=(300.0, -200.0))
    h.update({"PV2_0": 0.0, "PV2_1": 1.0, "PV2_2": 0.0, "PV2_3": 42.0})
    return h


def car() -> fits.Header:
    return _wcs_header(("RA---CAR", "DEC--CAR"), (0.0, 0.0), cdelt=0.05, crpix=(-1000.0, -500.0))


def ait() -> fits.Header:
    return _wcs_header(("RA---AIT", "DEC--AIT"), (266.4, -28.9), cdelt=0.02, crpix=(10.0, 100.0))


def hpx() -> fits.Header:
    return _wcs_header(("RA---HPX", "DEC--HPX"), (0.0, 0.0), cdelt=0.1, crpix=(-200.0, -150.0))


def galactic() -> fits.Header:
    return _wcs_header(("GLON-TAN", "GLAT-TAN"), (0.0, 0.0), cdelt=1e-3)


def ecliptic() -> fits.Header:
    return _wcs_header(("ELON-SIN", "ELAT-SIN"), (120.0, 30.0), cdelt=5e-4)


def fk4() -> fits.Header:
    return _wcs_header(("RA---TAN", "DEC--TAN"), (10.68, 41.27), RADESYS="FK4", EQUINOX=1950.0)


def helioprojective() -> fits.Header:
    h = _wcs_header(("HPLN-TAN", "HPLT-TAN"), (0.0, 0.0), cdelt=6e-4)
    h["CUNIT1"] = h["CUNIT2"] = "deg"
    h["DATE-OBS"] = "2020-01-01T00:00:00"
    return h


def alternates() -> fits.Header:
    """A primary TAN and two alternates: galactic (A) and a shifted, rotated TAN (B)."""
    h = tan()
    alt_a = WCS(galactic())
    alt_b = WCS(_wcs_header(("RA---TAN", "DEC--TAN"), (150.3, 2.1), cdelt=2.5e-4, crpix=(10.0, 20.0)))
    h.update(alt_a.to_header(key="A"))
    h.update(alt_b.to_header(key="B"))
    return h


def alternates_only() -> fits.Header:
    h = fits.Header()
    h.update(WCS(sip()).to_header(key="A", relax=True))
    return h


def swapped() -> fits.Header:
    """Declination on the first pixel axis, right ascension on the second."""
    return _wcs_header(("DEC--TAN", "RA---TAN"), (-30.0, 45.0), cdelt=2e-4)


def three_axes() -> fits.Header:
    """A 2-D image whose WCS has a third, degenerate axis (WCSAXES = 3, a frequency)."""
    h = tan()
    h["WCSAXES"] = 3
    h["CTYPE3"], h["CRVAL3"], h["CRPIX3"], h["CDELT3"], h["CUNIT3"] = "FREQ", 1.4e9, 1.0, 1e6, "Hz"
    return h


def tnx() -> fits.Header:
    """An IRAF TNX header: a TAN core and a polynomial in the WAT cards (wcslib reads it as TPD)."""
    h = _wcs_header(("RA---TNX", "DEC--TNX"), (150.0, 2.0), cdelt=7e-5)
    h["WAT0_001"] = "system=image"
    for axis, text in ((1, 'wtype=tnx axtype=ra lngcor = "3. 3. 3. 2. -0.1 0.1 -0.1 0.1 1e-5 2e-4 -3e-4 5e-5 1e-4 -2e-4 "'),
                       (2, 'wtype=tnx axtype=dec latcor = "3. 3. 3. 2. -0.1 0.1 -0.1 0.1 -2e-5 1e-4 3e-4 -5e-5 2e-4 1e-4 "')):
        for start in range(0, len(text), 68):
            h[f"WAT{axis}_{start // 68 + 1:03d}"] = text[start:start + 68]
    return h


def dss() -> fits.Header:
    """The plate-solution header of a Digitized Sky Survey scan shipped with astropy's tests."""
    path = Path(astropy.__file__).parent / "wcs" / "tests" / "data" / "dss.14.29.56-62.41.05.fits.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = fits.getheader(path)
    for key in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND"):
        header.remove(key, ignore_missing=True)
    return header


WCS_KINDS = {"tan": tan, "sip": sip, "tpv": tpv, "zpn": zpn, "car": car, "ait": ait, "hpx": hpx,
             "galactic": galactic, "ecliptic": ecliptic, "fk4": fk4, "helioprojective": helioprojective,
             "alternates": alternates, "alternates_only": alternates_only, "dss": dss, "tnx": tnx,
             "three_axes": three_axes, "swapped": swapped}


def make_image(header: fits.Header, n_x: int = N_X, n_y: int = N_Y, dtype: Any = np.float32) -> fits.PrimaryHDU:
    data = (np.arange(n_x * n_y) % 1009).reshape(n_y, n_x).astype(dtype)
    return fits.PrimaryHDU(data=data, header=header)


def astropy_wcs(header: fits.Header, key: str = " ") -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(header, key=key)


def write_file(path: Path, hdus: Any, compress: str | None = None) -> Path:
    buffer = io.BytesIO()
    (hdus if isinstance(hdus, fits.HDUList) else fits.HDUList([hdus])).writeto(buffer, output_verify="silentfix")
    raw = buffer.getvalue()
    if compress == "gzip":
        raw = gzip.compress(raw)
    elif compress == "bzip2":
        raw = bz2.compress(raw)
    path.write_bytes(raw)
    return path


def read(path: Path, formatter: str = "fits", component: str | None = None, **parameters: Any) -> Any:
    with open(path, "rb") as stream:
        return get_formatter(formatter).read(stream, component=component, parameters=parameters or None)


def world(wcs: WCS, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if wcs.naxis > 2:  # a degenerate third axis: its first pixel
            return np.array(wcs.all_pix2world(xs, ys, np.zeros_like(xs), 0)[:2])
        return np.array(wcs.all_pix2world(xs, ys, 0))


def assert_same_sky(a: np.ndarray, b: np.ndarray, tolerance: float = MAS) -> None:
    """Longitudes compared on the sphere (wrapped, scaled by cos(lat)), latitudes directly."""
    d_lon = (a[0] - b[0] + 180.0) % 360.0 - 180.0
    assert np.nanmax(np.abs(d_lon * np.cos(np.radians(b[1])))) < tolerance
    assert np.nanmax(np.abs(a[1] - b[1])) < tolerance
    assert np.array_equal(np.isnan(a), np.isnan(b))


BOXES = [(0, 0, 30, 20), (17, 11, 95, 80), (90, 60, N_X, N_Y)]


def make_raw(n_amps: int = 4) -> fits.HDUList:
    primary = fits.PrimaryHDU(header=fits.Header({"DATE-OBS": "2026-03-01T01:02:03", "MJD-OBS": 61100.04,
                                                  "EXPTIME": 15.0, "FILTER": "g", "INSTRUME": "SimCam"}))
    hdus = [primary]
    for amp in range(n_amps):
        header = _wcs_header(("RA---TAN", "DEC--TAN"), (150.0, 2.0), crpix=(60.5 - 40 * amp, 45.5))
        header["EXTNAME"] = f"AMP{amp:02d}"
        header["INHERIT"] = True
        hdus.append(fits.ImageHDU(np.full((N_Y, 40), amp, dtype=np.uint16), header=header))
    hdus.append(fits.BinTableHDU(Table({"a": [1, 2]}), name="CATALOG"))
    return fits.HDUList(hdus)


def _icrs(header: fits.Header, xs: np.ndarray, ys: np.ndarray, key: str = " ") -> SkyCoord:
    wcs = astropy_wcs(header, key)
    wcs = wcs if wcs.naxis == 2 else wcs.celestial
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if wcs.wcs.ctype[0].startswith("ELON"):  # FITS ecliptic axes: the mean ecliptic of J2000
            lon, lat = wcs.all_pix2world(xs, ys, 0)
            return SkyCoord(lon * u.deg, lat * u.deg, frame=BarycentricMeanEcliptic(equinox="J2000")) \
                .transform_to(ICRS())
        return wcs.pixel_to_world(xs, ys).transform_to(ICRS())
