"""An independent oracle for every query kind.

Hypothesis builds small random repositories (two instruments sharing exposure, visit and
detector numbers, visits made of several exposures, a sky map of tracts and patches,
calibrations certified over random validity ranges in two CALIBRATION collections, RUN,
TAGGED and CHAINED collections, regions, timespans and NULL metadata) and random
where-clauses over them.  Each query's answer is compared with a brute-force evaluator
written in plain Python (``query_oracle.py``) over the records the test inserted: the natural join of the
element records of every dimension the query names, the visit definitions, the
region overlaps (circles on the equator: an overlap is a distance between two centres),
SQL's three-valued logic, find-first by collection rank and calibration validity.  It
never reads SQL and never calls skybutler's query code.

Default: four repositories and 60 queries each per stack (under a minute); the slow
test (CI) checks 15 more, and ``SKYBUTLER_ORACLE_PROFILE=thorough`` makes each run 100.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import STACKS
from query_oracle import (
    DATASET_TYPES,
    LINKS,
    OBSERVATION,
    SKY,
    World,
    build,
    closure,
    joined_rows,
    minute,
    minutes,
    output_key,
    passes,
    query_dims,
    required_of,
    unrelated,
    where_clauses,
    worlds,
)
from skybutler import Butler, Timespan
from skybutler.errors import CalibrationLookupError, QueryError

# Shrinking rebuilds a repository per step: minutes.  The failing query is printed whole.
settings.register_profile("oracle-default", max_examples=4, deadline=None, phases=[Phase.generate],
                          suppress_health_check=list(HealthCheck))
settings.register_profile("oracle-slow", max_examples=15, deadline=None, phases=[Phase.generate],
                          suppress_health_check=list(HealthCheck))
settings.register_profile("oracle-thorough", max_examples=100, deadline=None, phases=[Phase.generate],
                          suppress_health_check=list(HealthCheck))
THOROUGH = os.environ.get("SKYBUTLER_ORACLE_PROFILE") == "thorough"
QUERIES_PER_REPO = 60


# -- the test ----------------------------------------------------------------------------------


DATA_ID_QUERIES = [("exposure",), ("visit",), ("exposure", "detector"), ("visit", "detector"), ("detector",),
                   ("exposure", "visit"), ("tract",), ("visit", "tract"), ("visit", "detector", "patch"),
                   ("patch", "band"), ("physical_filter",), ("day_obs",), ("instrument",), ("exposure", "tract")]
ALL_ELEMENTS = frozenset({"instrument", "band", "detector", "exposure", "visit", "physical_filter", "day_obs",
                          "tract", "patch"})


def family(names: set[str]) -> frozenset[str]:
    """The elements a where-clause may name without making the query's dimensions unrelated."""
    out = {"instrument", "band"}
    if names & SKY:
        out |= SKY
    if names & (OBSERVATION | {"instrument"}) or not names & SKY:
        out |= OBSERVATION & ALL_ELEMENTS
    return frozenset(out)


def check_data_ids(butler: Butler, world: World, data) -> None:
    requested = set(data.draw(st.sampled_from(DATA_ID_QUERIES), label="dimensions"))
    allowed = ALL_ELEMENTS if data.draw(st.integers(0, 4), label="wide") == 0 else family(requested)
    clause = data.draw(where_clauses(allowed), label="where")
    data_id = data.draw(st.sampled_from([{}, {"instrument": "A"}, {"detector": 1}]), label="data_id")
    datasets = data.draw(st.sampled_from([(), ("raw",), ("calexp",), ("bias",)]), label="datasets")
    collections = {"raw": ["raw/2", "raw/1"], "calexp": ["processed"], "bias": ["calibs"]}.get(
        datasets[0] if datasets else "", [])
    dims = query_dims(requested, clause, data_id) | (closure(set(DATASET_TYPES[datasets[0]])) if datasets else set())
    where, bind = (clause.text, clause.binds) if clause else ("", {})
    label = f"query_data_ids({sorted(requested)}, {where!r}, {bind}, data_id={data_id}, datasets={datasets})"
    if unrelated(dims):
        with pytest.raises(QueryError, match="unrelated"):
            butler.query_data_ids(sorted(requested), where, bind=bind, data_id=data_id, datasets=datasets or None,
                                  collections=collections or None).count()
        return
    out_dims = required_of(requested)
    expected = set()
    for row in joined_rows(world, dims):
        if passes(clause, row, data_id) and all(has_dataset(world, d, row, collections, dims) for d in datasets):
            expected.add(output_key(row, out_dims))
    results = butler.query_data_ids(sorted(requested), where, bind=bind, data_id=data_id,
                                    datasets=datasets or None, collections=collections or None)
    got = [tuple(d[k] for k in out_dims) for d in results]
    same(got, expected, label)
    assert results.count() == len(expected), label


