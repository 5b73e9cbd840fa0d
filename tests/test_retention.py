"""Retention policies, dataset states, the cold tier and the retention CLI (walkthrough step 8)."""

from __future__ import annotations

import datetime
import json
import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from conftest import built_repository, template_repository
from pipeline_helpers import DETECTORS, run_scale_and_summary
from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.errors import DatasetNotFoundError, SkybutlerError
from skybutler.retention import ColdTierConfig, RetentionPolicy

LATER = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=31)).isoformat()


def configure(butler: Butler, policies=(), cold: dict | None = None, **kwargs) -> Butler:
    """Write retention settings into butler.yaml and reopen the repository."""
    config = butler.config
    config.retention.policies = [RetentionPolicy(**p) for p in policies]
    config.retention.cold_tier = ColdTierConfig(**cold) if cold else None
    config.save(butler.root)
    butler.close()
    return Butler(butler.root, collections=["out", "run/a"], **kwargs)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return template_repository(tmp_path_factory, run_scale_and_summary)


@pytest.fixture
def done(request, stack):
    """The ``butler`` repository after run_scale_and_summary: its own copy of the module's on SQLite."""
    return built_repository(request, stack, "template", run_scale_and_summary)[0]


def ref(butler, dataset_type, **data_id):
    return butler.find_dataset(dataset_type, instrument="Cam", collections=["out", "run/a"], **data_id)


def test_butler_yaml_holds_policies_and_the_cold_tier(done, tmp_path):
    butler = configure(done, [{"dataset_type": "metricsA", "keep_days": 30},
                              {"dataset_type": "metrics", "keep_days": 10, "action": "cold", "after": "last_access"}],
                       {"uri": "cold", "staging_latency": 0.5})
    text = (butler.root / "butler.yaml").read_text()
    assert "metricsA" in text and "staging_latency: 0.5" in text
    assert butler.config.retention.tracks_access
    with pytest.raises(ValueError):
        RetentionPolicy(keep_days=-1)
    with pytest.raises(ValueError):
        RetentionPolicy(keep_days=3, action="delete")
    if butler.datastore.root_is(butler.root):  # a relative cold tier lands in the repository directory
        raw = ref(butler, "metrics", visit=1, detector=0)
        with pytest.raises(SkybutlerError, match="cold tier .* is inside the datastore root"):
            butler.retention.move_to_cold([raw])  # 'verify --fix' would delete the cold copies as orphans


@pytest.mark.parametrize("where", ["..", ".", ".skybutler/tape"])
def test_a_cold_tier_holding_the_repository_is_refused(done, where):
    """A cold tier at the repository's parent (or the repository itself) would list butler.yaml and
    the registry as cold files without rows, and cold copies would land among them."""
    butler = configure(done, [], {"uri": where})
    raw = ref(butler, "metrics", visit=1, detector=0)
    with pytest.raises(SkybutlerError, match="cold tier .* (holds the repository|is inside the datastore root)"):
        butler.retention.move_to_cold([raw])
    assert butler.get(raw) is not None


def test_dry_run_reports_what_would_be_purged_or_moved_and_the_bytes(done, tmp_path):
    butler = configure(done, [{"dataset_type": "metricsA", "keep_days": 30},
                              {"dataset_type": "metrics", "keep_days": 10, "action": "cold"}],
                       {"uri": str(tmp_path / "tape")})
    report = butler.retention.apply(now=LATER, dry_run=True)
    assert len(report.purged) == 2 * len(DETECTORS) and len(report.moved) == 2 * len(DETECTORS)
    assert all(a.new_state == "purged-recomputable" for a in report.purged)
    sizes = butler.registry.datasets.artifacts([a.dataset_id for a in report.actions])
    assert report.bytes_freed == sum(a.size for a in sizes.values()) > 0
    assert set(butler.retention.states(a.dataset_id for a in report.actions).values()) == {"stored"}
    assert butler.retention.apply(dry_run=True).actions == []  # not due yet
    result = CliRunner().invoke(cli, ["retention", "apply", str(butler.root), "--dry-run", "--now", LATER])
    assert result.exit_code == 0, result.output
    assert "would purge 8 and move 8 dataset(s) to the cold tier" in result.stdout and "metricsA" in result.stdout
    result = CliRunner().invoke(cli, ["retention", "apply", str(butler.root), "--dry-run", "--now", LATER, "--json"])
    data = json.loads(result.stdout)
    assert data["dry_run"] and data["purged"] == 8 and data["bytes_freed"] == report.bytes_freed
    assert {a["action"] for a in data["actions"]} == {"purge", "cold"}
    assert set(butler.retention.states(a.dataset_id for a in report.actions).values()) == {"stored"}
    result = CliRunner().invoke(cli, ["retention", "apply", str(butler.root), "--now", "yesterday"])
    assert result.exit_code == 1 and "not an ISO date" in result.stderr


