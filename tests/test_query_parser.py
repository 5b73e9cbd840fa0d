"""Tests of the where-expression parser, its tree, canonical printing and bind resolution."""

from __future__ import annotations

import string
import uuid

import pytest
from astropy.time import Time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skybutler.errors import QueryError
from skybutler.query import (
    BinaryOp,
    Bind,
    BoolLiteral,
    FloatLiteral,
    FunctionCall,
    Glob,
    Identifier,
    InList,
    IntLiteral,
    LogicalOp,
    Not,
    NullLiteral,
    Overlaps,
    RangeLiteral,
    RegionFunction,
    StringLiteral,
    TimeLiteral,
    TimespanExpr,
    TimespanLiteral,
    UnaryOp,
    UuidLiteral,
    identifiers,
    node_from_json,
    node_to_json,
    parse_expression,
    resolve_binds,
    walk,
)
from skybutler.timespan import Timespan

# -- compact constructors for expected trees -------------------------------------------


def I(name: str) -> Identifier:  # noqa: E743
    return Identifier(name=name)


def L(value: object):
    if value is None:
        return NullLiteral()
    if isinstance(value, bool):
        return BoolLiteral(value=value)
    if isinstance(value, int):
        return IntLiteral(value=value)
    if isinstance(value, float):
        return FloatLiteral(value=value)
    return StringLiteral(value=value)


def B(op: str, lhs, rhs) -> BinaryOp:
    return BinaryOp(op=op, lhs=lhs, rhs=rhs)


def IN(lhs, *items, negated: bool = False) -> InList:
    return InList(lhs=lhs, items=items, negated=negated)


def R(start: int, stop: int, stride: int = 1) -> RangeLiteral:
    return RangeLiteral(start=start, stop=stop, stride=stride)


def T(value: str) -> TimeLiteral:
    """A time given on the TAI scale."""
    return TimeLiteral(value=value)


def utc(value: str) -> Time:
    return Time(value, scale="utc")


def TU(value: str) -> TimeLiteral:
    """A time given on the UTC scale (what an ISO literal without a scale means)."""
    return TimeLiteral(value=utc(value))


def TS(begin: str | None, end: str | None) -> TimespanLiteral:
    """A timespan whose bounds are given on the UTC scale."""
    return TimespanLiteral(begin=begin and utc(begin), end=end and utc(end))


def REG(name: str, *args: float) -> RegionFunction:
    return RegionFunction(name=name, args=tuple(L(a) for a in args))


def AND(*xs) -> LogicalOp:
    return LogicalOp(op="AND", operands=xs)


def OR(*xs) -> LogicalOp:
    return LogicalOp(op="OR", operands=xs)


UID = "12345678-1234-5678-1234-567812345678"