def same(got: list, expected: set, label: str) -> None:
    """``got`` holds each of ``expected`` once and nothing else (the message says the difference)."""
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    repeated = len(got) != len(set(got))
    assert not (missing or extra or repeated), f"{label}: missing {sorted(missing, key=repr)[:5]}, " \
        f"extra {sorted(extra, key=repr)[:5]}, repeated {repeated}"


def valid_during(world: World, row: dict[str, Any], dims: set[str], begin, end) -> bool | None:
    """Whether [begin, end) (minutes; None = unbounded) overlaps the row's exposure (else visit)."""
    element = "exposure" if "exposure" in dims else ("visit" if "visit" in dims else None)
    if element is None:
        return True
    span = row[element]["timespan"]
    if span is None:
        return False
    return (begin is None or begin < span[1]) and (end is None or span[0] < end)


def members(world: World, dtype: str, path: list[str]) -> list[tuple[int, str, Any, Any, bool]]:
    """(rank, dataset id, validity begin, end, certified) of every membership of ``dtype`` in the
    search path (certified: found in a CALIBRATION collection, so it has a validity range)."""
    out = []
    for rank, coll in enumerate(world.flatten(path)):
        if coll in world.certified:
            out += [(rank, ds, b, e, True) for ds, b, e in world.certified[coll] if world.datasets[ds][0] == dtype]
        else:
            out += [(rank, ds, None, None, False) for ds in world.members.get(coll, [])
                    if world.datasets[ds][0] == dtype]
    return out


def validity_overlaps(b: int | None, e: int | None, start: int, length: int) -> bool:
    """Whether the validity [b, e) (minutes; None unbounded) overlaps [start, start + length),
    or the instant ``start`` when ``length`` is 0 (a time is [t, t + 1 ns))."""
    end = start + length if length else start + 1e-9
    return (b is None or b < end) and (e is None or start < e)


def calibration_searched(world: World, dtype: str, path: list[str]) -> bool:
    return dtype == "bias" and any(c in world.certified for c in world.flatten(path))


def has_dataset(world: World, dtype: str, row: dict[str, Any], path: list[str], dims: set[str]) -> bool:
    keys = DATASET_TYPES[dtype]
    timed = calibration_searched(world, dtype, path)
    for _, ds, b, e, _ in members(world, dtype, path):
        data_id = world.datasets[ds][1]
        if all(data_id[k] == row["_values"][k] for k in keys) and (
                not timed or valid_during(world, row, dims, b, e)):
            return True
    return False


