"""SimCam: the simulated camera skybutler ships for demos and tests.

A 3x3 mosaic of 2048x2048 sensors (10 micron pixels, 0.1 arcsec/pixel) on one
raft, six filters ``SimCam-u`` ... ``SimCam-y``, at a telescope on Cerro Pachón.
Simulated files may be binned (see :mod:`.simulate`): binning changes only how
finely the sky is sampled, never where a detector looks, so regions and star
positions do not depend on the simulated image size.

Identifiers follow the Rubin convention: ``exposure_id = day_obs * 100000 +
seq_num`` and ``obs_id = "SC_O_<day_obs>_<seq_num:06d>"``.
"""

from __future__ import annotations

from pydantic import Field

from .instrument import Detector, Instrument, register_instrument_class

__all__ = [
    "SIMCAM_BANDS",
    "SITE_HEIGHT",
    "SITE_LATITUDE",
    "SITE_LONGITUDE",
    "SimCam",
    "simcam_exposure_id",
    "simcam_obs_id",
]

SITE_LONGITUDE = -70.7494  # degrees east
SITE_LATITUDE = -30.2444  # degrees
SITE_HEIGHT = 2650.0  # metres

SIMCAM_BANDS = ("u", "g", "r", "i", "z", "y")

_NPIX = 2048
_PIXEL_SCALE = 0.1  # arcsec per unbinned pixel
_GAP = 0.002  # degrees between neighbouring sensors
_PITCH = _NPIX * _PIXEL_SCALE / 3600.0 + _GAP  # degrees between sensor centres


def _simcam_detectors() -> list[Detector]:
    """The 3x3 layout: detector ``3 * row + col``, row 0 at the bottom (-y)."""
    detectors = []
    for row in range(3):
        for col in range(3):
            detectors.append(
                Detector(
                    id=3 * row + col,
                    full_name=f"R00_S{row}{col}",
                    purpose="SCIENCE",
                    raft="R00",
                    offset_x=(col - 1) * _PITCH,
                    offset_y=(row - 1) * _PITCH,
                    nx=_NPIX,
                    ny=_NPIX,
                    pixel_size=10.0,
                )
            )
    return detectors


@register_instrument_class
class SimCam(Instrument):
    """The simulated camera; ``SimCam()`` builds it with its fixed layout."""

    name: str = "SimCam"
    detectors: list[Detector] = Field(default_factory=_simcam_detectors)
    filters: dict[str, str] = Field(default_factory=lambda: {f"SimCam-{b}": b for b in SIMCAM_BANDS})
    pixel_scale: float = _PIXEL_SCALE
    visit_max: int = 99_999_999 * 100_000 + 99_999


def simcam_exposure_id(day_obs: int, seq_num: int) -> int:
    """The exposure ID of the ``seq_num``-th exposure of night ``day_obs``."""
    if not 0 <= seq_num < 100_000:
        raise ValueError(f"seq_num {seq_num} out of range [0, 100000)")
    return day_obs * 100_000 + seq_num


def simcam_obs_id(day_obs: int, seq_num: int) -> str:
    """The observation ID string of an exposure (``SC_O_20260301_000012``)."""
    return f"SC_O_{day_obs}_{seq_num:06d}"
