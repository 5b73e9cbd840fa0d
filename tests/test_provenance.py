"""Provenance rows of executed quanta and the lineage queries over them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import built_repository, template_repository
from pipeline_helpers import DETECTORS, add_bias, put_metrics
from skybutler.cli.main import cli
from skybutler.errors import SkybutlerError
from skybutler.execution import run_pipeline
from skybutler.pipeline import Pipeline
from skybutler.pipeline.testing import CalibratedScaleTask, ScaleTask, VisitSummaryTask


def _run(butler):
    """One run of scale -> visit summary over visits 1 and 2 (one quantum failing); its report."""
    put_metrics(butler)
    p = Pipeline()
    p.add_task("a", ScaleTask, {"fail_on": [{"visit": 2, "detector": 3}]})
    p.add_task("b", VisitSummaryTask)
    return run_pipeline(butler, p, ["run/a"], "out", where="visit <= 2")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return template_repository(tmp_path_factory, _run)


@pytest.fixture
def done(request, stack):
    """The ``butler`` repository after _run, and its report: its own copy of the module's on SQLite."""
    return built_repository(request, stack, "template", _run)


def summary_ref(butler, visit: int = 1):
    return butler.find_dataset("visitSummary", instrument="Cam", visit=visit, collections="out")


def test_every_quantum_is_a_row_with_its_inputs_outputs_config_and_software(done):
    butler, report = done
    rows = butler.provenance.quanta(run=report.run)
    assert sorted((q.task_label, q.status) for q in rows).count(("a", "succeeded")) == 2 * len(DETECTORS) - 1
    q = butler.provenance.producer(summary_ref(butler))
    assert q.task_label == "b" and q.task_class == "skybutler.pipeline.testing.VisitSummaryTask"
    assert q.status == "succeeded" and q.run == report.run and q.data_id == {"instrument": "Cam", "visit": 1}
    assert q.config_dataset_id == butler.find_dataset("b_config", {}, collections=report.run).id
    assert {i.dataset_id for i in q.inputs} == {r.id for r in butler.query_datasets(
        "metricsA", collections=report.run, where="visit = 1")}
    assert [o.dataset_id for o in q.outputs] == [summary_ref(butler).id]
    assert q.host and q.pid and q.start_ns <= q.end_ns
    env = butler.provenance.environment(q)
    assert env["packages"]["skybutler"] and env["python"]


def test_failed_and_blocked_quanta_are_recorded_with_error_and_log(done):
    butler, report = done
    [failed] = butler.provenance.quanta(status="failed")
    assert failed.data_id == {"instrument": "Cam", "visit": 2, "detector": 3} and failed.outputs == []
    assert "RuntimeError: injected failure" in failed.error and "Traceback" in failed.log
    assert [i.dataset_type for i in failed.inputs] == ["metrics"]
    [blocked] = butler.provenance.quanta(status="blocked")
    assert blocked.task_label == "b" and blocked.data_id["visit"] == 2
    assert "upstream quantum a@{'instrument': 'Cam', 'visit': 2, 'detector': 3} failed" in blocked.error
    ok = butler.provenance.quanta(task="a", status="succeeded")[0]
    assert "INFO skybutler.task.a: scaling 3 values by 2.0" in ok.log


def test_consumers_and_the_recursive_tree(done):
    butler, _ = done
    metric = butler.find_dataset("metrics", instrument="Cam", visit=1, detector=0, collections="run/a")
    assert [q.task_label for q in butler.provenance.consumers(metric)] == ["a"]
    assert butler.provenance.producer(metric) is None
    tree = butler.provenance.tree(summary_ref(butler))
    assert tree.quantum.task_label == "b" and len(tree.inputs) == len(DETECTORS)
    assert {n.dataset_type for n in tree.walk()} == {"visitSummary", "metricsA", "metrics"}
    leaf = tree.inputs[0].inputs[0]
    assert leaf.dataset_type == "metrics" and leaf.quantum is None and leaf.exists


def test_owners_are_the_type_and_run_that_refs_resolve_to(done):
    """What the tree and the graph page ask of each dataset (exists? of which type, in which
    RUN?) in one look-up, against the full refs as the oracle; an unknown ID is left out."""
    import uuid

    butler, _ = done
    ids = [n.dataset_id for n in butler.provenance.tree(summary_ref(butler)).walk()] + [uuid.uuid4()]
    owners = butler.registry.owners_by_id(ids)
    assert owners == {r.id: (r.dataset_type.name, r.run) for r in butler.registry.refs_by_id(ids)}
    assert len(owners) == len(set(ids)) - 1


