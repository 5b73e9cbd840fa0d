"""The full demo, end to end on its smallest night, through the same step functions as
``python -m skybutler.demo``: the glint query finds exactly the glint detectors, both
runs and their chain exist, calibrations are certified, and a coadd has provenance
that replays to the same pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from skybutler import Butler, demo
from skybutler.models import CollectionType
from skybutler.provenance.recompute import replay

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "repo"
    out = io.StringIO()
    state = demo.run(root, Console(file=out, width=120), science=3, jobs=2)
    return state, out.getvalue()


def test_glint_query_finds_exactly_the_glint_detectors(finished):
    state, text = finished
    truth = {(visit, det) for visit, dets in state.glints.items() for det in dets}
    assert truth, "the smallest night has a glint"
    assert state.found == truth
    assert "exactly the glint detectors" in text


def test_runs_chain_and_calibrations(finished):
    state, text = finished
    with Butler(state.root) as butler:
        for run in (demo.RUN1, demo.RUN2, demo.CALIB_RUN):
            assert butler.collections.info(run).type is CollectionType.RUN
        assert butler.collections.get_chain(demo.BEST) == (demo.RUN2, demo.RUN1)
        assert butler.collections.info(demo.CALIB).type is CollectionType.CALIBRATION
        thresholds = [butler.get("calibrate_config", {}, collections=run)["detection_threshold"]
                      for run in (demo.RUN1, demo.RUN2)]
        assert thresholds == [10.0, demo.RUN2_THRESHOLD]
        for report in state.reports.values():
            assert report.ok and report.succeeded == report.total > 0
        # ISR found the certified bias and flat of each raw by its observation time.
        visit = min(state.glints)
        quantum = butler.provenance.producer(butler.find_dataset(
            "postISRCCD", instrument="SimCam", exposure=visit, detector=4, collections=demo.BEST))
        prerequisites = {link.dataset_type for link in quantum.inputs if link.prerequisite}
        assert prerequisites == {"bias", "flat"}
        n_visits = len(state.glints)
        for name, per_run in (("calexp", 9 * n_visits), ("src", 9 * n_visits), ("visitSummary", n_visits)):
            assert len(list(butler.query_datasets(name, collections=demo.RUN1))) == per_run
    assert "demo/run2 -> demo/run1" in text


def test_coadd_has_provenance_and_replays(finished):
    state, text = finished
    with Butler(state.root) as butler:
        ref = state.coadd_ref
        assert ref is not None and ref.run == demo.RUN2
        tree = butler.provenance.tree(ref)
        assert tree.quantum.task_label == "coadd" and tree.quantum.status == "succeeded"
        kinds = {node.dataset_type for node in tree.walk()}
        assert {"calexp", "postISRCCD", "raw", "bias", "flat", "skyMap"} <= kinds
        calexps = [n for n in tree.inputs if n.dataset_type == "calexp"]
        assert calexps and all(n.data_id.get("visit") in state.glints for n in calexps)
        stored = butler.get(ref)
        assert stored.header["NINPUTS"] == len(calexps) and stored.header["PATCH"] == ref.data_id["patch"]
        coverage = butler.get("deepCoadd_nImage", ref.data_id, collections=demo.RUN2)
        assert coverage.data.max() >= 1 and np.isfinite(stored.data[coverage.data > 0]).all()
        # The recorded quantum (task, config, inputs, data ID) makes the same pixels again.
        again = replay(butler, tree.quantum)[ref.id]
        assert np.array_equal(again.data, stored.data, equal_nan=True)
        assert butler.get_uri(ref).startswith("file://")
    assert "provenance of deepCoadd" in text and "made by coadd" in text