def check_datasets(butler: Butler, world: World, data) -> None:
    dtype = data.draw(st.sampled_from(["raw", "calexp", "bias"]), label="dataset type")
    path = data.draw(st.sampled_from({"raw": [["raw/1", "raw/2"], ["raw/2", "raw/1"], ["defaults"]],
                                      "calexp": [["processed"], ["proc/1", "proc/2", "best"], ["best"]],
                                      "bias": [["calibs"], ["calib/A"], ["bias/1", "calibs"], ["defaults"]]}[dtype]),
                     label="collections")
    find_first = data.draw(st.booleans(), label="find_first")
    keys = DATASET_TYPES[dtype]
    allowed = frozenset(e for e in ALL_ELEMENTS if e not in SKY or dtype == "calexp")
    if dtype == "bias":
        allowed = frozenset({"instrument", "detector", "exposure", "visit"})
    clause = data.draw(where_clauses(allowed), label="where")
    # now and then exactly at a validity boundary (multiples of 30 minutes): half-open ranges
    at = data.draw(st.one_of(st.none(), st.integers(-10, 620), st.sampled_from(range(0, 600, 30))),
                   label="valid at") if dtype == "bias" else None
    # now and then the validity range itself in the where-clause (bias.timespan), an instant or a range
    validity = data.draw(st.one_of(st.none(), st.tuples(st.integers(-10, 620), st.sampled_from([0, 0, 20, 90]))),
                         label="bias.timespan OVERLAPS") if dtype == "bias" else None
    dims = query_dims(set(keys), clause, {})
    where, bind = (clause.text, clause.binds) if clause else ("", {})
    if validity is not None:
        start, length = validity
        term = "bias.timespan OVERLAPS :vt"
        where = f"({where}) AND {term}" if where else term
        bind = {**bind, "vt": Timespan(minute(start), minute(start + length)) if length else minute(start)}
    label = f"query_datasets({dtype!r}, {where!r}, {bind}, {path}, find_first={find_first}, at={at})"
    calib_searched = calibration_searched(world, dtype, path)
    temporal = "exposure" if "exposure" in dims else ("visit" if "visit" in dims else None)
    call = lambda: butler.query_datasets(dtype, where, bind=bind, collections=path, find_first=find_first,  # noqa
                                         timespan=None if at is None else minute(at))
    if unrelated(dims):
        with pytest.raises(QueryError, match="unrelated"):
            call().count()
        return
    if calib_searched and find_first and at is None and temporal is None and validity is None:
        with pytest.raises(QueryError, match="give a timespan"):
            call()
        return
    candidates = []  # (partition, rank, dataset id, begin, end)
    rows = [r for r in joined_rows(world, dims) if passes(clause, r, {})]
    for rank, ds, b, e, certified in members(world, dtype, path):
        data_id = world.datasets[ds][1]
        if at is not None and not ((b is None or b <= at) and (e is None or at < e)):
            continue
        if validity is not None and not validity_overlaps(b, e, *validity):
            continue  # a dataset found in a RUN is valid always (as the Rubin butler has it): unbounded
        for row in rows:
            if all(data_id[k] == row["_values"][k] for k in keys) and (
                    not calib_searched or valid_during(world, row, dims, b, e)):
                part = tuple(data_id[k] for k in keys) + (
                    (row["_values"]["instrument"], row["_values"][temporal]) if calib_searched and temporal else ())
                candidates.append((part, rank, ds, b, e))
    if find_first:
        best: dict[tuple, int] = {}
        for part, rank, *_ in candidates:
            best[part] = min(rank, best.get(part, rank))
        chosen = {(part, ds, b, e) for part, rank, ds, b, e in candidates if rank == best[part]}
        by_part: dict[tuple, set] = {}
        for part, ds, b, e in chosen:
            by_part.setdefault(part, set()).add((ds, b, e))
        if any(len(v) > 1 for v in by_part.values()):
            with pytest.raises(CalibrationLookupError):
                list(call())
            return
        expected = {(ds, b, e) for _, ds, b, e in chosen}
    else:
        expected = {(ds, b, e) for _, _, ds, b, e in candidates}
    results = call()
    if dtype == "bias":
        got = [(str(r.id), *(minutes(s) or (None, None))) for r, s in results.with_validity()]
    else:
        got = [(str(r.id), None, None) for r in results]
    same(got, expected, label)
    for ref in results:
        assert ref.run == world.datasets[str(ref.id)][2] and dict(ref.data_id.required) == {
            k: world.datasets[str(ref.id)][1][k] for k in keys}, label
    assert results.count() == len(expected), label
    check_keyset_pages(world, results, expected, keys, data, label)


