"""The where-language as the Rubin butler documents it: each case is written from its
documented rules, parsed, evaluated on a small repository and checked against answers
worked out by hand from the fixture's records; refused cases give the right error at the
right column.  The real Rubin parser (lsst-daf-butler, when installed) is an independent
judge of which texts parse: hypothesis feeds both parsers the same random texts.

The repository (conftest.populate): camera Cam, detectors 0-3 (full names R00_S00..03),
visits 1-6 with filters g r i g r i, 30 s each, visit v beginning at
2025-01-02T00:00:00 TAI + (v-1) x 120 s, centred on (7.3 v, -75 + 11 v) degrees with a
3.5 deg square region; ``metrics`` datasets of (v, 0) for v = 1, 2, 3 in run/a and of
(2, 0) in run/b, searched through chain = [run/b, run/a].
"""

from __future__ import annotations

import datetime
import uuid

import lsst.sphgeom as sphgeom
import pytest
from astropy.coordinates import SkyCoord
from astropy.time import Time, TimeDelta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import STACKS, populate, stack_locations
from skybutler import Timespan
from skybutler.dimensions import regions
from skybutler.errors import QueryError
from skybutler.query import parse_expression

ALL = {1, 2, 3, 4, 5, 6}


@pytest.fixture(scope="module", params=STACKS)
def repo(request, tmp_path_factory):
    from skybutler import Butler

    tmp = tmp_path_factory.mktemp(f"rubin_syntax_{request.param}")
    butler = Butler.create(tmp / "repo", **stack_locations(request.param, tmp))
    populate(butler)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    first = butler.put_many("metrics", [({"v": v}, {"instrument": "Cam", "visit": v, "detector": 0})
                                        for v in (1, 2, 3)], run="run/a")
    second = butler.put({"v": 2}, "metrics", instrument="Cam", visit=2, detector=0, run="run/b")
    butler.collections.register("chain", "chained")
    butler.collections.set_chain("chain", ["run/b", "run/a"])
    butler.refs = {"a1": first[0], "a2": first[1], "a3": first[2], "b2": second}
    yield butler
    butler.close()


def visits(butler, where: str, **bind) -> set[int]:
    return {d["visit"] for d in butler.query_data_ids(["visit"], where, bind=bind)}


