"""Searches of a published HATS catalog through a server: the rows a brute-force scan finds,
only for users who may read the publication's collection, and never from a manifest that
publish_catalog did not write."""

from __future__ import annotations

import pytest

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.catalogs.search import box_search, polygon_search
from skybutler.errors import DatasetNotFoundError, MissingCollectionError, PublicationError, SearchError, SkybutlerError
from test_catalog_load import Target, catalog, expected_rows, repo  # noqa: F401 -- the fixture, shared
from test_catalog_publish import _haversine, _ids, _make_repo

pytest.importorskip("fastapi")
pytest.importorskip("hats")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import pyarrow as pa

    root = tmp_path_factory.mktemp("served_catalogs")
    local = _make_repo(root / "repo", n=3)
    local.publish_catalog("src", root / "pub", collections="r1", run="pub/src", max_rows=1000)
    rows = pa.concat_tables([local.get(r) for r in local.query_datasets("src", collections="r1")])
    access = Access(local.registry.access)
    access.add_user("pat")
    access.add_user("rita")
    access.grant("user", "pat", "pub/*", "read")
    tokens = {name: access.create_token(name) for name in ("pat", "rita")}
    with running_server(local.root) as url:
        yield local, url, tokens, rows, root / "pub"
    local.close()


def test_searches_through_a_server_match_brute_force(served):
    local, url, tokens, rows, pub = served
    pat = Butler(url, token=tokens["pat"], collections="pub/src")
    ra, dec = rows["ra"].to_numpy(), rows["dec"].to_numpy()
    for c_ra, c_dec, radius in [(0, 0, 3), (10, 88, 5), (200, 10, 60)]:
        got = pat.cone_search("src", c_ra, c_dec, radius)
        assert _ids(got) == sorted(rows["id"].to_numpy()[_haversine(c_ra, c_dec, ra, dec) <= radius].tolist())
        assert got.equals(local.cone_search("src", c_ra, c_dec, radius, collections="pub/src"))
    assert pat.cone_search("src", 0, 0, 3, columns=["id"]).column_names == ["id"]
    assert len(pat.cone_search("src", 0, 0, 3, as_="pandas")) == len(_ids(pat.cone_search("src", 0, 0, 3)))
    assert pat.cone_search("src", 0, 0, 1e-6).num_rows == 0
    assert _ids(pat.box_search("src", (350, 10), (-5, 5))) == _ids(box_search(pub, (350, 10), (-5, 5)))
    triangle = [(10, 0), (40, 0), (25, 30)]
    assert _ids(pat.polygon_search("src", triangle)) == _ids(polygon_search(pub, triangle)) != []
    with pytest.raises(SearchError, match="radius"):
        pat.cone_search("src", 0, 0, -1)
    with pytest.raises(PublicationError, match="named by one directory name"):  # the server chooses where
        pat.publish_catalog("src", "/tmp/elsewhere", collections="r1")


def test_a_publication_the_user_may_not_see_or_that_was_forged(served):
    local, url, tokens, rows, pub = served
    rita = Butler(url, token=tokens["rita"])
    with pytest.raises(MissingCollectionError, match="no collection named 'pub/src'"):  # as if it did not exist
        rita.cone_search("src", 0, 0, 3, collections="pub/src")
    pat = Butler(url, token=tokens["pat"])
    pat.collections.register("u/pat")
    with pytest.raises(DatasetNotFoundError, match="src_hats dataset"):
        pat.cone_search("src", 0, 0, 3, collections="u/pat")
    pat.put({"path": str(pub)}, "src_hats", {}, run="u/pat/fake")  # a Dict under the publication's type name
    with pytest.raises(PublicationError, match="not written by publish_catalog"):
        pat.cone_search("src", 0, 0, 3, collections="u/pat/fake")


