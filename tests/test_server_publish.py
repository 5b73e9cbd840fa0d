"""publish-catalog through a server: the server writes the HATS collection in its own repository
from the datasets the caller may see, and searches through the server find it.

Oracles: the same publication made locally on a twin repository holding the same datasets (the
same report, the same partition files, the same search answers), brute force for what a search
finds, ``hats``'s strict validation and ``lsdb`` reading the server's tree; embargoes and rights
judged by hand.  Refusals leave the repository exactly as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from conftest import populate
from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import PermissionDeniedError, PublicationError

pytest.importorskip("fastapi")
hats = pytest.importorskip("hats")
lsdb = pytest.importorskip("lsdb")

from hats.io.validation import is_valid_catalog  # noqa: E402

from test_catalog_publish import _contents, _haversine, _ids, _table  # noqa: E402
from test_server_embargo import visit_end  # noqa: E402

ROWS = 600
MARGIN = 1800.0
#: Where the server writes a publication (the server's choice; tests look there as its machine).
SERVED = Path(".skybutler") / "publications"
#: The report's figures that must equal the local publication's.
FIGURES = ("name", "datasets_added", "rows_added", "total_rows", "partitions", "partitions_written",
           "margin_partitions_written", "datasets", "notes")


def _catalogs(butler: Butler, detectors: range, seed: int) -> None:
    """``src`` catalogs of detectors (records made as needed) into r1: the same for the same seed."""
    butler.insert_records("detector", [{"instrument": "Cam", "id": i} for i in detectors], skip_existing=True)
    rng = np.random.default_rng(seed)
    for i in detectors:
        butler.put(_table(rng, i, ROWS), "src", instrument="Cam", detector=i, run="r1")


def _repo(make_butler, name: str, n: int) -> Butler:
    butler = make_butler(name)
    butler.insert_records("instrument", [{"name": "Cam", "detector_max": 1000}])
    butler.register_dataset_type("src", ["instrument", "detector"], "Table")
    _catalogs(butler, range(n), seed=5)
    return butler


def _figures(report) -> tuple:
    return tuple(getattr(report, f) for f in FIGURES)


def _snapshot(butler: Butler) -> tuple:
    """What a refused publication must leave as it was: collections, datasets, the files at the root."""
    root = Path(butler.root)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.name.startswith("registry.sqlite3"))
    names = sorted(c.name for c in butler.collections.query("*"))
    ids = sorted(str(r.id) for t in butler.query_dataset_types()
                 for r in butler.query_datasets(t.name, collections=names, find_first=False))
    return names, ids, files


def _tokens(butler: Butler, users: dict[str, list[str]], grants: list[tuple[str, str, str]]) -> dict[str, str]:
    access = Access(butler.registry.access)
    for user, groups in users.items():
        access.add_user(user, groups=groups)
    for user, pattern, level in grants:
        access.grant("user", user, pattern, level)
    return {user: access.create_token(user) for user in users}


def test_a_publication_through_a_server_is_the_one_made_locally(make_butler, tmp_path, monkeypatch):
    """The same call on a URL and on a twin repository: the same report, partition files and
    searches, first, after new datasets (an update) and with nothing new; hats validates the
    server's tree and lsdb reads the rows stored; the manifest names no path of the server."""
    served, twin = _repo(make_butler, "served", 5), _repo(make_butler, "twin", 5)
    tokens = _tokens(served, {"ana": []}, [("ana", "r1", "read"), ("ana", "publications/*", "write")])
    settings = {"max_rows": 500, "margin_arcsec": MARGIN}
    tree, twin_tree = Path(served.root) / SERVED / "deep", tmp_path / "twin_pubs" / "deep"
    with running_server(served.root) as url:
        ana = Butler(url, token=tokens["ana"], collections="r1")
        for step in ("first", "update", "nothing new"):
            told = []
            remote = ana.publish_catalog("src", "deep", progress=lambda done, total: told.append((done, total)),
                                         **settings)
            local = twin.publish_catalog("src", twin_tree, collections="r1", **settings)
            assert _figures(remote) == _figures(local), step
            assert remote.path == Path("deep")
            if step == "nothing new":
                assert remote.ref is None and remote.notes == ["nothing new to publish"] and told == []
                break
            assert told[-1] == (remote.datasets_added, remote.datasets_added)
            assert remote.ref.dataset_type.name == "src_hats" and remote.ref.run.startswith("publications/deep/")
            served_files, twin_files = _contents(tree), _contents(twin_tree)
            assert served_files.keys() == twin_files.keys() and len(served_files) > 3
            assert all(served_files[k].equals(twin_files[k]) for k in twin_files)
            assert is_valid_catalog(tree, strict=True)
            rows = pa.concat_tables([served.get(r) for r in served.query_datasets("src", collections="r1")])
            frame = lsdb.open_catalog(tree).compute()
            assert sorted(frame["id"].tolist()) == sorted(rows["id"].to_pylist())
            for ra, dec, radius in [(0, 0, 4), (10, 88, 6), (200, -89, 3), (120, 10, 40)]:
                got = ana.cone_search("src", ra, dec, radius, collections=remote.ref.run)
                assert got.equals(twin.cone_search("src", ra, dec, radius, collections=local.ref.run))
                inside = _haversine(ra, dec, rows["ra"].to_numpy(), rows["dec"].to_numpy()) <= radius
                assert _ids(got) == sorted(rows["id"].to_numpy()[inside].tolist())
            manifest = ana.get(remote.ref)
            assert manifest["path"] == str(SERVED / "deep") and str(served.root) not in json.dumps(manifest)
            assert manifest["collections"] == ["r1"]
            if step == "first":  # then an update: two new catalogs, the same in both repositories
                for butler in (served, twin):
                    _catalogs(butler, range(5, 7), seed=9)

        # the command line takes the URL; DEST is then the publication's name
        monkeypatch.setenv("SKYBUTLER_TOKEN", tokens["ana"])
        said = CliRunner().invoke(cli, ["publish-catalog", url, "src", "viacli", "-c", "r1", "--no-progress"])
        assert said.exit_code == 0, said.output
        assert "published 7 datasets (4200 rows) into viacli:" in said.output
        assert "registered as src_hats in publications/viacli/" in said.output
        assert is_valid_catalog(Path(served.root) / SERVED / "viacli", strict=True)