# (where, bind, the visits it selects)
ACCEPTED = [
    # comparisons, arithmetic, precedence
    ("visit > 2 AND visit < 5", {}, {3, 4}),
    ("visit >= 5 OR visit <= 1", {}, {1, 5, 6}),
    ("visit != 3 AND visit.id != 4", {}, {1, 2, 5, 6}),
    ("(visit = 1 OR visit = 2) AND visit % 2 = 1", {}, {1}),
    ("visit = 1 OR visit = 2 AND band = 'g'", {}, {1}),
    ("visit * 2 - 1 = 5", {}, {3}),
    ("-visit < -5", {}, {6}),
    ("+visit = 3", {}, {3}),
    ("visit - -1 = 4", {}, {3}),
    ("visit / 2 = 1.5", {}, {3}),
    ("NOT (visit > 2)", {}, {1, 2}),
    ("NOT visit = 1 AND visit < 3", {}, {2}),
    ("visit in (1, 2) and not band = 'g'", {}, {2}),
    ("3 < visit", {}, {4, 5, 6}),
    # IN lists and ranges
    ("visit IN (1..6:2)", {}, {1, 3, 5}),
    ("visit IN (1, 2..3, 6)", {}, {1, 2, 3, 6}),
    ("visit NOT IN (1..4)", {}, {5, 6}),
    ("visit IN (-10..-1:2)", {}, set()),
    ("visit IN ( 4 .. 6 : 2 )", {}, {4, 6}),
    ("visit IN (5..4)", {}, set()),
    ("visit IN (-1, +2)", {}, {2}),
    # strings and implied dimensions
    ("band = 'r'", {}, {2, 5}),
    ("band IN ('g', 'i')", {}, {1, 3, 4, 6}),
    ("physical_filter = 'Cam-i' AND instrument = 'Cam'", {}, {3, 6}),
    ("visit.physical_filter = 'Cam-g'", {}, {1, 4}),
    ("visit.day_obs = 20250101 AND visit.exposure_time > 20", {}, ALL),
    ("visit.observation_type = 'science'", {}, ALL),
    # a field named alone, when one element of the query has it
    ("exposure_time > 20 AND visit < 3", {}, {1, 2}),
    ("observation_type = 'science' AND visit IN (1, 6)", {}, {1, 6}),
    # NULL
    ("visit.target_name = NULL", {}, ALL),
    ("NULL = visit.target_name", {}, ALL),
    ("visit.target_name != null", {}, set()),
    ("visit.target_name IN (NULL)", {}, ALL),
    # binds, with a colon or bare
    ("instrument = :inst AND visit = :v", {"inst": "Cam", "v": 4}, {4}),
    ("visit = v", {"v": 5}, {5}),
    ("visit IN (:vs)", {"vs": [1, 5]}, {1, 5}),
    ("visit IN (vs)", {"vs": (2, 3)}, {2, 3}),
    ("visit IN (:vs, 6)", {"vs": {1}}, {1, 6}),
    ("visit NOT IN (:vs)", {"vs": range(1, 6)}, {6}),
    ("visit IN (:vs)", {"vs": []}, set()),
    ("visit.exposure_time > :x", {"x": 29.5}, ALL),
    ("band = :b OR visit = :v", {"b": "i", "v": 1}, {1, 3, 6}),
    # time: three-part names, literals in every documented form and scale
    ("visit.timespan.begin > T'2025-01-02T00:07:00/tai'", {}, {5, 6}),
    ("visit.timespan.end <= T'2025-01-02T00:02:30/tai'", {}, {1, 2}),
    ("visit.timespan.begin >= T'2025-01-02T00:07:23'", {}, {5, 6}),  # UTC: 00:08:00 TAI
    ("visit.timespan.begin >= T'2025-01-02T00:07:24'", {}, {6}),  # UTC: 00:08:01 TAI
    ("visit.timespan.begin >= T'2025-01-02 00:07:24/utc'", {}, {6}),
    ("visit.timespan.begin >= T'isot/2025-01-02T00:08:00/tai'", {}, {5, 6}),
    ("visit.timespan.begin > T'60677.005'", {}, {5, 6}),  # MJD is TAI: 00:07:12
    ("visit.timespan.begin > T'mjd/60677.005/tai'", {}, {5, 6}),
    ("visit.timespan.begin < T'2025:002:00:01:00/tai'", {}, {1}),
    ("visit.timespan.begin < :t", {"t": Time("2025-01-02T00:03:00", scale="tai")}, {1, 2}),
    ("visit.timespan.begin < :t", {"t": datetime.datetime(2025, 1, 2, 0, 2, 23)}, {1, 2}),  # UTC
    ("visit.timespan OVERLAPS T'2025-01-02T00:02:10/tai'", {}, {2}),
    ("visit.timespan OVERLAPS (T'2025-01-02T00:02:10/tai', T'2025-01-02T00:04:10/tai')", {}, {2, 3}),
    ("visit.timespan OVERLAPS (T'2025-01-02T00:09:00/tai', NULL)", {}, {6}),
    ("visit.timespan OVERLAPS (NULL, T'2025-01-02T00:00:10/tai')", {}, {1}),
    ("visit.timespan OVERLAPS :span", {"span": Timespan(Time("2025-01-02T00:04:10", scale="tai"), None)},
     {3, 4, 5, 6}),
    ("visit.timespan OVERLAPS (:b, :e)", {"b": Time("2025-01-02T00:06:00", scale="tai"),
                                          "e": Time("2025-01-02T00:06:01", scale="tai")}, {4}),
    ("visit.timespan < T'2025-01-02T00:04:30/tai'", {}, {1, 2, 3}),
    # sky regions: functions, IVOA strings, binds of every region type
    ("visit.region OVERLAPS POINT(21.9, -42)", {}, {3}),
    ("visit.region OVERLAPS point(21.9, -42.0)", {}, {3}),
    ("visit.region OVERLAPS CIRCLE(21.9, -42, 0.5)", {}, {3}),
    ("visit.region OVERLAPS CIRCLE(21.9, -42 - 10, 1)", {}, set()),
    ("visit.region OVERLAPS BOX(21.9, -42, 1, 1)", {}, {3}),
    ("visit.region OVERLAPS POLYGON(21, -43, 23, -43, 22, -41)", {}, {3}),
    ("visit.region OVERLAPS REGION('CIRCLE 21.9 -42 0.5')", {}, {3}),
    ("visit.region OVERLAPS REGION('RANGE 20 24 -43 -41')", {}, {3}),
    ("visit.region OVERLAPS REGION('POLYGON 21 -43 23 -43 22 -41')", {}, {3}),
    ("visit.region OVERLAPS REGION(:pos)", {"pos": "CIRCLE 36.5 -20 0.5"}, {5}),
    ("visit.region OVERLAPS :r", {"r": regions.circle(36.5, -20, 0.5)}, {5}),
    ("visit.region OVERLAPS :r", {"r": sphgeom.LonLat.fromDegrees(36.5, -20)}, {5}),
    ("visit.region OVERLAPS :r", {"r": SkyCoord(36.5, -20, unit="deg")}, {5}),
    ("visit.region OVERLAPS POINT(:ra, :dec)", {"ra": 43.8, "dec": -9}, {6}),
    ("visit.region OVERLAPS POINT(21.9, -42) AND band = 'i'", {}, {3}),
    # GLOB on strings
    ("GLOB(visit.physical_filter, 'Cam-?') AND visit < 3", {}, {1, 2}),
    ("glob(physical_filter, :p)", {"p": "*-r"}, {2, 5}),
    ("GLOB(physical_filter, 'cam-*')", {}, set()),  # case-sensitive, as the Rubin butler's
    ("GLOB(physical_filter, 'Cam-[gr]')", {}, set()),  # brackets are themselves
    ("GLOB(physical_filter, 'Cam-\\*') OR GLOB(physical_filter, '*_*')", {}, set()),  # escaped *; _ is itself
    # a where-clause on a detector field
    ("detector.full_name = 'R00_S01' AND visit = 1", {}, {1}),
    # times beyond those the registry stores compare as the Rubin butler's clipped ones do
    ("visit.timespan.begin > T'1600-01-01'", {}, ALL),
    ("visit.timespan.begin < T'9999-12-31T23:59:59'", {}, ALL),
    ("visit.timespan.end > T'0001-01-01T00:00:00'", {}, ALL),
    ("visit.timespan.begin > T'2300-01-01'", {}, set()),
    ("visit.timespan OVERLAPS (T'1500-01-01', T'2500-01-01')", {}, ALL),
    ("visit.timespan.begin < :t", {"t": Time("2999-01-01", scale="tai")}, ALL),
]