def test_apply_tells_its_progress(done, tmp_path):
    butler = configure(done, [{"dataset_type": "metricsA", "keep_days": 30},
                              {"dataset_type": "metrics", "keep_days": 10, "action": "cold"}],
                       {"uri": str(tmp_path / "tape")})
    told: list[tuple[int, int | None]] = []
    butler.retention.apply(now=LATER, progress=lambda done, total: told.append((done, total)))
    # Each of the 8 files moved, then the 8 purged in one transaction.
    assert told == [(n, 16) for n in range(9)] + [(16, 16)]
    result = CliRunner().invoke(cli, ["retention", "apply", str(butler.root), "--now", LATER])
    assert result.exit_code == 0 and "nothing is due" in result.stdout and "applying retention" in result.stderr


def test_apply_purges_keeping_the_dataset_its_metadata_and_provenance(done, tmp_path):
    butler = configure(done, [{"dataset_type": "metricsA", "keep_days": 30}])
    scaled = ref(butler, "metricsA", visit=1, detector=2)
    path = butler.datastore.full_path(scaled.artifact.path)
    result = CliRunner().invoke(cli, ["retention", "apply", str(butler.root), "--now", LATER])
    assert result.exit_code == 0, result.output
    assert "did purge 8 and move 0" in result.stdout
    assert butler.retention.state(scaled).state == "purged-recomputable"
    assert butler.retention.state(scaled).artifact.checksum == scaled.artifact.checksum
    assert not (butler.root / path).exists()
    assert ref(butler, "metricsA", visit=1, detector=2).id == scaled.id  # still registered
    assert butler.get_metadata(scaled) == {"n_keys": 3}
    assert butler.provenance.producer(scaled).task_label == "a"
    with pytest.raises(DatasetNotFoundError, match="was purged .*recompute=True"):
        butler.get(scaled)
    assert not butler.exists(scaled)
    # queries: everything registered by default; by state on request
    assert butler.query_datasets("metricsA", collections="out").count() == 8
    assert butler.query_datasets("metricsA", collections="out", states="stored").count() == 0
    assert butler.query_datasets("metricsA", collections="out", states=["purged-recomputable"]).count() == 8
    assert butler.query_datasets("metrics", collections="run/a", states=["stored", "cold"]).count() == 8
    for states, expected in (("stored", {"metrics"}), ("purged-recomputable", {"metricsA"})):
        both = butler.query_datasets(["metricsA", "metrics"], collections=["out", "run/a"], states=states)
        assert {r.dataset_type.name for r in both} == expected and len(list(both)) == both.count() == 8
        assert set(both.to_arrow().column("dataset_type").to_pylist()) == expected
    with pytest.raises(SkybutlerError, match="unknown dataset state"):
        butler.query_datasets("metrics", collections="run/a", states="gone")
    # a second pass finds nothing more to do
    assert butler.retention.apply(now=LATER).actions == []
    result = CliRunner().invoke(cli, ["retention", "status", str(butler.root), "--json"])
    rows = {(r["dataset_type"], r["state"]): r["datasets"] for r in json.loads(result.stdout)}
    assert rows[("metricsA", "purged-recomputable")] == 8 and rows[("metrics", "stored")] == 8


def test_the_unrecomputable_is_never_purged_unless_forced(done):
    butler = configure(done, [{"dataset_type": "metric*", "keep_days": 30}])
    report = butler.retention.apply(now=LATER, dry_run=True)
    assert {a.dataset_type for a in report.purged} == {"metricsA"}
    assert {a.dataset_type for a in report.refused} == {"metrics"}
    assert "no recorded provenance" in report.refused[0].reason and "--force" in report.refused[0].reason
    butler.retention.apply(now=LATER)
    raw = ref(butler, "metrics", visit=1, detector=0)
    assert butler.retention.state(raw).state == "stored"
    # forcing purges the raws as lost; the products that needed them become lost too
    result = CliRunner().invoke(cli, ["retention", "apply", str(butler.root), "--now", LATER, "--force"])
    assert result.exit_code == 0, result.output
    assert "8 purged dataset(s) no longer recomputable" in result.stdout
    assert butler.retention.state(raw).state == "purged-lost"
    scaled = ref(butler, "metricsA", visit=1, detector=0)
    assert butler.retention.state(scaled).state == "purged-lost"
    assert "force-purged" in butler.retention.state(scaled).note


def test_purging_a_product_and_its_recomputable_input_together(done):
    butler = configure(done, [{"dataset_type": "*", "collection": "out*", "keep_days": 30}])
    report = butler.retention.apply(now=LATER)
    kinds = {a.dataset_type for a in report.purged}
    assert {"metricsA", "visitSummary"} <= kinds  # the summary stays recomputable through purged inputs
    assert all(a.new_state == "purged-recomputable" for a in report.purged)
    # the configs the tasks ran with are not recomputable: they are kept, and so the products stay recomputable
    assert {a.dataset_type for a in report.refused} == {"a_config", "b_config"}