def test_who_may_publish_and_which_names_are_refused(make_butler, tmp_path):
    """A user who may not write the publication's RUN gets 403; a name that is not one plain
    directory name, a RUN outside publications/NAME/ or another catalog name get 422 naming the
    problem; after each the repository is exactly as it was and nothing was written anywhere."""
    served = _repo(make_butler, "served", 2)
    tokens = _tokens(served, {"ana": [], "rita": []},
                     [("ana", "r1", "read"), ("ana", "publications/*", "write"), ("rita", "*", "read")])
    before = _snapshot(served)
    hostile = ["../x", "..", ".", "", "/tmp/x", str(tmp_path / "evil"), "a/b", "a\\b", ".hidden", "-x", "x\x00y",
               "a b", "caf\u00e9", "x" * 129, "deep/../../x"]
    with running_server(served.root, access_recheck_seconds=0) as url:
        rita = Butler(url, token=tokens["rita"], collections="r1")
        with pytest.raises(PermissionDeniedError, match="user 'rita' may not write to collection 'publications/deep/"):
            rita.publish_catalog("src", "deep")
        ana = Butler(url, token=tokens["ana"], collections="r1")
        for name in hostile:
            with pytest.raises(PublicationError, match="named by one directory name"):
                ana.publish_catalog("src", name)
        body = {"dataset_type": "src", "query": {"spec": {"kind": "datasets", "dataset_types": ["src"],
                                                          "collections": ["r1"]}}}
        for name in hostile:
            answer = httpx.post(f"{url}/api/v1/catalogs/publish", json={**body, "destination": name},
                                headers={"Authorization": f"Bearer {tokens['ana']}"})
            assert answer.status_code == 422 and answer.json()["error"] == "PublicationError", name
        answer = httpx.post(f"{url}/api/v1/catalogs/publish", json={**body, "destination": "deep"},
                            headers={"Authorization": f"Bearer {tokens['rita']}"})
        assert answer.status_code == 403
        with pytest.raises(PublicationError, match="in a RUN under publications/deep/"):
            ana.publish_catalog("src", "deep", run="u/ana/pubs")
        with pytest.raises(PublicationError, match="in a RUN under publications/deep/"):
            ana.publish_catalog("src", "deep", run="publications/deep2/x")
        with pytest.raises(PublicationError, match="leave name out"):
            ana.publish_catalog("src", "deep", name="../other")
        assert _snapshot(served) == before
        assert not (tmp_path / "evil").exists() and not (Path(served.root) / SERVED).exists()
        # the same user with the rights publishes; errors found while publishing come back as locally
        assert ana.publish_catalog("src", "deep", run="publications/deep/mine").ref.run == "publications/deep/mine"
        with pytest.raises(PublicationError, match="the publication 'deep' was published with other settings") \
                as refused:
            ana.publish_catalog("src", "deep", margin_arcsec=5)
        assert str(Path(served.root)) not in str(refused.value)  # no path of the server's
        with pytest.raises(PublicationError, match="nothing to publish"):
            ana.publish_catalog("src", "none", where="detector > 500")
        with pytest.raises(PublicationError, match="a Dict dataset type, not a catalog"):
            served.register_dataset_type("notes", [], "Dict")
            ana.publish_catalog("notes", "notes")


