"""Embargoes as metadata, judged on a frozen clock: hidden from users without data rights
until the stated hours after the exposure ends, by every route, then visible with
nothing copied."""

from __future__ import annotations

import httpx
import pytest
from astropy.time import Time, TimeDelta

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.errors import DatasetNotFoundError
from skybutler.server.embargoed import NOTHING_VISIBLE

pytest.importorskip("fastapi")


def visit_end(visit: int) -> float:
    """POSIX seconds at which a visit of conftest.populate ends (its own formula, through astropy)."""
    begin = Time("2025-01-02T00:00:00", scale="tai") + TimeDelta((visit - 1) * 120, format="sec")
    return (begin + TimeDelta(30, format="sec")).unix


@pytest.fixture
def embargoed(butler):
    if butler.registry.db.dialect != "sqlite":
        pytest.skip("embargoes are judged by the server, the same on every stack; run on SQLite")
    refs = butler.put_many("metrics", [({"v": v}, {"instrument": "Cam", "visit": v, "detector": 0})
                                       for v in (1, 2, 3)], run="run/a")
    butler.put({"v": 9}, "metrics", instrument="Cam", visit=1, detector=1, run="other/run")
    butler.collections.set_chain("chain", ["run/a", "other/run"])
    access = Access(butler.registry.access)
    access.add_user("pat")
    access.add_user("rita", groups=["rights"])
    access.grant("*", "*", "*", "read")
    access.add_embargo("metr*", "run/*", 80, ["rights"])
    clock = [0.0]
    tokens = {name: access.create_token(name) for name in ("pat", "rita")}
    with running_server(butler.root, clock=lambda: clock[0]) as url:
        yield butler, url, tokens, refs, clock


def test_embargo_boundaries_on_a_frozen_clock(embargoed):
    local, url, tokens, refs, clock = embargoed
    pat = Butler(url, token=tokens["pat"], collections="chain")
    rita = Butler(url, token=tokens["rita"], collections="chain")
    ends = [visit_end(v) + 80 * 3600 for v in (1, 2, 3)]
    for now, visible in [(ends[0] - 1, []), (ends[0] - 0.001, []), (ends[0], [1]), (ends[1], [1, 2]),
                         (ends[2] + 1e6, [1, 2, 3])]:
        clock[0] = now
        shown = pat.query_datasets("metrics", collections="run/a", find_first=False)
        assert sorted(r.data_id["visit"] for r in shown) == visible
        assert shown.count() == len(visible) and shown.any() == bool(visible)
        assert shown.to_arrow().num_rows == len(visible)
        assert shown.explain() == ([] if visible else [NOTHING_VISIBLE])
        assert len(list(shown.limit(1))) == min(1, len(visible))
        ids = pat.query_data_ids(["visit"], datasets="metrics", collections="run/a")
        assert sorted(d["visit"] for d in ids) == visible
        for visit, ref in zip((1, 2, 3), refs):
            if visit in visible:
                assert pat.get(ref) == {"v": visit}
                assert pat.find_dataset("metrics", instrument="Cam", visit=visit, detector=0) == ref
            else:
                with pytest.raises(DatasetNotFoundError, match=f"no dataset with ID {ref.id}"):
                    pat.get(ref)
                assert pat.find_dataset("metrics", instrument="Cam", visit=visit, detector=0,
                                        collections="run/a") is None
                download = httpx.get(f"{url}/api/v1/datasets/{ref.id}/file",
                                     headers={"Authorization": f"Bearer {tokens['pat']}"})
                assert download.status_code == 404
        # outside the rule's collections nothing is hidden; the data-rights group sees everything
        assert pat.get("metrics", instrument="Cam", visit=1, detector=1) == {"v": 9}
        assert sorted(r.data_id["visit"] for r in rita.query_datasets("metrics", collections="run/a")) == [1, 2, 3]
        assert rita.get(refs[0]) == {"v": 1}
    assert local.registry.access.audit_rows()[-1][2] == "user"  # oldest entries first made
    assert any(row[2] == "embargo" for row in local.registry.access.audit_rows())


