"""Repositories for the pipeline, execution and provenance tests: metrics of the small
camera, a bias calibration, and a sky map whose patches overlap two visits."""

from __future__ import annotations

from astropy.time import Time

from conftest import visit_pointing
from skybutler import Butler
from skybutler.dimensions import regions
from skybutler.execution import run_pipeline
from skybutler.pipeline import Pipeline
from skybutler.pipeline.testing import CalibratedScaleTask, ScaleTask, VisitSummaryTask

VISITS = range(1, 7)
DETECTORS = range(4)
TASKS = "skybutler.pipeline.testing"


def put_metrics(butler: Butler, run: str = "run/a", visits=VISITS) -> None:
    """One metrics dataset per (visit, detector); each payload carries its data ID."""
    butler.put_many("metrics", [({"visit": v, "detector": d, "x": 1.0}, {"instrument": "Cam", "visit": v,
                                                                        "detector": d})
                                for v in visits for d in DETECTORS], run=run)


def add_bias(butler: Butler) -> None:
    """Two biases per detector: level 1 valid for visits 1-3, level 2 from visit 4 on."""
    butler.register_dataset_type("bias", ["instrument", "detector"], "Dict", is_calibration=True)
    early = butler.put_many("bias", [({"level": 1}, {"instrument": "Cam", "detector": d}) for d in DETECTORS],
                            run="calib/early")
    late = butler.put_many("bias", [({"level": 2}, {"instrument": "Cam", "detector": d}) for d in DETECTORS],
                           run="calib/late")
    switch = Time("2025-01-02T00:05:00", scale="tai")  # visit v starts at 00:00 + 2 min * (v - 1)
    butler.collections.certify("calib", early, Time("2025-01-01T00:00:00", scale="tai"), switch)
    butler.collections.certify("calib", late, switch, None)


def add_skymap(butler: Butler) -> None:
    """A sky map with one tract and two patches, centred on visits 1 and 2, and detector regions."""
    butler.insert_records("skymap", [{"name": "sky", "hash": "0", "tract_max": 1, "patch_nx_max": 2,
                                      "patch_ny_max": 1}])
    butler.insert_records("tract", [{"skymap": "sky", "id": 0, "region": regions.rectangle(10, -60, 30, 20)}])
    butler.insert_records("patch", [{"skymap": "sky", "tract": 0, "id": p, "cell_x": p, "cell_y": 0,
                                     "region": regions.rectangle(*visit_pointing(p + 1), 2.0, 2.0)}
                                    for p in range(2)])
    butler.insert_records("visit_detector_region", [
        {"instrument": "Cam", "visit": v, "detector": d,
         "region": regions.rectangle(visit_pointing(v)[0] + 0.4 * (d - 1.5), visit_pointing(v)[1], 0.3, 0.3)}
        for v in VISITS for d in DETECTORS])


def write_pipeline(path, tasks: dict, subsets: dict | None = None) -> str:
    """A pipeline YAML file; returns its path."""
    import yaml

    data: dict = {"description": "test pipeline", "tasks": tasks}
    if subsets:
        data["subsets"] = subsets
    path.write_text(yaml.safe_dump(data))
    return str(path)


#: The dimensions of the per-detector metrics datasets the test pipelines read and write.
VD = ("instrument", "visit", "detector")


def two_tasks(**config) -> Pipeline:
    """The usual test pipeline: ``a`` scales metrics per detector, ``b`` gathers them per visit."""
    p = Pipeline()
    p.add_task("a", ScaleTask, config or None)
    p.add_task("b", VisitSummaryTask)
    return p


def run_scale_and_summary(butler: Butler, calibrated: bool = False) -> None:
    """scale (a) -> visit summary (b) over visits 1 and 2 of run/a, into RUN 'out'; ``calibrated``:
    a scaling that also reads a bias calibration (add_bias) from 'calib'."""
    put_metrics(butler, visits=[1, 2])
    inputs = ["run/a"]
    if calibrated:
        add_bias(butler)
        inputs.append("calib")
    p = Pipeline()
    p.add_task("a", CalibratedScaleTask if calibrated else ScaleTask)
    p.add_task("b", VisitSummaryTask)
    assert run_pipeline(butler, p, inputs, "out").ok


class NoisyScaleTask(ScaleTask):
    """ScaleTask declared non-deterministic: a recomputed result is checked by its facts within a tolerance."""

    deterministic = False
    recompute_tolerance = {"rtol": 1e-3}


def run_noisy_scale(butler: Butler) -> None:
    """NoisyScaleTask over visit 1 of run/a, into RUN 'out'."""
    put_metrics(butler, visits=[1])
    p = Pipeline()
    p.add_task("a", NoisyScaleTask)
    assert run_pipeline(butler, p, ["run/a"], "out").ok
