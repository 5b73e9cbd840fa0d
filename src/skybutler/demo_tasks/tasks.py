"""Pipeline tasks wrapping the demo science functions, one short class each.

Dataset types (storage class; dimensions):

- ``raw`` (Image; instrument, exposure, detector) -- ingested.
- ``bias`` (Image; instrument, detector) and ``flat`` (Image; instrument,
  physical_filter, detector) -- made by :class:`BiasTask` / :class:`FlatTask`,
  then certified into a CALIBRATION collection; ISR finds them by exposure time.
- ``postISRCCD`` (Image), ``calexp`` (Image), ``src`` (Table) -- per exposure and detector.
- ``visitSummary`` (Table) and ``visitMetrics`` (Dict) -- per exposure.

Processing is keyed by ``exposure`` rather than ``visit``: a connection's data ID
must lie within the quantum's, and a raw is an exposure-level dataset (SimCam
defines one visit per exposure with the same ID, so the walkthrough's
"detectors of visits with many detections" is ``src.n_rows > 70`` either way).
The calibration subset selects its raws with a where-clause such as
``exposure.observation_type IN ('bias', 'flat')``; each task also keeps only the
raws whose ``OBSTYPE`` header matches, so one graph can build both.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from ..pipeline import Input, Output, PipelineTask, PrerequisiteInput, TaskConfig
from .calibrate import calibrate
from .config import CalibrateConfig, IsrConfig
from .isr import isr, make_bias, make_flat
from .summary import visit_metrics, visit_summary

__all__ = ["BiasTask", "CalibrateTask", "FlatTask", "IsrTask", "VisitSummaryTask"]

EXPOSURE_DETECTOR = ("instrument", "exposure", "detector")
RAWS = Input(name="raw", storage_class="Image", dimensions=EXPOSURE_DETECTOR, multiple=True)


class IsrTaskConfig(TaskConfig, IsrConfig):
    """:class:`~.config.IsrConfig` as a task config."""

    model_config = ConfigDict(frozen=False)


class CalibrateTaskConfig(TaskConfig, CalibrateConfig):
    """:class:`~.config.CalibrateConfig` as a task config."""

    model_config = ConfigDict(frozen=False)


def _of_type(raws: dict[Any, Any], obstype: str) -> list[Any]:
    chosen = [hdu for hdu in raws.values() if str(hdu.header.get("OBSTYPE", "")).upper() == obstype]
    if not chosen:
        raise ValueError(f"none of the {len(raws)} raws given is a {obstype} exposure")
    return chosen


class BiasTask(PipelineTask):
    """Median-combine a detector's bias exposures into a master bias (ADU)."""

    dimensions = ("instrument", "detector")
    inputs = {"raws": RAWS}
    outputs = {"bias": Output(name="bias", storage_class="Image", dimensions=("instrument", "detector"))}
    Config = IsrTaskConfig

    def run(self, raws):
        return {"bias": make_bias(_of_type(raws, "BIAS"), self.config)}


class FlatTask(PipelineTask):
    """Combine a detector's flats of one filter into a master flat (median 1)."""

    dimensions = ("instrument", "physical_filter", "detector")
    inputs = {"raws": RAWS, "bias": Input(name="bias", storage_class="Image", dimensions=("instrument", "detector"))}
    outputs = {"flat": Output(name="flat", storage_class="Image",
                              dimensions=("instrument", "physical_filter", "detector"))}
    Config = IsrTaskConfig

    def run(self, raws, bias):
        return {"flat": make_flat(_of_type(raws, "FLAT"), bias if self.config.do_bias else None, self.config)}


class IsrTask(PipelineTask):
    """Overscan, trim, bias, flat and gain: a raw becomes an image in electrons."""

    dimensions = EXPOSURE_DETECTOR
    inputs = {"raw": Input(name="raw", storage_class="Image", dimensions=EXPOSURE_DETECTOR)}
    prerequisites = {
        "bias": PrerequisiteInput(name="bias", storage_class="Image", dimensions=("instrument", "detector"),
                                  is_calibration=True),
        "flat": PrerequisiteInput(name="flat", storage_class="Image", is_calibration=True,
                                  dimensions=("instrument", "physical_filter", "detector")),
    }
    outputs = {"exposure": Output(name="postISRCCD", storage_class="Image", dimensions=EXPOSURE_DETECTOR)}
    Config = IsrTaskConfig

    def run(self, raw, bias, flat):
        return {"exposure": isr(raw, bias, flat, self.config)}


class CalibrateTask(PipelineTask):
    """Background, detection, measurement and PSF width of one detector image."""

    dimensions = EXPOSURE_DETECTOR
    inputs = {"exposure": Input(name="postISRCCD", storage_class="Image", dimensions=EXPOSURE_DETECTOR)}
    outputs = {
        "calexp": Output(name="calexp", storage_class="Image", dimensions=EXPOSURE_DETECTOR),
        "src": Output(name="src", storage_class="Table", dimensions=EXPOSURE_DETECTOR),
    }
    Config = CalibrateTaskConfig

    def run(self, exposure):
        calexp, sources = calibrate(exposure, self.config)
        self.log.info("%d sources, PSF FWHM %s px", sources.num_rows, calexp.header.get("PSF_FWHM"))
        return {"calexp": calexp, "src": sources}


class VisitSummaryTask(PipelineTask):
    """Per-detector table and flat metrics of one exposure's calibrated detectors."""

    dimensions = ("instrument", "exposure")
    inputs = {
        "calexps": Input(name="calexp", storage_class="Image", dimensions=EXPOSURE_DETECTOR, multiple=True),
        "sources": Input(name="src", storage_class="Table", dimensions=EXPOSURE_DETECTOR, multiple=True),
    }
    outputs = {
        "summary": Output(name="visitSummary", storage_class="Table", dimensions=("instrument", "exposure")),
        "metrics": Output(name="visitMetrics", storage_class="Dict", dimensions=("instrument", "exposure")),
    }

    def run(self, calexps, sources):
        summary = visit_summary({int(d["detector"]): t for d, t in sources.items()},
                                {int(d["detector"]): image.header for d, image in calexps.items()})
        return {"summary": summary, "metrics": visit_metrics(summary)}