VALID = [
    # every line of DESIGN.md's "The query language" block
    (
        "visit > 100 AND visit <= 300 AND detector IN (1..25)",
        AND(B(">", I("visit"), L(100)), B("<=", I("visit"), L(300)), IN(I("detector"), R(1, 25))),
    ),
    (
        "band IN ('g', 'r') AND instrument = 'SimCam'",
        AND(IN(I("band"), L("g"), L("r")), B("=", I("instrument"), L("SimCam"))),
    ),
    ("detector IN (1..50:5)", IN(I("detector"), R(1, 50, 5))),
    (
        "exposure.observation_type = 'science' AND exposure.exposure_time > 15.0",
        AND(B("=", I("exposure.observation_type"), L("science")), B(">", I("exposure.exposure_time"), L(15.0))),
    ),
    (
        "visit.timespan OVERLAPS T'2026-03-01T00:00:00/2026-03-02T00:00:00'",
        Overlaps(lhs=I("visit.timespan"), rhs=TS("2026-03-01T00:00:00", "2026-03-02T00:00:00")),
    ),
    ("visit.region OVERLAPS POINT(150.1, 2.2)", Overlaps(lhs=I("visit.region"), rhs=REG("POINT", 150.1, 2.2))),
    ("visit = my_visit", B("=", I("visit"), I("my_visit"))),
    ("NOT (detector = 3 OR detector = 7)", Not(operand=OR(B("=", I("detector"), L(3)), B("=", I("detector"), L(7))))),
    # the design's API examples
    ("band = 'r'", B("=", I("band"), L("r"))),
    ("visit > 100 AND detector IN (1..5)", AND(B(">", I("visit"), L(100)), IN(I("detector"), R(1, 5)))),
    ("visit.exposure_time > 10", B(">", I("visit.exposure_time"), L(10))),
    # precedence: NOT > AND > OR; arithmetic above comparison; unary minus highest
    ("a OR b AND c", OR(I("a"), AND(I("b"), I("c")))),
    ("a AND b OR c", OR(AND(I("a"), I("b")), I("c"))),
    ("(a OR b) AND c", AND(OR(I("a"), I("b")), I("c"))),
    ("NOT a AND b", AND(Not(operand=I("a")), I("b"))),
    ("NOT a OR NOT b", OR(Not(operand=I("a")), Not(operand=I("b")))),
    ("NOT x = 1", Not(operand=B("=", I("x"), L(1)))),
    ("not not x", Not(operand=Not(operand=I("x")))),
    ("a + b * c = 7", B("=", B("+", I("a"), B("*", I("b"), I("c"))), L(7))),
    ("(a + b) * c % 2 = 0", B("=", B("%", B("*", B("+", I("a"), I("b")), I("c")), L(2)), L(0))),
    ("a - b - c > 0", B(">", B("-", B("-", I("a"), I("b")), I("c")), L(0))),
    ("a - (b - c) > 0", B(">", B("-", I("a"), B("-", I("b"), I("c"))), L(0))),
    ("-x * 2 < -3", B("<", B("*", UnaryOp(operand=I("x")), L(2)), L(-3))),
    ("x / 2.5e3 >= -1.5E-2", B(">=", B("/", I("x"), L(2500.0)), L(-0.015))),
    ("x > +3", B(">", I("x"), L(3))),
    ("x = - -3", B("=", I("x"), UnaryOp(operand=L(-3)))),
    ("a AND b AND c OR d", OR(AND(I("a"), I("b"), I("c")), I("d"))),
    ("(a AND b) AND c", AND(AND(I("a"), I("b")), I("c"))),
    ("a OR (b OR c)", OR(I("a"), OR(I("b"), I("c")))),
    # keywords are case-insensitive; identifiers that merely start with one are names
    ("visit in (1, 2) and not band = 'g' or x", OR(AND(IN(I("visit"), L(1), L(2)), Not(operand=B("=", I("band"), L("g")))), I("x"))),
    ("index = 1 AND android != 2 AND nothing != 3", AND(B("=", I("index"), L(1)), B("!=", I("android"), L(2)), B("!=", I("nothing"), L(3)))),
    ("orbit = TRUE AND inside = false AND nullable = NULL", AND(B("=", I("orbit"), L(True)), B("=", I("inside"), L(False)), B("=", I("nullable"), L(None)))),
    ("trueish = Null AND falsey = nuLL", AND(B("=", I("trueish"), L(None)), B("=", I("falsey"), L(None)))),
    # IN lists
    ("detector NOT IN (1, 3..5, -2, -7..-4:2)", IN(I("detector"), L(1), R(3, 5), L(-2), R(-7, -4, 2), negated=True)),
    ("detector IN ( 1 .. 9 : 3 )", IN(I("detector"), R(1, 9, 3))),
    ("visit IN (my_visits)", IN(I("visit"), I("my_visits"))),
    ("visit IN (:my_visits, 3)", IN(I("visit"), Bind(name="my_visits"), L(3))),
    ("x IN (1.5, 'a', TRUE, NULL, T'60000.5', +3, - 4, y.z)", IN(I("x"), L(1.5), L("a"), L(True), L(None), T("2023-02-25T12:00:00"), L(3), L(-4), I("y.z"))),
    (f"dataset_id IN (UUID('{UID}'), uuid('{UID.upper()}'))", IN(I("dataset_id"), UuidLiteral(value=UID), UuidLiteral(value=UID))),
    ("name = 'say \"hi\"'", B("=", I("name"), L('say "hi"'))),
    # times and timespans: ISO without a scale is UTC, MJD is TAI
    ("t < T'2026-03-01T00:00:00'", B("<", I("t"), T("2026-03-01T00:00:37"))),
    ("t < T'2026-03-01 00:00:00'", B("<", I("t"), TU("2026-03-01T00:00:00"))),
    ("t < T'2026-03-01 00:00'", B("<", I("t"), TU("2026-03-01T00:00:00"))),
    ("t < T'2026-03-01'", B("<", I("t"), TU("2026-03-01T00:00:00"))),
    ("t < t'2026-03-01+00:00'", B("<", I("t"), TU("2026-03-01T00:00:00"))),
    ("t < T'60000.5'", B("<", I("t"), T("2023-02-25T12:00:00"))),
    ("t < T'2020-01-01T00:00:00/utc'", B("<", I("t"), T("2020-01-01T00:00:37"))),
    ("t < T'2020-01-01T00:00:00/tai'", B("<", I("t"), T("2020-01-01T00:00:00"))),
    ("t < T'mjd/58849.0/tai'", B("<", I("t"), T("2020-01-01T00:00:00"))),
    ("t < T'mjd/58849.0'", B("<", I("t"), T("2020-01-01T00:00:00"))),
    ("t < T'58849.0/utc'", B("<", I("t"), TU("2020-01-01T00:00:00"))),
    ("t < T'isot/2020-01-01T00:00:00/tai'", B("<", I("t"), T("2020-01-01T00:00:00"))),
    ("t < T'2020:001:00:00:00'", B("<", I("t"), TU("2020-01-01T00:00:00"))),
    ("t < T'unix/1577836800.0'", B("<", I("t"), TU("2020-01-01T00:00:00"))),
    ("t < T'2026-03-01T00:00:00.5'", B("<", I("t"), TU("2026-03-01T00:00:00.5"))),
    (
        "visit.timespan OVERLAPS (T'2026-03-01', T'2026-03-02')",
        Overlaps(lhs=I("visit.timespan"), rhs=TS("2026-03-01T00:00:00", "2026-03-02T00:00:00")),
    ),
    ("visit.timespan OVERLAPS (NULL, T'2026-03-02')", Overlaps(lhs=I("visit.timespan"), rhs=TS(None, "2026-03-02T00:00:00"))),
    ("visit.timespan OVERLAPS (t0, t1)", Overlaps(lhs=I("visit.timespan"), rhs=TimespanExpr(begin=I("t0"), end=I("t1")))),
    ("visit.timespan OVERLAPS T'60000.0'", Overlaps(lhs=I("visit.timespan"), rhs=T("2023-02-25T00:00:00"))),
    ("visit.timespan OVERLAPS my_time", Overlaps(lhs=I("visit.timespan"), rhs=I("my_time"))),
    # functions
    ("visit.region OVERLAPS circle(150, -2.5, 0.1)", Overlaps(lhs=I("visit.region"), rhs=REG("CIRCLE", 150, -2.5, 0.1))),
    ("visit.region OVERLAPS BOX(150, 2, 1, 0.5)", Overlaps(lhs=I("visit.region"), rhs=REG("BOX", 150, 2, 1, 0.5))),
    ("r OVERLAPS POLYGON(0, 0, 1, 0, 1, 1)", Overlaps(lhs=I("r"), rhs=REG("POLYGON", 0, 0, 1, 0, 1, 1))),
    ("r OVERLAPS POINT(ra, dec)", Overlaps(lhs=I("r"), rhs=RegionFunction(name="POINT", args=(I("ra"), I("dec"))))),
    ("GLOB(collection, 'u/ana/*')", Glob(operand=I("collection"), pattern=L("u/ana/*"))),
    ("src.n_rows > 1000 AND glob(physical_filter, pattern)", AND(B(">", I("src.n_rows"), L(1000)), Glob(operand=I("physical_filter"), pattern=I("pattern")))),
    ("GLOB(detector.full_name, :p)", Glob(operand=I("detector.full_name"), pattern=Bind(name="p"))),
    ("visit.region OVERLAPS REGION('CIRCLE 150 2 0.5')", Overlaps(lhs=I("visit.region"), rhs=RegionFunction(name="REGION", args=(L("CIRCLE 150 2 0.5"),)))),
    ("visit.region OVERLAPS region(:pos)", Overlaps(lhs=I("visit.region"), rhs=RegionFunction(name="REGION", args=(Bind(name="pos"),)))),
    ("r OVERLAPS CIRCLE(ra, dec - 1, 2 * 0.5)", Overlaps(lhs=I("r"), rhs=RegionFunction(name="CIRCLE", args=(I("ra"), B("-", I("dec"), L(1)), B("*", L(2), L(0.5)))))),
    # what the Rubin grammar parses and the compiler then judges
    ("f(x)", FunctionCall(name="f", args=(I("x"),))),
    ("nothing() OR y", OR(FunctionCall(name="nothing"), I("y"))),
    ("a < b < c", B("<", B("<", I("a"), I("b")), I("c"))),
    ("a = 1 = 2", B("=", B("=", I("a"), L(1)), L(2))),
    ("a OVERLAPS b OVERLAPS c", Overlaps(lhs=Overlaps(lhs=I("a"), rhs=I("b")), rhs=I("c"))),
    ("visit = 1..5", B("=", I("visit"), R(1, 5))),
    ("x = -(1..5)", B("=", I("x"), UnaryOp(operand=R(1, 5)))),
    ("x OVERLAPS 3", Overlaps(lhs=I("x"), rhs=L(3))),
    ("t OVERLAPS (1, 2)", Overlaps(lhs=I("t"), rhs=TimespanExpr(begin=L(1), end=L(2)))),
    ("r OVERLAPS POINT(1, 'a')", Overlaps(lhs=I("r"), rhs=RegionFunction(name="POINT", args=(L(1), L("a"))))),
    ("r OVERLAPS POINT(1, 91)", Overlaps(lhs=I("r"), rhs=REG("POINT", 1, 91))),
    ("detector IN (5..1)", IN(I("detector"), R(5, 1))),
    ("'just a string'", L("just a string")),
    ("x = 1 -- 2", B("=", I("x"), B("-", L(1), L(-2)))),
    # bind parameters with a colon, three-part names
    ("instrument = :inst AND visit IN (:visits)", AND(B("=", I("instrument"), Bind(name="inst")), IN(I("visit"), Bind(name="visits")))),
    ("visit.timespan.begin > T'2020-03-30 12:20:33'", B(">", I("visit.timespan.begin"), TU("2020-03-30T12:20:33"))),
    ("exposure.timespan.end < T'mjd/58938.515/tai'", B("<", I("exposure.timespan.end"), TimeLiteral(value=Time(58938.515, format="mjd", scale="tai")))),
    ("ingest_date < T'2020-11-06 21:10:00'", B("<", I("ingest_date"), TU("2020-11-06T21:10:00"))),
    ("(visit = 100 OR visit = 101) AND exposure % 2 = 1", AND(OR(B("=", I("visit"), L(100)), B("=", I("visit"), L(101))), B("=", B("%", I("exposure"), L(2)), L(1)))),
    ("  visit = 1  ", B("=", I("visit"), L(1))),
    ("visit = 1\n  AND detector = 2", AND(B("=", I("visit"), L(1)), B("=", I("detector"), L(2)))),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[t for t, _ in VALID])
