"""Who may do what through a server: tokens (401), collection rules and private areas
(an authorization matrix checked against a plain-Python table of the rules), and the
token and grant commands."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import (
    AuthenticationError,
    DatasetNotFoundError,
    MissingCollectionError,
    PermissionDeniedError,
    SkybutlerError,
)

pytest.importorskip("fastapi")

RUNS = ["public/run", "team/run", "u/alice/run", "u/bob/run"]
#: The oracle: who may read and who may write each RUN, written out by hand from the rules below.
READERS = {"public/run": {"alice", "bob", "carol"}, "team/run": {"alice"}, "u/alice/run": {"alice"},
           "u/bob/run": {"bob"}}
WRITERS = {"public/run": set(), "team/run": {"alice"}, "u/alice/run": {"alice"}, "u/bob/run": {"bob"}}


@pytest.fixture
def shared(butler):
    """A repository with one dataset in each RUN, a chain over all of them, rules, and a
    server; yields (local butler, url, {user: token}, {run: ref})."""
    refs = {run: butler.put({"run": run}, "metrics", instrument="Cam", visit=1, detector=0, run=run)
            for run in RUNS}
    butler.collections.set_chain("everything", ["u/bob/run", "team/run", "public/run", "u/alice/run"])
    access = Access(butler.registry.access)
    access.add_user("alice", groups=["team"])
    access.add_user("bob")
    access.add_user("carol")
    access.grant("*", "*", "public/*", "read")
    access.grant("group", "team", "team/*", "write")
    access.grant("*", "*", "everything", "read")
    tokens = {name: access.create_token(name) for name in ("alice", "bob", "carol")}
    with running_server(butler.root) as url:
        yield butler, url, tokens, refs


def _sqlite_only(butler) -> None:
    """Checks of the server's own logic, which no registry backend changes: run once."""
    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the same on every stack; run on SQLite")


def test_tokens_missing_invalid_expired_revoked(butler):
    _sqlite_only(butler)
    import time

    access = Access(butler.registry.access)
    good = access.create_token("dora")
    before = time.time()
    short = access.create_token("dora", expires_in=60)
    after = time.time()
    gone = access.create_token("dora")
    access.revoke_token(gone.split(".")[0])
    with running_server(butler.root) as url:
        assert Butler(url, token=good).query_dataset_types() != []
        assert Butler(url, token=short).query_dataset_types() != []
        forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
        for bad in ("", "sbt_nothing", forged, gone):
            with pytest.raises(AuthenticationError):
                Butler(url, token=bad)
        answer = httpx.get(f"{url}/api/v1/dataset_types")
        assert answer.status_code == 401 and answer.json()["error"] == "AuthenticationError"
    # expiry, by the clock of the check
    assert access.authenticate(short, now=before + 59.9).name == "dora"
    with pytest.raises(AuthenticationError):
        access.authenticate(short, now=after + 60.001)
    rows = butler.registry.access.token_rows("dora")
    assert len(rows) == 3 and all(good.split(".")[1] not in r.secret_hash for r in rows)
    assert all(r.secret_hash.startswith("$argon2id$") for r in rows)


def test_cached_rights_follow_every_change_promptly(butler):
    """The server keeps what authentication learnt between requests; a revocation, a grant taken
    away and a grant given by another process (the admin commands) apply within the server's
    recheck time (a second here), and at once where it is 0."""
    import time

    _sqlite_only(butler)
    butler.put({"a": 1}, "metrics", instrument="Cam", visit=1, detector=0, run="shared/run")
    access = Access(butler.registry.access)
    access.add_user("erin")
    access.grant("user", "erin", "shared/*", "read")
    tokens = [access.create_token("erin") for _ in range(3)]

    def within(seconds: float, remote: Butler, error: type[Exception] | None) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                remote.get("metrics", instrument="Cam", visit=1, detector=0)
                assert error is None
                return
            except Exception as err:
                if error is not None and isinstance(err, error):
                    return
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    admin = Butler(butler.root)  # as an admin command would, in its own process
    for recheck, allowed in [(0.0, 0.0), (1.0, 1.5)]:
        token = tokens.pop()
        with running_server(butler.root, access_recheck_seconds=recheck) as url:
            remote = Butler(url, token=token, collections="shared/run")
            for _ in range(3):  # cached from here on
                assert remote.get("metrics", instrument="Cam", visit=1, detector=0) == {"a": 1}
            Access(admin.registry.access).grant("user", "erin", "shared/*", None)
            within(allowed, remote, MissingCollectionError)
            Access(admin.registry.access).grant("user", "erin", "shared/*", "read")
            within(allowed, remote, None)
            Access(admin.registry.access).revoke_token(token.split(".")[0])
            within(allowed, remote, AuthenticationError)
            assert Butler(url, token=tokens[0], collections="shared/run").exists(
                "metrics", instrument="Cam", visit=1, detector=0)
    admin.close()


