"""The server and its remote client: the same scenarios through ``Butler(url)`` as through a
local Butler on the same repository, with identical answers, on every configured stack."""

from __future__ import annotations

import fsspec
import httpx
import numpy as np
import pyarrow as pa
import pytest

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.errors import (
    AuthenticationError,
    DatasetNotFoundError,
    MissingCollectionError,
    QueryError,
    ServerError,
    SkybutlerError,
)

pytest.importorskip("fastapi")


@pytest.fixture
def served(butler):
    """(local butler, server URL, an administrator's token) of a small populated repository."""
    access = Access(butler.registry.access)
    access.add_user("boss", admin=True)
    token = access.create_token("boss")
    with running_server(butler.root) as url:
        yield butler, url, token


def _refs(results):
    return sorted((str(r.id), r.dataset_type.name, dict(r.data_id.required), r.run) for r in results)


def _ids(data_ids):
    out = sorted(data_ids, key=lambda d: d.required_values)
    assert out, "a comparison of empty answers proves nothing"
    return out


def test_same_answers_local_and_remote(served):
    local, url, token = served
    remote = Butler(url, token=token, run="run/a", collections=["run/a"])
    ref = remote.put({"n": 1}, "metrics", instrument="Cam", visit=1, detector=0)
    assert local.get("metrics", instrument="Cam", visit=1, detector=0) == {"n": 1}
    assert remote.get(ref) == {"n": 1} == remote.get("metrics", instrument="Cam", visit=1, detector=0)
    remote.put_many("metrics", [({"n": v * 10 + d}, {"instrument": "Cam", "visit": v, "detector": d})
                                for v in (2, 3) for d in range(4)])
    local.put_many("metrics", [({"n": 100 + d}, {"instrument": "Cam", "visit": 4, "detector": d}) for d in range(4)])
    # every kind of query, answered alike
    for where in ("", "visit > 2", "band = 'g' AND detector IN (0..2)", "visit = v"):
        bind = {"v": 3} if "v" in where.split() else {}
        assert _refs(remote.query_datasets("metrics", where, bind=bind)) == \
            _refs(local.query_datasets("metrics", where, bind=bind))
        assert _ids(remote.query_data_ids(["visit", "detector"], where, bind=bind, datasets="metrics",
                                          collections="run/a")) == \
            _ids(local.query_data_ids(["visit", "detector"], where, bind=bind, datasets="metrics",
                                      collections="run/a"))
    assert len(_refs(remote.query_datasets("metrics"))) == 13
    records_local = sorted(local.query_dimension_records("visit", "visit.exposure_time > 10"), key=lambda r: r["visit"])
    records_remote = sorted(remote.query_dimension_records("visit", "visit.exposure_time > 10"),
                            key=lambda r: r["visit"])
    assert records_remote == records_local and records_remote[0]["timespan"] == records_local[0]["timespan"]
    assert remote.query_datasets("metrics", "visit > 2").count() == local.query_datasets("metrics", "visit > 2").count()
    assert remote.query_datasets("metrics", "visit > 1000").any() is False
    assert remote.query_datasets("metrics", "visit > 1000").explain() == \
        local.query_datasets("metrics", "visit > 1000").explain() != []
    ordered = list(remote.query_data_ids(["visit", "detector"]).order_by("-visit", "detector").limit(3, 1))
    assert ordered == list(local.query_data_ids(["visit", "detector"]).order_by("-visit", "detector").limit(3, 1))
    # keyset paging: the rows after a given row, checked by the server as locally
    first = list(local.query_datasets("metrics").order_by("-visit", "dataset_id").limit(5))
    key = [first[-1].data_id["visit"], first[-1].id]
    assert _refs(remote.query_datasets("metrics").order_by("-visit", "dataset_id").after(key).limit(4)) == \
        _refs(local.query_datasets("metrics").order_by("-visit", "dataset_id").after(key).limit(4)) != []
    with pytest.raises(QueryError, match="ends with dataset_id"):
        list(remote.query_datasets("metrics").order_by("visit").after([1]))
    # tables travel as Arrow
    sort = [("visit", "ascending"), ("detector", "ascending")]
    assert remote.query_datasets("metrics").to_arrow().sort_by(sort).equals(
        local.query_datasets("metrics").to_arrow().sort_by(sort))
    assert remote.query_dimension_records("visit").to_arrow().sort_by("id").equals(
        local.query_dimension_records("visit").to_arrow().sort_by("id"))
    # collections
    remote.collections.associate("best", [ref])
    remote.collections.set_chain("chain", ["best", "run/a"])
    assert remote.collections.query("*") == local.collections.query("*")
    assert remote.collections.flatten("chain") == local.collections.flatten("chain")
    assert _refs(remote.query_datasets("metrics", collections="best")) == _refs([ref])
    assert remote.find_dataset("metrics", instrument="Cam", visit=1, detector=0, collections="chain") == ref