def test_valid(text: str, expected) -> None:
    tree = parse_expression(text)
    assert tree == expected
    assert parse_expression(tree.to_text()) == tree
    assert node_from_json(node_to_json(tree)) == tree


@pytest.mark.parametrize("text", ["", "   ", "\n\t", None])
def test_empty_is_no_constraint(text) -> None:
    assert parse_expression(text) is None


def test_columns_are_recorded() -> None:
    tree = parse_expression("visit > 100 AND band = 'r'")
    first, second = tree.operands
    assert tree.column == 13
    assert first.column == 7 and first.lhs.column == 1 and first.rhs.column == 9
    assert second.rhs.column == 24
    assert tree == parse_expression("visit>100   AND band='r'")  # columns do not affect equality


INVALID = [
    ("visit >", 8),
    ("visit = = 3", 9),
    ("visit = 3 AND", 14),
    ("(visit = 3", 11),
    ("visit = 3)", 10),
    ("a AND OR b", 7),
    ("visit 3", 7),
    ('band = "r"', 8),
    ("band = 'r", 8),
    ("visit ! 3", 7),
    ("visit == 3", 7),
    ("visit <> 3", 7),
    ("name = 'it''s'", 11),
    ("visit IN my_visits", 10),
    ("visit IN :my_visits", 10),
    ("detector IN ()", 14),
    ("detector IN (1..5:0)", 18),
    ("detector IN (a + 1)", 16),
    ("detector IN ((1))", 14),
    ("detector IN (POINT(1, 2))", 14),
    ("x IN (1) IN (2)", 10),
    ("f.g(1) = 2", 1),
    ("r OVERLAPS POINT(1)", 12),
    ("r OVERLAPS POLYGON(1, 2, 3, 4)", 12),
    ("r OVERLAPS POLYGON(1, 2, 3, 4, 5, 6, 7)", 12),
    ("r OVERLAPS REGION(1)", 12),
    ("r OVERLAPS REGION('CIRCLE 1 2 3', 'x')", 12),
    ("id = UUID('not-a-uuid')", 11),
    ("id = UUID(3)", 6),
    ("GLOB(x)", 1),
    ("GLOB(1, 'a')", 1),
    ("r OVERLAPS CIRCLE(1, 2, 'x')", 25),
    ("t > T'yesterday'", 5),
    ("t > T'60000'", 5),
    ("t > T'2026-01-01T00:00:00Z'", 5),
    ("t > T'2026-01-01/mars'", 5),
    ("t > T'2026-01-01 00'", 5),
    ("t > T'mjd/2026-01-01'", 5),
    ("t > T'2026-03-02/2026-03-01'", 5),
    ("t OVERLAPS (T'2026-03-02', T'2026-03-03', T'2026-03-04')", 12),
    ("a.b.c.d = 1", 6),
    ("x = 1e", 6),
    ("x = 1 AND", 10),
    ("x IN (1, 2,)", 12),
    (")", 1),
    ("NOT", 4),
]