def test_authorization_matrix(shared):
    local, url, tokens, refs = shared
    for user, token in tokens.items():
        remote = Butler(url, token=token)
        for run in RUNS:
            may_read = user in READERS[run]
            found = remote.query_datasets("metrics", collections=run) if may_read else None
            if may_read:
                assert [r.id for r in found] == [refs[run].id]
                assert found.count() == 1
                assert remote.get(refs[run]) == {"run": run}
            else:
                with pytest.raises(MissingCollectionError):
                    list(remote.query_datasets("metrics", collections=run))
                with pytest.raises(MissingCollectionError):
                    remote.query_datasets("metrics", collections=run).count()
                with pytest.raises(MissingCollectionError):
                    remote.query_datasets("metrics", "visit > 100", collections=run).explain()
                with pytest.raises(DatasetNotFoundError, match=f"no dataset with ID {refs[run].id}"):
                    remote.get(refs[run])
                missing = refs[run].id.hex[:-4] + "0000"
                with pytest.raises(DatasetNotFoundError, match="no dataset with ID"):
                    remote.get(type(refs[run])(__import__("uuid").UUID(missing), refs[run].dataset_type,
                                               refs[run].data_id, run))
                download = httpx.get(f"{url}/api/v1/datasets/{refs[run].id}/file",
                                     headers={"Authorization": f"Bearer {token}"})
                assert download.status_code == 404
            # writing
            if user in WRITERS[run]:
                remote.put({"by": user}, "metrics", instrument="Cam", visit=2, detector=0, run=run)
            else:
                with pytest.raises(PermissionDeniedError):  # the same whether the RUN exists or not
                    remote.put({"by": user}, "metrics", instrument="Cam", visit=2, detector=0, run=run)
        # the chain grants nothing by itself: only the readable children are searched
        seen = remote.query_datasets("metrics", "visit = 1", collections="everything", find_first=False)
        assert sorted(r.run for r in seen) == sorted(run for run in RUNS if user in READERS[run])
        assert seen.count() == len([run for run in RUNS if user in READERS[run]])
        assert [r.run for r in remote.query_datasets("metrics", "visit = 1", collections="everything")] == \
            [next(run for run in ["u/bob/run", "team/run", "public/run", "u/alice/run"] if user in READERS[run])]
        visible = {c.name for c in remote.collections.query("*")}
        assert visible == {run for run in RUNS if user in READERS[run]} | {"everything"}
        assert set(remote.collections.info("everything").children) == visible - {"everything"}
        # one's own area: new RUNs under u/<user>/ only
        remote.put({}, "metrics", instrument="Cam", visit=3, detector=0, run=f"u/{user}/new")
        with pytest.raises(PermissionDeniedError):
            remote.put({}, "metrics", instrument="Cam", visit=3, detector=0, run="elsewhere/new")
    assert not local.collections.exists("elsewhere/new")
    assert local.query_datasets("metrics", collections="public/run").count() == 1  # nobody wrote there


