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
        chain = butler.collections.get_chain(demo.BEST)
        assert chain[1:] == (demo.RUN2, demo.RUN1, demo.DEFAULTS) and chain[0].startswith(demo.BEST + "/")
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
        n_visits, n_first = len(state.glints), len(state.glints) - len(state.later)
        for name, per_visit in (("calexp", 9), ("src", 9), ("visitSummary", 1)):
            assert len(list(butler.query_datasets(name, collections=demo.RUN1))) == per_visit * n_first
            assert len(list(butler.query_datasets(name, collections=demo.BEST))) == per_visit * n_visits
    assert "demo/run2 -> demo/run1" in text


def chain_head(butler):
    return butler.collections.get_chain(demo.BEST)[0]


def test_the_second_half_makes_coadds_stale_and_the_incremental_run_redoes_exactly_those(finished):
    state, text = finished
    assert state.later and state.stale, "the second half overlaps coadds of the first"
    with Butler(state.root) as butler:
        head = chain_head(butler)
        # Brute force: a coadd made from a visit of the second half is new or was stale; the
        # stale ones are exactly the first half's coadds that a second-half visit overlaps.
        for ref in butler.query_datasets("deepCoadd", collections=demo.BEST):
            q = butler.provenance.producer(ref)
            visits = {link.data_id["visit"] for link in q.inputs if link.dataset_type == "calexp"}
            assert (q.run == head) == bool(visits & state.later)
        stale = {(p.data_id["patch"], p.data_id["band"]) for p in state.stale}
        first = {(r.data_id["patch"], r.data_id["band"]) for r in butler.query_datasets("deepCoadd",
                                                                                        collections=demo.RUN2)}
        again = {(r.data_id["patch"], r.data_id["band"]) for r in butler.query_datasets("deepCoadd", collections=head)}
        assert stale == again & first
        assert all(any(r.startswith("inputs added: calexp@") for r in p.reasons) for p in state.stale)
        # Every quantum of the first half that nothing new touched was kept, not redone.
        for q in butler.provenance.quanta(run=head):
            visit = q.data_id.get("visit", q.data_id.get("exposure"))
            assert visit is None or visit in state.later
    assert "exactly the stale ones" in text and "before and after" in text


def test_coadd_has_provenance_and_replays(finished):
    state, text = finished
    with Butler(state.root) as butler:
        ref = state.coadd_ref
        assert ref is not None and ref.run in (demo.RUN2, chain_head(butler))
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


def test_sources_published_as_hats_and_the_cone_search_is_right(finished):
    state, text = finished
    pytest.importorskip("hats")
    from hats.io.validation import is_valid_catalog

    from skybutler.catalogs.search import cone_search

    done = state.publication
    refs = list(state.b.query_datasets("src", collections=demo.BEST))
    rows = [state.b.get(r, parameters={"columns": ["ra", "dec"]}) for r in refs]
    assert done.total_rows == sum(t.num_rows for t in rows) and done.datasets_added == len(refs)
    assert is_valid_catalog(done.path, strict=True)
    ra0, dec0, radius = state.cone
    ra = np.radians(np.concatenate([t["ra"].to_numpy() for t in rows]))
    dec = np.radians(np.concatenate([t["dec"].to_numpy() for t in rows]))
    h = np.sin((dec - np.radians(dec0)) / 2) ** 2 + \
        np.cos(dec) * np.cos(np.radians(dec0)) * np.sin((ra - np.radians(ra0)) / 2) ** 2
    expected = int((np.degrees(2 * np.arcsin(np.sqrt(h))) <= radius).sum())
    assert cone_search(done.path, ra0, dec0, radius).num_rows == expected > 0
    assert "cone_search(" in text