@pytest.mark.parametrize(("where", "bind", "expected"), ACCEPTED, ids=[w for w, _, _ in ACCEPTED])
def test_documented_expressions_give_the_hand_computed_answer(repo, where, bind, expected):
    assert parse_expression(where) is not None
    assert visits(repo, where, **bind) == expected


def refs(butler, where: str, find_first: bool = True, **bind) -> set[tuple[int, str]]:
    return {(r.data_id["visit"], r.run) for r in butler.query_datasets("metrics", where, collections="chain",
                                                                       find_first=find_first, bind=bind)}


def test_dataset_fields(repo):
    first = {(1, "run/a"), (2, "run/b"), (3, "run/a")}
    every = first | {(2, "run/a")}
    assert refs(repo, "metrics.run = 'run/a'") == {(1, "run/a"), (3, "run/a")}
    assert refs(repo, "run = 'run/a'", find_first=False) == {(1, "run/a"), (2, "run/a"), (3, "run/a")}
    assert refs(repo, "metrics.collection = 'run/b'", find_first=False) == {(2, "run/b")}
    assert refs(repo, "collection IN ('run/b', 'other')") == {(2, "run/b")}
    # ingest times are now-ish: after 2020, before an hour from now (UTC and TAI literals alike)
    assert refs(repo, "ingest_date > T'2020-01-01'") == first
    assert refs(repo, "metrics.ingest_date < T'2020-01-01T00:00:00/tai'") == set()
    later = Time(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None), scale="utc") + TimeDelta(3600,
                                                                                                           format="sec")
    assert refs(repo, "ingest_date < :t", find_first=False, t=later) == every
    assert refs(repo, "ingest_date > :t", t=later) == set()
    a1, b2 = repo.refs["a1"], repo.refs["b2"]
    assert refs(repo, "dataset_id = :i", i=a1.id) == {(1, "run/a")}
    assert refs(repo, f"metrics.dataset_id IN (UUID('{b2.id}'), :j)", find_first=False, j=repo.refs["a2"].id) == {
        (2, "run/b"), (2, "run/a")}
    assert refs(repo, "dataset_id = :i", i=uuid.uuid4()) == set()
    # on data IDs: the dataset first found for each data ID
    pairs = {(d["visit"], d["detector"]) for d in repo.query_data_ids(["visit", "detector"], "metrics.run = 'run/b'",
                                                                       collections="chain")}
    assert pairs == {(2, 0)}
    bare = repo.query_data_ids(["visit", "detector"], "run = 'run/a'", collections="chain", datasets="metrics")
    assert {(d["visit"], d["detector"]) for d in bare} == {(1, 0), (3, 0)}


