"""A dataset ID that exists but is hidden from the caller and one that does not exist get the same
answer from the server and cost it the same work: the same SQL statements, so that the time of
an answer cannot tell them apart either.  Counted, not timed: every statement the server's
engines run while it answers is recorded."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from server_helpers import running_server
from skybutler.access import Access
from skybutler.models import CollectionType

pytest.importorskip("fastapi")


@contextlib.contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL of every statement any engine runs inside the block, in order."""
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", note)


@pytest.fixture
def served(butler):
    """Alice's dataset, two of Bob's -- one of them tagged in a collection Alice may read -- and a
    server whose caches of rights and definitions do not expire during the test."""
    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the server's judging, the same statements on every stack: run on SQLite")
    mine = butler.put({"i": 1}, "metrics", instrument="Cam", visit=1, detector=1, run="u/alice/run")
    hidden, shown = (butler.put({"i": i}, "metrics", instrument="Cam", visit=2, detector=i, run="u/bob/run")
                     for i in (1, 2))
    butler.collections.register("shared/tagged", CollectionType.TAGGED)
    butler.collections.associate("shared/tagged", [shown])
    access = Access(butler.registry.access)
    access.add_user("alice")
    access.grant("user", "alice", "shared/*", "read")
    token = access.create_token("alice")
    with running_server(butler.root, access_recheck_seconds=3600, definitions_recheck_seconds=3600,
                        release_record_seconds=3600) as url:
        yield url, token, mine, hidden, shown


ASKS = {
    "download": lambda http, i: http.get(f"datasets/{i}/file"),
    "url": lambda http, i: http.get(f"datasets/{i}/url"),
    "find": lambda http, i: http.post("datasets/find", json={"id": str(i)}),
    "exists": lambda http, i: http.post("datasets/exists", json={"id": str(i)}),
    "states": lambda http, i: http.post("datasets/states", json={"ids": [str(i)]}),
    "producer": lambda http, i: http.post("provenance/producer", json={"id": str(i)}),
    "remove": lambda http, i: http.post("datasets/remove", json={"ids": [str(i)]}),
}


def test_a_hidden_dataset_costs_what_a_missing_one_costs(served):
    url, token, mine, hidden, shown = served
    with httpx.Client(base_url=f"{url}/api/v1/", headers={"Authorization": f"Bearer {token}"}) as http:
        for name, ask in ASKS.items():
            ask(http, uuid.uuid4())  # the first request of a kind fills the butler's caches
            costs, answers = {}, {}
            for label, dataset_id in [("hidden", hidden.id), ("missing", uuid.uuid4()), ("shown", shown.id)]:
                with statements() as seen:
                    answer = ask(http, dataset_id)
                costs[label] = seen
                answers[label] = (answer.status_code, answer.text.replace(str(dataset_id), "<id>"))
            assert answers["hidden"] == answers["missing"], name
            assert costs["hidden"] == costs["missing"], name
            if name != "remove":  # a read of a dataset Alice may see does more: the count is of real work
                assert answers["shown"][0] == 200 and len(costs["shown"]) > len(costs["missing"]), name
        assert http.post("datasets/states", json={"ids": [str(mine.id), str(hidden.id), str(shown.id)]}).json() \
            == {str(mine.id): "stored", str(shown.id): "stored"}


def test_provenance_links_are_judged_in_the_look_up(served, butler):
    """``visible_ids`` (the links of provenance answers): a hidden ID and a missing one in the
    same statements; a tagged one shown."""
    from skybutler.server import authz

    url, token, mine, hidden, shown = served
    user = Access(butler.registry.access).authenticate(token)
    assert authz.visible_ids(butler, user, [mine.id, hidden.id, shown.id, None]) == {mine.id, shown.id}
    authz.visible_ids(butler, user, [uuid.uuid4()])
    with statements() as hidden_cost:
        assert authz.visible_ids(butler, user, [hidden.id]) == set()
    with statements() as missing_cost:
        assert authz.visible_ids(butler, user, [uuid.uuid4()]) == set()
    assert hidden_cost == missing_cost and len(hidden_cost) >= 2
