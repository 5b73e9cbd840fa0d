"""Where-expressions on which skybutler and the real Rubin butler (lsst-daf-butler) part,
each put to both on test_rubin_expressions.py's repository and its import: what the Rubin
butler refuses and skybutler answers, what both refuse (skybutler naming the problem), and the
documented differences (a boolean bind, integer overflow, floats beyond the doubles, dataset
fields after a find-first search, a dataset in two searched collections, open-ended validity).
Pinned here so that a change on either side shows.
"""

from __future__ import annotations

import pytest

daf_butler = pytest.importorskip("lsst.daf.butler", reason="the Rubin butler is the oracle of these tests")

from astropy.time import Time  # noqa: E402

import test_rubin_expressions as expressions  # noqa: E402
from skybutler.errors import QueryError  # noqa: E402
from test_rubin_expressions import BEST_FIRST, C, D, E, V, _rubin_data_ids  # noqa: E402

#: that module's repository and its import on every stack (made again for this module)
rubin, ours = expressions.rubin, expressions.ours


# What the Rubin butler refuses and skybutler answers (documented in the user guide).
SKYBUTLER_ANSWERS = [
    (E, "exposure.can_see_sky = TRUE", {}, "Unrecognized identifier 'TRUE'", {("exposure", 1)}),
    (V, "visit.exposure_time * 2 > 59.9", {}, "do not agree", {("visit", 1), ("visit", 2)}),
    (V, "visit.timespan OVERLAPS day_obs.timespan", {}, "not necessary", {("visit", 1), ("visit", 2)}),
    (V, "visit.exposure_time IN (:xs)", {"xs": [29.5, 30]}, "Mismatched types", {("visit", 1), ("visit", 2)}),
    (V, "visit.timespan.begin > T' 2024-01-01 /tai'", {}, "Failed to parse", {("visit", 1), ("visit", 2)}),
]


@pytest.mark.parametrize(("dims", "where", "bind", "rubin_says", "expected"), SKYBUTLER_ANSWERS,
                         ids=[w for _, w, _, _, _ in SKYBUTLER_ANSWERS])
def test_what_skybutler_answers_beyond_the_rubin_butler(rubin, ours, dims, where, bind, rubin_says, expected):
    with pytest.raises(daf_butler.InvalidQueryError, match=rubin_says):
        _rubin_data_ids(rubin["butler"], dims, where, bind)
    assert {(dims[0], d[dims[0]]) for d in ours.query_data_ids(dims, where, bind=bind, instrument="Cam")} == expected


def test_a_boolean_bind_compared_with_a_number_is_refused(rubin, ours):
    """The Rubin butler reads True as 1 (a Python bool is an int); skybutler refuses by name."""
    theirs, _ = _rubin_data_ids(rubin["butler"], V, "visit = :n", {"n": True})
    assert [d["visit"] for d in theirs] == [1]
    with pytest.raises(QueryError, match="cannot compare int with bool"):
        ours.query_data_ids(V, "visit = :n", bind={"n": True}, instrument="Cam")


def test_integer_overflow_is_answered_on_sqlite_and_refused_on_postgresql(rubin, ours):
    """A documented difference: SQLite (and the Rubin butler on it) computes past the 64-bit
    integers in floating point; PostgreSQL cannot, so skybutler there refuses by name."""
    where = "visit * 4611686018427387904 > 0"
    found, data_id = _rubin_data_ids(rubin["butler"], V, where, {})
    if ours.registry.db.dialect == "sqlite":
        assert {d["visit"] for d in ours.query_data_ids(V, where, **data_id)} == {d["visit"] for d in found} == {1, 2}
    else:
        with pytest.raises(QueryError, match="leaves the 64-bit integer range"):
            ours.query_data_ids(V, where, **data_id).count()


