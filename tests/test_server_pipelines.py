"""Pipeline commands given a server URL: ``stale`` (over the collections the user may read,
refused while an embargo hides a dataset it rests on) and ``recompute`` (only into RUNs the
user may write, within their quota), each against the local answer on the same repository."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import SkybutlerError

from server_helpers import running_server
from test_incremental import pipeline, put, repo  # noqa: F401 -- the fixture, shared

pytest.importorskip("fastapi")


def _cli(token: str, monkeypatch, *args: str):
    monkeypatch.setenv("SKYBUTLER_TOKEN", token)
    return CliRunner().invoke(cli, list(args))


def test_stale_on_a_url(repo, monkeypatch):  # noqa: F811
    local, _ = repo
    put(local, [(2, 3)])  # a new input: visit 2's summary is stale
    access = Access(local.registry.access)
    for name in ("alice", "carol"):
        access.add_user(name)
    access.add_user("rita", groups=["rights"])
    access.grant("user", "alice", "*", "read")
    access.grant("user", "rita", "*", "read")
    tokens = {name: access.create_token(name) for name in ("alice", "carol", "rita")}
    expected = [p.to_dict() for p in local.provenance.stale("visitSummary", ["out"])]
    assert [p["data_id"]["visit"] for p in expected] == [2]
    with running_server(local.root, clock=lambda: 0.0, access_recheck_seconds=0) as url:
        shown = _cli(tokens["alice"], monkeypatch, "stale", url, "visitSummary", "-c", "out", "--json")
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout) == json.loads(json.dumps(expected))
        text = _cli(tokens["alice"], monkeypatch, "stale", url, "visitSummary", "-c", "out", "-w", "visit = 1")
        assert text.exit_code == 0 and "0 of 1 visitSummary" in text.output
        assert [p.data_id["visit"] for p in Butler(url, token=tokens["alice"]).provenance.stale(
            "visitSummary", "out")] == [2]
        refused = _cli(tokens["carol"], monkeypatch, "stale", url, "visitSummary", "-c", "out")
        assert refused.exit_code == 1 and "no collection named 'out'" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        with pytest.raises(SkybutlerError, match="by the pipeline recorded with them"):  # no code named by a client
            Butler(url, token=tokens["alice"]).provenance.stale("visitSummary", "out", pipeline=pipeline())
        # under an embargo on the metrics: refused for alice (its reasons would name them), as before for rita
        access.add_embargo("metrics", "run/a", 80, ["rights"])
        refused = _cli(tokens["alice"], monkeypatch, "stale", url, "visitSummary", "-c", "out", "--json")
        assert refused.exit_code == 1 and "embargo" in refused.stderr and "metrics" not in refused.stderr
        assert refused.stdout == ""
        allowed = _cli(tokens["rita"], monkeypatch, "stale", url, "visitSummary", "-c", "out", "--json")
        assert allowed.exit_code == 0 and json.loads(allowed.stdout) == json.loads(json.dumps(expected))