def check_keyset_pages(world: World, results, expected: set, keys: tuple[str, ...], data, label: str) -> None:
    """Pages read with ``after`` (each the last row's key) join into the whole answer, in the
    order Python sorts it by the same columns: no row twice, none skipped.  Rows of one
    dataset (certified over several validity ranges) follow their range, in the order of
    ``dataset_id``; the key then holds the range too."""
    column = data.draw(st.sampled_from([None, *keys]), label="page order")
    descending = data.draw(st.booleans(), label="descending")
    size = data.draw(st.integers(1, 4), label="page size")
    id_descending = data.draw(st.booleans(), label="id descending")
    order = ([] if column is None else [("-" if descending else "") + column]) + \
        [("-" if id_descending else "") + "dataset_id"]
    unbounded = (float("-inf"), float("inf"))
    rows = sorted(expected, key=lambda r: (unbounded[0] if r[1] is None else r[1], unbounded[1] if r[2] is None
                                           else r[2]), reverse=id_descending)
    for name in reversed(order):  # a stable sort per column, the last first
        field = name.lstrip("-")
        rows.sort(key=(lambda r: r[0]) if field == "dataset_id" else (lambda r, f=field: world.datasets[r[0]][1][f]),
                  reverse=name.startswith("-"))
    ordered = results.order_by(*order)
    timed = "validity_begin" in ordered._built.columns

    def page_of(part) -> list[tuple]:
        found = part.with_validity() if timed else [(ref, None) for ref in part]
        return [(ref, span) for ref, span in found]

    pages, page = [], page_of(ordered.limit(size))
    while page and len(pages) <= len(rows):
        pages += page
        ref, span = page[-1]
        key = [str(ref.id) if n.lstrip("-") == "dataset_id" else ref.data_id[n.lstrip("-")] for n in order]
        if timed:
            key += [None, None] if span is None else [span.begin, span.end]
        page = page_of(ordered.after(key).limit(size))
    got = [(str(ref.id), *(minutes(span) or (None, None))) for ref, span in pages]
    assert got == rows, f"{label} pages of {size} by {order}: {got} != {rows}"


def check_records(butler: Butler, world: World, data) -> None:
    element = data.draw(st.sampled_from(["exposure", "visit", "detector", "tract", "physical_filter"]),
                        label="element")
    allowed = ALL_ELEMENTS - SKY if element != "tract" else frozenset({"tract", "patch"})
    if element == "visit":
        allowed = ALL_ELEMENTS
    clause = data.draw(where_clauses(allowed), label="where")
    dims = query_dims({element}, clause, {})
    where, bind = (clause.text, clause.binds) if clause else ("", {})
    label = f"query_dimension_records({element!r}, {where!r}, {bind})"
    if unrelated(dims):
        with pytest.raises(QueryError, match="unrelated"):
            butler.query_dimension_records(element, where, bind=bind).count()
        return
    identity = [d for d in LINKS[element] if d in ("instrument", "skymap", "tract") or d == element]
    expected = {tuple(r[element][LINKS[element][d]] for d in identity)
                for r in joined_rows(world, dims) if passes(clause, r, {})}
    results = list(butler.query_dimension_records(element, where, bind=bind))
    got = [tuple(rec[d] for d in identity) for rec in results]
    same(got, expected, label)
    if element == "exposure":  # a field, NULL included, comes back as inserted
        truth = {(r["instrument"], r["id"]): r["exposure_time"] for r in world.records["exposure"]}
        assert all(rec["exposure_time"] == truth[(rec["instrument"], rec["exposure"])] for rec in results), label


def check_random_repositories(stack: str, tmp_path_factory, profile: str) -> None:
    @settings(settings.get_profile("oracle-thorough" if THOROUGH else profile))
    @given(world=worlds(), data=st.data())
    def run(world: World, data) -> None:
        root = tmp_path_factory.mktemp("oracle") / "repo"
        butler = build(world, stack, root)
        try:
            for _ in range(QUERIES_PER_REPO):
                kind = data.draw(st.sampled_from([check_data_ids, check_datasets, check_datasets, check_records]),
                                 label="query kind")
                kind(butler, world, data)
        finally:
            butler.close()

    run()


@pytest.mark.parametrize("stack", STACKS)
def test_every_query_kind_matches_a_brute_force_evaluator(stack, tmp_path_factory):
    check_random_repositories(stack, tmp_path_factory, "oracle-default")


@pytest.mark.slow
@pytest.mark.parametrize("stack", STACKS)
def test_more_random_repositories_match_the_evaluator(stack, tmp_path_factory):
    check_random_repositories(stack, tmp_path_factory, "oracle-slow")
