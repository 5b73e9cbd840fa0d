"""Pipeline commands given a server URL: ``stale`` (over the collections the user may read,
refused while an embargo hides a dataset it rests on) and ``recompute`` (only into RUNs the
user may write, within their quota), each against the local answer on the same repository."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import SkybutlerError
from test_incremental import pipeline, put, repo, template  # noqa: F401 -- the fixtures, shared

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


@pytest.fixture
def purged(butler):
    """The scale -> visit-summary pipeline of test_recompute run into 'out' and into alice's
    u/alice/out, visit 1's summary purged from both; yields (local, url, tokens, {where: ref}, originals)."""
    from pipeline_helpers import add_bias, put_metrics
    from skybutler.execution import run_pipeline
    from skybutler.pipeline import Pipeline
    from skybutler.pipeline.testing import CalibratedScaleTask, VisitSummaryTask

    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the server calls the local recompute, itself tested on every stack")
    put_metrics(butler, visits=[1, 2])
    add_bias(butler)
    p = Pipeline()
    p.add_task("a", CalibratedScaleTask)
    p.add_task("b", VisitSummaryTask)
    summaries = {}
    for out in ("out", "u/alice/out"):
        assert run_pipeline(butler, p, ["run/a", "calib"], out).ok
        summaries[out] = butler.find_dataset("visitSummary", instrument="Cam", visit=1, collections=out)
    originals = {out: butler.get(ref) for out, ref in summaries.items()}
    butler.retention.purge(list(summaries.values()))
    access = Access(butler.registry.access)
    for name in ("alice", "carol", "dora"):
        access.add_user(name)
    access.grant("user", "alice", "*", "read")
    access.grant("user", "carol", "*", "read")
    tokens = {name: access.create_token(name) for name in ("alice", "carol", "dora")}
    with running_server(butler.root, access_recheck_seconds=0) as url:
        yield butler, url, tokens, summaries, originals


def test_recompute_on_a_url_writes_only_where_the_user_may(purged, monkeypatch):
    local, url, tokens, summaries, originals = purged
    theirs, own = summaries["out"], summaries["u/alice/out"]

    def states() -> list[str]:
        return [local.retention.states([r])[r.id] for r in (theirs, own)]

    assert states() == ["purged-recomputable"] * 2
    # carol may read 'out' but write nothing there; dora may not even see the dataset
    refused = _cli(tokens["carol"], monkeypatch, "recompute", url, str(theirs.id))
    assert refused.exit_code == 1 and f"may not write to collection {theirs.run!r}" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    for args in ([str(theirs.id)], [str(theirs.id), "--dry-run"]):
        hidden = _cli(tokens["dora"], monkeypatch, "recompute", url, *args)
        assert hidden.exit_code == 1 and f"no dataset with ID {theirs.id}" in hidden.stderr
    refused = _cli(tokens["alice"], monkeypatch, "recompute", url, "visitSummary", "-c", "out", "--dry-run")
    assert refused.exit_code == 1 and "may not write" in refused.stderr
    assert states() == ["purged-recomputable"] * 2
    # her own area: the estimate, then the recompute, bit-identical, within her quota
    planned = _cli(tokens["alice"], monkeypatch, "recompute", url, "visitSummary", "-c", "u/alice/out",
                   "--dry-run", "--json")
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.stdout)["targets"] == [str(own.id)]
    assert json.loads(planned.stdout) == json.loads(json.dumps(local.retention.estimate([own]).to_dict()))
    access = Access(local.registry.access)
    size = local.retention.estimate([own]).states[own.id].artifact.size
    used = access.usage("user", "alice")["bytes"]
    access.set_quota("user", "alice", max_bytes=used + size - 1)
    over = _cli(tokens["alice"], monkeypatch, "recompute", url, str(own.id))
    assert over.exit_code == 1 and "quota" in over.stderr and states() == ["purged-recomputable"] * 2
    access.set_quota("user", "alice", max_bytes=used + size)
    done = _cli(tokens["alice"], monkeypatch, "recompute", url, str(own.id))
    assert done.exit_code == 0, done.output
    assert f"re-created dataset {own.id} (bit-identical)" in done.stdout
    assert states() == ["purged-recomputable", "stored"] and local.get(own) == originals["u/alice/out"]
    with pytest.raises(SkybutlerError, match="replays the quanta itself"):
        Butler(url, token=tokens["alice"]).retention.recompute([own], executor="pool")


def test_two_recomputes_at_once_cannot_both_pass_a_quota_only_one_fits(purged, monkeypatch):
    """Each request's check and the room it holds are one transaction: with room for one of two
    purged summaries, two recomputes that both reach the replay at the same moment (held there
    until the other arrives, or for a few seconds) re-create one, and the other is refused."""
    import threading

    from skybutler.errors import QuotaExceededError
    from skybutler.retention.facade import Retention

    local, url, tokens, summaries, _ = purged
    first = summaries["u/alice/out"]
    second = local.find_dataset("visitSummary", instrument="Cam", visit=2, collections="u/alice/out")
    local.retention.purge([second])
    size = max(local.retention.estimate([r]).states[r.id].artifact.size for r in (first, second))
    access = Access(local.registry.access)
    used = access.usage("user", "alice")["bytes"]
    access.set_quota("user", "alice", max_bytes=used + size)
    meeting, replay = threading.Barrier(2), Retention.recompute

    def held(self, *args, **kwargs):
        try:
            meeting.wait(timeout=3)
        except threading.BrokenBarrierError:
            pass
        return replay(self, *args, **kwargs)

    monkeypatch.setattr(Retention, "recompute", held)
    answers: dict = {}

    def ask(ref):
        try:
            answers[ref.id] = Butler(url, token=tokens["alice"]).retention.recompute([ref]).succeeded
        except QuotaExceededError as err:
            answers[ref.id] = str(err)

    threads = [threading.Thread(target=ask, args=(ref,)) for ref in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    refused = [a for a in answers.values() if isinstance(a, str)]
    assert len(answers) == 2 and len(refused) == 1 and "held by writes under way" in refused[0], answers
    assert used < access.usage("user", "alice")["bytes"] <= used + size
    assert access.store.reserved("u/alice", 0) == (0, 0)  # released when the write ended


def test_an_estimate_and_a_recompute_sent_in_parts(purged, monkeypatch):
    """Past the server's max_ids (one here) an estimate and a recompute go as their parts in one
    request each, joined back by the server into the one call: the local estimate, one replay."""
    local, url, tokens, summaries, originals = purged
    own = summaries["u/alice/out"]
    second = local.find_dataset("visitSummary", instrument="Cam", visit=2, collections="u/alice/out")
    local.retention.purge([second])
    alice = Butler(url, token=tokens["alice"])
    transport = alice._remote
    sent: list[str] = []
    send = transport._send
    monkeypatch.setattr(transport, "_send", lambda method, path, **kw: sent.append(path) or send(method, path, **kw))
    monkeypatch.setattr(transport, "max_ids", 1)
    planned = alice.retention.estimate([own, second])
    assert planned.to_dict() == local.retention.estimate([own, second]).to_dict()
    report = alice.retention.recompute([own, second])
    assert sorted(report.verified) == sorted([own.id, second.id]) and sent == ["batch", "batch"]
    assert local.retention.states([own, second]) == {own.id: "stored", second.id: "stored"}
    assert local.get(own) == originals["u/alice/out"]
