"""Where-clauses at the limits of size and shape: each is answered as a brute-force reading
of the inserted records answers it, or refused by a QueryError naming the problem (never a
database's error, Python's ValueError or OverflowError, nor a message quoting a megabyte)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skybutler.errors import QueryError
from skybutler.query import expression as ex
from skybutler.query.builder import QuerySpec
from skybutler.query.limits import MAX_DEPTH, MAX_LIST_VALUES, MAX_OPERATORS

VISITS = range(1, 7)  # conftest.populate: visits 1..6, exposure time 30 s, filters g, r, i in turn


def visits(butler, where: str, bind=None) -> set[int]:
    return {d["visit"] for d in butler.query_data_ids(["visit"], where=where, bind=bind or {}, instrument="Cam")}


def test_long_in_lists_are_answered_on_every_stack(butler):
    """Lists past PostgreSQL's 65,535 parameters (and SQLite's 32,766) go as one parameter."""
    wanted = list(range(3, 100_003, 2))  # visits 3 and 5 among 50,000 values
    assert visits(butler, "visit IN (:v)", {"v": wanted}) == {3, 5}
    assert visits(butler, "visit NOT IN (:v)", {"v": wanted}) == {1, 2, 4, 6}
    assert visits(butler, "visit IN (:v)", {"v": list(range(-99_998, 1)) + [6]}) == {6}
    names = [f"other{i}" for i in range(70_000)] + ["science"]
    assert visits(butler, "visit.observation_type IN (:n)", {"n": names}) == set(VISITS)
    assert visits(butler, "visit.observation_type NOT IN (:n)", {"n": names}) == set()
    seconds = [i + 0.5 for i in range(1000)] + [30]
    assert visits(butler, "visit.exposure_time IN (:s)", {"s": seconds}) == set(VISITS)
    text = "visit IN (" + ", ".join(str(v) for v in range(2, 3000, 2)) + ")"
    assert visits(butler, text) == {2, 4, 6}
    assert visits(butler, "NOT " + text) == {1, 3, 5}


def test_too_many_list_values_are_refused(butler):
    with pytest.raises(QueryError, match=f"IN lists hold more than {MAX_LIST_VALUES:,} values"):
        visits(butler, "visit IN (:v) OR visit IN (:w)", {"v": list(range(MAX_LIST_VALUES)), "w": [1, 2]})


def test_nesting_is_limited_to_49_levels(butler):
    assert visits(butler, "(" * MAX_DEPTH + "visit = 2" + ")" * MAX_DEPTH) == {2}
    with pytest.raises(QueryError, match="nests parentheses more than 49 levels deep") as caught:
        visits(butler, "(" * 1000 + "visit = 2" + ")" * 1000)
    assert caught.value.column == 50 and len(str(caught.value)) < 500
    assert visits(butler, "NOT " * MAX_OPERATORS + "visit = 2") == {1, 3, 4, 5, 6}
    for deep in ("NOT " * 100 + "visit = 2", "visit = " + "-" * 102 + "2", "visit = " + " + ".join(["1"] * 101)):
        with pytest.raises(QueryError, match="nests more than 99 operators"):
            visits(butler, deep)


def test_a_deep_tree_sent_as_json_is_refused_as_text_is(butler):
    """A remote client sends the parsed tree; one built by hand is held to the same limit."""
    node: ex.Node = ex.BinaryOp(op="=", lhs=ex.Identifier(name="visit"), rhs=ex.IntLiteral(value=2))
    for _ in range(MAX_OPERATORS + 1):
        node = ex.Not(operand=node)
    spec = QuerySpec(kind="data_ids", dimensions=("visit",), where="visit = 2", tree=ex.node_to_json(node),
                     data_id={"instrument": "Cam"})
    with pytest.raises(QueryError, match="nests more than 99 operators"):
        list(butler.query(spec))
    deep = '{"kind":"not","operand":' * 5000 + '{"kind":"int","value":1}' + "}" * 5000
    with pytest.raises(QueryError, match="malformed query tree"):
        list(butler.query(spec.model_copy(update={"tree": deep})))
    json.loads(ex.node_to_json(node))  # the refused tree itself was well formed


@pytest.mark.parametrize("where, bind, message", [
    ("visit = " + "9" * 5000, {}, r"the integer 9{20}\.\.\.\(5000 digits\) is outside the 64-bit"),
    ("visit IN (1..10:" + "9" * 19 + ")", {}, "the integer 9{19} is outside the 64-bit"),
    ("visit IN (:r)", {"r": range(1, 10, 2**64)}, "outside the 64-bit"),
    ("visit.observation_type = 'sci\x00ence'", {}, "holds a NUL character"),
    ("visit.observation_type = :t", {"t": "sci\x00ence"}, "bind 't' holds a NUL character"),
    ("visit.observation_type = 'a\ud800b'", {}, "holds a lone surrogate"),
    ("visit.observation_type IN (:t)", {"t": ["science", "a\udfffb"]}, "bind 't' holds a lone surrogate"),
])
def test_values_no_database_holds_are_refused_by_name(butler, where, bind, message):
    with pytest.raises(QueryError, match=message) as caught:
        visits(butler, where, bind)
    str(caught.value).encode("utf-8")  # printable, even when the clause was not


def test_a_long_clause_is_quoted_around_its_error_only(butler):
    where = "visit.observation_type = '" + "x" * 1_000_000 + "' AND visit.nothing = 1"
    with pytest.raises(QueryError, match="visit has no field 'nothing'") as caught:
        visits(butler, where)
    assert len(str(caught.value)) < 1000 and "^" in str(caught.value)
    assert visits(butler, "visit.observation_type != '" + "é" * 1_000_000 + "'") == set(VISITS)
    with pytest.raises(QueryError, match="characters long; at most"):
        visits(butler, "visit.observation_type = '" + "x" * 3_000_000 + "'")


#: Conditions on the six visits of conftest.populate, with what each says of a visit number.
LEAVES = [(f"visit > {k}", lambda v, k=k: v > k) for k in range(0, 7)] + \
         [(f"visit = {k}", lambda v, k=k: v == k) for k in range(1, 7)] + \
         [("visit.exposure_time > 20", lambda v: True), ("visit.exposure_time < 20", lambda v: False),
          ("physical_filter = 'Cam-r'", lambda v: v % 3 == 2), ("visit IN (1..6:2)", lambda v: v % 2 == 1)]


@st.composite
def nested_clauses(draw, depth: int):
    """A clause nesting ``depth`` parenthesized groups, each ANDed or ORed with a condition on
    either side, with or without a NOT before it; and its meaning as a Python function."""
    text, meaning = draw(st.sampled_from(LEAVES))
    for _ in range(depth):
        other, means = draw(st.sampled_from(LEAVES))
        op = draw(st.sampled_from(["AND", "OR"]))
        negated = draw(st.booleans())
        inner, inner_means = (f"NOT {text}", (lambda m: lambda v: not m(v))(meaning)) if negated else (text, meaning)
        both = (lambda a, b: lambda v: a(v) and b(v)) if op == "AND" else (lambda a, b: lambda v: a(v) or b(v))
        if draw(st.booleans()):
            text, meaning = f"({inner} {op} {other})", both(inner_means, means)
        else:
            text, meaning = f"({other} {op} {inner})", both(means, inner_means)
    if draw(st.booleans()):
        text, meaning = f"NOT {text}", (lambda m: lambda v: not m(v))(meaning)
    return text, meaning


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(clause=nested_clauses(MAX_DEPTH - 1))  # and a leaf's IN (...): 49 levels of parentheses
def test_clauses_nested_49_deep_are_answered(butler, clause):
    """Each NOT goes down to the conditions and the deepest groups come first, so that
    SQLite's parser (a stack of 100 entries) reads the 49 levels the language allows."""
    text, meaning = clause
    assert visits(butler, text) == {v for v in VISITS if meaning(v)}, text


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(clause=st.integers(1, MAX_DEPTH - 1).flatmap(nested_clauses))
def test_clauses_nested_at_any_depth_are_answered(butler, clause):
    text, meaning = clause
    assert visits(butler, text) == {v for v in VISITS if meaning(v)}, text