def test_token_and_grant_commands(butler, tmp_path):
    import time

    _sqlite_only(butler)
    repo = str(butler.root)
    runner = CliRunner()
    made = runner.invoke(cli, ["token", "create", repo, "erin", "--expires", "2h", "--group", "team"])
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    listed = runner.invoke(cli, ["token", "list", repo, "--json"])
    assert listed.exit_code == 0 and '"user": "erin"' in listed.output and token.split(".")[1] not in listed.output
    assert runner.invoke(cli, ["grant", repo, "read", "run/*", "--group", "team"]).exit_code == 0
    butler.put({"x": 1}, "metrics", instrument="Cam", visit=1, detector=0)
    with running_server(butler.root) as url:
        shown = runner.invoke(cli, ["query-datasets", url, "metrics", "-c", "run/a", "--json"],
                              env={"SKYBUTLER_TOKEN": token})
        assert shown.exit_code == 0, shown.output
        assert '"visit": 1' in shown.output and '"state": "stored"' in shown.output
        with_uri = runner.invoke(cli, ["query-datasets", url, "metrics", "-c", "run/a", "--show-uri", "--json"],
                                 env={"SKYBUTLER_TOKEN": token})
        assert with_uri.exit_code == 0 and f'"uri": "{url}/api/v1/datasets/' in with_uri.output
        assert runner.invoke(cli, ["token", "revoke", repo, token.split(".")[0]]).exit_code == 0
        deadline = time.monotonic() + 2  # the server rechecks the access tables every second
        while True:
            refused = runner.invoke(cli, ["query-datasets", url, "metrics", "-c", "run/a"],
                                    env={"SKYBUTLER_TOKEN": token})
            if refused.exit_code != 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert refused.exit_code == 1 and "valid bearer token" in refused.output
    bad = runner.invoke(cli, ["token", "create", repo, "no spaces allowed"])
    assert bad.exit_code == 1 and "invalid user name" in bad.output
    audit = butler.registry.access.audit_rows()
    assert [a[2] for a in audit][:3] == ["token-revoke", "grant", "token-create"]


def test_provenance_under_the_same_rights(butler):
    _sqlite_only(butler)
    from pipeline_helpers import put_metrics
    from skybutler.execution import run_pipeline
    from skybutler.pipeline import Pipeline
    from skybutler.pipeline.testing import ScaleTask

    put_metrics(butler, visits=[1])
    pipeline = Pipeline()
    pipeline.add_task("a", ScaleTask)
    report = run_pipeline(butler, pipeline, ["run/a"], "out", where="visit = 1")
    scaled = butler.find_dataset("metricsA", instrument="Cam", visit=1, detector=1, collections=report.run)
    metric = butler.find_dataset("metrics", instrument="Cam", visit=1, detector=1, collections="run/a")
    access = Access(butler.registry.access)
    access.add_user("boss", admin=True)
    access.grant("user", "bob", "out*", "read")
    tokens = {name: access.create_token(name) for name in ("boss", "bob")}
    local = butler.provenance.producer(scaled)
    with running_server(butler.root) as url:
        boss, bob = (Butler(url, token=tokens[n]) for n in ("boss", "bob"))
        mine = boss.provenance.producer(scaled)
        assert (mine.quantum_id, mine.task_label, mine.run, mine.data_id) == \
            (local.quantum_id, local.task_label, local.run, local.data_id)
        assert mine.inputs == local.inputs and mine.outputs == local.outputs and mine.log is None
        assert [q.quantum_id for q in boss.provenance.consumers(metric)] == \
            [q.quantum_id for q in butler.provenance.consumers(metric)]
        theirs = bob.provenance.producer(scaled)
        assert theirs.quantum_id == local.quantum_id and theirs.inputs == []  # run/a is not bob's to see
        assert theirs.outputs == local.outputs
        with pytest.raises(DatasetNotFoundError):
            bob.provenance.consumers(metric)
        with pytest.raises(PermissionDeniedError):
            bob.provenance.recompute(scaled)
        # the tree: the same as local for boss; bob sees the quantum but not its input in run/a
        here, there = butler.provenance.tree(scaled), boss.provenance.tree(scaled)
        assert [(n.dataset_id, n.dataset_type, n.exists) for n in there.walk()] == \
            [(n.dataset_id, n.dataset_type, n.exists) for n in here.walk()]
        assert [n.dataset_id for n in here.walk()] == [scaled.id, metric.id]
        assert boss.provenance.environment(there.quantum) == butler.provenance.environment(here.quantum)
        bobs = bob.provenance.tree(scaled)
        assert [n.dataset_id for n in bobs.walk()] == [scaled.id] and bobs.quantum.quantum_id == local.quantum_id
        with pytest.raises(DatasetNotFoundError):
            bob.provenance.tree(metric)
        from click.testing import CliRunner

        from skybutler.cli.main import cli

        shown = CliRunner().invoke(cli, ["provenance", url, str(scaled.id), "--json"],
                                   env={"SKYBUTLER_TOKEN": tokens["bob"]})
        assert shown.exit_code == 0, shown.output
        data = json.loads(shown.stdout)
        assert data["tree"]["id"] == str(scaled.id) and data["tree"]["inputs"] == [] and data["used_by"] == []
        assert [q.quantum_id for q in boss.provenance.quanta()] == [q.quantum_id for q in butler.provenance.quanta()]
        made = sorted(q.quantum_id for q in butler.provenance.quanta(task="a"))
        seen = bob.provenance.quanta(task="a")
        assert sorted(q.quantum_id for q in seen) == made and local.quantum_id in made
        assert all(q.inputs == [] and q.outputs for q in seen)  # run/a's metrics are not bob's to see
        listed = CliRunner().invoke(cli, ["quanta", url, "--json"], env={"SKYBUTLER_TOKEN": tokens["bob"]})
        assert listed.exit_code == 0 and sorted(q["quantum"] for q in json.loads(listed.stdout)) == \
            sorted(str(i) for i in made)


