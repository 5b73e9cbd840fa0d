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
    """Alice's dataset, two of Bob's -- one of them tagged in a collection Alice may read -- one in
    run/a, and a server whose caches of rights and definitions do not expire during the test.
    Alice may read one RUN of three, Carol two ("u/*"): the registry is told the RUNs Alice may
    read, and those Carol may not."""
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
    access.add_user("carol")
    access.grant("user", "carol", "u/*", "read")
    tokens = {name: access.create_token(name) for name in ("alice", "carol")}
    elsewhere = butler.put({"i": 3}, "metrics", instrument="Cam", visit=3, detector=1, run="run/a")
    with running_server(butler.root, access_recheck_seconds=3600, definitions_recheck_seconds=3600,
                        release_record_seconds=3600) as url:
        yield url, tokens, mine, hidden, shown, elsewhere


ASKS = {
    "download": lambda http, i: http.get(f"datasets/{i}/file"),
    "url": lambda http, i: http.get(f"datasets/{i}/url"),
    "find": lambda http, i: http.post("datasets/find", json={"id": str(i)}),
    "exists": lambda http, i: http.post("datasets/exists", json={"id": str(i)}),
    "states": lambda http, i: http.post("datasets/states", json={"ids": [str(i)]}),
    "producer": lambda http, i: http.post("provenance/producer", json={"id": str(i)}),
    "remove": lambda http, i: http.post("datasets/remove", json={"ids": [str(i)]}),
}


@pytest.mark.parametrize("who", ["alice", "carol"])
def test_a_hidden_dataset_costs_what_a_missing_one_costs(served, who):
    url, tokens, mine, hidden, shown, elsewhere = served
    every = sorted(str(r.id) for r in (mine, hidden, shown, elsewhere))
    visible = {mine.id, shown.id} | ({hidden.id} if who == "carol" else set())
    if who == "carol":  # she may read Bob's RUN, not run/a
        hidden, shown = elsewhere, hidden
    with httpx.Client(base_url=f"{url}/api/v1/", headers={"Authorization": f"Bearer {tokens[who]}"}) as http:
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
            if name != "remove":  # a read of a dataset the user may see does more: the count is of real work
                assert answers["shown"][0] == 200 and len(costs["shown"]) > len(costs["missing"]), name
        # the RUNs are written into the look-up (no bound variable each): those read, or those not
        look_up = next(s for s in costs["missing"] if s.startswith("SELECT dataset.id"))
        assert ("dataset.run_id NOT IN (" in look_up) == (who == "carol") and "dataset.run_id IN (?" not in look_up
        assert set(http.post("datasets/states", json={"ids": every}).json()) == {str(i) for i in visible}


def test_provenance_links_are_judged_in_the_look_up(served, butler):
    """``visible_ids`` (the links of provenance answers): a hidden ID and a missing one in the
    same statements; a tagged one shown."""
    from skybutler.server import authz

    url, tokens, mine, hidden, shown, _ = served
    user = Access(butler.registry.access).authenticate(tokens["alice"])
    assert authz.visible_ids(butler, user, [mine.id, hidden.id, shown.id, None]) == {mine.id, shown.id}
    authz.visible_ids(butler, user, [uuid.uuid4()])
    with statements() as hidden_cost:
        assert authz.visible_ids(butler, user, [hidden.id]) == set()
    with statements() as missing_cost:
        assert authz.visible_ids(butler, user, [uuid.uuid4()]) == set()
    assert hidden_cost == missing_cost and len(hidden_cost) >= 2