def test_arithmetic_too_deep_for_sqlite_is_refused_by_name(butler, stack):
    where = "visit = " + "(1 - " * 40 + "1" + ")" * 40  # 1 - (1 - (1 - ...)) = 1
    if stack == "sqlite":
        with pytest.raises(QueryError, match="too deeply for SQLite's parser"):
            visits(butler, where)
    else:
        assert visits(butler, where) == {1}


@pytest.mark.parametrize("where, message", [
    ("visit.id; DROP TABLE visit = 1", "found the character ';'"),
    ('"visit" = 1', "strings are written in single quotes"),
    ("visit.select = 1", "visit has no field 'select'"),
    ("visit.observation_type = 'x'' OR 1=1 --'", "'' is not an escape"),
    ("vïsit = 1", "found the character 'ï'"),
    ("visit = 1 -- comment", "unknown name 'comment'"),  # 1 - (-comment): no comments in the language
])
def test_names_that_look_like_sql_are_refused_by_name(butler, where, message):
    with pytest.raises(QueryError, match=message):
        visits(butler, where)


def test_strings_that_look_like_sql_are_values(butler):
    for text in ("x; DROP TABLE visit; --", "science\u202e", "sci%ence", "sci_nce", "\U0001f52d"):
        assert visits(butler, "visit.observation_type = :t", {"t": text}) == set()
        assert visits(butler, "visit.observation_type != :t", {"t": text}) == set(VISITS)
    assert visits(butler, "visit.observation_type = 'science' AND visit.exposure_time > 1e308") == set()
    with pytest.raises(QueryError, match="too large"):
        visits(butler, "visit.exposure_time > 1e309")