def test_a_float_beyond_the_doubles_is_refused(rubin, ours):
    """A documented difference: the Rubin butler reads 1e400 as infinity; skybutler refuses it."""
    assert {d["visit"] for d in _rubin_data_ids(rubin["butler"], V, "visit < 1e400", {})[0]} == {1, 2}
    with pytest.raises(QueryError, match="the number 1e400 is too large"):
        ours.query_data_ids(V, "visit < 1e400").count()


def test_find_first_applies_dataset_fields_after_the_search(rubin, ours):
    """A documented difference: a find-first search with a condition on a dataset field keeps
    the datasets first found that satisfy it; the Rubin butler applies the condition first and
    finds the first of those that remain."""
    where = "instrument = 'Cam' AND summary.collection != 'Cam/best'"
    theirs = {r.id for r in rubin["butler"].query_datasets("summary", collections=BEST_FIRST, where=where,
                                                           explain=False)}
    mine = {r.id for r in ours.query_datasets("summary", where, collections=BEST_FIRST)}
    tagged = {r.id for r in ours.query_datasets("summary", collections="Cam/best")}
    assert len(theirs) == 6 and mine == theirs - tagged and len(tagged) == 2


def test_a_dataset_in_two_searched_collections_is_listed_once(rubin, ours):
    """A documented difference: without find-first the Rubin butler lists a dataset once per
    collection searched that holds it (a RUN and a TAGGED collection of it: twice)."""
    where = "instrument = 'Cam' AND visit = 1"
    theirs = [r.id for r in rubin["butler"].query_datasets("summary", collections=BEST_FIRST, where=where,
                                                           find_first=False, explain=False)]
    mine = [r.id for r in ours.query_datasets("summary", where, collections=BEST_FIRST, find_first=False)]
    assert len(theirs) == 5 and sorted(mine) == sorted(set(theirs)) and len(mine) == 3


def test_an_open_ended_validity_ends_after_2100(rubin, ours):
    """A documented difference: the Rubin butler stores times from 1970 to 2100 TAI, an unbounded
    side as those limits, and clips later literals to 2100, so to it an open-ended validity range
    does not end after T'2100-01-01'; skybutler stores times to about 2116 and says it does."""
    where = "instrument = 'Cam' AND bias.timespan.end > T'2100-01-01'"
    theirs = {r.id for r in rubin["butler"].query_datasets("bias", collections="Cam/calib", where=where,
                                                           find_first=False, explain=False)}
    mine = {r.id for r in ours.query_datasets("bias", where, collections="Cam/calib", find_first=False)}
    open_ended = {ref.id for ref, span in ours.collections.validity("Cam/calib", "bias") if span.end is None}
    assert theirs == set() and mine == open_ended and len(mine) == 2


