"""The limit on the IDs one request may list (``wire.MAX_IDS``): the server refuses a longer list
with a 413 naming the field and the limit, leaving the repository as it was, while a remote
butler splits a longer call itself (writes still all or none)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.errors import DatasetNotFoundError
from skybutler.models import CollectionType
from skybutler.remote import wire
from skybutler.remote.wire import MAX_IDS
from skybutler.repository_transfer import CHUNK

pytest.importorskip("fastapi")


@pytest.fixture
def served(butler):
    """Five datasets alice may write, one in a RUN she may not read, and a server."""
    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the server's own checks, the same on every stack: run on SQLite")
    refs = [butler.put({"i": i}, "metrics", instrument="Cam", visit=1, detector=i, run="u/alice/run")
            for i in range(4)]
    hidden = butler.put({"i": 9}, "metrics", instrument="Cam", visit=2, detector=0, run="u/bob/run")
    access = Access(butler.registry.access)
    access.add_user("alice")
    access.add_user("bob")
    token = access.create_token("alice")
    with running_server(butler.root) as url:
        yield butler, url, token, refs, hidden


def _too_many(known: uuid.UUID) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(MAX_IDS)] + [str(known)]


ROUTES = [
    ("datasets/remove", lambda ids: {"ids": ids}, "ids"),
    ("runs/remove", lambda ids: {"runs": ids}, "runs"),
    ("datasets/states", lambda ids: {"ids": ids}, "ids"),
    ("collections/associate", lambda ids: {"name": "tagged", "ids": ids}, "ids"),
    ("collections/certify", lambda ids: {"name": "calib", "ids": ids}, "ids"),
    ("retention/purge", lambda ids: {"ids": ids}, "ids"),
    ("retention/estimate", lambda ids: {"ids": ids}, "ids"),
    ("export", lambda ids: {"ids": ids}, "ids"),
    ("export/files", lambda ids: {"ids": ids}, "ids"),
    ("access/tokens/revoke", lambda ids: {"token_ids": ids}, "token_ids"),
    ("import/present", lambda ids: {"datasets": [{"id": i} for i in ids]}, "datasets"),
    ("datasets/find_many", lambda ids: {"dataset_type": "metrics", "data_ids": [{"i": i} for i in ids]}, "data_ids"),
]


def test_a_list_above_the_limit_is_refused_by_name(served):
    butler, url, token, refs, _ = served
    with httpx.Client(base_url=f"{url}/api/v1/", headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.get("info").json()["max_ids"] == MAX_IDS
        assert CHUNK <= MAX_IDS  # a remote export's chunks fit
        for path, body, field in ROUTES:
            answer = http.post(path, json=body(_too_many(refs[0].id)))
            assert answer.status_code == 413, (path, answer.text[:300])
            assert answer.json() == {"error": "RequestTooLarge", "message": (
                f"{field} lists {MAX_IDS + 1} items; a request lists at most {MAX_IDS} (the server's max_ids): "
                "send them in several requests (a remote butler does so itself)")}
        # the same inside a batch, and a batch of operations each under the limit is taken
        op = {"method": "POST", "path": "datasets/remove", "json": {"ids": _too_many(refs[0].id)}}
        answer = http.post("batch", content=wire.pack({"operations": [op]}, []))
        assert answer.status_code == 413 and "ids lists 20001 items" in answer.json()["message"]
        # quantum records naming more IDs than the limit
        link = {"dataset_id": str(refs[0].id), "dataset_type": "metrics", "connection": "c", "data_id": {}}
        record = {"quantum_id": str(uuid.uuid4()), "run": "u/alice/run", "task_label": "t", "task_class": "T",
                  "data_id": {}, "status": "succeeded", "inputs": [link] * 1000, "outputs": []}
        answer = http.post("provenance/record", json={"records": [record] * 21})
        assert answer.status_code == 413, answer.text[:300]
        assert answer.json()["message"].startswith("these quantum records name 21000 dataset IDs; a request "
                                                    f"names at most {MAX_IDS}")
        # exactly the limit is taken
        answer = http.post("datasets/states", json={"ids": _too_many(refs[0].id)[1:]})
        assert answer.status_code == 200 and list(answer.json()) == [str(refs[0].id)]
    assert [r.id for r in butler.query_datasets("metrics", collections=["u/alice/run"])] == [r.id for r in refs]


def test_a_remote_butler_splits_long_calls(served, monkeypatch):
    """50,000 IDs in one call of the Python API work (split under the server's limit); writes
    split in chunks are still one transaction: a hidden dataset in the last chunk leaves all as
    they were."""
    butler, url, token, refs, hidden = served
    alice = Butler(url, token=token)
    try:
        many = [uuid.uuid4() for _ in range(50_000)] + [refs[1].id]
        assert alice.retention.states(many) == {refs[1].id: "stored"}
        transport = alice._remote
        sent: list[str] = []
        send = transport._send
        monkeypatch.setattr(transport, "_send", lambda method, path, **kw: sent.append(path) or send(method, path, **kw))
        monkeypatch.setattr(transport, "max_ids", 2)
        assert alice.retention.states(refs) == {r.id: "stored" for r in refs}
        assert sent == ["datasets/states"] * 2
        alice.collections.register("u/alice/tagged", CollectionType.TAGGED)
        sent.clear()
        alice.collections.associate("u/alice/tagged", refs[:3])
        assert sent == ["batch"]  # three IDs, two operations, one transaction
        assert {r.id for r in alice.query_datasets("metrics", collections=["u/alice/tagged"])} == \
            {r.id for r in refs[:3]}
        with pytest.raises(DatasetNotFoundError, match=f"no dataset with ID {hidden.id}"):
            alice.remove([*refs, hidden])  # the hidden one is in the third chunk
        assert butler.query_datasets("metrics", collections=["u/alice/run"]).count() == 4
        with alice.transaction():  # inside a block the chunks join its batch
            alice.remove(refs[:3])
        assert butler.query_datasets("metrics", collections=["u/alice/run"]).count() == 1
        sent.clear()
        assert alice.remove(refs[3:]) == 1 and sent == ["datasets/remove"]
    finally:
        alice.close()


def test_the_parts_of_a_retention_call_come_alone_and_alike(served):
    """The server joins parts of one retention call only: not beside other writes (retention
    commits on its own), not parts that differ in more than their IDs, and each part capped."""
    butler, url, token, refs, _ = served

    def batch(*operations):
        return http.post("batch", content=wire.pack({"operations": list(operations)}, []))

    purge = {"method": "POST", "path": "retention/purge", "json": {"ids": [str(refs[0].id)]}}
    with httpx.Client(base_url=f"{url}/api/v1/", headers={"Authorization": f"Bearer {token}"}) as http:
        mixed = batch({"method": "POST", "path": "datasets/remove", "json": {"ids": [str(refs[1].id)]}}, purge)
        assert mixed.status_code == 422 and "the parts of a retention call (POST retention/...) are sent alone" \
            in mixed.json()["message"]
        forced = {**purge, "json": {"ids": [str(refs[1].id)], "force": True}}
        differing = batch(purge, forced)
        assert differing.status_code == 422 and differing.json()["message"] == (
            "malformed batch: the parts of one retention/purge call differ in more than their IDs")
        assert batch(purge, {**purge, "json": {"ids": _too_many(refs[0].id)}}).status_code == 413
        refused = batch(purge, {**purge, "json": {"ids": [str(refs[1].id)]}})  # alike: the one purge, admins only
        assert refused.status_code == 403 and "only a repository administrator" in refused.json()["message"]
    assert butler.retention.states(refs) == {r.id: "stored" for r in refs}
    assert butler.query_datasets("metrics", collections=["u/alice/run"]).count() == 4


def test_quantum_records_are_split_by_the_ids_they_name():
    """Brute force: every part names at most the limit (but a record alone), in order."""
    from skybutler.registry.quantum_store import DatasetLink, QuantumRecord
    from skybutler.remote.provenance import _by_ids_named

    def record(n: int) -> QuantumRecord:
        links = [DatasetLink(uuid.uuid4(), "t", "c", {}) for _ in range(n)]
        return QuantumRecord(uuid.uuid4(), "run", "label", "Task", {}, "succeeded", inputs=links)

    records = [record(n) for n in (0, 3, 2, 7, 1, 0, 0, 4, 4)]
    for limit in (1, 2, 4, 5, 8, 100):
        parts = _by_ids_named(records, limit)
        assert [r for part in parts for r in part] == records
        for part in parts:
            named = sum(len(r.inputs) for r in part)
            assert len(part) <= limit and (named <= limit or len(part) == 1)


def test_an_import_is_sent_in_batches_of_at_most_max_ids_datasets(tmp_path):
    """So that a resumed import's question (``import/present``) about a batch fits the limit."""
    from skybutler.remote.imports import plan

    files = []
    for i in range(5):
        (tmp_path / f"{i}.json").write_text("{}")
        files.append((str(tmp_path / f"{i}.json"), {"id": str(uuid.uuid4()), "path": f"{i}.json"}))
    shared = {"dataset_types": [], "runs": []}
    for most, sizes in ((2, [2, 2, 1]), (5, [5]), (MAX_IDS, [5])):
        batches = list(plan(shared, lambda: ([], [files]), 1 << 20, most))
        assert [len(b.datasets) for b in batches] == sizes


def test_every_list_of_ids_a_route_takes_is_capped(tmp_path):
    """Walked from the application's routes, so that a new route listing IDs cannot leave out the
    cap: every body field named like a list of IDs is declared with ``max_length`` <= MAX_IDS."""
    from skybutler.server.app import create_app
    from test_server_routes_audit import _routes

    Butler.create(tmp_path / "repo").close()
    app = create_app(tmp_path / "repo")
    try:
        fields = {}
        for route in _routes(app.routes):
            for param in getattr(getattr(route, "dependant", None), "body_params", []):
                for name, info in getattr(param.field_info.annotation, "model_fields", {}).items():
                    listed = name in ("ids", "runs") or name.endswith("_ids") and name != "data_ids"
                    if listed and "list" in str(info.annotation):
                        fields[(route.path, name)] = [m.max_length for m in info.metadata if hasattr(m, "max_length")]
        assert len(fields) >= 15 and ('/api/v1/access/tokens/revoke', 'token_ids') in fields
        assert {key: caps for key, caps in fields.items() if not caps or caps[0] > MAX_IDS} == {}
    finally:
        app.state.skybutler.close()


@pytest.mark.slow  # a purge of 20,001 datasets: ~5 s alone, 15 s on a loaded machine
def test_a_retention_call_past_the_limit_is_one_call(butler):
    """Purging MAX_IDS + 1 datasets through a server: sent as parts in one request, joined back by
    the server into one purge -- all or none, as locally: an unknown ID among them purges nothing;
    then removing them (a batch of two operations, one transaction).
    (Datasets without files, inserted in bulk: the registry's rows are what a purge judges.)"""
    from skybutler.dimensions import DataCoordinate
    from skybutler.errors import SkybutlerError

    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the server's own joining, the same on every stack: run on SQLite")
    n = MAX_IDS + 1
    butler.insert_records("instrument", [{"name": "Big", "detector_max": n, "visit_max": 1}])
    butler.insert_records("detector", [{"instrument": "Big", "id": d, "full_name": f"D{d}", "purpose": "SCIENCE"}
                                       for d in range(n)])
    butler.register_dataset_type("flag", ["instrument", "detector"], "Dict")
    butler.collections.register("bulk", CollectionType.RUN)
    dtype = butler.get_dataset_type("flag")
    group = dtype.group(butler.universe)
    ids = [uuid.uuid4() for _ in range(n)]
    refs = butler.registry.datasets.insert(dtype, "bulk", [DataCoordinate.from_required(group, ("Big", d))
                                                           for d in range(n)], ids)
    access = Access(butler.registry.access)
    access.add_user("boss", admin=True)
    with running_server(butler.root) as url:
        boss = Butler(url, token=access.create_token("boss"))
        try:
            sent: list[str] = []
            send = boss._remote._send
            boss._remote._send = lambda method, path, **kw: sent.append(path) or send(method, path, **kw)
            with pytest.raises(SkybutlerError, match="is not registered in this repository"):
                boss.retention.purge([*ids, uuid.uuid4()], force=True)  # the unknown one is in the second part
            assert set(butler.retention.states(ids).values()) == {"stored"}
            report = boss.retention.purge(ids, force=True)
            assert [a.dataset_id for a in report.purged] == ids and not report.dry_run
            assert set(butler.retention.states(ids).values()) == {"purged-lost"}
            assert boss.remove(refs) == n  # and removed, as one batch of two operations
            assert sent == ["batch"] * 3  # one request each, of two parts
            assert butler.retention.states(ids) == {}
        finally:
            boss.close()

