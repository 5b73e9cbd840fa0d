"""Seek hints and keyset pages: a query bounded on its keys reads the dimension table through its
index, and pages after a row's key give the sorted answer once -- each the same answer as the
plain query (on the repository of :mod:`query_repository`, and on one of many runs).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import STACKS, populate, stack_locations
from query_repository import N_DETECTORS, query_repository
from skybutler import Butler
from skybutler.errors import QueryError

repo = pytest.fixture(scope="module", params=STACKS, name="repo")(query_repository)


@pytest.mark.parametrize("where, hinted, expected", [
    ("visit > 1 AND visit <= 3 AND detector IN (1..2)", True, [(2, 1), (2, 2), (3, 1), (3, 2)]),
    ("3 >= visit AND 1 < visit AND detector = 0", True, [(2, 0), (3, 0)]),
    ("visit > 2 AND detector > 2", True, [(3, 3)]),
    ("visit.id >= 2 AND visit < 3 AND detector != 3", False, [(2, 0), (2, 1), (2, 2)]),
    ("visit > 1 AND (detector = 0 OR detector = 1)", False, [(2, 0), (2, 1), (3, 0), (3, 1)]),
    ("visit > 1 AND visit < 3 OR detector = 9", False, [(2, d) for d in range(N_DETECTORS)]),
])
def test_bounded_keys_seek_their_dimension_table_with_the_same_answer(repo, where, hinted, expected, monkeypatch):
    """A bound on visit, with detector constrained by = , IN or a bound, adds ``visit IN
    (SELECT id FROM visit WHERE <the bounds>)`` so that SQLite seeks each visit (anything
    else, a bound alone included, keeps the range scan; PostgreSQL's planner needs no hint and
    never gets it): the answer must not change."""
    from skybutler.query import builder

    results = repo.query_datasets("metrics", collections="run/a", where=where)
    assert seeks_visits(results) == (hinted and repo.registry.db.dialect == "sqlite")
    assert sorted((r.data_id["visit"], r.data_id["detector"]) for r in results) == expected
    monkeypatch.setattr(builder, "seek_hints", lambda *args: [])
    monkeypatch.setattr(builder, "_cache_key", lambda spec: None)  # built afresh, not the remembered one
    plain = repo.query_datasets("metrics", collections="run/a", where=where)
    assert not seeks_visits(plain)
    assert sorted((r.data_id["visit"], r.data_id["detector"]) for r in plain) == expected


@pytest.mark.parametrize("order", [("visit", "dataset_id"), ("-visit", "-dataset_id"), ("-detector", "dataset_id"),
                                   ("dataset_id",)])
def test_keyset_pages_give_the_sorted_answer_once(repo, order):
    """Pages of 5 read with ``after`` (the last row's key) join into the whole answer sorted in
    Python by the same columns; a key that cannot be one is refused with the reason."""
    def key(ref):
        return [str(ref.id) if n.lstrip("-") == "dataset_id" else ref.data_id[n.lstrip("-")] for n in order]

    everything = list(repo.query_datasets("metrics", collections="run/a", where="visit < 6"))
    for name in reversed(order):  # a stable sort per column, last first: Python's own ordering
        n = name.lstrip("-")
        everything = sorted(everything, key=lambda r, n=n: str(r.id) if n == "dataset_id" else r.data_id[n],
                            reverse=name.startswith("-"))
    expected = [str(r.id) for r in everything]
    results = repo.query_datasets("metrics", collections="run/a", where="visit < 6").order_by(*order)
    seen, page = [], list(results.limit(5))
    while page:
        seen += [str(r.id) for r in page]
        page = list(results.after(key(page[-1])).limit(5))
    assert seen == expected and len(seen) > 10  # several pages
    with pytest.raises(QueryError, match="ends with dataset_id"):
        repo.query_datasets("metrics", collections="run/a").order_by("visit").after([1])
    with pytest.raises(QueryError, match="not a value of column 'dataset_id'"):
        results.after([1, "x"] if len(order) == 2 else ["x"])


@pytest.mark.parametrize("stack", STACKS)
def test_datasets_sort_and_page_by_run_name(stack, tmp_path):
    """``order_by("run")`` sorts datasets by their RUN's name (not its key, the order the RUNs
    were registered in), byte by byte on every database ('run/b' before 'runA', which a
    locale ignoring '/' would reverse), and pages by key with the name in the key."""
    butler = Butler.create(tmp_path / "repo", **stack_locations(stack, tmp_path))
    populate(butler, 2, 2)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    for run in ("runA", "run/b", "run/a"):
        butler.put_many("metrics", [({"v": v}, {"instrument": "Cam", "visit": v, "detector": d})
                                    for v in (1, 2) for d in (0, 1)], run=run)
    for order in (("run", "dataset_id"), ("-run", "-visit", "dataset_id")):
        results = butler.query_datasets("metrics", collections=["runA", "run/b", "run/a"], find_first=False)
        expected = list(results)
        for name in reversed(order):
            field = name.lstrip("-")
            expected.sort(key=lambda r, f=field: r.run if f == "run" else str(r.id) if f == "dataset_id"
                          else r.data_id[f], reverse=name.startswith("-"))
        ordered = results.order_by(*order)
        assert [r.id for r in ordered] == [r.id for r in expected], order
        assert ordered.to_arrow().column("run").to_pylist() == [r.run for r in expected]
        seen, page = [], list(ordered.limit(5))
        while page:
            seen += page
            last = page[-1]
            page = list(ordered.after([last.run if n.lstrip("-") == "run" else str(last.id) if
                                       n.lstrip("-") == "dataset_id" else last.data_id[n.lstrip("-")]
                                       for n in order]).limit(5))
        assert [r.id for r in seen] == [r.id for r in expected], order
    assert [r.run for r in expected][::4] == ["runA", "run/b", "run/a"]
    with pytest.raises(QueryError, match="cannot order by 'run'"):
        butler.query_data_ids(["visit"]).order_by("run")
    butler.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(visits=st.tuples(st.integers(-1, 14), st.integers(-1, 14)), ops=st.tuples(st.sampled_from([">", ">="]),
                                                                               st.sampled_from(["<", "<="])),
       detectors=st.lists(st.integers(0, 4), min_size=1, max_size=3))
def test_the_seek_hint_never_changes_an_answer(repo, visits, ops, detectors):
    """Any bounds on visit, with detector constrained: the hinted statement (SQLite's; PostgreSQL
    gets none) and a brute-force filter of every dataset agree."""
    lo, hi = visits
    where = f"visit {ops[0]} {lo} AND visit {ops[1]} {hi} AND detector IN ({', '.join(map(str, detectors))})"
    results = repo.query_datasets("metrics", collections="run/a", where=where)
    assert seeks_visits(results) == (repo.registry.db.dialect == "sqlite")
    keep = {">": lambda v: v > lo, ">=": lambda v: v >= lo}[ops[0]]
    below = {"<": lambda v: v < hi, "<=": lambda v: v <= hi}[ops[1]]
    everything = repo.query_datasets("metrics", collections="run/a")
    expected = sorted((r.data_id["visit"], r.data_id["detector"]) for r in everything
                      if keep(r.data_id["visit"]) and below(r.data_id["visit"]) and r.data_id["detector"] in detectors)
    assert sorted((r.data_id["visit"], r.data_id["detector"]) for r in results) == expected


@pytest.mark.parametrize("where, keep, bare", [
    ("visit > 1 AND visit <= 3 AND detector IN (1..2)", lambda v, d: 1 < v <= 3 and d in (1, 2), False),
    ("visit >= 2 AND visit.id < 5 AND detector > 1", lambda v, d: 2 <= v < 5 and d > 1, False),
    # a bound inside an OR is no bound of the hint's: it stays
    ("visit > 1 AND detector = 1 AND (visit < 4 OR detector = 9)", lambda v, d: 1 < v < 4 and d == 1, True),
    # a parenthesised AND is one term, kept whole
    ("(visit > 2 AND detector = 0) AND visit < 6", lambda v, d: 2 < v < 6 and d == 0, True),
    ("visit > 4 AND visit < 3 AND detector = 1", lambda v, d: False, False),
    # the visit table joined for its metadata: the bounds still name the membership table's key
    ("visit.exposure_time > 20 AND visit > 2 AND visit < 12 AND detector = 2",
     lambda v, d: 2 < v < 12 and v != 10 and d == 2, False),
])
def test_bounds_a_seek_hint_implies_are_left_to_it(repo, where, keep, bare):
    """Where the seek hint on the membership table bounds visit (SQLite), the where-clause's own
    top-level bounds on that column are left out of the statement (they steered SQLite to a
    skip scan of the range); the answer is every dataset the terms keep, by brute force."""
    results = repo.query_datasets("metrics", collections="run/a", where=where)
    if repo.registry.db.dialect == "sqlite":
        assert (re.search(r"ds_tags\.visit\s*[<>]", str(results._built.statement)) is not None) == bare
    everything = repo.query_datasets("metrics", collections="run/a")
    expected = sorted((r.data_id["visit"], r.data_id["detector"]) for r in everything
                      if keep(r.data_id["visit"], r.data_id["detector"]))
    assert sorted((r.data_id["visit"], r.data_id["detector"]) for r in results) == expected
    assert results.count() == len(expected)
    table = results.to_arrow()
    assert sorted(zip(table.column("visit").to_pylist(), table.column("detector").to_pylist())) == expected


def seeks_visits(results) -> bool:
    """Whether the statement selects from the visit table itself (the seek hint; the query's
    own joins use aliases)."""
    return re.search(r"FROM (\w+\.)?visit\s", str(results._built.statement)) is not None
