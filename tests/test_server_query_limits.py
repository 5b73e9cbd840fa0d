"""Hostile and extreme where-clauses through a served repository: answered as a local
butler answers them, or refused with a 4xx naming the problem, while the server goes on
answering others."""

from __future__ import annotations

import threading

import httpx
import pytest

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.errors import QueryError

pytest.importorskip("fastapi")


@pytest.fixture
def served(butler):
    access = Access(butler.registry.access)
    for name in ("mallory", "ann"):
        access.add_user(name)
    access.grant("*", "*", "*", "read")
    with running_server(butler.root) as url:
        yield url, {name: access.create_token(name) for name in ("mallory", "ann")}


def _count(url, token, spec) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/query/count", json={"spec": spec},
                      headers={"Authorization": f"Bearer {token}"}, timeout=120)


def test_extreme_clauses_through_a_server(served):
    url, token = served
    remote = Butler(url, token=token["ann"])
    wanted = list(range(3, 140_000, 2))[:99_999]  # past PostgreSQL's 65,535 parameters
    assert {d["visit"] for d in remote.query_data_ids("visit", "visit IN (:v)", bind={"v": wanted},
                                                       instrument="Cam")} == {3, 5}
    with pytest.raises(QueryError, match="IN lists hold more than 100,000 values"):
        remote.query_data_ids("visit", "visit IN (:v)", bind={"v": list(range(100_001))}).count()
    with pytest.raises(QueryError, match="nests parentheses more than 49 levels deep"):
        remote.query_data_ids("visit", "(" * 60 + "visit = 1" + ")" * 60).count()
    assert remote.query_data_ids("visit", "(" * 48 + "visit IN (1, 2)" + ")" * 48, instrument="Cam").count() == 2


def test_hostile_requests_are_refused_and_others_still_answered(served):
    """A client need not send what the remote client sends: a tree of 5,000 NOTs, a clause of
    three megabytes, a where-clause the tree does not match.  Each gets a 422 naming its
    problem, while another user's queries go on being answered."""
    url, token = served
    base = {"kind": "data_ids", "dimensions": ["visit"], "data_id": {"instrument": "Cam"}}
    answers: list[int] = []
    stop = threading.Event()

    def other_user() -> None:
        while not stop.is_set():
            answers.append(_count(url, token["ann"], {**base, "where": "visit > 2"}).json())

    thread = threading.Thread(target=other_user)
    thread.start()
    try:
        deep = '{"kind":"not","operand":' * 5000 + '{"kind":"bool","value":true}' + "}" * 5000
        hostile = [
            ({**base, "where": "visit = 1", "tree": deep}, "malformed query tree"),
            ({**base, "where": "NOT " * 120 + "visit = 1"}, "nests more than 99 operators"),
            ({**base, "where": "visit.observation_type = '" + "x" * 3_000_000 + "'"}, "characters long"),
            ({**base, "where": "visit = " + "9" * 6000}, "outside the 64-bit integer range"),
            ({**base, "where": "visit.observation_type = :s", "bind": {"s": "a\x00b"}}, "NUL character"),
            ({**base, "where": "visit IN (1..10:99999999999999999999)"}, "outside the 64-bit integer range"),
        ]
        for spec, message in hostile:
            answer = _count(url, token["mallory"], spec)
            assert answer.status_code == 422 and message in answer.json()["message"], answer.text[:300]
            assert len(answer.content) < 2000
    finally:
        stop.set()
        thread.join(60)
    assert answers and set(answers) == {4}
    assert _count(url, token["mallory"], {**base, "where": "visit IN (1..10000000)"}).json() == 6
