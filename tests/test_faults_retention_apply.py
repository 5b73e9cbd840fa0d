"""Fault injection on ``skybutler retention apply``: the command that moves files to the cold tier
one by one, then purges in one transaction and marks what a forced purge made impossible to
recompute.

The repository (test_faults_retention's: metrics -> metricsA -> visitSummary, a cold tier) had
metricsA purged by an earlier ``retention apply``; the policies then also purge the metrics
(inputs nothing can recompute: ``--force``) and move the visit summaries to the cold tier.  The
command is killed with SIGKILL after each of its registry commits in turn (``sql-committed:n``)
and between its purge's commit and its file deletions.  Then the repository opens, ``verify`` is
clean after ``verify --fix``, no file went to the quarantine, and each dataset's state is the one
before the command or the one after it; the purge and the loss it causes are one change (never
the metrics purged-lost with metricsA still purged-recomputable); and the same command again
gives the states of an uninterrupted run.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.retention import RetentionPolicy
from test_faults import cli_main, run_killed
from test_faults_retention import COLLECTIONS, _repair, repo, sqlite_template  # noqa: F401 -- repo's fixtures

pytestmark = pytest.mark.slow

LATER = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=31)).isoformat()


def _policies(root: Path, policies: list[dict]) -> None:
    with Butler(root) as butler:
        config = butler.config
        config.retention.policies = [RetentionPolicy(**p) for p in policies]
        config.save(root)


def _states(root: Path) -> dict[uuid.UUID, tuple[str, str]]:
    with Butler(root, collections=COLLECTIONS) as butler:
        refs = [r for t in ("metrics", "metricsA", "visitSummary")
                for r in butler.query_datasets(t, collections=COLLECTIONS, find_first=False)]
        states = butler.retention.states([r.id for r in refs])
        return {r.id: (r.dataset_type.name, states[r.id]) for r in refs}


def _apply(root: Path) -> None:
    result = CliRunner().invoke(cli, ["retention", "apply", str(root), "--now", LATER, "--force"])
    assert result.exit_code == 0, result.output


@pytest.fixture
def prepared(repo) -> Path:  # noqa: F811
    """metricsA purged (recomputable) by an earlier apply; then the policies of the killed one."""
    root = repo.root
    repo.close()
    _policies(root, [{"dataset_type": "metricsA", "keep_days": 30}])
    _apply(root)
    _policies(root, [{"dataset_type": "metricsA", "keep_days": 30}, {"dataset_type": "metrics", "keep_days": 10},
                     {"dataset_type": "visitSummary", "keep_days": 10, "action": "cold"}])
    return root


@pytest.fixture(autouse=True)
def _few_kill_points_on_other_stacks(request):
    """On PostgreSQL + S3 (each case there costs a schema and a pipeline run) the purge's commit
    and the step after it; every commit on SQLite, the same code."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("stack", "sqlite") != "sqlite" and \
            callspec.params.get("point", "registry-committed") not in ("sql-committed:2", "registry-committed"):
        pytest.skip("a representative few kill points on this stack; this one runs on SQLite")


EXPECTED = {"metrics": "purged-lost", "metricsA": "purged-lost", "visitSummary": "cold"}


@pytest.mark.parametrize("point", [*(f"sql-committed:{n}" for n in range(1, 6)), "registry-committed"])
def test_a_killed_retention_apply(prepared, point):
    before = _states(prepared)
    assert {s for t, s in before.values() if t == "metricsA"} == {"purged-recomputable"}
    killed = run_killed(cli_main("retention", "apply", prepared, "--now", LATER, "--force"), point)
    _repair(prepared)
    quarantine = prepared / ".skybutler" / "quarantine"
    assert not quarantine.exists() or not any(quarantine.rglob("*")), list(quarantine.rglob("*"))
    states = _states(prepared)
    for dataset_id, (dataset_type, state) in states.items():
        assert state in (before[dataset_id][1], EXPECTED[dataset_type]), (dataset_type, state)
    by_type = {t: {s for u, s in states.values() if u == t} for t in EXPECTED}
    if "purged-lost" in by_type["metrics"]:  # the forced purge and the loss it causes: one change
        assert by_type["metricsA"] == {"purged-lost"}, f"killed at {point}: metricsA left recomputable"
    _apply(prepared)  # the same command again
    assert {t: {s for u, s in _states(prepared).values() if u == t} for t in EXPECTED} == \
        {t: {s} for t, s in EXPECTED.items()}
    _repair(prepared)
    print(f"{point}: {'killed' if killed else 'finished first'}")


def test_the_sweep_reaches_every_commit(prepared):
    """Uninterrupted, the command commits fewer than 6 times: the sweep above kills it after each."""
    assert not run_killed(cli_main("retention", "apply", prepared, "--now", LATER, "--force"), "sql-committed:6")
    assert {t: {s for u, s in _states(prepared).values() if u == t} for t in EXPECTED} == \
        {t: {s} for t, s in EXPECTED.items()}
