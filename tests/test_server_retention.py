"""Retention administered through a server: the same reports as a local butler for an
administrator, a refusal that changes nothing for anyone else, and the retention commands
on a URL."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import PermissionDeniedError
from test_retention import LATER, configure, done, ref, template  # noqa: F401 -- the fixtures, shared

pytest.importorskip("fastapi")


@pytest.fixture
def served(done, tmp_path):  # noqa: F811
    if done.registry.db.dialect != "sqlite":
        pytest.skip("the server calls the local retention methods, themselves tested on every stack")
    local = configure(done, [{"dataset_type": "metricsA", "keep_days": 30},
                             {"dataset_type": "metrics", "keep_days": 10, "action": "cold"}],
                      {"uri": str(tmp_path / "tape")})
    access = Access(local.registry.access)
    access.add_user("boss", admin=True)
    access.add_user("pat")
    access.grant("*", "*", "*", "admin")  # even admin on every collection is not a repository administrator
    tokens = {name: access.create_token(name) for name in ("boss", "pat")}
    with running_server(local.root) as url:
        yield local, url, tokens


def _actions(report):
    return sorted((str(a.dataset_id), a.action, a.new_state, a.size) for a in report.actions)


def test_retention_through_a_server_is_for_administrators(served):
    local, url, tokens = served
    boss = Butler(url, token=tokens["boss"])
    pat = Butler(url, token=tokens["pat"])
    expected = local.retention.apply(now=LATER, dry_run=True)
    assert len(expected.actions) == 16
    for name, call in [("apply", lambda b: b.retention.apply(now=LATER)),
                       ("purge", lambda b: b.retention.purge([a.dataset_id for a in expected.actions])),
                       ("move", lambda b: b.retention.move_to_cold([expected.actions[0].dataset_id])),
                       ("stage", lambda b: b.retention.stage([expected.actions[0].dataset_id])),
                       ("status", lambda b: b.retention.status())]:
        with pytest.raises(PermissionDeniedError, match="only a repository administrator"):
            call(pat)
    assert set(local.retention.states(a.dataset_id for a in expected.actions).values()) == {"stored"}
    assert local.retention.status() == boss.retention.status()
    assert _actions(boss.retention.apply(now=LATER, dry_run=True)) == _actions(expected)
    done_report = boss.retention.apply(now=LATER)
    assert _actions(done_report) == _actions(expected) and not done_report.dry_run
    states = local.retention.states(a.dataset_id for a in expected.actions)
    assert sorted(states.values()) == ["cold"] * 8 + ["purged-recomputable"] * 8
    raw = ref(local, "metrics", visit=1, detector=3)
    assert boss.retention.stage([raw]) == [raw.id] and local.retention.state(raw).state == "stored"
    moved, size = boss.retention.move_to_cold([raw])
    assert moved == [raw.id] and size == local.retention.state(raw).artifact.size > 0
    refused = boss.retention.purge([raw])  # a raw cannot be recomputed: refused unless forced
    assert [a.dataset_id for a in refused.refused] == [raw.id] and local.retention.state(raw).state == "cold"


def test_retention_commands_on_a_url(served, monkeypatch):
    local, url, tokens = served
    runner = CliRunner()
    monkeypatch.setenv("SKYBUTLER_TOKEN", tokens["boss"])
    remote = runner.invoke(cli, ["retention", "apply", url, "--dry-run", "--now", LATER, "--json"])
    assert remote.exit_code == 0, remote.output
    here = runner.invoke(cli, ["retention", "apply", str(local.root), "--dry-run", "--now", LATER, "--json"])
    assert json.loads(remote.stdout) == json.loads(here.stdout)
    status = runner.invoke(cli, ["retention", "status", url, "--json"])
    assert status.exit_code == 0 and json.loads(status.stdout) == local.retention.status()
    monkeypatch.setenv("SKYBUTLER_TOKEN", tokens["pat"])
    refused = runner.invoke(cli, ["retention", "status", url])
    assert refused.exit_code == 1 and "only a repository administrator" in refused.stderr
    assert "Traceback" not in refused.output


def test_a_call_sent_in_parts_is_joined_into_one(served, monkeypatch):
    """Past the server's max_ids (two here) a retention call goes as its parts in one request, which
    the server joins back into the one call: the cold tier moves and stages all at once."""
    local, url, tokens = served
    boss = Butler(url, token=tokens["boss"])
    raws = [ref(local, "metrics", visit=1, detector=d) for d in range(3)]
    transport = boss._remote
    sent: list[str] = []
    send = transport._send
    monkeypatch.setattr(transport, "_send", lambda method, path, **kw: sent.append(path) or send(method, path, **kw))
    monkeypatch.setattr(transport, "max_ids", 2)
    moved, size = boss.retention.move_to_cold(raws)
    assert moved == [r.id for r in raws] and size > 0
    assert set(local.retention.states(raws).values()) == {"cold"}
    assert boss.retention.stage(raws) == [r.id for r in raws]
    assert set(local.retention.states(raws).values()) == {"stored"}
    assert sent == ["batch", "batch"]