def test_trusted_identity_header(butler):
    _sqlite_only(butler)
    from skybutler.server.state import trust_header

    butler.put({"x": 1}, "metrics", instrument="Cam", visit=1, detector=0)
    access = Access(butler.registry.access)
    access.add_user("ann")
    access.grant("user", "ann", "run/*", "read")
    with running_server(butler.root, identify=trust_header("X-Forwarded-User")) as url:
        seen = httpx.post(f"{url}/api/v1/query/count", headers={"X-Forwarded-User": "ann"},
                          json={"spec": {"kind": "datasets", "dataset_types": ["metrics"], "collections": ["run/a"]}})
        assert seen.status_code == 200 and seen.json() == 1
        stranger = httpx.get(f"{url}/api/v1/info", headers={"X-Forwarded-User": "nobody"})
        assert stranger.status_code == 401
        assert httpx.get(f"{url}/api/v1/info").status_code == 401


def test_a_readable_tag_shows_its_datasets(shared):
    local, url, tokens, refs = shared
    local.collections.associate("shared/picks", [refs["team/run"]])
    Access(local.registry.access).grant("user", "bob", "shared/*", "read")
    bob = Butler(url, token=tokens["bob"])
    [found] = bob.query_datasets("metrics", collections="shared/picks")
    assert found == refs["team/run"] and bob.get(found) == {"run": "team/run"}
    with pytest.raises(MissingCollectionError):
        list(bob.query_datasets("metrics", collections="team/run"))  # the RUN itself stays closed
    carol = Butler(url, token=tokens["carol"])
    with pytest.raises(DatasetNotFoundError):
        carol.get(refs["team/run"])


