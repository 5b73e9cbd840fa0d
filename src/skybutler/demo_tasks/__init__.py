"""Demo science tasks for SimCam data: ISR, master calibrations, calibration
(background, detection, measurement, PSF width), visit summaries and coadds.

Each step is a pure function of in-memory objects (astropy FITS HDUs, pyarrow
tables) and a frozen pydantic config; none knows about the butler, so a pipeline
task wraps each in a few lines.

=================  ===================================  ==========================
function           inputs                               outputs
=================  ===================================  ==========================
make_bias          raw bias HDUs of one detector        master bias (ADU)
make_flat          raw flat HDUs, master bias           master flat (median 1)
isr                raw HDU, bias, flat, IsrConfig       exposure (electrons)
calibrate          exposure, CalibrateConfig            calexp, source table
visit_summary      {detector: sources}, {det: calexp}   per-detector table
visit_metrics      visit_summary table                  flat dict of visit metrics
coadd              calexps, patch WCS, shape            coadd image, coverage map
=================  ===================================  ==========================

The default :class:`CalibrateConfig` (20 sigma, single-pixel area, no smoothing
filter, near-total deblending) shreds a glint/satellite trail into a chain of
detections, so detectors crossed by a trail stand out by their row count: on
simulated 256-pixel SimCam nights a detector crossed over more than 150 pixels
has 73 or more sources, a clean one at most ~62 (median ~32-37).

:mod:`.tasks` wraps each function as a pipeline task; ``demo_calibs.yaml`` (master
biases and flats) and ``demo_pipeline.yaml`` (ISR, calibrate, per-exposure
summaries) are the pipelines.
"""

from .calibrate import (
    FLAG_BLENDED,
    FLAG_CROWDED,
    FLAG_EDGE,
    FLAG_SATURATED,
    FLAG_TRUNCATED,
    SOURCE_SCHEMA,
    calibrate,
    estimate_psf_fwhm,
)
from .coadd import coadd
from .config import CalibrateConfig, CoaddConfig, IsrConfig
from .isr import isr, make_bias, make_flat, parse_section
from .summary import SUMMARY_SCHEMA, visit_metrics, visit_summary

__all__ = [
    "FLAG_BLENDED",
    "FLAG_CROWDED",
    "FLAG_EDGE",
    "FLAG_SATURATED",
    "FLAG_TRUNCATED",
    "SOURCE_SCHEMA",
    "SUMMARY_SCHEMA",
    "CalibrateConfig",
    "CoaddConfig",
    "IsrConfig",
    "calibrate",
    "coadd",
    "estimate_psf_fwhm",
    "isr",
    "make_bias",
    "make_flat",
    "parse_section",
    "visit_metrics",
    "visit_summary",
]
