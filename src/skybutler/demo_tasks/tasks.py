"""Pipeline tasks wrapping the demo science functions, one short class each.

Dataset types (storage class; dimensions):

- ``raw`` (Image; instrument, exposure, detector) -- ingested.
- ``bias`` (Image; instrument, detector) and ``flat`` (Image; instrument,
  physical_filter, detector) -- made by :class:`BiasTask` / :class:`FlatTask`,
  then certified into a CALIBRATION collection; ISR finds them by exposure time.
  Register both as calibration dataset types before running ``demo_calibs.yaml``
  (:func:`register_calibration_types`) so that their outputs can be certified.
- ``postISRCCD`` (Image; instrument, exposure, detector) -- ISR of one raw.
- ``calexp`` (Image) and ``src`` (Table) per visit and detector.
- ``visitSummary`` (Table) and ``visitMetrics`` (Dict) per visit.
- ``deepCoadd`` and ``deepCoadd_nImage`` (Image; skymap, tract, patch, band) --
  the calexps overlapping a patch (a spatial join) resampled onto the patch's grid.

ISR works on exposures (a raw is an exposure-level dataset); calibration gathers
the exposures of a visit (SimCam defines one visit per science exposure, with the
same ID), so everything after it is per visit, and the walkthrough's "detectors of
visits with many detections" is a query on ``src.n_rows`` over (visit, detector).
The calibration pipeline selects its raws with a where-clause such as
``exposure.observation_type IN ('bias', 'flat')``; each task also keeps only the
raws whose ``OBSTYPE`` header matches, so one graph can build both.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ConfigDict, Field

from ..pipeline import Input, Output, PipelineTask, PrerequisiteInput, TaskConfig
from .calibrate import calibrate
from .coadd import coadd
from .config import CalibrateConfig, CoaddConfig, IsrConfig
from .isr import isr, make_bias, make_flat
from .summary import visit_metrics, visit_summary

if TYPE_CHECKING:
    from astropy.wcs import WCS

    from ..butler import Butler

__all__ = ["BiasTask", "CalibrateTask", "CoaddTask", "FlatTask", "IsrTask", "VisitSummaryTask", "patch_grid",
           "register_calibration_types"]

EXPOSURE_DETECTOR = ("instrument", "exposure", "detector")
VISIT_DETECTOR = ("instrument", "visit", "detector")
PATCH_BAND = ("skymap", "tract", "patch", "band")
RAWS = Input(name="raw", storage_class="Image", dimensions=EXPOSURE_DETECTOR, multiple=True)
BIAS = ("bias", ("instrument", "detector"))
FLAT = ("flat", ("instrument", "physical_filter", "detector"))


def register_calibration_types(butler: Butler) -> None:
    """Register ``bias`` and ``flat`` as calibration dataset types (a no-op if they are),
    so the outputs of ``demo_calibs.yaml`` can be certified into a CALIBRATION collection."""
    for name, dimensions in (BIAS, FLAT):
        butler.register_dataset_type(name, dimensions, "Image", is_calibration=True)


class IsrTaskConfig(TaskConfig, IsrConfig):
    """:class:`~.config.IsrConfig` as a task config."""

    model_config = ConfigDict(frozen=False)


class CalibrateTaskConfig(TaskConfig, CalibrateConfig):
    """:class:`~.config.CalibrateConfig` as a task config."""

    model_config = ConfigDict(frozen=False)


class CoaddTaskConfig(TaskConfig, CoaddConfig):
    """:class:`~.config.CoaddConfig`, the patch grid's pixel scale, and whether to keep only
    the part of the patch the inputs cover."""

    model_config = ConfigDict(frozen=False)

    pixel_scale: float = Field(1.6, gt=0)  # arcsec per coadd pixel (twice the demo's 256-pixel SimCam pixels)
    crop: bool = True  # store the box of the patch grid the inputs cover, not the whole patch


def _of_type(raws: dict[Any, Any], obstype: str) -> list[Any]:
    chosen = [hdu for hdu in raws.values() if str(hdu.header.get("OBSTYPE", "")).upper() == obstype]
    if not chosen:
        raise ValueError(f"none of the {len(raws)} raws given is a {obstype} exposure")
    return chosen


class BiasTask(PipelineTask):
    """Median-combine a detector's bias exposures into a master bias (ADU)."""

    dimensions = BIAS[1]
    inputs = {"raws": RAWS}
    outputs = {"bias": Output(name="bias", storage_class="Image", dimensions=BIAS[1])}
    Config = IsrTaskConfig

    def run(self, raws):
        return {"bias": make_bias(_of_type(raws, "BIAS"), self.config)}


