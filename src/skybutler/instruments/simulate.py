"""Write realistic SimCam raw FITS files: a night of biases, flats and science exposures.

Layout choice: ONE FILE PER DETECTOR.  Each file is a single primary HDU holding
one detector's pixels (uint16 ADU; data section followed by overscan columns) and a
complete header, so every file is one raw dataset (exposure x detector) that
ingest can read, checksum and move on its own, and readers never need to open a
multi-extension file to get one detector.

Everything is deterministic given ``seed`` (same seed -> identical bytes).  The
focal plane always covers the same sky; ``size`` (pixels per detector side, 256
by default, 2048 for realistic images) only sets the binning.

Pixels contain: bias level with row drift and column structure plus an overscan
region; read noise; Poisson noise; a flat-field pattern (vignetting, gradient,
pixel QE); sky background; stars from :func:`~.sky.star_catalog` rendered with a
Gaussian PSF of per-exposure seeing through the header's TAN WCS; saturation at
65535 ADU (the brightest stars); cosmic rays; and, on every third science
exposure, a glint: a tumbling satellite's string of flares along a straight line
across some detectors (:func:`glint_detectors`).

Header keywords: INSTRUME, TELESCOP, TIMESYS (TAI), DATE-OBS, DATE-END, MJD-OBS,
MJD-END, EXPTIME, DARKTIME, FILTER, OBSTYPE, OBJECT, PROGRAM, REASON, EXPID, SEQNUM,
DAYOBS, GROUPID, OBSID, CCDNUM, DETECTOR, RAFTNAME, BINNING, GAIN, RDNOISE,
SATURATE, DATASEC, BIASSEC; for science exposures also RA, DEC, RADESYS, ROTPA,
AZIMUTH, ALTITUDE, ZD, AIRMASS, SEEING and the TAN WCS (CTYPEi, CUNITi, CRVALi,
CRPIXi, CDi_j, EQUINOX).  Biases and flats carry no pointing or WCS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time, TimeDelta
from astropy.wcs import WCS

from .instrument import Instrument
from .render import add_cosmic_rays, add_stars, bias_pattern, flat_pattern
from .simcam import SITE_LATITUDE, SITE_LONGITUDE, SimCam, simcam_exposure_id, simcam_obs_id
from .sky import airmass_from_zenith, altaz_of, local_sidereal_time, star_catalog

__all__ = ["ExposureSpec", "glint_detectors", "glint_trail", "plan_night", "simulate_night", "write_exposure"]

GAIN = 1.2  # electrons per ADU
READ_NOISE = 6.0  # electrons
SATURATION = 65535  # ADU
FLAT_LEVEL = 20000.0  # electrons per pixel in a flat
DARK_CURRENT = 0.002  # electrons per second per unbinned pixel
EXTINCTION = 0.15  # magnitudes per airmass
#: Magnitude giving 1 electron per second, per band.
ZERO_POINTS = {"u": 26.5, "g": 28.2, "r": 28.0, "i": 27.8, "z": 27.4, "y": 26.6}
#: Dark-sky surface brightness, mag per square arcsec, per band.
SKY_BRIGHTNESS = {"u": 22.9, "g": 22.2, "r": 21.2, "i": 20.5, "z": 19.6, "y": 18.6}


@dataclass(frozen=True)
class ExposureSpec:
    """Everything that defines one SimCam exposure (all its detectors)."""

    day_obs: int
    seq_num: int
    observation_type: str  # science, bias, flat or dark
    physical_filter: str
    begin: Time
    exposure_time: float
    ra: float | None = None  # boresight, degrees (science only)
    dec: float | None = None
    sky_angle: float = 0.0  # position angle of detector +y, east of north, degrees
    seeing: float = 1.0  # PSF FWHM, arcsec
    target_name: str = ""
    science_program: str = ""
    observation_reason: str = ""
    group: str = ""
    extra: dict[str, object] = field(default_factory=dict)  # more header keywords

    @property
    def exposure_id(self) -> int:
        """``day_obs * 100000 + seq_num``."""
        return simcam_exposure_id(self.day_obs, self.seq_num)

    @property
    def obs_id(self) -> str:
        """``SC_O_<day_obs>_<seq_num:06d>``."""
        return simcam_obs_id(self.day_obs, self.seq_num)

    @property
    def end(self) -> Time:
        """Shutter close."""
        return self.begin + TimeDelta(self.exposure_time, format="sec", scale="tai")


# -- glints ---------------------------------------------------------------------------

GLINT_SPACING = 4.0 / 3600.0
"""Degrees between consecutive flares of a glint: 5 pixels of a 256-pixel SimCam
image, far enough apart for ordinary detection settings to find each flare."""
GLINT_PEAK = 12000.0
"""Mean peak of a flare, electrons per pixel (each flare is 0.6-1.4 times this)."""
GLINT_MIN_CROSSING = 0.5
"""A glint is drawn on a detector only if it crosses at least this fraction of the
detector's side (shorter clips of a corner are left out), so every detector
:func:`glint_detectors` names carries a string of at least ~25 flares: enough to
stand out from the spread of star counts between clean detectors."""


def glint_trail(exposure_id: int) -> tuple[float, float, float] | None:
    """The trail of a science exposure as (x, y, angle): a point on the focal plane in
    degrees from the boresight and the direction in radians; None if there is none.

    Every third exposure ID (``exposure_id % 3 == 0``) has one.
    """
    if exposure_id % 3 != 0:
        return None
    rng = np.random.default_rng([exposure_id, 0x6117])
    x, y = rng.uniform(-0.06, 0.06, 2)
    return float(x), float(y), float(rng.uniform(0.0, math.pi))


def _crossing(x0: float, y0: float, angle: float, cx: float, cy: float, hx: float, hy: float) -> float:
    """Length of the line through (x0, y0) at ``angle`` inside the box centred on (cx, cy)
    with half-sizes (hx, hy) (clipping the line's parameter to each slab)."""
    lo, hi = -math.inf, math.inf
    for start, step, centre, half in ((x0, math.cos(angle), cx, hx), (y0, math.sin(angle), cy, hy)):
        if abs(step) < 1e-12:
            if abs(start - centre) > half:
                return 0.0
            continue
        a, b = (centre - half - start) / step, (centre + half - start) / step
        lo, hi = max(lo, min(a, b)), min(hi, max(a, b))
    return max(0.0, hi - lo)


def glint_detectors(
    exposure_id: int, observation_type: str = "science", instrument: Instrument | None = None
) -> set[int]:
    """The detectors a glint crosses in this exposure (empty for calibrations): those where
    its line runs over at least :data:`GLINT_MIN_CROSSING` of the detector's side."""
    trail = glint_trail(exposure_id)
    if trail is None or observation_type != "science":
        return set()
    instrument = instrument or SimCam()
    x0, y0, angle = trail
    hit = set()
    for det in instrument.detectors:
        hx = det.nx * instrument.pixel_scale / 3600.0 / 2.0
        hy = det.ny * instrument.pixel_scale / 3600.0 / 2.0
        if _crossing(x0, y0, angle, det.offset_x, det.offset_y, hx, hy) >= GLINT_MIN_CROSSING * 2 * min(hx, hy):
            hit.add(det.id)
    return hit


def _add_glint(image: np.ndarray, exposure_id: int, x0: float, y0: float, scale: float, width: float) -> None:
    """Add the exposure's string of flares, in place: round Gaussian flares of ``width``
    pixels every :data:`GLINT_SPACING` along the trail through pixel (x0, y0), where
    ``scale`` is degrees per pixel.  Flare ``k`` sits at the same place on the focal
    plane, with the same brightness, on every detector and at every binning."""
    trail = glint_trail(exposure_id)
    assert trail is not None
    angle = trail[2]
    rng = np.random.default_rng([exposure_id, 0xF1A4E])
    n_half = 1000  # flares either side of the anchor: 1.1 degrees, beyond the focal plane
    brightness = GLINT_PEAK * rng.uniform(0.6, 1.4, 2 * n_half + 1)
    phase = float(rng.uniform(0.0, 1.0))
    spacing = GLINT_SPACING / scale  # pixels
    ny, nx = image.shape
    yy = np.arange(ny, dtype=float)[:, None] - y0
    xx = np.arange(nx, dtype=float)[None, :] - x0
    across = xx * math.sin(angle) - yy * math.cos(angle)
    along = (xx * math.cos(angle) + yy * math.sin(angle)) / spacing - phase
    nearest = np.rint(along)
    profile = np.exp(-0.5 * (across / width) ** 2)
    for shift in (-1.0, 0.0, 1.0):
        k = nearest + shift
        index = np.clip(k.astype(int) + n_half, 0, 2 * n_half)
        image += brightness[index] * profile * np.exp(-0.5 * ((along - k) * spacing / width) ** 2)


# -- one exposure -----------------------------------------------------------------------


def _header(spec: ExposureSpec, instrument: Instrument, detector_id: int, size: int, ny: int,
            overscan: int) -> fits.Header:
    """The raw header of one detector of an exposure (see module docstring for content)."""
    det = instrument.detector(detector_id)
    binning = det.nx / size
    dark_time = 0.0 if spec.observation_type == "bias" else spec.exposure_time + 1.0
    cards: dict[str, object] = {
        "INSTRUME": instrument.name,
        "TELESCOP": "SimTel",
        "TIMESYS": "TAI",
        "DATE-OBS": spec.begin.tai.isot,
        "DATE-END": spec.end.tai.isot,
        "MJD-OBS": spec.begin.tai.mjd,
        "MJD-END": spec.end.tai.mjd,
        "EXPTIME": spec.exposure_time,
        "DARKTIME": dark_time,
        "FILTER": spec.physical_filter,
        "OBSTYPE": spec.observation_type.upper(),
        "OBJECT": spec.target_name,
        "PROGRAM": spec.science_program,
        "REASON": spec.observation_reason,
        "EXPID": spec.exposure_id,
        "SEQNUM": spec.seq_num,
        "DAYOBS": spec.day_obs,
        "GROUPID": spec.group or spec.obs_id,
        "OBSID": spec.obs_id,
        "CCDNUM": det.id,
        "DETECTOR": det.full_name,
        "RAFTNAME": det.raft or "",
        "BINNING": binning,
        "GAIN": GAIN,
        "RDNOISE": READ_NOISE,
        "SATURATE": SATURATION,
        "DATASEC": f"[1:{size},1:{ny}]",
        "BIASSEC": f"[{size + 1}:{size + overscan},1:{ny}]",
    }
    if spec.observation_type == "science" and spec.ra is not None and spec.dec is not None:
        alt, az = altaz_of(spec.ra, spec.dec, spec.begin, SITE_LONGITUDE, SITE_LATITUDE)
        cards.update(
            {
                "RA": spec.ra,
                "DEC": spec.dec,
                "RADESYS": "ICRS",
                "ROTPA": spec.sky_angle,
                "AZIMUTH": az,
                "ALTITUDE": alt,
                "ZD": 90.0 - alt,
                "AIRMASS": airmass_from_zenith(90.0 - alt),
                "SEEING": spec.seeing,
            }
        )
        cards.update(instrument.wcs_header(det.id, spec.ra, spec.dec, spec.sky_angle, binning))
    cards.update(spec.extra)
    header = fits.Header()
    for key, value in cards.items():
        header[key] = value
    return header


def _electrons(spec: ExposureSpec, instrument: Instrument, detector_id: int, size: int, ny: int,
               header: fits.Header, seed: int, stars: Table | None) -> np.ndarray:
    """Expected electrons per pixel of the data section (before noise)."""
    det = instrument.detector(detector_id)
    binning = det.nx / size
    image = np.zeros((ny, size))
    kind = spec.observation_type
    if kind == "flat":
        image += FLAT_LEVEL
    elif kind == "science":
        band = instrument.band_of(spec.physical_filter)
        pixel_arcsec = instrument.pixel_scale * binning
        transmission = 10 ** (-0.4 * EXTINCTION * float(header["AIRMASS"]))
        image += 10 ** (-0.4 * (SKY_BRIGHTNESS[band] - ZERO_POINTS[band])) * pixel_arcsec**2 * spec.exposure_time
        wcs = WCS(instrument.wcs_header(det.id, spec.ra, spec.dec, spec.sky_angle, binning))
        x, y = wcs.all_world2pix(stars["ra"], stars["dec"], 0)
        margin = 10
        near = (x > -margin) & (x < size + margin) & (y > -margin) & (y < ny + margin)
        flux = 10 ** (-0.4 * (np.asarray(stars[f"mag_{band}"])[near] - ZERO_POINTS[band]))
        sigma = spec.seeing / 2.3548 / pixel_arcsec
        add_stars(image, x[near], y[near], flux * spec.exposure_time * transmission, sigma)
        trail = glint_trail(spec.exposure_id)
        if trail is not None and det.id in glint_detectors(spec.exposure_id, kind, instrument):
            scale = pixel_arcsec / 3600.0
            x0 = float(header["CRPIX1"]) - 1.0 + trail[0] / scale
            y0 = float(header["CRPIX2"]) - 1.0 + trail[1] / scale
            _add_glint(image, spec.exposure_id, x0, y0, scale, max(sigma, 0.8))
    if kind in ("flat", "science"):
        image *= flat_pattern(det, instrument.pixel_scale, size, seed)
    if kind != "bias":
        image += DARK_CURRENT * binning**2 * float(header["DARKTIME"])
    return image


def write_exposure(
    out_dir: str | Path,
    spec: ExposureSpec,
    *,
    seed: int = 0,
    size: int = 256,
    detectors: list[int] | None = None,
    instrument: Instrument | None = None,
) -> list[Path]:
    """Write one exposure as one FITS file per detector; returns the paths written."""
    instrument = instrument or SimCam()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    detector_ids = detectors if detectors is not None else [d.id for d in instrument.detectors]
    stars = None
    if spec.observation_type == "science":
        if spec.ra is None or spec.dec is None:
            raise ValueError(f"science exposure {spec.obs_id} needs ra and dec")
        stars = star_catalog(seed, spec.ra, spec.dec, _focal_plane_radius(instrument) + 0.01)
    paths = []
    for det_id in detector_ids:
        det = instrument.detector(det_id)
        ny = int(round(det.ny * size / det.nx))
        overscan = max(8, size // 8)
        header = _header(spec, instrument, det_id, size, ny, overscan)
        rng = np.random.default_rng([seed, spec.exposure_id, det_id])
        electrons = rng.poisson(_electrons(spec, instrument, det_id, size, ny, header, seed, stars)).astype(float)
        if spec.observation_type != "bias":
            add_cosmic_rays(electrons, rng, int(rng.poisson(0.4 * float(header["DARKTIME"]) + 1.0)))
        adu = np.array(bias_pattern(det_id, ny, size, overscan, seed))
        adu[:, :size] += electrons / GAIN
        adu += rng.normal(0.0, READ_NOISE / GAIN, adu.shape)
        pixels = np.clip(np.round(adu), 0, SATURATION).astype(np.uint16)
        path = out_dir / f"{spec.obs_id}_{det.full_name}.fits"
        fits.PrimaryHDU(data=pixels, header=header).writeto(path, overwrite=True)
        paths.append(path)
    return paths


def _focal_plane_radius(instrument: Instrument) -> float:
    """Degrees from the boresight to the farthest detector corner."""
    return max(
        math.hypot(abs(d.offset_x) + d.nx * instrument.pixel_scale / 7200.0,
                   abs(d.offset_y) + d.ny * instrument.pixel_scale / 7200.0)
        for d in instrument.detectors
    )


# -- a night -----------------------------------------------------------------------------


def plan_night(
    day_obs: int = 20260301,
    n_science: int = 6,
    bands: tuple[str, ...] = ("g", "r"),
    n_bias: int = 3,
    n_flat: int = 3,
    seed: int = 0,
    exposure_time: float = 30.0,
) -> list[ExposureSpec]:
    """The exposures of a night, in order: biases (20:00 TAI), flats per band (21:00),
    then science exposures from 01:00 TAI the next calendar date (same ``day_obs``).

    Science exposures dither around one field near the meridian and change sky angle;
    biases are taken with the first band's filter in the beam.
    """
    instrument = SimCam()
    text = str(day_obs)
    noon = Time(f"{text[:4]}-{text[4:6]}-{text[6:]}T12:00:00", scale="tai")
    specs: list[ExposureSpec] = []
    seq = 0

    def at(hours: float, seconds: float) -> Time:
        return noon + TimeDelta(hours * 3600.0 + seconds, format="sec", scale="tai")

    for i in range(n_bias):
        seq += 1
        specs.append(ExposureSpec(day_obs, seq, "bias", instrument.filter_for_band(bands[0]), at(8, 20 * i), 0.0,
                                  target_name="bias", science_program="CALIB", observation_reason="calibration",
                                  group=f"{day_obs}_bias"))
    for b, band in enumerate(bands):
        for i in range(n_flat):
            seq += 1
            specs.append(ExposureSpec(day_obs, seq, "flat", instrument.filter_for_band(band),
                                      at(9, 60 * (b * n_flat + i)), 5.0, target_name="flat",
                                      science_program="CALIB", observation_reason="calibration",
                                      group=f"{day_obs}_flat_{band}"))
    start = at(13, 0)
    field_ra = round(local_sidereal_time(start, SITE_LONGITUDE), 2)
    field_dec = -20.0
    rng = np.random.default_rng([seed, day_obs, 0x5C1])
    for i in range(n_science):
        seq += 1
        band = bands[min(i * len(bands) // max(n_science, 1), len(bands) - 1)]
        dx, dy = 0.04 * ((i % 3) - 1), 0.04 * (((i // 3) % 3) - 1)
        specs.append(ExposureSpec(
            day_obs, seq, "science", instrument.filter_for_band(band),
            start + TimeDelta(i * (exposure_time + 15.0), format="sec", scale="tai"), exposure_time,
            ra=(field_ra + dx / math.cos(math.radians(field_dec))) % 360.0, dec=field_dec + dy,
            sky_angle=15.0 * (i % 4), seeing=float(rng.uniform(0.6, 1.6)), target_name="SIMFIELD_1",
            science_program="SIMSURVEY", observation_reason="science", group=simcam_obs_id(day_obs, seq),
        ))
    return specs


def simulate_night(
    out_dir: str | Path,
    day_obs: int = 20260301,
    n_science: int = 6,
    bands: tuple[str, ...] = ("g", "r"),
    n_bias: int = 3,
    n_flat: int = 3,
    seed: int = 0,
    size: int = 256,
    exposure_time: float = 30.0,
) -> list[Path]:
    """Write a night of SimCam raws (see :func:`plan_night`) into ``out_dir``; returns the paths."""
    paths: list[Path] = []
    for spec in plan_night(day_obs, n_science, bands, n_bias, n_flat, seed, exposure_time):
        paths.extend(write_exposure(out_dir, spec, seed=seed, size=size))
    return paths