def test_many_conditions_are_answered_or_refused_by_name(butler, stack):
    """An OR of many ``name = value`` is an IN list, whatever its length; other conditions are
    limited to 10,000 (before any SQL: PostgreSQL would need a parameter each, past its
    65,535 in all, and SQLite nests a chain of them past its 1,000 levels)."""
    equalities = " OR ".join(f"visit = :b{i}" for i in range(70_000))
    assert visits(butler, equalities, {f"b{i}": i for i in range(70_000)}) == set(VISITS)
    with pytest.raises(QueryError, match="more than 10,000 conditions"):
        visits(butler, " OR ".join(f"visit.exposure_time > :b{i}" for i in range(12_000)),
               {f"b{i}": i + 0.5 for i in range(12_000)})
    with pytest.raises(QueryError, match="more than 100,000 values"):
        visits(butler, " OR ".join(f"visit = {i}" for i in range(1000)) + " OR visit IN (:v)",
               {"v": list(range(100_000))})


@pytest.mark.slow
def test_long_chains_of_conditions_are_answered_on_every_stack(butler):
    """Thousands of comparisons joined by OR or AND, and groups of a hundred nested 20 deep
    (SQLite refuses an expression tree 1,000 levels deep; a chain is sent in groups of
    parentheses, which mean the same)."""
    above = [f"visit.exposure_time > {i}.5" for i in range(20, 3020)]  # true for the first ten only
    assert visits(butler, " OR ".join(above)) == set(VISITS)
    assert visits(butler, " AND ".join(above[:1200])) == set()
    assert visits(butler, "NOT (" + " OR ".join(above[:1200]) + ")") == set()
    assert visits(butler, " AND ".join(f"visit != {i}" for i in range(7, 1207)) + " AND visit.exposure_time < 31") \
        == set(VISITS)
    assert visits(butler, " AND ".join(f"visit < {i}" for i in range(1200, 4, -1))) == {1, 2, 3, 4}
    mixed = " OR ".join(f"(visit.exposure_time > {i}.5 AND visit > 4)" for i in range(20, 1220))
    assert visits(butler, mixed) == {5, 6}
    assert visits(butler, "band = 'r' AND (" + mixed + ")") == {5}
    nested = "visit > 4"
    for level in range(20):  # 20 groups, each of 99 comparisons and the group within
        op, bound = ("OR", ">") if level % 2 else ("AND", "<")
        nested = "(" + f" {op} ".join([nested] + [f"visit.exposure_time {bound} {i}.5" for i in range(100, 199)]) + ")"
    assert visits(butler, nested) == {5, 6}
    ranges = ", ".join(f"{i}..{i + 1}:2" for i in range(10, 2410, 2))  # 1,200 ranges, none holding 1..6
    assert visits(butler, f"visit IN ({ranges}, 2..6:4)") == {2, 6}
    assert visits(butler, f"visit NOT IN ({ranges}, 2..6:4)") == {1, 3, 4, 5}


def test_a_results_len_holds_the_rows_it_counted_for_the_next_loop(butler):
    """``len()`` and indexing read the rows and hold them, as the Rubin butler's list, until the
    next loop takes them: a put after ``len()`` changes neither the indexing nor that loop, while
    the loop after it, ``count()`` and a new query see it."""
    butler.put({"v": 1}, "metrics", visit=1, detector=0)
    results = butler.query_datasets("metrics")
    assert len(results) == 1
    butler.put({"v": 2}, "metrics", visit=2, detector=0)
    assert results[0].data_id["visit"] == 1 and len(results) == 1 and results.count() == 2
    assert [r.data_id["visit"] for r in results] == [1]  # the rows len() counted
    assert sorted(r.data_id["visit"] for r in results) == [1, 2]  # read anew
    assert len(list(results)) == 2 and len(list(results)) == 2  # list() never keeps a stale hold
    butler.put({"v": 3}, "metrics", visit=3, detector=0)
    assert len(list(results)) == 3 and len(butler.query_datasets("metrics")) == 3