class FlatTask(PipelineTask):
    """Combine a detector's flats of one filter into a master flat (median 1)."""

    dimensions = FLAT[1]
    inputs = {"raws": RAWS, "bias": Input(name="bias", storage_class="Image", dimensions=BIAS[1])}
    outputs = {"flat": Output(name="flat", storage_class="Image", dimensions=FLAT[1])}
    Config = IsrTaskConfig

    def run(self, raws, bias):
        return {"flat": make_flat(_of_type(raws, "FLAT"), bias if self.config.do_bias else None, self.config)}


class IsrTask(PipelineTask):
    """Overscan, trim, bias, flat and gain: a raw becomes an image in electrons."""

    dimensions = EXPOSURE_DETECTOR
    inputs = {"raw": Input(name="raw", storage_class="Image", dimensions=EXPOSURE_DETECTOR)}
    prerequisites = {
        "bias": PrerequisiteInput(name="bias", storage_class="Image", dimensions=BIAS[1], is_calibration=True),
        "flat": PrerequisiteInput(name="flat", storage_class="Image", dimensions=FLAT[1], is_calibration=True),
    }
    outputs = {"exposure": Output(name="postISRCCD", storage_class="Image", dimensions=EXPOSURE_DETECTOR)}
    Config = IsrTaskConfig

    def run(self, raw, bias, flat):
        return {"exposure": isr(raw, bias, flat, self.config)}


class CalibrateTask(PipelineTask):
    """Background, detection, measurement and PSF width of one detector of a visit."""

    dimensions = VISIT_DETECTOR
    inputs = {"exposures": Input(name="postISRCCD", storage_class="Image", dimensions=EXPOSURE_DETECTOR,
                                 multiple=True, doc="the visit's exposures of this detector (SimCam: one)")}
    outputs = {
        "calexp": Output(name="calexp", storage_class="Image", dimensions=VISIT_DETECTOR),
        "src": Output(name="src", storage_class="Table", dimensions=VISIT_DETECTOR),
    }
    Config = CalibrateTaskConfig

    def run(self, exposures):
        if len(exposures) != 1:
            raise ValueError(f"a visit of {len(exposures)} exposures: combining snaps is not supported")
        calexp, sources = calibrate(next(iter(exposures.values())), self.config)
        self.log.info("%d sources, PSF FWHM %s px", sources.num_rows, calexp.header.get("PSF_FWHM"))
        return {"calexp": calexp, "src": sources}


class VisitSummaryTask(PipelineTask):
    """Per-detector table and flat metrics of one visit's calibrated detectors."""

    dimensions = ("instrument", "visit")
    inputs = {
        "calexps": Input(name="calexp", storage_class="Image", dimensions=VISIT_DETECTOR, multiple=True),
        "sources": Input(name="src", storage_class="Table", dimensions=VISIT_DETECTOR, multiple=True),
    }
    outputs = {
        "summary": Output(name="visitSummary", storage_class="Table", dimensions=("instrument", "visit")),
        "metrics": Output(name="visitMetrics", storage_class="Dict", dimensions=("instrument", "visit")),
    }

    def run(self, calexps, sources):
        summary = visit_summary({int(d["detector"]): t for d, t in sources.items()},
                                {int(d["detector"]): image.header for d, image in calexps.items()})
        return {"summary": summary, "metrics": visit_metrics(summary)}


