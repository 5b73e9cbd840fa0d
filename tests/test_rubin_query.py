"""``with butler.query() as q:``, the Rubin butler's query context, compared with the Rubin
butler (the oracle) on the same Rubin-made repository imported into skybutler, locally and
through a server; its expression-object parts are refused by name."""

from __future__ import annotations

import re

import pytest

from rubin_repos import pair, repos  # noqa: F401 (fixtures)
from skybutler.errors import NotOfferedError

pytest.importorskip("fastapi")


def _facts(results) -> list[tuple]:
    """Each result as comparable values: a ref's ID and data ID, a data ID, a record's key and fields."""
    out = []
    for r in results:
        if hasattr(r, "datasetType"):
            out.append((str(r.id), tuple(sorted(dict(r.dataId.required).items()))))
        elif hasattr(r, "required"):
            out.append(tuple(sorted(dict(r.required).items())))
        else:  # a detector or visit record
            out.append((r.id, getattr(r, "full_name", None) or r.name))
    return out


CASES = [
    (lambda q: q.datasets("summary", collections="Cam/defaults").where("visit = 2", instrument="Cam"), False),
    (lambda q: q.datasets("summary", "Cam/run1", find_first=False).where({"instrument": "Cam"}, "detector > :d",
                                                                        bind={"d": 0}), False),
    (lambda q: q.where("band = 'r'", instrument="Cam").datasets("cat", ["Cam/run1"]), False),
    (lambda q: q.datasets("bias", collections="Cam/calib", find_first=False), False),
    (lambda q: q.data_ids(["visit", "detector"]).where("band = 'g'", instrument="Cam"), False),
    (lambda q: q.where(instrument="Cam").data_ids("exposure").where("exposure.observation_type = 'science'"), False),
    (lambda q: q.data_ids(["tract", "patch"]).where(skymap="sky").order_by("-patch").limit(1), True),
    (lambda q: q.dimension_records("detector").where("detector < 2", instrument="Cam"), False),
    (lambda q: q.dimension_records("visit").where(instrument="Cam").order_by("visit").limit(1), True),
    (lambda q: q.datasets("summary", "Cam/run1").where(instrument="Cam", visit=1).data_ids, False),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_query_context_answers_as_the_rubin_butlers(pair, case):
    rubin, ours, _ = pair
    build, ordered = CASES[case]
    with rubin.query() as theirs_q, ours.query() as mine_q:
        theirs, mine = build(theirs_q), build(mine_q)
        expected = _facts(theirs)
        got = _facts(mine)
        assert expected, "a comparison of empty answers proves nothing"
        assert (got if ordered else sorted(got)) == (expected if ordered else sorted(expected))
        assert mine.count() == theirs.count() == len(expected) and mine.any() is theirs.any() is True


def test_records_nothing_found_and_refusals(pair):
    rubin, ours, _ = pair
    with ours.query() as q, rubin.query() as rq:
        mine = list(q.datasets("summary", "Cam/run1").where(instrument="Cam").with_dimension_records())
        theirs = list(rq.datasets("summary", "Cam/run1").where(instrument="Cam").with_dimension_records())
        assert sorted((str(r.id), r.dataId.records["visit"].name) for r in mine) == sorted(
            (str(r.id), r.dataId.records["visit"].name) for r in theirs)
        none = q.datasets("summary", "Cam/run1").where("visit = 3", instrument="Cam")
        assert not none.any() and none.count() == 0 and list(none) == []
        assert not rq.datasets("summary", "Cam/run1").where("visit = 3", instrument="Cam").any()
        assert q.datasets("summary", "Cam/run1").dataset_type.name == "summary"
        for call, instead in ((lambda: q.expression_factory, "where-clause string"),
                              (lambda: q.join_dimensions(["visit"]), "data_ids(dimensions)"),
                              (lambda: q.datasets("summary", "Cam/run1").where(object()), "where-clause string")):
            with pytest.raises(NotOfferedError, match=re.escape(instead)):
                call()