# (where, bind, message, column) of expressions the Rubin language refuses, or that mean nothing
REFUSED = [
    ("visit <> 3", {}, "write != for 'not equal'", 7),
    ("visit == 3", {}, "write a single = for equality", 7),
    ("band = 'r''s'", {}, "'' is not an escape", 10),
    ('band = "r"', {}, "single quotes", 8),
    ("visit IN vs", {"vs": [1]}, r"needs parentheses: IN \(vs\)", 10),
    ("visit.timespan.begin > T'2025-01-02T00:00:00Z'", {}, "drop the 'Z'", 24),
    ("visit.timespan.begin > T'60677'", {}, "an MJD needs a decimal point", 24),
    ("visit.timespan.begin > T'2025-01-02/mars'", {}, "cannot read time", 24),
    ("visit = 1..3", {}, "only appear inside IN", 9),
    ("visit IN (5..1)", {}, r"range 5..1 ends before it starts; write 1..5", 11),
    ("visit IN (2, 6..0:3)", {}, r"range 6..0:3 ends before it starts; write 0..6:3", 14),
    ("1 < visit < 3", {}, "chained comparison '1 < visit < 3'.*write '1 < visit AND visit < 3'", 11),
    ("visit = 1 = 2", {}, "chained comparison", 11),
    ("(visit = 1) = TRUE", {}, r"'visit = 1' is a condition \(true or false\), not a value to compare with TRUE by =; "
     "write 'visit = 1'", 13),
    ("(visit > 1) = (visit < 3)", {}, "'visit > 1' is a condition .* combine conditions with AND, OR and NOT", 13),
    ("FALSE = (visit IN (1, 2))", {}, r"'visit IN \(1, 2\)' is a condition .* write 'NOT \(visit IN \(1, 2\)\)'", 7),
    ("frobnicate(visit) AND visit = 1", {}, "unknown function 'frobnicate'", 1),
    ("visit = :v", {}, r"bind parameter :v is not given", 9),
    ("visit = 1", {"v": 1}, "bind parameter 'v' given but not named", None),
    ("visit IN (1, 2,)", {}, r"found '\)'", 16),
    ("visit.timespan.middle > T'2025-01-02/tai'", {}, "ends in .begin or .end", 1),
    ("visit.exposure_time.begin > 1", {}, "only the timespan of visit has a .begin", 1),
    ("visit.region OVERLAPS POINT(1, 91)", {}, "declination 91.0 is outside", 32),
    ("visit.region OVERLAPS CIRCLE(1, 2, 'x')", {}, "numbers in degrees", 36),
    ("visit.region OVERLAPS CIRCLE(1, 2, visit)", {}, "numbers in degrees", 36),
    ("visit.region OVERLAPS REGION('TRIANGLE 1 2 3')", {}, "not an IVOA region", 30),
    ("visit.region OVERLAPS POINT(1)", {}, "POINT.. takes 2 arguments", 23),
    ("visit.region OVERLAPS 3", {}, "OVERLAPS needs two regions", 14),
    ("visit.timespan OVERLAPS (1, 2)", {}, "needs times or NULL", 26),
    ("visit = 'one'", {}, "cannot compare int with str", 9),
    ("visit.timespan.begin = 3", {}, "cannot compare time with int", 24),
    ("GLOB(1, 'x')", {}, "GLOB.. takes a name", 1),
    ("timespan OVERLAPS T'2025-01-02/tai'", {}, "field of several elements of this query; write one of "
     "day_obs.timespan, visit.timespan", 1),
    ("vist = 3", {}, "unknown name 'vist'", 1),
    ("ingest_date > T'2020-01-01'", {}, "'ingest_date' alone names a field of the query's dataset type", 1),
    ("visit.timespan OVERLAPS POINT(1, 2) AND visit = 1", {}, "OVERLAPS needs two regions", 16),
    ("visit = 1 OR visit.region OVERLAPS POINT(1, 2)", {}, "may only be combined .* by AND", 27),
    # hostile values: a precise error, never an internal one
    ("visit.region OVERLAPS visit.region", {}, "compares visit's region with itself", 14),
    ("visit = 100000000000000000000", {}, "outside the 64-bit integer range", 9),
    ("visit = -9223372036854775809", {}, "outside the 64-bit integer range", 9),
    ("visit IN (1..100000000000000000000)", {}, "outside the 64-bit integer range", 11),
    ("visit = :v", {"v": 2**64}, "outside the 64-bit integer range", 9),
    ("visit.region OVERLAPS POLYGON(1, 2, 1, 2, 1, 2)", {}, r"POLYGON\(.*\) is not a region", 23),
    ("visit.region OVERLAPS BOX(1, 2, 400, 400)", {}, r"BOX\(.*\) is not a region", 23),
]


