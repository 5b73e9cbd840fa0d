"""Recompute on demand: purged datasets replayed from their recorded quanta (walkthrough step 8)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from conftest import built_repository, template_repository
from pipeline_helpers import DETECTORS, run_noisy_scale, run_scale_and_summary
from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.execution import run_pipeline
from skybutler.pipeline import Pipeline
from skybutler.pipeline.testing import VisitSummaryTask
from skybutler.retention import (
    ColdTierConfig,
    RecomputeError,
    RecomputeOptions,
    RecomputeVerificationError,
    SoftwareDriftError,
)
from skybutler.retention.testing import add_calibrated_images


def _run(butler: Butler) -> None:
    """scale (a, reading a bias calibration) -> visit summary (b) over visits 1 and 2, into 'out'."""
    run_scale_and_summary(butler, calibrated=True)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return template_repository(tmp_path_factory, _run)


@pytest.fixture
def done(request, stack):
    """The ``butler`` repository after _run: its own copy of the module's on SQLite."""
    return built_repository(request, stack, "template", _run)[0]


def find(butler, dataset_type, **data_id):
    return butler.find_dataset(dataset_type, instrument="Cam", collections=["out", "run/a"], **data_id)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "registry" not in p.name}


def test_get_recomputes_a_purged_dataset_bit_identically(done):
    summary = find(done, "visitSummary", visit=1)
    original = done.get(summary)
    done.retention.purge([summary])
    told = []
    done.on_wait = lambda message, seconds: told.append(message)
    assert done.get(summary, recompute=True) == original
    assert told and "1 quantum to replay (1 b); expected wait about" in told[0]
    state = done.retention.state(summary)
    assert state.state == "stored" and "recomputed" in state.note
    assert done.registry.datasets.artifacts([summary.id])[summary.id].checksum == summary.artifact.checksum
    # per butler, and without storing back
    done.retention.purge([summary])
    with Butler(done.root, collections=["out"], recompute=RecomputeOptions(store=False)) as b:
        assert b.get("visitSummary", instrument="Cam", visit=1) == original
        assert b.retention.state(summary).state == "purged-recomputable"
        assert b.get("visitSummary", instrument="Cam", visit=1, recompute=True) == original
        assert b.retention.state(summary).state == "stored"


def test_recursive_recompute_through_a_purged_input_with_the_same_calibration(done):
    summary = find(done, "visitSummary", visit=2)
    scaled = [find(done, "metricsA", visit=2, detector=d) for d in DETECTORS]
    originals = [done.get(r) for r in scaled]
    original = done.get(summary)
    done.retention.purge([summary, *scaled])
    est = done.retention.estimate([summary])
    assert [q.task_label for q in est.quanta] == ["a"] * len(DETECTORS) + ["b"]
    assert est.expected_seconds == pytest.approx(sum(q.seconds for q in est.quanta))
    assert set(est.needed) == {summary.id, *(r.id for r in scaled)}
    assert done.get(summary, recompute=True) == original
    assert [done.get(r) for r in scaled] == originals  # bias level 1 of the recorded calibration
    assert all(o["bias"] == 1 for o in originals)
    assert set(done.retention.states([summary, *scaled]).values()) == {"stored"}


def test_removed_datasets_are_recomputed_and_registered_again(done):
    summary = find(done, "visitSummary", visit=1)
    original = done.get(summary)
    done.remove([summary])
    told = []
    result = done.retention.recompute([summary.id], progress=lambda n, total: told.append((n, total)))
    assert result.ok and find(done, "visitSummary", visit=1).id == summary.id
    assert told == [(0, 1), (1, 1)]
    assert done.get(summary) == original
    assert done.provenance.recompute(summary) == original  # present: read back
    done.retention.purge([summary])  # still registered: provenance.recompute restores it in place
    assert done.provenance.recompute(summary) == original
    assert done.retention.state(summary).state == "stored"


def test_cold_inputs_are_staged_before_the_replay(done, tmp_path):
    config = done.config
    config.retention.cold_tier = ColdTierConfig(uri=str(tmp_path / "tape"), staging_latency=0.1)
    config.save(done.root)
    butler = Butler(done.root, collections=["out", "run/a"])
    raw = find(butler, "metrics", visit=1, detector=0)
    scaled = find(butler, "metricsA", visit=1, detector=0)
    original = butler.get(scaled)
    butler.retention.move_to_cold([raw])
    butler.retention.purge([scaled])
    est = butler.retention.estimate([scaled])
    assert list(est.stage) == [raw.id] and est.staging_seconds == 0.1
    assert "including 0.1 s to stage 1 dataset(s) from the cold tier" in est.describe()
    assert butler.get(scaled, recompute=True) == original
    assert butler.retention.states([raw, scaled]) == {raw.id: "stored", scaled.id: "stored"}
    butler.close()