@pytest.mark.parametrize(("text", "column"), INVALID, ids=[t for t, _ in INVALID])
def test_invalid(text: str, column: int) -> None:
    with pytest.raises(QueryError) as info:
        parse_expression(text)
    assert info.value.column == column
    assert info.value.expression == text
    assert f"(column {column})" in str(info.value)


def test_error_messages_are_plain_words() -> None:
    with pytest.raises(QueryError, match="ends too early; expected a value, a name or '\\('"):
        parse_expression("visit >")
    with pytest.raises(QueryError, match="found 'OR'"):
        parse_expression("a AND OR b")
    with pytest.raises(QueryError, match="single quotes"):
        parse_expression('band = "r"')
    with pytest.raises(QueryError, match="write != for 'not equal'"):
        parse_expression("visit <> 3")
    with pytest.raises(QueryError, match="'' is not an escape"):
        parse_expression("name = 'it''s'")
    with pytest.raises(QueryError, match=r"needs parentheses: IN \(v\)"):
        parse_expression("visit IN v")
    with pytest.raises(QueryError, match="no time zone; drop the 'Z'"):
        parse_expression("t > T'2026-01-01T00:00:00Z'")
    with pytest.raises(QueryError, match=r"an MJD needs a decimal point: T'60320.0'"):
        parse_expression("t > T'60320'")