def test_an_embargoed_first_match_falls_through(embargoed):
    """find_dataset and get through a path whose first match is hidden from the caller answer
    with the next collection's dataset, as if the hidden one did not exist (expected values
    written out by hand)."""
    local, url, tokens, refs, clock = embargoed
    fallback = local.put({"v": "fallback"}, "metrics", instrument="Cam", visit=2, detector=0, run="other/run")
    pat = Butler(url, token=tokens["pat"], collections="chain")
    rita = Butler(url, token=tokens["rita"], collections="chain")
    data_id = {"instrument": "Cam", "visit": 2, "detector": 0}
    for now, pat_sees in [(0.0, fallback.id), (visit_end(2) + 80 * 3600, refs[1].id)]:
        clock[0] = now
        assert pat.find_dataset("metrics", data_id).id == pat_sees
        assert pat.get("metrics", data_id) == ({"v": "fallback"} if pat_sees == fallback.id else {"v": 2})
        assert rita.find_dataset("metrics", data_id).id == refs[1].id
        assert rita.get("metrics", data_id) == {"v": 2}
    clock[0] = 0.0
    assert pat.find_dataset("metrics", data_id, collections="run/a") is None
    with pytest.raises(DatasetNotFoundError):
        pat.get("metrics", data_id, collections="run/a")


def test_query_datasets_find_first_falls_through_an_embargoed_first_match(embargoed):
    """query_datasets(find_first=True) over a chain answers, for a data ID whose first match is
    hidden from the caller, with the next collection's dataset, like find_dataset; its count,
    Arrow table and limit agree (expected datasets written out by hand)."""
    local, url, tokens, refs, clock = embargoed
    fallback = local.put({"v": "fallback"}, "metrics", instrument="Cam", visit=2, detector=0, run="other/run")
    other = local.find_dataset("metrics", instrument="Cam", visit=1, detector=1, collections="other/run")
    pat = Butler(url, token=tokens["pat"], collections="chain")
    rita = Butler(url, token=tokens["rita"], collections="chain")
    for now, pat_sees in [(0.0, {other.id, fallback.id}),
                          (visit_end(2) + 80 * 3600, {refs[0].id, other.id, refs[1].id})]:
        clock[0] = now
        found = pat.query_datasets("metrics", find_first=True)
        assert {r.id for r in found} == pat_sees
        assert found.count() == len(pat_sees) and found.any()
        assert {str(i) for i in found.to_arrow().column("dataset_id").to_pylist()} == {str(i) for i in pat_sees}
        assert len(list(found.order_by("visit").limit(1, 1))) == 1
        assert found.order_by("visit").limit(1, 1).to_arrow().num_rows == 1
        assert {r.id for r in rita.query_datasets("metrics", find_first=True)} == {*(r.id for r in refs), other.id}
    clock[0] = 0.0
    assert list(pat.query_datasets("metrics", find_first=True, where="visit = 3")) == []


def test_each_release_is_in_the_audit_log(embargoed):
    """As the clock passes each dataset's end of embargo, the server writes its release to the
    audit log once (the other RUN's dataset is under no rule and never released)."""
    local, url, tokens, refs, clock = embargoed
    pat = Butler(url, token=tokens["pat"], collections="chain")

    def released() -> list[list[str]]:
        rows = [r for r in reversed(local.registry.access.audit_rows(1000)) if r[2] == "embargo-release"]
        return [row[3].split(": ")[-1].split() for row in rows]

    ends = [visit_end(v) + 80 * 3600 for v in (1, 2, 3)]
    # the server writes releases at most every 60 s of its clock: the steps are further apart
    for now, expected in [(0.0, []), (ends[0] - 100, []), (ends[0] + 100, [[str(refs[0].id)]]),
                          (ends[1] + 100, [[str(refs[0].id)], [str(refs[1].id)]]),
                          (ends[2] + 1000, [[str(refs[0].id)], [str(refs[1].id)], [str(refs[2].id)]])]:
        clock[0] = now
        pat.query_dataset_types()  # any request: the server writes what was released since
        assert released() == expected, now
    assert "rule 1 (metr* in run/*, 80 h): 1 metrics dataset(s) in run/a released" in \
        [r for r in local.registry.access.audit_rows(1000) if r[2] == "embargo-release"][0][3]
    from skybutler.embargo import record_releases

    assert record_releases(local, int((ends[2] + 2000) * 1e9)) == 0  # nothing new: nothing written twice
    store = local.registry.access
    mark = store.releases_recorded_until()
    assert not store.record_releases(["stale"], mark - 1, mark + 1)  # another server got there first
    assert store.releases_recorded_until() == mark and len(released()) == 3