def test_unrecomputable_inputs_name_the_missing_link_and_nothing_is_written(done):
    summary = find(done, "visitSummary", visit=1)
    scaled = find(done, "metricsA", visit=1, detector=2)
    raw = find(done, "metrics", visit=1, detector=2)
    done.retention.purge([summary, scaled])
    done.retention.purge([raw], force=True)
    before = files_under(done.root)
    with pytest.raises(RecomputeError) as err:
        done.get(summary, recompute=True)
    message = str(err.value)
    assert message.startswith("cannot recompute visitSummary@") and "<- metricsA@" in message
    assert f"<- metrics@{{'instrument': 'Cam', 'visit': 1, 'detector': 2}} ({raw.id})" in message
    assert "purged-lost" in message
    assert files_under(done.root) == before
    assert done.retention.states([summary, scaled]) == {summary.id: "purged-lost", scaled.id: "purged-lost"}


def test_a_task_that_no_longer_imports(done):
    summary = find(done, "visitSummary", visit=1)
    done.retention.purge([summary])
    store = done.provenance.store
    with done.registry.db.transaction() as conn:
        conn.execute(store.quantum.update().where(store.quantum.c.task_label == "b")
                     .values(task_class="skybutler.pipeline.testing.RetiredSummaryTask"))
    before = files_under(done.root)
    with pytest.raises(RecomputeError, match=r"visitSummary@.*the task that made it, 'b' \(skybutler.pipeline."
                                             r"testing.RetiredSummaryTask\), can no longer be imported"):
        done.get(summary, recompute=True)
    assert files_under(done.root) == before and done.retention.state(summary).state == "purged-recomputable"


def test_a_recorded_config_that_no_longer_validates(done):
    summary = find(done, "visitSummary", visit=1)
    scaled = find(done, "metricsA", visit=1, detector=0)
    done.retention.purge([summary, scaled])
    config_id = done.provenance.producer(scaled).config_dataset_id
    config = done.registry.refs_by_id([config_id])[0]
    done.datastore.fs.pipe_file(done.datastore.full_path(config.artifact.path), json.dumps({"factor": "twice"}).encode())
    before = files_under(done.root)
    with pytest.raises(RecomputeError, match=rf"task 'a' .*recorded config \({config_id}\) no longer validates.*"
                                             "factor"):
        done.get(summary, recompute=True)
    assert files_under(done.root) == before
    assert done.retention.states([summary, scaled]) == {summary.id: "purged-recomputable",
                                                        scaled.id: "purged-recomputable"}


def _record_old_version(butler, code: str | None = None):
    """Rewrite the recorded environments as another skybutler version's: recorded without task
    code hashes (an older skybutler) or, with ``code``, with that hash for every task."""
    store = butler.provenance.store
    with butler.registry.db.transaction() as conn:
        for env_id, text in conn.execute(sa.select(store.environment.c.env_id, store.environment.c.description)).all():
            env = json.loads(text)
            env["packages"]["skybutler"] = "0.0.1-old"
            tasks = env.pop("tasks")
            if code is not None:
                env["tasks"] = {label: {**ident, "code": code or ident["code"]} for label, ident in tasks.items()}
            conn.execute(store.environment.update().where(store.environment.c.env_id == env_id)
                         .values(description=json.dumps(env)))


def test_software_drift_is_refused_or_noted(done):
    summary = find(done, "visitSummary", visit=1)
    original = done.get(summary)
    done.retention.purge([summary])
    _record_old_version(done)
    assert "ran with skybutler 0.0.1-old" in done.retention.estimate([summary]).drift[0]
    with pytest.raises(SoftwareDriftError, match="installed task code differs .*0.0.1-old"):
        done.get(summary, recompute=True)
    assert done.retention.state(summary).state == "purged-recomputable"
    assert done.get(summary, recompute=RecomputeOptions(on_drift="note")) == original
    note = done.retention.state(summary).note
    assert "software drift: task 'b'" in note and "0.0.1-old" in note


def test_drift_is_judged_by_the_task_code_hash_not_the_version(done):
    summary = find(done, "visitSummary", visit=1)
    original = done.get(summary)
    done.retention.purge([summary])
    _record_old_version(done, code="")  # another version, the same task code: no drift
    assert done.retention.estimate([summary]).drift == []
    _record_old_version(done, code="0" * 64)
    [drift] = done.retention.estimate([summary]).drift
    assert "task 'b' (skybutler.pipeline.testing.VisitSummaryTask) code changed: content hash 000000000000" in drift
    with pytest.raises(SoftwareDriftError, match="code changed"):
        done.get(summary, recompute=True)
    assert done.get(summary, recompute=RecomputeOptions(on_drift="note")) == original


def test_verification_catches_a_changed_result(done, monkeypatch):
    summary = find(done, "visitSummary", visit=1)
    done.retention.purge([summary])
    real = VisitSummaryTask.run
    monkeypatch.setattr(VisitSummaryTask, "run", lambda self, scaled: {"summary": {**real(self, scaled)["summary"],
                                                                                   "extra": 1}})
    with pytest.raises(RecomputeVerificationError, match="differs from the original: checksum"):
        done.get(summary, recompute=True)
    assert done.retention.state(summary).state == "purged-recomputable"