def test_read_parameters_applied_on_the_server(served):
    local, url, token = served
    local.register_dataset_type("cat", ["instrument", "visit"], "Table")
    local.register_dataset_type("img", ["instrument", "visit", "detector"], "Image")
    remote = Butler(url, token=token, run="run/a", collections=["run/a"])
    table = pa.table({"ra": [1.0, 2.0, 3.0], "dec": [4.0, 5.0, 6.0], "flux": [7, 8, 9]})
    remote.put(table, "cat", instrument="Cam", visit=1)
    pixels = np.arange(400, dtype=np.float32).reshape(20, 20)
    local.put(pixels, "img", instrument="Cam", visit=1, detector=2)
    assert remote.get("cat", visit=1, parameters={"columns": ["ra"]}).equals(table.select(["ra"]))
    for kwargs in ({}, {"parameters": {"bbox": (2, 3, 7, 9)}}, {"component": "data"}):
        mine, theirs = remote.get("img", visit=1, detector=2, **kwargs), local.get("img", visit=1, detector=2, **kwargs)
        assert type(mine) is type(theirs)
        assert np.array_equal(getattr(mine, "data", mine), getattr(theirs, "data", theirs))
    header = remote.get("img", visit=1, detector=2, component="header")
    assert header["NAXIS1"] == 20
    assert remote.get_metadata(remote.find_dataset("img", visit=1, detector=2)) == \
        local.get_metadata(local.find_dataset("img", visit=1, detector=2))