@pytest.mark.parametrize(("where", "bind", "message", "column"), REFUSED, ids=[w for w, _, _, _ in REFUSED])
def test_refused_expressions_name_the_problem_at_its_column(repo, where, bind, message, column):
    with pytest.raises(QueryError, match=message) as caught:
        repo.query_data_ids(["visit"], where, bind=bind).count()
    err = caught.value
    assert err.column == column
    if column is not None:
        assert err.expression == where
        assert str(err).splitlines()[-1].index("^") - 2 == column - 1


# -- the real Rubin parser as the judge of what parses ----------------------------------------

_TOKENS = ["visit", "a.b", "a.b.c", ":x", "x", "1", "-1", "1.5", ".5e3", "'s'", "T'2020-01-01'", "T'60000.5'",
           "T'2020-01-01/tai'", "1..5", "2..9:2", "(", ")", ",", "=", "!=", "<", "<=", ">", ">=", "+", "-", "*",
           "/", "%", "AND", "or", "NOT", "IN", "OVERLAPS", "POINT(", "f(", "GLOB(visit,", "NULL", "TRUE",
           "CIRCLE(", "REGION(", "UUID('12345678-1234-5678-1234-567812345678')"]


def rubin_parses(text: str) -> bool:
    parser = pytest.importorskip("lsst.daf.butler.queries.expressions.parser")
    try:
        parser.parse_expression(text)
    except Exception:  # the Rubin parser raises several exception types for bad input
        return False
    return True


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=9))
def test_what_the_rubin_parser_accepts_parses(tokens):
    """Every text the Rubin parser accepts parses; no text crashes with anything but QueryError."""
    text = " ".join(tokens)
    try:
        parse_expression(text)
        ours = True
    except QueryError as err:
        ours = False
        assert err.expression is not None and err.column is not None and 1 <= err.column <= len(text) + 1
    if rubin_parses(text):
        assert ours, text