def test_a_nondeterministic_task_is_checked_within_its_tolerance(butler):
    run_noisy_scale(butler)
    scaled = find(butler, "metricsA", visit=1, detector=0)
    original = butler.get(scaled)
    butler.retention.purge([scaled])
    report = butler.retention.recompute([scaled])
    assert report.verified[scaled.id].startswith("within tolerance (rtol 0.001")
    assert butler.get(scaled) == original


def test_cli_get_asks_before_recomputing(done):
    summary = find(done, "visitSummary", visit=1)
    original = done.get(summary)
    done.retention.purge([summary])
    args = ["get", str(done.root), "visitSummary", "instrument=Cam", "visit=1", "-c", "out"]
    result = CliRunner().invoke(cli, args)  # not a terminal: refused
    assert result.exit_code == 1 and "pass --yes" in result.stderr and "expected wait about" in result.stderr
    assert done.retention.state(summary).state == "purged-recomputable"
    result = CliRunner().invoke(cli, [*args, "--no-recompute"])
    assert result.exit_code == 1 and "was purged" in result.stderr
    result = CliRunner().invoke(cli, [*args, "--yes"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == original
    assert "1 quantum to replay (1 b)" in result.stderr


@pytest.mark.parametrize("executor", ["inline", "pool", "dask"])
def test_cli_recompute_in_bulk(done, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    summaries = [find(done, "visitSummary", visit=v) for v in (1, 2)]
    scaled = [find(done, "metricsA", visit=v, detector=d) for v in (1, 2) for d in DETECTORS]
    originals = {r.id: done.get(r) for r in summaries + scaled}
    done.retention.purge(summaries + scaled)
    result = CliRunner().invoke(cli, ["recompute", str(done.root), "visitSummary", "-c", "out", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "10 quanta to replay" in result.stdout
    result = CliRunner().invoke(cli, ["recompute", str(done.root), "visitSummary", "-c", "out", "--executor", executor,
                                      "-j", "2"])
    assert result.exit_code == 0, result.output
    assert "10 quanta replayed" in result.stdout and "(bit-identical)" in result.stdout
    # Its progress bar, in a pipe: one plain line with the final count, on stderr.
    (bar,) = [line for line in result.stderr.splitlines() if "replaying quanta" in line]
    assert "10/10" in bar and "\x1b" not in result.stderr, result.stderr
    assert {r.id: done.get(r) for r in summaries + scaled} == originals
    assert set(done.retention.states(summaries + scaled).values()) == {"stored"}


def test_cli_recompute_of_a_type_takes_every_collection_given(done):
    """``recompute TYPE -c out,out2``: every purged dataset of the type in both, not the first per data ID."""
    from skybutler.pipeline.testing import CalibratedScaleTask

    p = Pipeline()
    p.add_task("a", CalibratedScaleTask)
    p.add_task("b", VisitSummaryTask)
    assert run_pipeline(done, p, ["run/a", "calib"], "out2").ok
    summaries = [done.find_dataset("visitSummary", instrument="Cam", visit=v, collections=c)
                 for v in (1, 2) for c in ("out", "out2")]
    assert len({r.id for r in summaries}) == 4
    done.retention.purge(summaries)
    for given in (["-c", "out,out2"], ["-c", "out*"]):
        result = CliRunner().invoke(cli, ["recompute", str(done.root), "visitSummary", *given, "--dry-run", "--json"])
        assert result.exit_code == 0, result.output
        assert sorted(json.loads(result.stdout)["targets"]) == sorted(str(r.id) for r in summaries)


def test_cli_recompute_reports_drift_and_bad_targets(done):
    summary = find(done, "visitSummary", visit=1)
    done.retention.purge([summary])
    _record_old_version(done)
    result = CliRunner().invoke(cli, ["recompute", str(done.root), str(summary.id)])
    assert result.exit_code == 1 and "installed task code differs" in result.stderr
    result = CliRunner().invoke(cli, ["recompute", str(done.root), str(summary.id), "--on-drift", "note", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["notes"][0].startswith("software drift") and len(data["succeeded"]) == 1
    result = CliRunner().invoke(cli, ["recompute", str(done.root), "visit=1"])
    assert result.exit_code == 1 and "must follow a dataset type" in result.stderr


def test_calibrated_images_are_recomputed_bit_identically(tmp_path):
    butler = Butler.create(tmp_path / "repo")
    report = add_calibrated_images(butler, size=256, detectors=2)
    assert report.ok
    calexps = [butler.find_dataset("calexp", instrument="Cam", exposure=1, detector=d, collections="out")
               for d in range(2)]
    src = butler.find_dataset("src", instrument="Cam", exposure=1, detector=0, collections="out")
    pixels = [butler.get(r).data for r in calexps]
    table = butler.get(src)
    purged = butler.retention.purge([*calexps, src])
    assert purged.bytes_freed > 256 * 256 * 4 and not purged.refused
    result = butler.retention.recompute([*calexps, src])
    assert set(result.verified.values()) == {"bit-identical"}
    assert all(np.array_equal(butler.get(r).data, p) for r, p in zip(calexps, pixels))
    assert butler.get(src).equals(table)
    assert butler.get(calexps[0], parameters={"bbox": (0, 0, 10, 10)}).data.shape == (10, 10)
    butler.close()
