"""What a user learns through the server of datasets they may not see (a RUN they may not read,
an embargo): nothing -- the provenance routes and the dataset routes answer such an ID exactly
as a random UUID, and the links of quantum records are judged all at once (one look-up however
many links), against the per-ID rule of ``authz.visible_ref`` as the oracle."""

from __future__ import annotations

import uuid

import httpx
import pytest

from server_helpers import running_server, visible_one_by_one
from skybutler.access import Access
from skybutler.registry.quantum_store import DatasetLink, QuantumRecord
from skybutler.remote import wire

pytest.importorskip("fastapi")

#: Inputs of the public quantum: readable to bob, or not.
SHOWN, HIDDEN = ("pub_a", "pub_b", "pub_c"), ("secret", "embargoed")


@pytest.fixture
def site(butler):
    """Datasets in a public RUN, a private one and an embargoed one; a public quantum reading all of
    them, a private one reading a public dataset; a server; bob reads public/* and night2/* (its
    metrics under an embargo for him)."""
    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the server's own rule, the same on every stack: run on SQLite")
    where = {"pub_a": ("public/in", 1), "pub_b": ("public/in", 2), "pub_c": ("public/in", 3),
             "secret": ("team/secret", 1), "embargoed": ("night2/run", 1), "out": ("public/out", 1),
             "secret_out": ("team/secret", 2)}
    refs = {name: butler.put({"n": i}, "metrics", instrument="Cam", visit=visit, detector=i % 4, run=run)
            for i, (name, (run, visit)) in enumerate(where.items())}

    def link(name: str, connection: str) -> DatasetLink:
        ref = refs[name]
        return DatasetLink(ref.id, "metrics", connection, dict(ref.data_id.required))

    store = butler.provenance.store
    store.ensure()
    store.insert([
        QuantumRecord(uuid.uuid4(), "public/out", "make", "Make", {"instrument": "Cam"}, "succeeded",
                      inputs=[link(n, "input") for n in (*SHOWN, *HIDDEN)], outputs=[link("out", "output")]),
        QuantumRecord(uuid.uuid4(), "team/secret", "hide", "Hide", {"instrument": "Cam"}, "succeeded",
                      inputs=[link("pub_a", "input")], outputs=[link("secret_out", "output")])])
    access = Access(butler.registry.access)
    access.add_user("alice", groups=["team"])
    access.add_user("bob")
    access.grant("group", "team", "*", "read")
    access.grant("user", "bob", "public/*", "read")
    access.grant("user", "bob", "night2/*", "read")
    access.add_embargo("metrics", "night2/*", 1e5, ["team"])
    tokens = {name: access.create_token(name) for name in ("alice", "bob")}
    with running_server(butler.root) as url:
        yield butler, url, tokens, refs


def _linked(links: list[dict]) -> set[str]:
    return {str(wire.decode(link["dataset_id"])) for link in links}


def _http(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{url}/api/v1/", headers={"Authorization": f"Bearer {token}"})


def _answer(http: httpx.Client, method: str, path: str, dataset_id: str) -> tuple[int, str]:
    """Status and body of a request naming ``dataset_id``, the ID itself written as ``<id>``."""
    if method == "GET":
        answer = http.get(path.format(id=dataset_id))
    else:
        answer = http.post(path, json={"id": dataset_id})
    return answer.status_code, answer.text.replace(dataset_id, "<id>")


CALLS = [("POST", "provenance/producer"), ("POST", "provenance/consumers"), ("POST", "provenance/tree"),
         ("POST", "provenance/recompute"), ("POST", "datasets/find"), ("POST", "datasets/get"),
         ("POST", "datasets/exists"), ("POST", "datasets/metadata"), ("GET", "datasets/{id}/url"),
         ("GET", "datasets/{id}/file")]


def test_a_hidden_dataset_answers_as_a_random_uuid(site):
    butler, url, tokens, refs = site
    with _http(url, tokens["bob"]) as bob, _http(url, tokens["alice"]) as alice:
        for method, path in CALLS:
            absent = _answer(bob, method, path, str(uuid.uuid4()))
            assert absent[0] in (200, 404), (path, absent)
            for name in HIDDEN:
                assert _answer(bob, method, path, str(refs[name].id)) == absent, (path, name)
                assert _answer(alice, method, path, str(refs[name].id)) != absent or path.endswith("recompute")
        states = bob.post("datasets/states", json={"ids": [str(refs[n].id) for n in (*SHOWN, *HIDDEN)]}).json()
        assert set(states) == {str(refs[n].id) for n in SHOWN}


def test_provenance_links_are_those_each_dataset_page_shows(site, monkeypatch):
    """Each answer's links against the per-ID oracle; each answer's links judged in one look-up."""
    butler, url, tokens, refs = site
    from skybutler.registry.registry import Registry as registry
    lookups: list[int] = []
    for name in ("refs_by_id", "owners_by_id"):
        original = getattr(registry, name)

        def counted(self, ids, *args, _original=original, **kwargs):
            ids = list(ids)
            lookups.append(len(ids))
            return _original(self, ids, *args, **kwargs)

        monkeypatch.setattr(registry, name, counted)
    user = Access(butler.registry.access).user("bob")

    everything = [r.id for r in refs.values()]
    assert visible_one_by_one(butler, user, everything) == {refs[n].id for n in (*SHOWN, "out")}
    with _http(url, tokens["bob"]) as bob:
        lookups.clear()
        producer = bob.post("provenance/producer", json={"id": str(refs["out"].id)}).json()
        assert _linked(producer["inputs"]) == {str(refs[n].id) for n in SHOWN}
        assert "log" not in producer
        assert len(lookups) <= 3  # the ID asked for (type and run, then ref), then the links at once
        lookups.clear()
        consumers = bob.post("provenance/consumers", json={"id": str(refs["pub_a"].id)}).json()
        assert [q["task_label"] for q in consumers] == ["make"]  # not the quantum of the private RUN
        assert len(lookups) <= 3
        quanta = bob.post("provenance/quanta", json={}).json()
        assert [q["task_label"] for q in quanta] == ["make"] and quanta[0]["inputs"] == consumers[0]["inputs"]
        tree = bob.post("provenance/tree", json={"id": str(refs["out"].id)}).json()["tree"]
        assert {n["dataset_id"] for n in tree["inputs"]} == {str(refs[n].id) for n in SHOWN}
        assert tree["quantum"]["inputs"] == producer["inputs"]
    with _http(url, tokens["alice"]) as alice:  # who may see everything sees every link
        producer = alice.post("provenance/producer", json={"id": str(refs["out"].id)}).json()
        assert _linked(producer["inputs"]) == {str(refs[n].id) for n in (*SHOWN, *HIDDEN)}