def test_purge_api_refuses_and_forces(done):
    raw = ref(done, "metrics", visit=2, detector=1)
    report = done.retention.purge([raw])
    assert report.refused and done.retention.state(raw).state == "stored"
    report = done.retention.purge([raw], force=True)
    assert report.purged[0].new_state == "purged-lost" and done.retention.state(raw).state == "purged-lost"


def test_cold_tier_move_and_staging_with_the_expected_wait(done, tmp_path):
    told = []
    butler = configure(done, [{"dataset_type": "metrics", "keep_days": 10, "action": "cold"}],
                       {"uri": str(tmp_path / "tape"), "staging_latency": 0.3},
                       on_wait=lambda message, seconds: told.append((message, seconds)))
    raw = ref(butler, "metrics", visit=1, detector=3)
    original = butler.get(raw)
    report = butler.retention.apply(now=LATER)
    assert len(report.moved) == 8 and report.bytes_freed > 0
    state = butler.retention.state(raw)
    assert state.state == "cold" and (tmp_path / "tape" / state.artifact.path).exists()
    assert not (butler.root / raw.artifact.path).exists()
    assert butler.query_datasets("metrics", collections="run/a", states="cold").count() == 8
    queried, = butler.query_datasets("metrics", collections="run/a", where="visit = 1 AND detector = 2")
    assert queried.artifact is None  # its batch's look-up finds no hot file: the read goes to retention
    start = time.perf_counter()
    assert butler.get(raw) == original  # a stale ref (it still names the hot file) works too
    assert time.perf_counter() - start >= 0.3
    assert told and "expected wait about 0.3 s" in told[0][0] and told[0][1] == 0.3
    assert butler.retention.state(raw).state == "stored"
    assert not (tmp_path / "tape" / state.artifact.path).exists()
    assert butler.get(raw) == original and len(told) == 1
    assert butler.get(queried) == butler.get(ref(butler, "metrics", visit=1, detector=2)) and len(told) == 2
    # a cold dataset may still be purged (if recomputable) and frees cold bytes
    butler2 = configure(butler, [{"dataset_type": "metricsA", "keep_days": 1, "action": "cold"}],
                        {"uri": str(tmp_path / "tape")})
    scaled = ref(butler2, "metricsA", visit=1, detector=3)
    butler2.retention.move_to_cold([scaled])
    butler3 = configure(butler2, [{"dataset_type": "metricsA", "keep_days": 1}], {"uri": str(tmp_path / "tape")})
    report = butler3.retention.purge([scaled])
    assert report.bytes_freed == 0 and report.bytes_freed_cold > 0
    assert butler3.retention.state(scaled).state == "purged-recomputable"


def test_move_without_a_cold_tier_is_refused(done):
    butler = configure(done, [{"dataset_type": "metrics", "keep_days": 10, "action": "cold"}])
    report = butler.retention.apply(now=LATER)
    assert not report.actions and "no cold tier" in report.refused[0].reason


def test_last_access_is_recorded_at_most_daily_and_keeps_datasets(done):
    butler = configure(done, [{"dataset_type": "metrics", "keep_days": 30, "after": "last_access"}])
    table = butler.registry.schema.dataset
    long_ago = time.time_ns() - 60 * 86_400 * 10**9
    with butler.registry.db.transaction() as conn:
        conn.execute(table.update().values(ingest_time=long_ago))
    read = ref(butler, "metrics", visit=1, detector=0)
    butler.get(read)
    first = butler.retention.state(read).last_access_ns
    assert first is not None
    butler.get(read)
    assert butler.retention.state(read).last_access_ns == first  # once a day at most
    report = butler.retention.apply(dry_run=True, force=True)
    due = {a.dataset_id for a in report.actions}
    assert read.id not in due and len(due) == 7


def test_migration_adds_the_state_table(stack, make_butler):
    if stack != "sqlite":
        pytest.skip("the migration is the same SQL on both stacks")
    from skybutler.registry.migrations import migrate
    from skybutler.registry.schema import SCHEMA_VERSION

    butler = make_butler()
    root, url, universe = butler.root, butler.config.registry_url(butler.root), butler.universe
    butler.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE dataset_state")
        conn.exec_driver_sql("UPDATE skybutler_meta SET value='2' WHERE key='schema_version'")
    assert migrate(url, universe) == (2, SCHEMA_VERSION)  # and every later step
    reopened = Butler(root)
    assert reopened.registry.states.infos() == []
    reopened.close()
    engine.dispose()
