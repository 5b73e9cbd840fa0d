"""Limits of a served repository: quotas over users' areas, the request-size limit (413),
per-user query queues (a wait, then 429; other users unaffected), pre-signed URLs on
S3, and streams a client leaves early."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from click.testing import CliRunner

from conftest import S3_ENDPOINT
from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import QueryTimeoutError, QuotaExceededError, ServerError

pytest.importorskip("fastapi")


@pytest.fixture
def tokens(butler):
    access = Access(butler.registry.access)
    access.add_user("pat", groups=["survey"])
    access.add_user("rita")
    access.grant("*", "*", "*", "read")
    return access, {name: access.create_token(name) for name in ("pat", "rita")}


def test_quotas_checked_before_a_write(butler, tokens):
    access, token = tokens
    access.set_quota("user", "pat", max_datasets=2)
    access.set_quota("group", "survey", max_bytes=40)
    with running_server(butler.root) as url:
        pat = Butler(url, token=token["pat"])
        pat.put_many("metrics", [({"i": i}, {"instrument": "Cam", "visit": 1, "detector": i}) for i in range(2)],
                     run="u/pat/a")
        with pytest.raises(QuotaExceededError, match="u/pat holds 2 datasets of its quota of 2"):
            pat.put({"i": 9}, "metrics", instrument="Cam", visit=1, detector=3, run="u/pat/b")
        pat.put({"s": "x"}, "metrics", instrument="Cam", visit=2, detector=0, run="g/survey/a")  # a member writes
        with pytest.raises(QuotaExceededError, match="g/survey holds"):
            pat.put({"s": "x" * 40}, "metrics", instrument="Cam", visit=2, detector=1, run="g/survey/a")
    assert butler.query_datasets("metrics", collections=["u/pat/a"]).count() == 2
    assert not butler.collections.exists("u/pat/b")
    assert access.usage("user", "pat")["datasets"] == 2
    assert access.usage("group", "survey") == {"datasets": 1, "bytes": access.usage("group", "survey")["bytes"],
                                              "max_datasets": None, "max_bytes": 40}
    shown = CliRunner().invoke(cli, ["quota", str(butler.root), "pat", "--json"])
    assert shown.exit_code == 0 and '"datasets": 2' in shown.output and '"max_datasets": 2' in shown.output
    raised = CliRunner().invoke(cli, ["quota", str(butler.root), "pat", "--max-datasets", "5", "--json"])
    assert raised.exit_code == 0 and '"max_datasets": 5' in raised.output


def test_concurrent_uploads_never_exceed_a_quota(butler, tokens):
    """Eight clients put at once into one user's area, whose quota holds three of their batches:
    exactly three are accepted and the area ends at its quota, never above (the check and the
    write are one transaction)."""
    access, token = tokens
    access.set_quota("user", "pat", max_datasets=6)
    outcomes: list[str] = []
    with running_server(butler.root, pool_size=8) as url:
        start = threading.Barrier(8)

        def client(n: int) -> None:
            pat = Butler(url, token=token["pat"])
            items = [({"i": i}, {"instrument": "Cam", "visit": 1, "detector": i}) for i in range(2)]
            start.wait()
            try:
                pat.put_many("metrics", items, run=f"u/pat/c{n}")
                outcomes.append("stored")
            except QuotaExceededError:
                outcomes.append("refused")
            except Exception as err:  # shown in the assertion below
                outcomes.append(repr(err))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert sorted(outcomes) == ["refused"] * 5 + ["stored"] * 3
    assert access.usage("user", "pat")["datasets"] == 6


def test_a_statement_past_its_time_limit_is_stopped(butler):
    """The registry stops a statement that runs past the time limit (SQLite's progress handler,
    PostgreSQL's statement_timeout) with QueryTimeoutError; the next one runs normally."""
    import sqlalchemy as sa

    count = sa.text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000000) "
                    "SELECT count(*) FROM c")
    db = butler.registry.db
    start = time.monotonic()
    with pytest.raises(QueryTimeoutError, match=r"longer than this server allows \(0.2 s\)"):
        with db.time_limit(0.2), db.reading() as conn:
            conn.execute(count).scalar()
    assert time.monotonic() - start < 5
    with db.reading() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    assert butler.query_data_ids(["visit"]).count() == 6


def test_query_timeout_through_the_server(butler, tokens):
    """A query past the server's query_timeout ends with QueryTimeoutError at the client, whether
    it is stopped before its answer begins or while it streams; other queries go on."""
    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the server's handling is the same on every stack; the statement limit is tested on each")
    _, token = tokens
    butler.insert_records("detector", [{"instrument": "Cam", "id": d} for d in range(4, 3000)])
    with running_server(butler.root, query_timeout=0.001) as url:
        pat = Butler(url, token=token["pat"])
        with pytest.raises(QueryTimeoutError):
            sum(1 for _ in pat.query_data_ids(["visit", "detector"]))
        with pytest.raises(QueryTimeoutError):
            pat.query_data_ids(["visit", "detector"]).count()
    with running_server(butler.root) as url:
        assert Butler(url, token=token["pat"]).query_data_ids(["visit", "detector"]).count() == 6 * 3000


