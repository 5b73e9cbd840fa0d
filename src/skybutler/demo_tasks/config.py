"""Pydantic configs of the demo science tasks.

Each config is plain data (JSON/YAML round-trippable, frozen, unknown keys refused)
so a pipeline can store the config of every run as a dataset and a re-run with the
same config is the same computation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CalibrateConfig", "CoaddConfig", "IsrConfig"]


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IsrConfig(_Config):
    """Instrument signature removal: which corrections :func:`~.isr.isr` applies."""

    do_overscan: bool = True  # subtract the per-row median of the BIASSEC columns
    do_bias: bool = True  # subtract a master bias (ADU, overscan-subtracted and trimmed)
    do_flat: bool = True  # divide by a master flat (normalised to median 1)
    do_gain: bool = True  # convert ADU to electrons with the GAIN header keyword
    default_gain: float = Field(1.0, gt=0)  # used when the raw header has no GAIN


class CalibrateConfig(_Config):
    """Background, detection, measurement and PSF-width estimation (:func:`~.calibrate.calibrate`).

    The defaults are ordinary Source Extractor settings (5 sigma on a 3x3 matched
    filter, 5 pixels, moderate deblending); with them every flare of a simulated
    glint is one detection, so detectors a glint crosses stand out by their number
    of sources (see the package docstring for the numbers).
    """

    detection_threshold: float = Field(5.0, gt=0)  # sigma above the background RMS
    min_area: int = Field(5, ge=1)  # pixels above threshold for a detection
    background_box: int = Field(64, ge=8)  # background mesh size, pixels
    background_filter: int = Field(3, ge=1)  # median filter over background meshes
    deblend_nthresh: int = Field(32, ge=1)  # thresholds between detection level and peak
    deblend_cont: float = Field(0.005, gt=0, le=1)  # flux fraction a branch needs to be split off
    filter_kernel: Literal["gauss", "none"] = "gauss"  # "gauss": 3x3 matched filter before thresholding
    clean: bool = True  # drop detections explained by a bright neighbour's wings
    aperture_radius: float = Field(4.0, gt=0)  # circular aperture for flux, pixels
    fwhm_radius_max: float = Field(8.0, gt=0)  # largest radius searched for the half-light radius
    psf_min_snr: float = Field(30.0, gt=0)  # S/N of sources used for the PSF width
    psf_isolation: float = Field(8.0, ge=0)  # no neighbour within this radius (pixels)
    edge_margin: int = Field(5, ge=0)  # sources this close to the border are flagged EDGE


class CoaddConfig(_Config):
    """Resampling and combination of calibrated images onto a patch grid (:func:`~.coadd.coadd`)."""

    resampling: Literal["bilinear", "nearest-neighbor", "biquadratic", "bicubic"] = "bilinear"
    combine: Literal["mean", "median"] = "mean"