def test_long_chains_stay_shallow() -> None:
    text = " OR ".join(f"(visit = {i} AND detector = {i % 9})" for i in range(2000))
    tree = parse_expression(text)
    assert isinstance(tree, LogicalOp) and len(tree.operands) == 2000
    assert parse_expression(tree.to_text()) == tree
    assert node_from_json(node_to_json(tree)) == tree


def test_walk_and_identifiers() -> None:
    tree = parse_expression("visit IN (v1, 2) AND visit.region OVERLAPS POINT(ra, 2) AND NOT x = -y")
    kinds = [n.kind for n in walk(tree)]
    assert kinds[0] == "logical" and kinds.count("identifier") == 6
    assert identifiers(tree) == {"visit", "v1", "visit.region", "ra", "x", "y"}
    assert identifiers(None) == set() and list(walk(None)) == []


def test_time_helpers() -> None:
    lit = parse_expression("T'2026-03-01T00:00:00/utc'")
    assert isinstance(lit, TimeLiteral) and lit.time.scale == "tai"
    assert abs((lit.time - Time("2026-03-01T00:00:00", scale="utc")).sec) < 1e-6
    span = parse_expression("T'2026-03-01/2026-03-02'")
    assert span.timespan == Timespan(Time("2026-03-01", scale="utc"), Time("2026-03-02", scale="utc"))
    tai_span = parse_expression("T'mjd/61100.0/tai'")
    assert tai_span.time == Time(61100.0, format="mjd", scale="tai")