def test_provenance_outlives_a_purged_dataset(done):
    butler, report = done
    scaled = butler.find_dataset("metricsA", instrument="Cam", visit=1, detector=1, collections=report.run)
    butler.remove([scaled])
    assert butler.provenance.producer(scaled.id).task_label == "a"
    gone = [n for n in butler.provenance.tree(summary_ref(butler)).inputs if n.dataset_id == scaled.id]
    assert len(gone) == 1 and not gone[0].exists and gone[0].quantum.task_label == "a"


def test_prerequisites_are_recorded_as_such(butler):
    put_metrics(butler, visits=[1])
    add_bias(butler)
    p = Pipeline()
    p.add_task("a", CalibratedScaleTask)
    report = run_pipeline(butler, p, ["run/a", "calib"], "out")
    assert report.ok
    q = butler.provenance.quanta(task="a")[0]
    bias = [i for i in q.inputs if i.prerequisite]
    assert [b.dataset_type for b in bias] == ["bias"] and bias[0].data_id["detector"] == q.data_id["detector"]
    assert butler.get("metricsA", instrument="Cam", visit=1, detector=0, collections="out")["bias"] == 1


def test_quanta_go_with_their_run(done):
    butler, report = done
    butler.collections.set_chain("out", ["run/a"])
    butler.remove_runs([report.run])
    assert butler.provenance.quanta() == []


def test_cli_provenance_tree_and_users(done):
    butler, report = done
    result = CliRunner().invoke(cli, ["provenance", str(butler.root), "visitSummary", "visit=1", "instrument=Cam",
                                      "-c", "out"])
    assert result.exit_code == 0, result.output
    assert "visitSummary" in result.stdout and "metricsA" in result.stdout and "succeeded" in result.stdout
    assert "not used by any recorded quantum" in result.stdout
    metric = butler.find_dataset("metrics", instrument="Cam", visit=1, detector=0, collections="run/a")
    result = CliRunner().invoke(cli, ["provenance", str(butler.root), str(metric.id), "--json"])
    data = json.loads(result.stdout)
    assert data["tree"]["quantum"] is None and [u["task"] for u in data["used_by"]] == ["a"]
    result = CliRunner().invoke(cli, ["provenance", str(butler.root), "visitSummary", "visit=99", "-c", "out"])
    assert result.exit_code == 1 and "no visitSummary dataset" in result.stderr


def test_a_purged_dataset_is_recomputed_from_its_provenance(done):
    butler, report = done
    summary = summary_ref(butler)
    scaled = butler.find_dataset("metricsA", instrument="Cam", visit=1, detector=1, collections=report.run)
    original = butler.get(summary)
    butler.remove([summary, scaled])
    plan = butler.provenance.plan_recompute(summary)
    assert [q.task_label for q in plan.quanta] == ["a", "b"] and plan.expected_seconds > 0
    assert butler.provenance.recompute(summary) == original
    again = butler.find_dataset("visitSummary", instrument="Cam", visit=1, collections="out")
    assert again.id == summary.id and butler.get(again) == original
    assert butler.find_dataset("metricsA", instrument="Cam", visit=1, detector=1, collections="out").id == scaled.id
    assert all(n.exists for n in butler.provenance.tree(summary).walk())
    assert butler.provenance.plan_recompute(summary).quanta == []


def test_what_cannot_be_recomputed_is_said(done):
    butler, report = done
    raw = butler.find_dataset("metrics", instrument="Cam", visit=1, detector=0, collections="run/a")
    scaled = butler.find_dataset("metricsA", instrument="Cam", visit=1, detector=0, collections=report.run)
    butler.remove([raw, scaled])
    with pytest.raises(SkybutlerError, match=f"dataset {raw.id} is gone and no recorded quantum made it"):
        butler.provenance.plan_recompute(scaled)
    result = CliRunner().invoke(cli, ["recompute", str(butler.root), str(scaled.id)])
    assert result.exit_code == 1 and "cannot be recomputed" in result.stderr


def test_cli_recompute(done):
    butler, _ = done
    summary = summary_ref(butler)
    butler.remove([summary])
    result = CliRunner().invoke(cli, ["recompute", str(butler.root), str(summary.id), "--dry-run"])
    assert result.exit_code == 0 and "1 quantum to replay (1 b); expected wait about" in result.stdout
    assert not butler.exists(summary)
    result = CliRunner().invoke(cli, ["recompute", str(butler.root), str(summary.id)])
    assert result.exit_code == 0 and f"re-created dataset {summary.id}" in result.stdout
    assert butler.get(summary)["n"] == len(DETECTORS)
