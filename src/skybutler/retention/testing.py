"""A small repository of calibrated images for retention tests and the recompute benchmark.

:func:`add_calibrated_images` writes synthetic ISR-processed detector images (sky,
noise and stars from a fixed seed, a TAN WCS) as ``postISRCCD`` and runs the demo
``CalibrateTask`` on them, so ``calexp`` (Image) and ``src`` (Table) are real pipeline
products with recorded provenance -- the "processed images" of walkthrough step 8.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ConfigDict

from ..demo_tasks.calibrate import calibrate
from ..demo_tasks.config import CalibrateConfig
from ..pipeline import Input, Output, PipelineTask, TaskConfig
from ..timespan import Timespan

if TYPE_CHECKING:
    from ..butler import Butler
    from ..execution import ExecutionReport

EXPOSURE_DETECTOR = ("instrument", "exposure", "detector")


class CalibrateImageConfig(TaskConfig, CalibrateConfig):
    """The demo calibration settings as a task config."""

    model_config = ConfigDict(frozen=False)


class CalibrateImageTask(PipelineTask):
    """postISRCCD -> calexp (background-subtracted image) and src (source table), per exposure and detector."""

    dimensions = EXPOSURE_DETECTOR
    inputs = {"exposure": Input(name="postISRCCD", storage_class="Image", dimensions=EXPOSURE_DETECTOR)}
    outputs = {"calexp": Output(name="calexp", storage_class="Image", dimensions=EXPOSURE_DETECTOR),
               "src": Output(name="src", storage_class="Table", dimensions=EXPOSURE_DETECTOR)}
    Config = CalibrateImageConfig

    def run(self, exposure: Any) -> dict[str, Any]:
        calexp, sources = calibrate(exposure, self.config)
        return {"calexp": calexp, "src": sources}


def synthetic_exposure(size: int, seed: int, n_stars: int = 60) -> Any:
    """A background-level image in electrons with Gaussian stars and a celestial WCS."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    image = rng.normal(1000.0, 10.0, (size, size)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(n_stars):
        x, y = rng.uniform(10, size - 10, 2)
        flux, sigma = rng.uniform(2e3, 5e4), 1.6
        box = (slice(max(0, int(y) - 12), int(y) + 13), slice(max(0, int(x) - 12), int(x) + 13))
        image[box] += (flux / (2 * np.pi * sigma**2) * np.exp(
            -((xx[box] - x) ** 2 + (yy[box] - y) ** 2) / (2 * sigma**2))).astype(np.float32)
    header = fits.Header()
    header.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": 2.0,
                   "CRPIX1": size / 2, "CRPIX2": size / 2, "CD1_1": -5.5e-5, "CD1_2": 0.0, "CD2_1": 0.0,
                   "CD2_2": 5.5e-5, "BUNIT": "electron", "OBSTYPE": "science", "SATLEVEL": 1e6})
    return fits.ImageHDU(image, header)


def add_calibrated_images(butler: Butler, size: int = 512, detectors: int = 2) -> ExecutionReport:
    """Fill a new repository with one exposure of ``detectors`` synthetic postISRCCD images
    calibrated by the demo CalibrateTask into ``calexp`` and ``src`` (collection ``out``);
    returns the execution report."""
    from astropy.time import Time

    from ..execution import run_pipeline
    from ..pipeline import Pipeline

    butler.insert_records("instrument", [{"name": "Cam", "detector_max": detectors, "visit_max": 100}])
    butler.insert_records("band", [{"name": "r"}])
    butler.insert_records("physical_filter", [{"instrument": "Cam", "name": "Cam-r", "band": "r"}])
    butler.insert_records("detector", [{"instrument": "Cam", "id": d, "full_name": f"S{d}", "purpose": "SCIENCE"}
                                       for d in range(detectors)])
    night = Timespan(Time("2026-03-01T12:00:00", scale="tai"), Time("2026-03-02T12:00:00", scale="tai"))
    butler.insert_records("day_obs", [{"instrument": "Cam", "id": 20260301, "timespan": night}])
    butler.insert_records("group", [{"instrument": "Cam", "name": "g1"}])
    butler.insert_records("exposure", [{"instrument": "Cam", "id": 1, "physical_filter": "Cam-r",
                                        "day_obs": 20260301, "group": "g1", "exposure_time": 30.0,
                                        "observation_type": "science"}])
    butler.register_dataset_type("postISRCCD", EXPOSURE_DETECTOR, "Image")
    butler.put_many("postISRCCD", [(synthetic_exposure(size, seed=d), {"instrument": "Cam", "exposure": 1,
                                                                       "detector": d}) for d in range(detectors)],
                    run="isr")
    pipeline = Pipeline()
    pipeline.add_task("calibrate", CalibrateImageTask)
    return run_pipeline(butler, pipeline, ["isr"], "out")