# -- bind resolution -------------------------------------------------------------------


def test_resolve_scalar_binds() -> None:
    t = Time("2026-03-01T00:00:00", scale="tai")
    span = Timespan(t, None)
    uid = uuid.UUID(UID)
    tree = parse_expression("visit = v AND band = b AND f = x AND ok = flag AND n = nothing AND t < when AND d = u")
    out = resolve_binds(tree, {"v": 42, "b": "r", "x": 1.5, "flag": True, "nothing": None, "when": t, "u": uid})
    assert out == parse_expression(
        f"visit = 42 AND band = 'r' AND f = 1.5 AND ok = TRUE AND n = NULL AND t < T'2026-03-01/tai' "
        f"AND d = UUID('{UID}')"
    )
    ts = resolve_binds(parse_expression("visit.timespan OVERLAPS span"), {"span": span})
    assert ts.rhs == TimespanLiteral(begin=t, end=None)
    colon = resolve_binds(parse_expression("visit = :v AND band = :b"), {"v": 42, "b": "r"})
    assert colon == parse_expression("visit = 42 AND band = 'r'")
    assert identifiers(out) == {"visit", "band", "f", "ok", "n", "t", "d"}


def test_resolve_list_binds() -> None:
    tree = parse_expression("visit IN (visits, 7) AND detector NOT IN (:dets) AND band IN (bands)")
    out = resolve_binds(tree, {"visits": [1, 2], "dets": range(0, 10, 3), "bands": {"r", "g"}})
    assert out == parse_expression("visit IN (1, 2, 7) AND detector NOT IN (0..9:3) AND band IN ('g', 'r')")
    assert resolve_binds(parse_expression("visit IN (v)"), {"v": []}) == BoolLiteral(value=False)
    assert resolve_binds(parse_expression("visit NOT IN (v)"), {"v": ()}) == BoolLiteral(value=True)


def test_resolve_binds_in_functions_and_tuples() -> None:
    tree = parse_expression("r OVERLAPS POINT(ra, dec) AND t OVERLAPS (t0, t1)")
    t0, t1 = Time("2026-03-01", scale="tai"), Time("2026-03-02", scale="tai")
    out = resolve_binds(tree, {"ra": 150.1, "dec": 2, "t0": t0, "t1": t1})
    assert out == parse_expression("r OVERLAPS POINT(150.1, 2) AND t OVERLAPS (T'2026-03-01/tai', T'2026-03-02/tai')")
    untouched = parse_expression("visit = v")
    assert resolve_binds(untouched, {}) is untouched and resolve_binds(None, {"v": 1}) is None


@pytest.mark.parametrize(
    ("text", "bind", "match"),
    [
        ("visit = v", {"v": object()}, "bind 'v' has unsupported type object"),
        ("visit = v", {"v": [1, 2]}, "use it as an IN list"),
        ("visit IN (v)", {"v": [[1], [2]]}, "nested list"),
        ("visit IN (v)", {"v": [1, b"x"]}, "bind 'v' has unsupported type bytes"),
        ("x = v", {"v": float("nan")}, "finite"),
        ("visit = :v", {"v": [1, 2]}, r"use it as an IN list: x IN \(:v\)"),
    ],
)
def test_resolve_binds_errors(text: str, bind: dict, match: str) -> None:
    with pytest.raises(QueryError, match=match):
        resolve_binds(parse_expression(text), bind)


# -- property test: random trees print and parse back -------------------------------------