def patch_grid(sky_map: Any, tract: int, patch: int, pixel_scale: float) -> tuple[WCS, tuple[int, int]]:
    """The pixel grid of a patch: a TAN WCS centred on the patch with ``pixel_scale``
    arcsec pixels (north up, east left) and the (rows, columns) covering its region,
    overlap included.  ``sky_map`` is a :class:`~skybutler.ingest.RingsSkyMap`."""
    from astropy.wcs import WCS

    cell_y, cell_x = divmod(patch, sky_map.patches)
    ra_min, ra_max, dec_min, dec_max = sky_map.patch_bounds(tract, cell_x, cell_y)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [(ra_min + ra_max) / 2.0, (dec_min + dec_max) / 2.0]
    wcs.wcs.cd = np.diag([-pixel_scale / 3600.0, pixel_scale / 3600.0])
    wcs.wcs.crpix = [0.0, 0.0]
    # The border of the patch's region (its box dilated by the overlap), sampled densely:
    # parallels project as curves, so the corners alone would not bound it.
    margin = sky_map.patch_overlap
    low, high = dec_min - margin, dec_max + margin
    pad = margin / max(1e-6, min(math.cos(math.radians(low)), math.cos(math.radians(high))))
    t = np.linspace(0.0, 1.0, 65)
    ras, decs = ra_min - pad + t * (ra_max - ra_min + 2 * pad), low + t * (high - low)
    border_ra = np.concatenate([ras, ras, np.full(65, ras[0]), np.full(65, ras[-1])])
    border_dec = np.concatenate([np.full(65, low), np.full(65, high), decs, decs])
    x, y = wcs.all_world2pix(border_ra, border_dec, 1)
    half_x, half_y = float(np.abs(x).max()), float(np.abs(y).max())
    nx, ny = 2 * math.ceil(half_x) + 2, 2 * math.ceil(half_y) + 2
    wcs.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    return wcs, (ny, nx)


class CoaddTask(PipelineTask):
    """Resample the calexps overlapping a patch (found by a spatial join) onto the patch's
    grid and combine them, per band: the coadd and its map of how many inputs cover each pixel."""

    dimensions = PATCH_BAND
    inputs = {
        "calexps": Input(name="calexp", storage_class="Image", dimensions=VISIT_DETECTOR, multiple=True),
        "sky_map": Input(name="skyMap", storage_class="Dict", dimensions=("skymap",)),
    }
    outputs = {
        "coadd": Output(name="deepCoadd", storage_class="Image", dimensions=PATCH_BAND),
        "coverage": Output(name="deepCoadd_nImage", storage_class="Image", dimensions=PATCH_BAND),
    }
    Config = CoaddTaskConfig

    def run(self, calexps, sky_map, data_id):
        from ..ingest.skymaps import make_skymap

        config = dict(sky_map)
        geometry = make_skymap(config.pop("name"), **config)
        wcs, shape = patch_grid(geometry, int(data_id["tract"]), int(data_id["patch"]), self.config.pixel_scale)
        settings = CoaddConfig(resampling=self.config.resampling, combine=self.config.combine)
        image, coverage = coadd(list(calexps.values()), wcs, shape, settings, crop=self.config.crop)
        for hdu in (image, coverage):
            hdu.header["SKYMAP"] = (str(data_id["skymap"]), "sky map of the patch grid")
            hdu.header["TRACT"] = int(data_id["tract"])
            hdu.header["PATCH"] = int(data_id["patch"])
            hdu.header["BAND"] = str(data_id["band"])
        self.log.info("%d inputs, %dx%d pixels", len(calexps), image.data.shape[1], image.data.shape[0])
        return {"coadd": image, "coverage": coverage}