CASES_BOTH_PARSERS_JUDGE = [w for w, _, _ in ACCEPTED] + [w for w, _, _, _ in REFUSED]


@pytest.mark.parametrize("where", CASES_BOTH_PARSERS_JUDGE)
def test_the_table_agrees_with_the_rubin_parser(where):
    """Both parsers accept, or both refuse, each expression of the tables above (the meaning
    is judged later, so a refused case may parse)."""
    try:
        parse_expression(where)
        ours = True
    except QueryError:
        ours = False
    assert ours == rubin_parses(where), where


# -- result data IDs carry implied values, as the Rubin butler's do -------------------------------


def test_result_data_ids_carry_implied_values(repo):
    import pickle

    refs_found = {r.data_id["visit"]: r for r in repo.query_datasets("metrics", collections="chain")}
    ref = refs_found[2]
    assert (ref.data_id["band"], ref.data_id["physical_filter"], ref.data_id["day_obs"]) == ("r", "Cam-r", 20250101)
    assert ref.data_id.get("band") == "r" and "physical_filter" in ref.data_id and ref.data_id.has_full
    assert dict(ref.data_id) == {"instrument": "Cam", "visit": 2, "detector": 0}  # iteration: the required values
    assert ref.data_id.mapping == {"instrument": "Cam", "band": "r", "physical_filter": "Cam-r",
                                   "day_obs": 20250101, "visit": 2, "detector": 0}
    assert refs_found[3].data_id["band"] == "i" and refs_found[1].data_id["band"] == "g"
    copied = pickle.loads(pickle.dumps(ref))
    assert copied == ref and copied.data_id["band"] == "r" and type(copied.data_id).__name__ == "DataCoordinate"
    ids = {(d["visit"], d["detector"]): d for d in repo.query_data_ids(["visit", "detector"], "visit > 4")}
    assert {k: (d["band"], d["physical_filter"]) for k, d in ids.items()} == {
        (v, det): ("ri"[v - 5], f"Cam-{'ri'[v - 5]}") for v in (5, 6) for det in range(4)}
    with pytest.raises(KeyError):
        ids[(5, 0)]["exposure"]
    plain = next(iter(repo.query_data_ids(["detector"])))
    assert plain.mapping == {"instrument": "Cam", "detector": plain["detector"]}


def test_exposure_data_ids_carry_group_day_obs_and_filter(tmp_path):
    from skybutler import Butler

    with Butler.create(tmp_path / "repo") as butler:
        populate(butler)
        butler.insert_records("group", [{"instrument": "Cam", "name": "g1"}])
        butler.insert_records("exposure", [{"instrument": "Cam", "id": 11, "physical_filter": "Cam-i",
                                            "day_obs": 20250101, "group": "g1", "obs_id": "e11"}])
        (data_id,) = butler.query_data_ids(["exposure"])
        assert (data_id["group"], data_id["day_obs"], data_id["physical_filter"], data_id["band"]) == (
            "g1", 20250101, "Cam-i", "i")