def test_download_with_ranges(served):
    local, url, token = served
    ref = local.put({"text": "x" * 5000}, "metrics", instrument="Cam", visit=2, detector=1)
    uri = local.get_uri(ref)
    with fsspec.open(uri, "rb") as stream:  # the oracle: the file itself, read by fsspec
        whole = stream.read()
    remote = Butler(url, token=token, collections="run/a")
    where = remote.get_uri(ref)
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(where, headers=headers).content == whole
    part = httpx.get(where, headers={**headers, "Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == whole[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(whole)}"
    assert httpx.get(where, headers={**headers, "Range": "bytes=-20"}).content == whole[-20:]
    assert httpx.get(where, headers={**headers, "Range": f"bytes={len(whole)}-"}).status_code == 416
    assert httpx.get(where).status_code == 401


def test_errors_are_the_local_ones(served, tmp_path):
    local, url, token = served
    remote = Butler(url, token=token, run="run/a", collections="run/a")
    with pytest.raises(MissingCollectionError):  # as locally: run/a is made by its first put
        remote.get("metrics", instrument="Cam", visit=5, detector=0)
    remote.put({}, "metrics", instrument="Cam", visit=1, detector=0)
    with pytest.raises(DatasetNotFoundError):
        remote.get("metrics", instrument="Cam", visit=5, detector=0)
    with pytest.raises(QueryError, match="column"):
        remote.query_datasets("metrics", "visit >")
    with pytest.raises(QueryError):
        list(remote.query_datasets("metrics", "nosuch.field = 3"))
    with pytest.raises(MissingCollectionError):
        list(remote.query_datasets("metrics", collections="nowhere"))
    for bad in (None, "sbt_0123456789abcdef.notthesecretatallnotatall", "junk"):
        with pytest.raises(AuthenticationError):
            Butler(url, token=bad) if bad else Butler(url, token="")
    spec = {"spec": {"kind": "datasets", "dataset_types": ["metrics"], "collections": ["run/a"],
                     "tree": '{"bogus": 1}', "where": "x"}}
    answer = httpx.post(f"{url}/api/v1/query/rows", json=spec, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 422 and "malformed query tree" in answer.json()["message"]
    assert httpx.get(f"{url}/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}).json()["paths"]
    with pytest.raises(ServerError):
        Butler("http://127.0.0.1:9/none", token=token)
    with pytest.raises(SkybutlerError, match="a publication through a server is named by one directory name"):
        remote.publish_catalog("metrics", tmp_path / "pub")  # publishing, declaring: tests/test_server_catalogs.py
    assert not (tmp_path / "pub").exists()
    assert remote.get_catalog_schema("metrics") is None  # schemas and loading work through a server
    with pytest.raises(SkybutlerError, match="'metrics' declares no schema"):
        remote.load_catalog("metrics", f"sqlite:///{tmp_path / 'x.db'}")
    assert not (tmp_path / "x.db").exists()


def test_ingest_and_remove_through_the_server(served, tmp_path):
    local, url, token = served
    remote = Butler(url, token=token, run="run/b", collections="run/b")
    source = tmp_path / "m.json"
    source.write_text('{"k": 3}')
    (ref,) = remote.ingest("metrics", [(source, {"instrument": "Cam", "visit": 3, "detector": 3})])
    assert source.exists() and local.get(ref) == {"k": 3}
    assert remote.remove([ref]) == 1
    assert not local.query_datasets("metrics", collections="run/b").any()


def test_concurrent_clients_lose_and_duplicate_nothing(served):
    from concurrent.futures import ThreadPoolExecutor

    local, url, token = served

    def client(number: int) -> list:
        remote = Butler(url, token=token, run=f"run/c{number % 2}", collections=f"run/c{number % 2}")
        made = [remote.put({"c": number, "i": i}, "metrics", instrument="Cam", visit=1 + i % 6, detector=number)
                for i in range(6)]
        seen = remote.query_datasets("metrics", f"detector = {number}").count()
        return [ref.id for ref in made] + [seen]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(client, range(4)))
    made = [i for r in results for i in r[:-1]]
    assert [r[-1] for r in results] == [6, 6, 6, 6]
    assert len(set(made)) == 24
    stored = local.query_datasets("metrics", collections=["run/c0", "run/c1"], find_first=False)
    assert sorted(r.id for r in stored) == sorted(made)
    assert sorted((local.get(r)["c"], local.get(r)["i"]) for r in stored) == [(c, i) for c in range(4) for i in range(6)]


def test_a_repository_of_its_own_universe(tmp_path):
    """A repository made with a universe of its own (the shipped one renamed, with a ``campaign``
    dimension added) is served: a remote butler builds that universe from the server's description
    and writes, reads and queries by the new dimension."""
    from importlib import resources

    import yaml

    config = yaml.safe_load(resources.files("skybutler.dimensions").joinpath("default_universe.yaml").read_text())
    config["name"], config["version"] = "survey", 1
    config["elements"]["campaign"] = {"key": {"name": "name", "type": "str", "length": 32},
                                      "fields": {"lead": "str"}}
    path = tmp_path / "survey_universe.yaml"
    path.write_text(yaml.safe_dump(config))
    local = Butler.create(tmp_path / "repo", universe=str(path))
    local.insert_records("campaign", [{"name": "deep", "lead": "ana"}, {"name": "wide", "lead": "bo"}])
    local.register_dataset_type("plan", ["campaign"], "Dict")
    access = Access(local.registry.access)
    access.grant("*", "*", "*", "read")
    token = access.create_token("ana")
    with running_server(local.root) as url:
        remote = Butler(url, token=token, run="u/ana/plans", collections="u/ana/plans")
        assert remote.universe.name == "survey" and "campaign" in remote.universe.elements
        remote.put({"fields": 12}, "plan", campaign="deep")
        assert remote.get("plan", campaign="deep") == {"fields": 12}
        assert [r.data_id["campaign"] for r in remote.query_datasets("plan")] == ["deep"]
        shown = remote.query_dimension_records("campaign", where="campaign.lead = 'bo'")
        assert [r["campaign"] for r in shown] == ["wide"]
    assert local.get("plan", campaign="deep", collections="u/ana/plans") == {"fields": 12}
    local.close()


def test_several_repositories_from_one_config_file(butler, make_butler, tmp_path, monkeypatch):
    """``skybutler serve --config FILE`` serves each repository the file names at the name it
    gives, with the file's settings (options on the command line win); a bad file is one line."""
    import uvicorn
    from click.testing import CliRunner

    from skybutler.cli.main import cli
    from skybutler.server.config import ENV, ServeConfig
    from skybutler.server.main import build

    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the configuration is the server's own; run on SQLite")
    other = make_butler("second")
    other.register_dataset_type("notes", ["instrument"], "Dict")
    tokens = {}
    for repo in (butler, other):
        access = Access(repo.registry.access)
        access.grant("*", "*", "*", "read")
        tokens[repo.root] = access.create_token("ana")
    config = tmp_path / "serve.yaml"
    config.write_text(f"repositories:\n  main: {butler.root}\n  second: {other.root.relative_to(tmp_path)}\n"
                      "port: 8123\nuser_concurrency: 2\nquery_timeout: 30\n")
    loaded = ServeConfig.load(config)
    assert loaded.repositories == {"main": str(butler.root), "second": str(other.root)}
    with running_server(None, app=build(loaded)) as url:
        first = Butler(f"{url}/main", token=tokens[butler.root])
        second = Butler(f"{url}/second", token=tokens[other.root])
        assert "metrics" in {t.name for t in first.query_dataset_types()}
        assert [t.name for t in second.query_dataset_types()] == ["notes"]
    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: ran.update(kwargs, app=app))
    monkeypatch.delenv(ENV, raising=False)
    result = CliRunner().invoke(cli, ["serve", "--config", str(config), "--port", "9000"])
    assert result.exit_code == 0, result.output
    assert ran["port"] == 9000 and ran["app"] == "skybutler.server.main:app"
    handed = ServeConfig.from_env()
    assert handed.repositories == loaded.repositories and handed.user_concurrency == 2
    assert handed.settings().query_timeout == 30 and handed.port == 9000 and not handed.settings().api_docs
    assert CliRunner().invoke(cli, ["serve", "--config", str(config), "--api-docs"]).exit_code == 0
    assert ServeConfig.from_env().settings().api_docs  # the interactive API page, off unless asked for
    for text, expected in [("repositories: {}\n", "repositories"), ("port: 80\n", "repositories"),
                           (f"repositories: {{x: {tmp_path}}}\n", "is not a repository"),
                           (f"repositories: {{main: {butler.root}}}\nportt: 1\n", "portt"),
                           ("repositories: [\n", "is not YAML")]:
        config.write_text(text)
        result = CliRunner().invoke(cli, ["serve", "--config", str(config)])
        assert result.exit_code == 1 and expected in result.output and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    other.close()


def test_a_fault_the_server_did_not_foresee_is_a_plain_500(make_butler):
    """An exception no handler knows: the API answers JSON naming nothing of the server's insides,
    a web page the error page, and both tell the client the connection closes (the server drops it)."""
    from fastapi.testclient import TestClient

    from skybutler.server.app import create_app

    butler = make_butler()
    app = create_app(butler.root)

    def boom() -> None:
        raise RuntimeError("secret detail of the server")

    app.add_api_route("/api/v1/boom", boom)
    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        api, page = client.get("/api/v1/boom"), client.get("/boom")
    assert api.status_code == page.status_code == 500
    assert api.json()["error"] == "ServerError" and "internal error" in api.json()["message"]
    assert "secret" not in api.text and "secret" not in page.text and "internal error" in page.text
    assert api.headers["connection"] == page.headers["connection"] == "close"


def test_a_definition_removed_through_one_server_is_gone_from_another(butler):
    """Two servers of one repository (as two worker processes are: each its own butlers and
    their remembered definitions): a dataset type and a collection removed and made anew, of
    another kind, through one are seen anew through the other at its next request (its
    ``definitions_recheck_seconds`` 0; by default within a second) -- no restart."""
    access = Access(butler.registry.access)
    access.add_user("boss", admin=True)
    token = access.create_token("boss")
    butler.register_dataset_type("notes", ["instrument", "visit"], "Dict")
    with running_server(butler.root) as one, running_server(butler.root, definitions_recheck_seconds=0) as two:
        first, second = Butler(one, token=token), Butler(two, token=token)
        second.put({"n": 1}, "notes", instrument="Cam", visit=1, run="u/boss/notes")
        second.collections.register("u/boss/c", "tagged")
        first.remove_runs(["u/boss/notes"])
        first.remove_dataset_type("notes")
        first.register_dataset_type("notes", ["instrument"], "Dict")
        first.collections.remove("u/boss/c")
        with pytest.raises(MissingCollectionError):
            Butler(two, token=token).collections.info("u/boss/c")
        first.collections.register("u/boss/c", "run")
        fresh = Butler(two, token=token)  # a new client: the server's view is what is tested
        assert fresh.get_dataset_type("notes").dimensions == ("instrument",)
        assert fresh.collections.info("u/boss/c").type.value == "RUN"
        ref = fresh.put({"n": 2}, "notes", instrument="Cam", run="u/boss/c")
        assert first.get(ref) == {"n": 2} and dict(ref.data_id.required) == {"instrument": "Cam"}


def test_an_error_names_no_path_of_the_servers(butler):
    """A file gone from the server's disk: the client's 404 names it as the datastore lays it out,
    never where the server keeps it (its repository, its datastore root)."""
    import os

    access = Access(butler.registry.access)
    access.add_user("boss", admin=True)
    with running_server(butler.root) as url:
        boss = Butler(url, token=access.create_token("boss"))
        ref = boss.put({"x": 1}, "metrics", instrument="Cam", visit=1, detector=0, run="u/boss/r")
        uri = butler.get_uri(ref)
        if not uri.startswith("file://"):
            butler.datastore.fs.rm(uri) if hasattr(butler.datastore, "fs") else pytest.skip("a local file to remove")
        else:
            os.unlink(uri.removeprefix("file://"))
        with pytest.raises(SkybutlerError) as caught:
            boss.get(ref)
        message = str(caught.value)
        assert caught.value.status == 404 and "u~/boss~/r/metrics" in message
        for private in (str(butler.root), butler.datastore.root, butler.datastore.root_uri):
            assert private not in message, (private, message)


def test_a_streamed_answer_names_no_path_of_the_servers(butler):
    """A long call whose answer streams (a sky-map registration, a publication) has sent its status
    before its work fails, so no exception handler sees the error: its error line names no path of
    the server's either, for a skybutler error and an unforeseen one alike."""
    import json

    from skybutler.server.routes_ingest import streamed
    from skybutler.server.state import ServerState

    state = ServerState(butler.root)
    root = str(state.root)
    try:
        for error in (SkybutlerError(f"cannot write {root}/.skybutler/part"), OSError(f"no room under {root}")):

            def work(progress, error=error):
                progress(1, 2)
                raise error

            lines = [json.loads(line) for line in streamed(work, state)]
            assert lines[0] == {"progress": [1, 2]} and set(lines[-1]) == {"error", "message"}, lines
            assert root not in lines[-1]["message"], lines[-1]
            assert (".skybutler/part" if isinstance(error, SkybutlerError) else "no room under <repository>") \
                in lines[-1]["message"], lines[-1]
    finally:
        state.close()