def test_a_release_sweep_reads_only_the_datasets_released_since_the_last(embargoed, monkeypatch):
    """The sweep selects by observation time in SQL: with fifteen covered datasets, a sweep when
    only visit 1's has come out of embargo judges at most visit 1's and its neighbour's, not all."""
    from skybutler.embargo import EmbargoCheck, record_releases

    local, url, tokens, refs, clock = embargoed
    local.put_many("metrics", [({"v": v}, {"instrument": "Cam", "visit": v, "detector": d})
                               for v in (4, 5, 6) for d in range(4)], run="run/a")
    judged = []
    original = EmbargoCheck._observation_end
    monkeypatch.setattr(EmbargoCheck, "_observation_end",
                        lambda self, values: judged.append(values["visit"]) or original(self, values))
    assert record_releases(local, int((visit_end(1) + 80 * 3600 + 100) * 1e9)) == 1
    assert set(judged) <= {1, 2} and len(judged) <= 2
    judged.clear()
    assert record_releases(local, int((visit_end(6) + 80 * 3600 + 100) * 1e9)) == 14
    assert sorted(set(judged)) == [2, 3, 4, 5, 6]


def test_keyset_pages_of_a_find_first_search_with_a_fallen_through_match(embargoed):
    """A find-first search whose hidden first match gives way to another collection's dataset
    (another dataset ID, so another place in the order) pages by key into the whole answer,
    sorted, each dataset once: the replacement is not where the hidden row was."""
    local, url, tokens, refs, clock = embargoed
    local.put({"v": "fallback"}, "metrics", instrument="Cam", visit=2, detector=0, run="other/run")
    pat = Butler(url, token=tokens["pat"], collections="chain")
    for order in (("dataset_id",), ("-dataset_id",), ("-visit", "dataset_id"), ("detector", "-dataset_id")):
        results = pat.query_datasets("metrics", find_first=True).order_by(*order)
        everything = list(results)
        for name in reversed(order):
            field = name.lstrip("-")
            everything.sort(key=(lambda r: str(r.id)) if field == "dataset_id" else (lambda r, f=field: r.data_id[f]),
                            reverse=name.startswith("-"))
        assert [r.id for r in everything] == [r.id for r in results], order  # the whole answer is in order
        for size in (1, 2):
            seen, page = [], list(results.limit(size))
            while page and len(seen) <= len(everything):
                seen += page
                last = page[-1]
                page = list(results.after([str(last.id) if n.lstrip("-") == "dataset_id"
                                           else last.data_id[n.lstrip("-")] for n in order]).limit(size))
            assert [r.id for r in seen] == [r.id for r in everything], (order, size)
            rows = results.limit(size).to_arrow().column("dataset_id").to_pylist()
            assert rows == [str(r.id) for r in everything[:size]], (order, size)


def test_a_lookup_of_many_data_ids_answers_what_one_lookup_each_does(embargoed):
    """``find_many`` (a pipeline run's in-run lookups) against ``find_dataset`` per data ID, along a
    chain whose first RUN holds datasets hidden from pat: the search goes on past them, as per ID."""
    from skybutler.dimensions import DataCoordinate

    local, url, tokens, refs, clock = embargoed
    local.put({"v": 20}, "metrics", instrument="Cam", visit=2, detector=0, run="other/run")
    clock[0] = visit_end(1) + 80 * 3600  # visit 1 released, 2 and 3 still hidden from pat
    group = local.get_dataset_type("metrics").group(local.universe)
    wanted = [DataCoordinate.standardize(group, {"instrument": "Cam", "visit": v, "detector": d})
              for v in (1, 2, 3, 4) for d in (0, 1)]
    answers = []
    for name in ("pat", "rita"):
        who = Butler(url, token=tokens[name])
        for collections in (["chain"], ["run/a"], ["other/run", "run/a"]):
            found = who._find_many("metrics", wanted, collections)
            one_each = {d: who.find_dataset("metrics", dict(d.required), collections=collections) for d in wanted}
            assert found == {d: ref for d, ref in one_each.items() if ref is not None}
            answers.append(sorted((d["visit"], d["detector"], ref.run) for d, ref in found.items()))
    assert answers[0] == [(1, 0, "run/a"), (1, 1, "other/run"), (2, 0, "other/run")]  # pat on the chain
    assert answers[3] == [(1, 0, "run/a"), (1, 1, "other/run"), (2, 0, "run/a"), (3, 0, "run/a")]  # rita