_REAL = ["visit", "detector", "band", "instrument", "visit.exposure_time", "visit.timespan", "visit.timespan.begin",
         "visit.region", "detector.full_name", "exposure_time", "metrics.run", "ingest_date", ":v", "v", "1", "2.5",
         "-3", "'r'", "T'2025-01-02T00:04:00'", "T'60677.0'", "1..4", "NULL", "TRUE", "(", ")", ",", "=", "!=", "<",
         ">=", "+", "*", "%", "AND", "OR", "NOT", "IN", "OVERLAPS", "POINT(21.9, -42)", "CIRCLE(", "REGION(",
         "GLOB(detector.full_name,", "f(", "UUID('12345678-1234-5678-1234-567812345678')"]


_VALUES = st.sampled_from(["visit", "detector", "band", "visit.exposure_time", "visit.timespan", "visit.region",
                           "visit.timespan.begin", "detector.full_name", "exposure_time", "metrics.run", "ingest_date",
                           ":v", "v", "1", "2.5", "-3", "'r'", "T'2025-01-02T00:04:00'", "T'60677.0'", "1..4", "NULL",
                           "TRUE", "POINT(21.9, -42)", "CIRCLE(1, 2, 3)", "REGION('CIRCLE 1 2 3')",
                           "(T'60677.0', NULL)", "f(1)", "UUID('12345678-1234-5678-1234-567812345678')"])
_EXPRESSIONS = st.recursive(
    _VALUES,
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["=", "!=", "<", ">=", "+", "-", "*", "/",
                                                                            "%", "AND", "OR", "OVERLAPS"]), inner),
        st.builds(lambda a: f"NOT ({a})", inner),
        st.builds(lambda a: f"-({a})", inner),
        st.builds(lambda a, items: f"{a} IN ({', '.join(items)})", inner, st.lists(_VALUES, min_size=1, max_size=3)),
        st.builds(lambda a: f"GLOB({a}, 'R*')", st.sampled_from(["detector.full_name", "band", "visit", "v"])),
        st.builds(lambda a: f"({a})", inner),
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.lists(st.sampled_from(_REAL), min_size=1, max_size=8).map(" ".join), _EXPRESSIONS))
def test_any_parsed_expression_answers_or_says_why(repo, text):
    """Whatever parses either runs, or is refused with a QueryError pointing into the
    expression: never another exception, on data IDs and datasets alike."""
    try:
        parse_expression(text)
    except QueryError:
        return
    for query in (lambda: repo.query_data_ids(["visit", "detector"], text, bind={"v": 2}).count(),
                  lambda: len(list(repo.query_datasets("metrics", text, collections="chain", bind={"v": 2})))):
        try:
            query()
        except QueryError as err:
            assert err.expression is not None or "bind parameter" in err.message


def test_a_long_generated_or_answers_or_says_to_use_in(repo):
    """A chain of thousands of ``visit = N`` (what a script writes for a list of data IDs) gives the
    IN list's answer; a chain SQLite cannot nest (1,000+ conjunctions) is a QueryError naming the fix."""
    chain = " OR ".join(f"visit = {v}" for v in range(1, 3001))
    assert visits(repo, chain) == visits(repo, "visit IN (1..3000)") == {1, 2, 3, 4, 5, 6}
    assert visits(repo, f"band = 'g' AND ({chain} OR visit.id = 2)") == visits(repo, "band = 'g'")
    pairs = " OR ".join(f"(visit = {v} AND detector = {v % 4})" for v in range(1, 1201))
    try:
        found = {(d["visit"], d["detector"]) for d in repo.query_data_ids(["visit", "detector"], pairs)}
    except QueryError as err:
        assert "IN" in str(err) and repo.registry.db.dialect == "sqlite"
    else:  # PostgreSQL nests deeper
        assert found == {(v, v % 4) for v in range(1, 7)}