@pytest.fixture
def embargoed(make_butler):
    """src catalogs of visits 1-3 in r1, under an embargo of 80 hours for those outside 'rights',
    and visit 2's in other/run (no embargo there), chained as 'all'."""
    butler = make_butler("served")
    if butler.registry.db.dialect != "sqlite":
        pytest.skip("embargoes are judged by the server, the same on every stack; run on SQLite")
    populate(butler)
    butler.register_dataset_type("src", ["instrument", "visit", "detector"], "Table")
    rng = np.random.default_rng(4)
    refs = {(run, v): butler.put(_table(rng, v, ROWS), "src", instrument="Cam", visit=v, detector=0, run=run)
            for run, v in [("r1", 1), ("r1", 2), ("r1", 3), ("other/run", 2)]}
    butler.collections.set_chain("all", ["r1", "other/run"])
    grants = [(u, p, level) for u in ("pat", "rita") for p, level in (("*", "read"), ("publications/*", "write"))]
    tokens = _tokens(butler, {"pat": [], "rita": ["rights"]}, grants)
    Access(butler.registry.access).add_embargo("src", "r1", 80, ["rights"])
    now = visit_end(1) + 80 * 3600 + 1  # visit 1 is out of its embargo; 2 and 3 are not
    with running_server(butler.root, clock=lambda: now) as url:
        yield butler, url, tokens, refs


def _published(butler: Butler, report) -> set:
    return {link.dataset_id for link in butler.provenance.producer(report.ref).inputs}


def test_embargoed_datasets_stay_out_of_a_publication_for_those_who_may_not_see_them(embargoed):
    """Pat (no data rights) publishes what he may see -- visit 1 of r1, and visit 2 of other/run,
    where the hidden r1 one falls through -- and Rita everything r1 holds.  Pat may not update
    Rita's publication (it holds what he may not see), only rebuild it from what he sees."""
    served, url, tokens, refs = embargoed
    pat = Butler(url, token=tokens["pat"], collections="all")
    rita = Butler(url, token=tokens["rita"], collections="all")
    his, hers = pat.publish_catalog("src", "pats"), rita.publish_catalog("src", "ritas")
    expected_his = {refs["r1", 1].id, refs["other/run", 2].id}
    assert _published(served, his) == expected_his
    assert _published(served, hers) == {refs["r1", v].id for v in (1, 2, 3)}
    rows = pa.concat_tables([served.get(refs[key]) for key in (("r1", 1), ("other/run", 2))])
    assert _ids(pat.cone_search("src", 0, 0, 180, collections=his.ref.run)) == sorted(rows["id"].to_pylist())
    assert (his.total_rows, hers.total_rows) == (2 * ROWS, 3 * ROWS)
    tree = Path(served.root) / SERVED / "ritas"
    kept = _contents(tree)
    with pytest.raises(PermissionDeniedError, match="the publication 'ritas' holds datasets you may not see"):
        pat.publish_catalog("src", "ritas")
    assert _contents(tree).keys() == kept.keys() and all(_contents(tree)[k].equals(kept[k]) for k in kept)
    rebuilt = pat.publish_catalog("src", "ritas", rebuild=True)
    assert _published(served, rebuilt) == expected_his and rebuilt.total_rows == 2 * ROWS


def test_the_server_answers_others_while_it_publishes(make_butler, monkeypatch):
    """A publication runs beside the server's other work: while one is held half-way (gathering),
    other requests are answered, and a second publication of the same name is refused, naming
    the publication (not the server's directory); the first then completes."""
    import threading

    from skybutler.catalogs import publish

    served = _repo(make_butler, "served", 2)
    tokens = _tokens(served, {"ana": []}, [("ana", "r1", "read"), ("ana", "publications/*", "write")])
    entered, release = threading.Event(), threading.Event()
    gather = publish._gather

    def held(*args, **kwargs):
        entered.set()
        assert release.wait(60)
        return gather(*args, **kwargs)

    monkeypatch.setattr(publish, "_gather", held)
    with running_server(served.root) as url:
        ana = Butler(url, token=tokens["ana"], collections="r1")
        done = []
        first = threading.Thread(target=lambda: done.append(ana.publish_catalog("src", "deep")))
        first.start()
        try:
            assert entered.wait(60)
            other = Butler(url, token=tokens["ana"], collections="r1")
            assert other.query_datasets("src").count() == 2  # answered while the publication waits
            with pytest.raises(PublicationError, match="another process is publishing into the publication 'deep'") \
                    as refused:
                other.publish_catalog("src", "deep")
            assert str(Path(served.root)) not in str(refused.value)
        finally:
            release.set()
            first.join(60)
        assert done and done[0].total_rows == 2 * ROWS