def test_load_catalog_on_a_url_loads_what_the_user_may_see(repo, tmp_path, monkeypatch):  # noqa: F811
    """load-catalog given a server URL: the rows of the datasets the user may see, read through
    the server, loaded into the user's own database -- the rows pyarrow reads from the stored files."""
    import json

    from click.testing import CliRunner

    from skybutler.cli.main import cli

    repo.put(catalog(9, 12), "src", instrument="Cam", detector=1, run="u/bob/run")  # bob's: ahead of r1's in the chain
    repo.collections.set_chain("all", ["u/bob/run", "r1"])
    access = Access(repo.registry.access)
    access.add_user("alice")
    access.add_user("bob")
    access.grant("*", "*", "r1", "read")
    access.grant("*", "*", "all", "read")
    tokens = {name: access.create_token(name) for name in ("alice", "bob")}
    with running_server(repo.root) as url:
        monkeypatch.setenv("SKYBUTLER_TOKEN", tokens["alice"])
        target = Target("sqlite", tmp_path / "alice")
        (tmp_path / "alice").mkdir()
        done = CliRunner().invoke(cli, ["load-catalog", url, "src", target.url, "-c", "all"])
        assert done.exit_code == 0, done.output
        assert "loaded 215 rows of 5 dataset(s) into src" in done.output
        assert target.rows() == expected_rows(repo)  # r1's detector 1: bob's is not there for alice
        shown = CliRunner().invoke(cli, ["catalog-schema", url, "src", "--json"])
        assert shown.exit_code == 0 and [c["name"] for c in json.loads(shown.stdout)][:3] == ["id", "ra", "dec"]
        refused = CliRunner().invoke(cli, ["load-catalog", url, "src", target.url, "-c", "u/bob/run"])
        assert refused.exit_code == 1 and "no collection named 'u/bob/run'" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        bobs = Butler(url, token=tokens["bob"]).load_catalog("src", f"sqlite:///{tmp_path / 'bob.db'}",
                                                              collections="all")
        assert (bobs.datasets_loaded, bobs.rows_loaded) == (5, 215 - 41 + 12)  # his detector 1 instead of r1's


def test_declare_catalog_schema_on_a_url_matches_a_local_declaration(make_butler, tmp_path, monkeypatch):
    """An administrator declares a schema through the server, with the same facade call and CLI
    as locally (a twin repository is the oracle: the same stored schema and versions); a user who
    is not one gets 403 and nothing is written, as does malformed Felis sent by hand."""
    import httpx
    from click.testing import CliRunner

    from skybutler.cli.main import cli
    from test_catalog_load import SCHEMA

    served, twin = make_butler("served"), make_butler("twin")
    for b in (served, twin):
        b.register_dataset_type("src", ["instrument", "detector"], "Table")
    (tmp_path / "survey.yaml").write_text(SCHEMA)
    (tmp_path / "v2.yaml").write_text(SCHEMA.replace("PSF flux.", "Calibrated PSF flux."))
    access = Access(served.registry.access)
    access.add_user("boss", admin=True)
    access.add_user("ana")
    access.grant("user", "ana", "*", "write")
    tokens = {name: access.create_token(name) for name in ("boss", "ana")}
    runner = CliRunner()
    with running_server(served.root, access_recheck_seconds=0) as url:
        monkeypatch.setenv("SKYBUTLER_TOKEN", tokens["ana"])
        refused = runner.invoke(cli, ["declare-catalog-schema", url, "src", str(tmp_path / "survey.yaml")])
        assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1, refused.output
        assert "only a repository administrator may declare the schema of 'src'" in refused.output
        assert served.get_catalog_schema("src") is None and served.catalog_schema_versions("src") == []
        with pytest.raises(SkybutlerError, match="only a repository administrator"):
            Butler(url, token=tokens["ana"]).declare_catalog_schema("src", tmp_path / "survey.yaml")
        forged = httpx.post(f"{url}/api/v1/catalogs/schemas/src", json={"felis": "{not json", "table": "x"},
                            headers={"Authorization": f"Bearer {tokens['boss']}"})
        assert forged.status_code == 422 and served.get_catalog_schema("src") is None

        monkeypatch.setenv("SKYBUTLER_TOKEN", tokens["boss"])
        for args in (["src", str(tmp_path / "survey.yaml")], ["src", str(tmp_path / "survey.yaml")],
                     ["src", str(tmp_path / "v2.yaml"), "--new-version"]):
            remote = runner.invoke(cli, ["declare-catalog-schema", url, *args])
            local = runner.invoke(cli, ["declare-catalog-schema", str(twin.root), *args])
            assert remote.exit_code == local.exit_code == 0, remote.output
            assert remote.output == local.output
        assert "already declares this schema (version 1)" in remote.output or "schema version 2" in remote.output
        boss = Butler(url, token=tokens["boss"])
        assert boss.declare_catalog_schema("src", tmp_path / "v2.yaml") == twin.declare_catalog_schema(
            "src", tmp_path / "v2.yaml") == 2
    assert [(s.version, s.table, s.felis) for s in served.catalog_schema_versions("src")] == \
        [(s.version, s.table, s.felis) for s in twin.catalog_schema_versions("src")]
    assert len(served.catalog_schema_versions("src")) == 2
