"""Maintenance commands given a server URL: ``verify`` (the whole repository for an
administrator, the datasets a user may see for anyone else, a repair for administrators
only) and ``extract-metadata`` (facts extracted only where the user may write), with
embargoed datasets never counted nor named.  Expectations written out by hand from the
fixture's table of who sees what."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import PermissionDeniedError
from skybutler.verify import verify

pytest.importorskip("fastapi")

#: visit -> RUN of the fixture's one metrics dataset per visit; visit 4's is under embargo for all but 'rights'.
RUNS = {1: "public/run", 2: "u/alice/run", 3: "u/bob/run", 4: "run/emb"}


@pytest.fixture
def shared(butler):
    """One metrics dataset in each RUN; alice, bob (no data rights) and boss (administrator);
    yields (local butler, url, tokens, {visit: ref})."""
    refs = {v: butler.put({"v": v}, "metrics", instrument="Cam", visit=v, detector=0, run=run)
            for v, run in RUNS.items()}
    access = Access(butler.registry.access)
    for name in ("alice", "bob"):
        access.add_user(name)
    access.add_user("boss", admin=True)
    access.grant("*", "*", "public/*", "read")
    access.grant("*", "*", "run/*", "read")
    access.add_embargo("metr*", "run/emb", 80, ["rights"])
    tokens = {name: access.create_token(name) for name in ("alice", "bob", "boss")}
    with running_server(butler.root, clock=lambda: 0.0) as url:
        yield butler, url, tokens, refs


def _lose_file(butler, ref) -> str:
    path = butler.registry.datasets.artifacts([ref.id])[ref.id].path
    butler.datastore.remove_paths([path])
    return path


def _cli(token: str, monkeypatch, *args: str):
    monkeypatch.setenv("SKYBUTLER_TOKEN", token)
    return CliRunner().invoke(cli, list(args))


def test_verify_through_a_server(shared, monkeypatch):
    local, url, tokens, refs = shared
    bobs, hidden = _lose_file(local, refs[3]), _lose_file(local, refs[4])
    alice, bob, boss = (Butler(url, token=tokens[n]) for n in ("alice", "bob", "boss"))
    # alice sees public/run and her own area: nothing wrong there (bob's loss and the embargoed one are not hers)
    report = verify(alice, check_sizes=True, check_checksums=True)
    assert (report.datasets, report.consistent, report.missing_files, report.orphan_files) == (2, True, [], [])
    report = verify(bob, check_checksums=True)
    assert report.datasets == 2 and not report.consistent
    assert report.missing_files == [f"{bobs} (dataset {refs[3].id})"]
    assert all(hidden not in line and str(refs[4].id) not in line for line in json.dumps(report.summary()))
    # the administrator's report is the local one
    everything = verify(boss).summary()
    assert everything == verify(local).summary()
    assert everything["datasets"] == 4 and sorted(everything["missing_files"]) == sorted(
        [f"{bobs} (dataset {refs[3].id})", f"{hidden} (dataset {refs[4].id})"])
    # the command, on a URL: the same JSON shape as on the path, exit 1 while something is wrong
    as_bob = _cli(tokens["bob"], monkeypatch, "verify", url, "--json")
    on_path = CliRunner().invoke(cli, ["verify", str(local.root), "--json"])
    assert as_bob.exit_code == 1 == on_path.exit_code
    assert set(json.loads(as_bob.stdout)) == set(json.loads(on_path.stdout))
    assert json.loads(as_bob.stdout)["missing_files"] == [f"{bobs} (dataset {refs[3].id})"]
    assert _cli(tokens["alice"], monkeypatch, "verify", url, "--checksums").exit_code == 0


def test_verify_fix_is_for_administrators(shared, monkeypatch):
    local, url, tokens, refs = shared
    if not local.datastore.local:
        pytest.skip("a stray file is laid in a local datastore's tree by hand")
    stray = Path(local.datastore.root) / "public" / "stray.txt"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_text("left by hand")
    refused = _cli(tokens["alice"], monkeypatch, "verify", url, "--fix", "--yes")
    assert refused.exit_code == 1 and "only a repository administrator" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and stray.exists()
    with pytest.raises(PermissionDeniedError):
        from skybutler.verify import repair

        repair(Butler(url, token=tokens["bob"]), [])
    fixed = _cli(tokens["boss"], monkeypatch, "verify", url, "--fix", "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.stdout)["quarantined"] == 1 and not stray.exists()
    assert verify(local).consistent


def test_extract_metadata_through_a_server(shared, monkeypatch):
    import numpy as np

    local, url, tokens, _ = shared
    local.register_dataset_type("calexp", ["instrument", "visit", "detector"], "Image")
    refs = {v: local.put(np.zeros((4, 3), np.float32), "calexp", instrument="Cam", visit=v, detector=0, run=run)
            for v, run in RUNS.items()}
    Access(local.registry.access).add_embargo("calexp", "run/emb", 80, ["rights"])
    table = local.registry.metadata.table("Image")
    with local.registry.db.transaction() as conn:  # as if stored before their facts were extracted
        conn.execute(table.delete())

    def without_facts() -> set[int]:
        missing = local.registry.metadata.ids_without_facts("Image", [r.id for r in refs.values()])
        return {v for v, r in refs.items() if r.id in missing}

    # no collections: every RUN alice may write (her own area), not public/run she may only read
    done = _cli(tokens["alice"], monkeypatch, "extract-metadata", url, "calexp", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"extracted": 1} and without_facts() == {1, 3, 4}
    refused = _cli(tokens["alice"], monkeypatch, "extract-metadata", url, "calexp", "-c", "public/run")
    assert refused.exit_code == 1 and "may not write to collection 'public/run'" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and without_facts() == {1, 3, 4}
    # bob's area does not exist for alice; the embargoed dataset is not there for her: nothing to extract
    missing = _cli(tokens["alice"], monkeypatch, "extract-metadata", url, "calexp", "-c", "u/bob/run")
    assert missing.exit_code == 1 and "no collection named 'u/bob/run'" in missing.stderr
    hidden = _cli(tokens["alice"], monkeypatch, "extract-metadata", url, "calexp", "-c", "run/emb", "--json")
    assert hidden.exit_code == 0 and json.loads(hidden.stdout) == {"extracted": 0} and without_facts() == {1, 3, 4}
    boss = Butler(url, token=tokens["boss"])
    assert boss.extract_metadata("calexp", collections=["public/run", "run/emb"]) == 2 and without_facts() == {3}
    assert local.get_metadata(refs[1])["n_x"] == 3