def test_request_size_limit(butler, tokens):
    _, token = tokens
    with running_server(butler.root, max_request_bytes=2000) as url:
        pat = Butler(url, token=token["pat"])
        with pytest.raises(ServerError, match="limit of 2000 bytes") as caught:
            pat.put({"s": "x" * 5000}, "metrics", instrument="Cam", visit=1, detector=0, run="u/pat/big")
        assert caught.value.status == 413
        pat.put({"s": "x"}, "metrics", instrument="Cam", visit=1, detector=0, run="u/pat/small")
    assert not butler.collections.exists("u/pat/big")


def test_per_user_queue(butler, tokens):
    _, token = tokens
    butler.put({}, "metrics", instrument="Cam", visit=1, detector=0)
    apps: list = []
    with running_server(butler.root, apps=apps, user_concurrency=1, queue_timeout=3.0) as url:
        state = apps[0].state.skybutler
        pat, rita = Butler(url, token=token["pat"]), Butler(url, token=token["rita"])
        slot = state.user_slot("pat")
        slot.acquire()  # pat's one query slot is busy
        answers: list = []
        waiting = threading.Thread(target=lambda: answers.append(pat.query_datasets("metrics", collections="run/a")
                                                                 .count()))
        waiting.start()
        time.sleep(0.5)
        assert waiting.is_alive() and not answers  # queued, not refused
        assert rita.query_datasets("metrics", collections="run/a").count() == 1  # another user is not held up
        slot.release()
        waiting.join(10)
        assert answers == [1]
        state.settings.queue_timeout = 0.2
        slot.acquire()
        try:
            with pytest.raises(ServerError, match="waited") as caught:
                pat.query_datasets("metrics", collections="run/a").count()
            assert caught.value.status == 429
        finally:
            slot.release()
        # a stream the client leaves after its first line gives its slot back
        state.settings.queue_timeout = 3.0
        with httpx.stream("POST", f"{url}/api/v1/query/rows", headers={"Authorization": f"Bearer {token['pat']}"},
                          json={"spec": {"kind": "data_ids", "dimensions": ["visit", "detector"]}}) as response:
            next(response.iter_lines())
        assert pat.query_datasets("metrics", collections="run/a").count() == 1


def test_presigned_urls_on_s3(make_butler, stack):
    if stack != "postgres" or not S3_ENDPOINT:
        pytest.skip("pre-signed URLs need an S3 datastore")
    butler = make_butler(run="run/a", collections="run/a")
    from conftest import populate

    populate(butler)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    ref = butler.put({"k": "v" * 100}, "metrics", instrument="Cam", visit=1, detector=0)
    import fsspec

    with fsspec.open(butler.get_uri(ref), "rb") as stream:
        whole = stream.read()
    access = Access(butler.registry.access)
    access.grant("user", "pat", "run/*", "read")
    token = access.create_token("pat")
    with running_server(butler.root, presign_seconds=60) as url:
        where = Butler(url, token=token, collections="run/a").get_uri(ref)
        assert not where.startswith(url) and "Signature" in where
        assert httpx.get(where).content == whole  # no token, no storage credentials


def test_query_timeout_counts_the_servers_work_not_a_slow_reader(butler):
    """A reader that takes its answer slowly, pausing longer than the server's query_timeout
    between batches, still gets every row: the limit bounds the server's work, and the time a
    batch waits to be taken does not count.  Driven at the stream's generator (what the server
    resumes when the client has taken a batch), since loopback buffers would hide the pause."""
    import json
    from types import SimpleNamespace

    from skybutler.access import User
    from skybutler.server import routes_query
    from skybutler.server.app import create_app
    from skybutler.server.state import ServerSettings

    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the server's handling is the same on every stack")
    butler.insert_records("detector", [{"instrument": "Cam", "id": d} for d in range(4, 3000)])
    app = create_app(butler.root, ServerSettings(query_timeout=4.0))  # the server's work: ~1-2 s on a loaded machine
    try:
        request = SimpleNamespace(app=app)
        body = routes_query.QueryRequest(spec={"kind": "data_ids", "dimensions": ["visit", "detector"]})
        stream = routes_query.stream_batches(request, body, User("pat", rules=(("*", "read"),)),
                                             routes_query._json_lines)
        chunks = [next(stream)]
        time.sleep(4.5)  # the reader dawdles past the limit before taking the next batch
        chunks += list(stream)
    finally:
        app.state.skybutler.close()
    lines = b"".join(chunks).decode().splitlines()
    assert json.loads(lines[-1]) == {"$end": 6 * 3000}, lines[-1]
    assert {(r["visit"], r["detector"]) for r in map(json.loads, lines[:-1])} == \
        {(v, d) for v in range(1, 7) for d in range(3000)}