_KEYWORDS = {"or", "and", "not", "in", "overlaps", "true", "false", "null"}
_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s.lower() not in _KEYWORDS)
names = st.one_of(_NAME, st.builds(lambda a, b: f"{a}.{b}", _NAME, _NAME),
                  st.builds(lambda a, b: f"{a}.timespan.{b}", _NAME, st.sampled_from(["begin", "end"]))).map(I)
binds = _NAME.map(lambda n: Bind(name=n))
ints = st.integers(-(10**12), 10**12).map(lambda v: IntLiteral(value=v))
floats = st.floats(allow_nan=False, allow_infinity=False).map(lambda v: FloatLiteral(value=v))
# the language has no escape for a quote inside a string
strings = st.text(string.printable.replace("'", ""), max_size=8).map(lambda v: StringLiteral(value=v))
instants = st.integers(40000 * 86400, 70000 * 86400).map(lambda s: Time(s / 86400, format="mjd", scale="tai"))
times = instants.map(lambda t: TimeLiteral(value=t))
spans = st.tuples(st.one_of(st.none(), instants), st.one_of(st.none(), instants)).map(
    lambda be: TimespanLiteral(begin=min(be, key=lambda t: t.mjd) if None not in be else be[0],
                               end=max(be, key=lambda t: t.mjd) if None not in be else be[1])
)
uuids = st.uuids().map(lambda u: UuidLiteral(value=str(u)))
simple = st.one_of(
    names, binds, ints, floats, strings, times, uuids,
    st.booleans().map(lambda v: BoolLiteral(value=v)), st.just(NullLiteral()),
)
ranges = st.builds(
    lambda a, n, s: RangeLiteral(start=a, stop=a + n, stride=s),
    st.integers(-100, 100), st.integers(0, 50), st.integers(1, 9),
)
coords = st.one_of(st.integers(-90, 90).map(lambda v: IntLiteral(value=v)), names)
regions = st.one_of(
    st.builds(lambda a, b: RegionFunction(name="POINT", args=(a, b)), coords, coords),
    st.builds(lambda a, b, r: RegionFunction(name="CIRCLE", args=(a, b, IntLiteral(value=r))), coords, coords, st.integers(0, 5)),
    st.lists(coords, min_size=6, max_size=8).filter(lambda xs: len(xs) % 2 == 0).map(
        lambda xs: RegionFunction(name="POLYGON", args=tuple(xs))
    ),
)
overlap_operands = st.one_of(names, binds, regions, times, spans,
                             st.builds(lambda a, b: TimespanExpr(begin=a, end=b), names, names))


def _extend(children):
    def unary(x):
        if isinstance(x, (IntLiteral, FloatLiteral)) and x.value >= 0:
            return x  # -<non-negative number> is folded into a literal
        return UnaryOp(operand=x)

    ops = ["=", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"]
    return st.one_of(
        st.builds(lambda op, a, b: BinaryOp(op=op, lhs=a, rhs=b), st.sampled_from(ops), children, children),
        st.builds(
            lambda op, xs: LogicalOp(op=op, operands=tuple(xs)),
            st.sampled_from(["AND", "OR"]), st.lists(children, min_size=2, max_size=4),
        ),
        st.builds(lambda a: Not(operand=a), children),
        st.builds(unary, children),
        st.builds(
            lambda a, items, neg: InList(lhs=a, items=tuple(items), negated=neg),
            children, st.lists(st.one_of(simple, ranges), min_size=1, max_size=4), st.booleans(),
        ),
        st.builds(lambda a, b: Overlaps(lhs=a, rhs=b), overlap_operands, overlap_operands),
        st.builds(lambda a, p: Glob(operand=a, pattern=p), names, st.one_of(strings, binds)),
        st.builds(lambda n, xs: FunctionCall(name=n, args=tuple(xs)), _NAME.filter(
            lambda n: n.upper() not in ("POINT", "CIRCLE", "BOX", "POLYGON", "REGION", "GLOB", "UUID")),
            st.lists(children, max_size=3)),
        st.builds(lambda a, b: TimespanExpr(begin=a, end=b), names, children),
        ranges,
    )


trees = st.recursive(st.one_of(simple, spans, regions), _extend, max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_print_parse_round_trip(tree) -> None:
    text = tree.to_text()
    assert parse_expression(text) == tree, text
    assert node_from_json(node_to_json(tree)) == tree