def test_hostile_requests(shared):
    local, url, tokens, refs = shared
    alice = Butler(url, token=tokens["alice"])
    before = sorted(c.name for c in local.collections.query("*"))
    headers = {"Authorization": f"Bearer {tokens['alice']}"}
    # a RUN name is a name, not a path: another's area stays theirs, and dots stay inside the datastore
    with pytest.raises(PermissionDeniedError):
        alice.put({"x": 1}, "metrics", instrument="Cam", visit=1, detector=0, run="u/bob/../alice/x")
    dotted = alice.put({"x": 1}, "metrics", instrument="Cam", visit=1, detector=0, run="u/alice/../../etc")
    assert local.get_uri(dotted).startswith(local.datastore.root_uri.rstrip("/") + "/") or \
        local.get_uri(dotted).startswith("file://" + local.datastore.root + "/")
    assert "/../" not in local.get_uri(dotted)
    before.append("u/alice/../../etc")
    for path in ("datasets/..%2F..%2Fetc%2Fpasswd/file", "datasets/not-a-uuid/file", f"datasets/{'9' * 5000}/url"):
        answer = httpx.get(f"{url}/api/v1/{path}", headers=headers)
        assert answer.status_code in (404, 414, 422), (path, answer.status_code)
        assert "Traceback" not in answer.text
    garbage = httpx.post(f"{url}/api/v1/datasets/put", content=b"\x00" * 50, headers=headers)
    assert garbage.status_code == 422 and garbage.json()["error"] == "SkybutlerError"
    lying = httpx.post(f"{url}/api/v1/datasets/put", headers=headers,
                       content=(20).to_bytes(8, "big") + b'{"sizes": [999999]}')
    assert lying.status_code == 422
    bad_spec = httpx.post(f"{url}/api/v1/query/rows", headers=headers, json={"spec": {"kind": "datasets",
                          "dataset_types": ["metrics"], "collections": ["public/run"], "where": "visit = ",
                          "tree": None}})
    assert bad_spec.status_code == 422 and "column" in bad_spec.json()["message"]
    assert sorted(c.name for c in local.collections.query("*")) == sorted(before)


ODD_NAMES = ["u/alice/\x00nul", "u/alice/new\nline", "u/alice/" + "x" * 5000, "../../etc/passwd", "u/alice/\u202eevil",
             "", " ", "u/alice/*", "u/alice/a%2F..%2F..", "\\\\server\\share"]


@pytest.mark.parametrize("name", ODD_NAMES, ids=range(len(ODD_NAMES)))
def test_odd_characters_in_every_name_are_a_clear_error_and_nothing_is_written(shared, name):
    """A collection, RUN, dataset type, user, group, rule pattern or dimension element named with
    a control character, a path, a glob, a huge or an empty name: a 4xx with a JSON error (never a
    500 nor a traceback), and nothing written -- except where the name is a fine one: a collection
    of one's own area whose name holds odd but printable characters (its files stay under the
    datastore), or an administrator's rule over such a pattern."""
    local, url, tokens, refs = shared
    Access(local.registry.access).add_user("root", admin=True)
    root = Butler(url, token=Access(local.registry.access).create_token("root"))
    alice = Butler(url, token=tokens["alice"])

    def state():
        return (sorted((c.name, c.type.value) for c in local.collections.query("*")),
                sorted(t.name for t in local.query_dataset_types()), sorted(local.access.users()),
                local.access.rules(), local.query_dimension_records("instrument").count())

    before = state()
    calls = [lambda: alice.collections.register(name, "tagged"),
             lambda: alice.put({"x": 1}, "metrics", instrument="Cam", visit=1, detector=0, run=name),
             lambda: root.register_dataset_type(name, ["instrument"], "Dict"),
             lambda: root.access.add_user(name),
             lambda: root.access.add_user("alice", groups=[name]),
             lambda: root.access.grant("user", "alice", name, "read"),
             lambda: root.insert_records(name, [{"name": "X"}]),
             lambda: alice.query_datasets(name, collections="public/run").count()]
    written = 0
    for call in calls:
        try:
            call()
            written += 1
        except SkybutlerError as err:
            status = getattr(err, "status", None)
            assert status is None or 400 <= status < 500, (name, status, str(err)[:200])
            assert "Traceback" not in str(err)
    after = state()
    control = any(c < " " or c == "\x7f" for c in name)
    if control or len(name) > 255:  # control characters and huge names: refused everywhere
        assert after == before, name
    elif after != before:  # only a collection of alice's own area, and a rule over the pattern, may have come
        added = set(after[0]) - set(before[0])
        assert after[1:3] == before[1:3] and after[4] == before[4], name
        assert all(n.startswith("u/alice/") for n, _ in added), (name, added)
        # an administrator's rule may name any pattern of printable characters (names, not paths)
        assert {r.pattern for r in after[3]} - {r.pattern for r in before[3]} <= {name}
        for run in [n for n, kind in added if kind == "RUN"]:
            for ref in local.query_datasets("metrics", collections=run):
                assert "/../" not in local.get_uri(ref)
