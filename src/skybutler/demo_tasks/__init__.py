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

The default :class:`CalibrateConfig` is an ordinary Source Extractor setup (5 sigma
on a 3x3 matched filter, 5 pixels, moderate deblending).  A simulated glint is a
string of flares, each found as one source, so detectors a glint crosses stand out
by their row count: on simulated 256-pixel SimCam nights (six nights checked) at
the demo pipeline's 10 sigma a glint detector has 41 or more sources and a clean
one at most 29 (median ~15); at 15 sigma, 33 or more against at most 20.

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