# (dimensions, where, bind, what skybutler says): refused by both; skybutler names the problem
BOTH_REFUSE = [
    (V, "name = 'CAM_1'", {}, "'name' is a field of several elements of this query; write one of .*visit.name"),
    (V, "id = 1", {}, "write one of day_obs.id, visit.id"),
    (V, "NULL = NULL", {}, "compares NULL with NULL"),
    (E, "exposure.timespan.begin > T'2024-01-02T04:30:00/local'", {}, "scale 'local' cannot be compared"),
    (E, "exposure.timespan.begin > :t", {"t": Time("2024-01-02T04:30:00", scale="local")}, "scale 'local'"),
    (E, "exposure.azimuth % 2.0 = 0.5", {}, "% takes integers; 'exposure.azimuth' is float"),
    (E, "exposure.seq_num % 1.5 = 0.5", {}, "% takes integers; '1.5' is float"),
    (V, "VISIT = 1", {}, "unknown name 'VISIT'"),
    (V, "visit.target_name IS NULL", {}, "IS is not in the query language; write x = NULL"),
    (V, "visit.target_name is not NULL", {}, "IS is not in the query language"),
    (V, "visit BETWEEN 1 AND 2", {}, "BETWEEN is not in the query language; write a <= x AND x <= b"),
    (V, "visit.name LIKE 'CAM%'", {}, "LIKE is not in the query language; write GLOB"),
    (V, "Visit.Id = 1", {}, "'Visit' is neither a dimension element"),
    (V, "visit = '1'", {}, "cannot compare int with str"),
    (V, "visit = :v", {"v": "1"}, "cannot compare int with str"),
    (V, "visit.day_obs = '20240101'", {}, "cannot compare int with str"),
    (V, "instrument = 1", {}, "cannot compare str with int"),
    (V, "visit IN (1, 'a')", {}, "cannot compare int with str"),
    (V, "visit.timespan.begin > '2024-01-01'", {}, "cannot compare time with str"),
    (V, "visit.timespan.begin > 60311.0", {}, "cannot compare time with float"),
    (V, "band = \"g\"", {}, "strings are written in single quotes"),
    (V, "visit IN ()", {}, "expected a value"),
    (V, "visit IN (1,)", {}, "expected a value"),
    (V, "visit", {}, "'visit' is not a condition"),
    (V, "visit.band = 'r'", {}, "visit has no field 'band'"),
    (V, "POINT() = 1", {}, "POINT.. takes 2 arguments"),
    (D, "detector IN (0..5:0)", {}, "not part of the query language"),
    (V, "visit < 9223372036854775808", {}, "outside the 64-bit integer range"),
    (V, "visit.timespan.begin > T'60311'", {}, "an MJD needs a decimal point"),
    (V, "visit.timespan.begin > T'2024-01-02T04:30:00Z'", {}, "drop the 'Z'"),
    (V, "visit.timespan.begin > T'2024-01-02T04:30:00+01:00'", {}, "is not a time"),
    (V, "visit.timespan.begin > T'2460311.6875/jd'", {}, "cannot read time"),
]


@pytest.mark.parametrize(("dims", "where", "bind", "message"), BOTH_REFUSE, ids=[c[1] for c in BOTH_REFUSE])
def test_what_both_refuse_skybutler_refuses_by_name(rubin, ours, dims, where, bind, message):
    with pytest.raises(Exception):  # noqa: B017 -- the Rubin butler raises InvalidQueryError or astropy's errors
        _rubin_data_ids(rubin["butler"], dims, where, bind)
    with pytest.raises(QueryError, match=message):
        ours.query_data_ids(dims, where, bind=bind).count()


def test_bare_timespan_of_a_dataset_and_an_element_is_ambiguous_to_both(rubin, ours):
    where = "instrument = 'Cam' AND timespan OVERLAPS T'2024-03-01'"
    with pytest.raises(daf_butler.InvalidQueryError, match="Ambiguous identifier 'timespan'"):
        rubin["butler"].query_datasets("summary", collections=C, where=where, explain=False)
    with pytest.raises(QueryError, match="'timespan' is a field of .* and of the query's dataset type"):
        ours.query_datasets("summary", where, collections=C).count()


@pytest.mark.parametrize("collections", [["Cam/*"], ..., "Cam/run?"])
def test_collection_wildcards_with_find_first_are_refused_by_both(rubin, ours, collections):
    where = "instrument = 'Cam'"
    with pytest.raises(daf_butler.InvalidQueryError, match="wildcards"):
        rubin["butler"].query_datasets("summary", collections=collections, where=where, explain=False)
    with pytest.raises(QueryError, match="collection wildcards .* need find_first=False"):
        ours.query_datasets("summary", where, collections=collections)
    with pytest.raises(QueryError, match="no collection matches 'Nope/\\*'"):
        ours.query_datasets("summary", where, collections="Nope/*", find_first=False)


@pytest.mark.parametrize("where", ["(visit = 1) = TRUE", "(visit = 1) != FALSE", "NOT (visit = 1) = FALSE"])
def test_a_condition_compared_with_a_boolean_is_refused_by_both(rubin, ours, where):
    with pytest.raises(daf_butler.InvalidQueryError):
        _rubin_data_ids(rubin["butler"], V, where, {})
    with pytest.raises(QueryError, match="'visit = 1' is a condition .true or false., not a value"):
        ours.query_data_ids(V, where).count()
