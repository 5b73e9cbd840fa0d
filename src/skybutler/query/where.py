"""Compiling a where-expression tree into a SQL condition (plus exact region filters).

Names resolve against the dimension universe (``visit``, ``band``,
``visit.exposure_time``, ``visit.region``, ``exposure.timespan``) and, through a
callback, against dataset metadata (``src.n_rows``) and user tables (``quality.seeing``).  Type mismatches and unknown
names raise :class:`QueryError` pointing at the column.  A sky-region OVERLAPS
compiles to a coarse sky-pixel condition in SQL plus an exact test applied to the
rows afterwards, so it may only be AND-ed with the rest of the expression.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lsst.sphgeom as sphgeom
import sqlalchemy as sa

from ..dimensions.data_id import INT64_MAX, INT64_MIN
from ..errors import QueryError
from ..timespan import NS_MAX, NS_MIN
from . import expression as ex
from .chains import chain
from .globs import glob_match
from .joins import JoinBuilder
from .parser import KNOWN_FUNCTIONS
from .region_tests import RegionFilter
from .value_lists import in_values
from .where_regions import ARITHMETIC, RegionTerms

NUMERIC = ("int", "float")
#: Fields of every dataset, usable bare when a query has one dataset type (see metadata.DATASET_FIELDS).
_DATASET_FIELDS = ("dataset_id", "ingest_date", "run", "collection")
#: Nodes that are conditions (true/false), never values to compare.
_CONDITIONS = (ex.LogicalOp, ex.Not, ex.InList, ex.Overlaps, ex.Glob)


def _is_condition(node: ex.Node) -> bool:
    """Whether ``node`` is a condition (a comparison, IN, OVERLAPS, GLOB, AND/OR/NOT)."""
    return isinstance(node, _CONDITIONS) or (isinstance(node, ex.BinaryOp) and node.op in ex.COMPARISON_OPS)


def _no_zero(divisor: Operand) -> sa.ColumnElement:
    """``divisor`` as SQL that is NULL where it is zero: a division by zero is NULL (no row
    matches), as SQLite and the Rubin butler answer it, where PostgreSQL would fail."""
    value = divisor.sql if isinstance(divisor.sql, sa.ColumnElement) else sa.literal(divisor.sql)
    return sa.func.nullif(value, 0, type_=sa.Float() if divisor.kind == "float" else sa.BigInteger())


@dataclass
class Operand:
    """A compiled operand: its type, and its SQL expression or constant value."""

    kind: str  # int float str bool null time timespan region uuid
    sql: Any = None
    #: For a timespan column or literal: (begin, end) SQL expressions or ints.
    span: tuple[Any, Any] | None = None
    #: For a region: the constant region, or the element whose region column it is.
    region: sphgeom.Region | None = None
    element: str | None = None
    #: For a dataset's region fact: the coarse SQL test "may overlap this constant region"
    #: (its ``element`` labels the region column; it has no sky-pixel overlap table).
    coarse: Callable[[sphgeom.Region], sa.ColumnElement] | None = None


@dataclass
class CompiledWhere:
    condition: sa.ColumnElement
    region_filters: list[RegionFilter] = field(default_factory=list)
    #: Region columns the exact filters need in the SELECT list, by label.
    region_columns: dict[str, sa.ColumnElement] = field(default_factory=dict)
    #: The top-level AND terms, as (text, SQL), for explaining an empty result.
    terms: list[tuple[str, sa.ColumnElement]] = field(default_factory=list)


DatasetFieldResolver = Callable[[str | None, str, int | None], Operand | None]


class WhereCompiler(RegionTerms):
    """Turns one expression tree into SQL against a :class:`JoinBuilder`."""

    def __init__(self, joins: JoinBuilder, expression: str, region_binds: Mapping[str, sphgeom.Region] | None = None,
                 dataset_field: DatasetFieldResolver | None = None):
        self.joins = joins
        self.universe = joins.universe
        self.expression = expression
        self.region_binds = dict(region_binds or {})
        self.dataset_field = dataset_field
        self.result = CompiledWhere(sa.true())

    def error(self, message: str, node: ex.Node | None) -> QueryError:
        return QueryError(message, self.expression, getattr(node, "column", None))

    # -- entry ----------------------------------------------------------------

    def compile(self, tree: ex.Node | None) -> CompiledWhere:
        if tree is None:
            return self.result
        operands = tree.operands if isinstance(tree, ex.LogicalOp) and tree.op == "AND" else (tree,)
        for operand in operands:
            self.result.terms.append((operand.to_text(), self._condition(operand, top=True)))
        parts = [sql for _, sql in self.result.terms]
        self.result.condition = chain("AND", parts)
        return self.result

    def _condition(self, node: ex.Node, top: bool) -> sa.ColumnElement:
        if isinstance(node, ex.LogicalOp):
            operands = node.operands if node.op == "AND" else _equalities_as_lists(node.operands)
            parts = [self._condition(o, top and node.op == "AND") for o in _deepest_first(operands)]
            return chain(node.op, parts)
        if isinstance(node, ex.Not):
            inner = node.operand
            if isinstance(inner, ex.Not):  # NOT NOT a is a, wherever a may stand
                return self._condition(inner.operand, top)
            # NOT goes down to the conditions it negates (De Morgan's laws hold in SQL's three-valued
            # logic), so that a NOT before each of many nested groups adds no depth to the SQL.
            if isinstance(inner, ex.LogicalOp):
                flipped = ex.LogicalOp(op="OR" if inner.op == "AND" else "AND", column=inner.column,
                                       operands=tuple(ex.Not(operand=o, column=o.column) for o in inner.operands))
                return self._condition(flipped, False)
            if isinstance(inner, ex.InList):
                return self._condition(inner.model_copy(update={"negated": not inner.negated}), False)
            return sa.not_(self._condition(inner, False))
        if isinstance(node, ex.BoolLiteral):
            return sa.true() if node.value else sa.false()
        if isinstance(node, ex.BinaryOp) and node.op in ("=", "!=", "<", "<=", ">", ">="):
            return self._comparison(node)
        if isinstance(node, ex.InList):
            return self._in_list(node)
        if isinstance(node, ex.Overlaps):
            return self._overlaps(node, top)
        if isinstance(node, ex.Glob):
            return self._glob(node)
        if isinstance(node, (ex.Identifier, ex.FunctionCall, ex.Bind)):
            operand = self._operand(node)
            if operand.kind == "bool":
                return operand.sql == sa.true()
        raise self.error(f"{node.to_text()!r} is not a condition (expected a comparison, IN, OVERLAPS or GLOB)",
                         node)

    # -- operands -------------------------------------------------------------

    def _operand(self, node: ex.Node) -> Operand:
        if isinstance(node, ex.IntLiteral):
            return Operand("int", sa.literal(self._int64(node.value, node)))
        if isinstance(node, ex.FloatLiteral):
            return Operand("float", sa.literal(node.value))
        if isinstance(node, ex.StringLiteral):
            return Operand("str", sa.literal(node.value))
        if isinstance(node, ex.BoolLiteral):
            return Operand("bool", sa.true() if node.value else sa.false())
        if isinstance(node, ex.NullLiteral):
            return Operand("null", sa.null())
        if isinstance(node, ex.TimeLiteral):
            return Operand("time", sa.literal(node.ns))
        if isinstance(node, ex.TimespanLiteral):
            begin, end = node.timespan.to_ns()
            if begin == end:  # (t, t) is the instant t, as the Rubin butler pads it: [t, t + 1 ns)
                end += 1
            return Operand("timespan", span=(sa.literal(begin), sa.literal(end)))
        if isinstance(node, ex.UuidLiteral):
            import uuid

            return Operand("uuid", sa.literal(uuid.UUID(node.value), sa.Uuid))
        if isinstance(node, ex.RegionFunction):
            return Operand("region", region=self._region_literal(node))
        if isinstance(node, ex.TimespanExpr):
            return self._timespan_expr(node)
        if isinstance(node, ex.FunctionCall):
            raise self.error(f"unknown function {node.name!r}; the functions of the language are "
                             f"{', '.join(KNOWN_FUNCTIONS)}", node)
        if isinstance(node, ex.Bind):
            if node.name in self.region_binds:
                return Operand("region", region=self.region_binds[node.name])
            raise self.error(f"bind parameter :{node.name} is not given", node)
        if isinstance(node, _CONDITIONS) or (isinstance(node, ex.BinaryOp) and node.op in ex.COMPARISON_OPS):
            raise self.error(f"{node.to_text()!r} is a condition (true or false), not a value to compute with",
                             node)
        if isinstance(node, ex.UnaryOp):
            inner = self._operand(node.operand)
            self._need(inner, NUMERIC, node)
            return Operand(inner.kind, -inner.sql)
        if isinstance(node, ex.BinaryOp) and node.op in ("+", "-", "*", "/", "%"):
            lhs, rhs = self._operand(node.lhs), self._operand(node.rhs)
            self._need(lhs, NUMERIC, node.lhs)
            self._need(rhs, NUMERIC, node.rhs)
            if node.op == "%" and "float" in (lhs.kind, rhs.kind):  # SQLite would truncate to integers first
                culprit = node.lhs if lhs.kind == "float" else node.rhs
                raise self.error(f"% takes integers; {culprit.to_text()!r} is float", culprit)
            kind = "float" if "float" in (lhs.kind, rhs.kind) or node.op == "/" else "int"
            divisor = _no_zero(rhs) if node.op in ("/", "%") else rhs.sql
            return Operand(kind, ARITHMETIC[node.op](lhs.sql, divisor))
        if isinstance(node, ex.Identifier):
            return self._name(node)
        if isinstance(node, ex.RangeLiteral):
            raise self.error("a range a..b may only appear inside IN (...)", node)
        raise self.error(f"{node.to_text()!r} cannot be used as a value here", node)

    def _int64(self, value: int, node: ex.Node) -> int:
        """``value``, which the databases hold only within the signed 64-bit range."""
        if not INT64_MIN <= value <= INT64_MAX:
            raise self.error(f"the integer {value} is outside the 64-bit integer range the registry holds", node)
        return value

    def _need(self, operand: Operand, kinds: tuple[str, ...], node: ex.Node) -> None:
        if operand.kind not in kinds:
            raise self.error(f"{node.to_text()!r} is {operand.kind}; expected {' or '.join(kinds)}", node)

    def _timespan_expr(self, node: ex.TimespanExpr) -> Operand:
        """``(begin, end)`` of time expressions or NULL (unbounded)."""
        bounds = []
        for bound, unbounded in ((node.begin, NS_MIN), (node.end, NS_MAX)):
            operand = self._operand(bound)
            if operand.kind == "null":
                bounds.append(sa.literal(unbounded))
            elif operand.kind == "time":
                bounds.append(operand.sql)
            else:
                raise self.error(f"a timespan (begin, end) needs times or NULL, found {bound.to_text()!r} "
                                 "(a time is written T'2024-01-11T00:59:40')", bound)
        if all(isinstance(b, (ex.TimeLiteral, ex.NullLiteral)) for b in (node.begin, node.end)):
            raise self.error("this timespan ends before it begins", node)
        return Operand("timespan", span=(bounds[0], bounds[1]))

    def _name(self, node: ex.Identifier) -> Operand:
        name = node.name
        if name in self.region_binds:
            return Operand("region", region=self.region_binds[name])
        if name.count(".") == 2:
            return self._timespan_bound(node)
        head, _, tail = name.partition(".")
        if not tail and name in _DATASET_FIELDS and self.dataset_field is not None:
            found = self.dataset_field(None, name, node.column)
            if found is not None:
                return found
        if not tail:
            if name in self.universe.elements and self.universe[name].is_dimension:
                if self.universe[name].skypix is not None:
                    raise self.error(f"sky-pixel dimension {name} cannot be constrained in a where-clause yet", node)
                return Operand(self.universe[name].key.type, self.joins.ensure(name))
            owner = self._owner_of_field(node)
            validity = self._dataset_timespan(node, quiet=owner is not None) if name == "timespan" else None
            if owner is not None and validity is not None:
                raise self.error(f"'timespan' is a field of {owner} and of the query's dataset type; write "
                                 f"{owner}.timespan or <dataset_type>.timespan", node)
            if owner is not None:
                return self._element_field(owner, name, node)
            if validity is not None:
                return validity
            raise self.error(f"unknown name {name!r}: not a dimension, an element field or a bind parameter", node)
        if head == "timespan" and tail in ("begin", "end") and head not in self.universe.elements:
            whole = self._name(ex.Identifier(name=head, column=node.column))  # timespan.begin, as Rubin reads it
            if whole.kind != "timespan" or whole.span is None:
                raise self.error(f"{head} is not a timespan, so it has no .{tail}", node)
            return Operand("time", whole.span[0] if tail == "begin" else whole.span[1])
        if head in self.universe.elements:
            return self._element_field(head, tail, node)
        if self.dataset_field is not None:
            found = self.dataset_field(head, tail, node.column)
            if found is not None:
                return found
        raise self.error(f"unknown name {name!r}: {head!r} is neither a dimension element, a user table nor a dataset type", node)

    def _dataset_timespan(self, node: ex.Identifier, quiet: bool) -> Operand | None:
        """Bare ``timespan`` as the validity range of the query's one dataset type (None if
        the query has none; ``quiet`` keeps the reason to itself)."""
        if self.dataset_field is None:
            return None
        try:
            return self.dataset_field(None, node.name, node.column)
        except QueryError:
            if quiet:
                return None
            raise

    def _owner_of_field(self, node: ex.Identifier) -> str | None:
        """The one element of the query's dimensions with a field named like ``node``
        (``exposure_time`` for ``visit.exposure_time`` in a visit query; a key name too:
        ``id`` for ``detector.id`` in a detector query), as in the Rubin butler; None if
        there is none, an error naming them if there are several."""
        dims = set(self.joins.sources)
        owners = sorted(e.name for e in self.universe.elements.values()
                        if e.skypix is None and set(e.identity) <= dims
                        and (node.name in e.fields or (e.key is not None and node.name == e.key.name)
                             or (node.name == "region" and e.region)
                             or (node.name == "timespan" and e.timespan)))
        if len(owners) > 1:
            raise self.error(f"{node.name!r} is a field of several elements of this query; write one of "
                             f"{', '.join(f'{o}.{node.name}' for o in owners)}", node)
        return owners[0] if owners else None

    def _timespan_bound(self, node: ex.Identifier) -> Operand:
        """``visit.timespan.begin`` / ``exposure.timespan.end``: one bound, as a time."""
        head, middle, bound = node.name.split(".")
        if bound not in ("begin", "end"):
            raise self.error(f"{node.name!r}: a three-part name ends in .begin or .end of a timespan", node)
        if head in self.universe.elements:
            if middle != "timespan":
                raise self.error(f"{node.name!r}: only the timespan of {head} has a .{bound}", node)
            whole = self._element_field(head, middle, node)
        elif self.dataset_field is not None and (found := self.dataset_field(head, middle, node.column)):
            whole = found
        else:
            raise self.error(f"unknown name {node.name!r}: {head!r} is neither a dimension element nor a "
                             "dataset type", node)
        if whole.kind != "timespan" or whole.span is None:
            raise self.error(f"{head}.{middle} is not a timespan, so it has no .{bound}", node)
        return Operand("time", whole.span[0] if bound == "begin" else whole.span[1])

    def _element_field(self, element_name: str, field_name: str, node: ex.Node) -> Operand:
        element = self.universe[element_name]
        if element.key is not None and field_name in (element.key.name, element.name):
            return Operand(element.key.type, self.joins.ensure(element_name))
        if field_name in element.requires + element.implies:
            # ``visit.day_obs`` is the query's day_obs, as the Rubin butler reads it: it does not
            # bring visits into the query (an exposure query keeps the exposures without one)
            return Operand(self.universe[field_name].key.type, self.joins.ensure(field_name))
        if element.skypix is not None:
            raise self.error(f"sky-pixel dimension {element_name} has no fields", node)
        if field_name == "region" and element.region:
            table = self.joins.join_element(element_name)
            return Operand("region", sql=table.c.region, element=element_name)
        if field_name == "timespan" and element.timespan:
            table = self.joins.join_element(element_name)
            return Operand("timespan", span=(table.c.timespan_begin, table.c.timespan_end))
        if field_name in element.fields:
            table = self.joins.join_element(element_name)
            return Operand(element.fields[field_name], table.c[field_name])
        known = list(element.fields) + (["region"] if element.region else []) + (
            ["timespan"] if element.timespan else [])
        raise self.error(f"{element_name} has no field {field_name!r}; fields: {', '.join(known) or 'none'}", node)

    # -- predicates -----------------------------------------------------------

    def _comparable(self, a: Operand, b: Operand, node: ex.Node) -> None:
        if a.kind == "null" or b.kind == "null":
            return
        if a.kind in NUMERIC and b.kind in NUMERIC:
            return
        if a.kind == b.kind and a.kind in ("str", "bool", "time", "uuid"):
            return
        culprit = node.rhs if isinstance(node, ex.BinaryOp) else node
        raise self.error(f"cannot compare {a.kind} with {b.kind} in {node.to_text()!r}", culprit)

    def _refuse_chain(self, node: ex.BinaryOp | ex.Overlaps) -> None:
        """A condition is true or false, never a value to compare: ``(visit = 1) = TRUE`` and
        ``(a > 1) = (b < 2)`` are refused saying so; ``a < b < c`` parses as ``(a < b) < c``
        and is refused as the chained comparison it was meant to be."""
        inner = node.lhs if _is_condition(node.lhs) else node.rhs if _is_condition(node.rhs) else None
        if inner is None:
            return
        op = node.op if isinstance(node, ex.BinaryOp) else "OVERLAPS"
        other = node.rhs if inner is node.lhs else node.lhs
        grouped = inner is node.rhs or self._closes_before(node)
        if not grouped and isinstance(inner, ex.BinaryOp | ex.Overlaps) and not isinstance(other, ex.BoolLiteral) \
                and not _is_condition(other):
            inner_op = inner.op if isinstance(inner, ex.BinaryOp) else "OVERLAPS"
            middle, rhs = inner.rhs.to_text(), other.to_text()
            raise self.error(f"a chained comparison '{inner.lhs.to_text()} {inner_op} {middle} {op} {rhs}' compares "
                             f"the result of {inner.to_text()!r} (true or false) with {rhs}, which means "
                             f"nothing; write '{inner.to_text()} AND {middle} {op} {rhs}'", node)
        condition = inner.to_text()
        if isinstance(other, ex.BoolLiteral) and op in ("=", "!="):
            keep = other.value == (op == "=")
            hint = f"write '{condition}'" if keep else f"write 'NOT ({condition})'"
        elif _is_condition(other):
            hint = "combine conditions with AND, OR and NOT"
        else:
            hint = "compare values (names, literals, binds), not conditions"
        raise self.error(f"'{condition}' is a condition (true or false), not a value to compare with "
                         f"{other.to_text()} by {op}; {hint}", node)

    def _closes_before(self, node: ex.Node) -> bool:
        """Whether a ``)`` ends the text just before ``node``'s operator: ``(visit = 1) = TRUE``."""
        column = getattr(node, "column", None)
        return bool(column) and self.expression is not None and self.expression[:column - 1].rstrip().endswith(")")

    def _comparison(self, node: ex.BinaryOp) -> sa.ColumnElement:
        self._refuse_chain(node)
        lhs, rhs = self._operand(node.lhs), self._operand(node.rhs)
        if lhs.kind == rhs.kind == "null":
            raise self.error(f"{node.to_text()!r} compares NULL with NULL, which tests nothing; compare a "
                             "name with NULL: x = NULL", node)
        if {lhs.kind, rhs.kind} == {"timespan", "null"} and node.op in ("=", "!="):
            # A timespan is NULL as a whole: its stored begin is then NULL too.
            begin = (lhs if lhs.kind == "timespan" else rhs).span[0]  # type: ignore[index]
            return begin.is_(None) if node.op == "=" else begin.is_not(None)
        if "timespan" in (lhs.kind, rhs.kind) and {lhs.kind, rhs.kind} <= {"timespan", "time"}:
            return self._timespan_order(lhs, rhs, node)
        self._comparable(lhs, rhs, node)
        if "bool" in (lhs.kind, rhs.kind) and node.op not in ("=", "!="):
            raise self.error("TRUE/FALSE values can only be compared with = or !=", node)
        if "null" in (lhs.kind, rhs.kind):
            if node.op not in ("=", "!="):
                raise self.error("NULL can only be compared with = or !=", node)
            value = lhs.sql if rhs.kind == "null" else rhs.sql
            return value.is_(None) if node.op == "=" else value.is_not(None)
        ops = {"=": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}
        return getattr(lhs.sql, ops[node.op])(rhs.sql)

    def _timespan_order(self, lhs: Operand, rhs: Operand, node: ex.BinaryOp) -> sa.ColumnElement:
        """``a < b``: a ends before b begins; ``a > b``: a begins after b ends (half-open
        timespans, a time being the instant [t, t+1ns))."""
        if node.op not in ("<", ">"):
            raise self.error(f"a timespan can only be compared with < or > (or tested with OVERLAPS), "
                             f"not {node.op}", node)
        (b1, e1), (b2, e2) = _bounds(lhs), _bounds(rhs)
        return e1 <= b2 if node.op == "<" else b1 >= e2

    def _in_list(self, node: ex.InList) -> sa.ColumnElement:
        lhs = self._operand(node.lhs)
        scalars: list[Any] = []
        parts: list[sa.ColumnElement] = []
        for item in node.items:
            if isinstance(item, ex.RangeLiteral):
                self._need(lhs, ("int",), node.lhs)
                if item.stop < item.start - 1:  # refused as the Rubin butler refuses it (5..4 is empty to both)
                    raise self.error(f"range {item.to_text()} ends before it starts; write "
                                     f"{ex.RangeLiteral(start=item.stop, stop=item.start, stride=item.stride).to_text()}",
                                     item)
                cond = lhs.sql.between(self._int64(item.start, item), self._int64(item.stop, item))
                if item.stride != 1:
                    cond = sa.and_(cond, (lhs.sql - item.start) % self._int64(item.stride, item) == 0)
                parts.append(cond)
                continue
            value = self._operand(item)
            self._comparable(lhs, value, item)
            if isinstance(item, (ex.IntLiteral, ex.FloatLiteral, ex.StringLiteral, ex.BoolLiteral, ex.TimeLiteral)):
                scalars.append(item.ns if isinstance(item, ex.TimeLiteral) else item.value)
            else:
                parts.append(lhs.sql == value.sql)
        if scalars:
            kind = lhs.kind
            if kind in NUMERIC and (kind == "float" or any(isinstance(v, float) for v in scalars)):
                kind, scalars = "float", [float(v) for v in scalars]
            parts.insert(0, in_values(lhs.sql, scalars, "int" if kind == "time" else kind))
        cond = chain("OR", parts)
        return sa.not_(cond) if node.negated else cond

    def _glob(self, node: ex.Glob) -> sa.ColumnElement:
        operand = self._operand(node.operand)
        self._need(operand, ("str",), node.operand)
        if not isinstance(node.pattern, ex.StringLiteral):
            raise self.error("GLOB needs a string pattern", node.pattern)
        return glob_match(operand.sql, node.pattern.value)

    def _overlaps(self, node: ex.Overlaps, top: bool) -> sa.ColumnElement:
        self._refuse_chain(node)
        lhs, rhs = self._operand(node.lhs), self._operand(node.rhs)
        if lhs.kind in ("timespan", "time") and rhs.kind in ("timespan", "time"):
            return _timespan_overlap(lhs, rhs)
        if lhs.kind == "region" and rhs.kind == "region":
            if not top:
                raise self.error("a sky-region OVERLAPS may only be combined with the rest of the "
                                 "expression by AND", node)
            return self.region_overlap(lhs, rhs, node)
        raise self.error(f"OVERLAPS needs two regions or two times/timespans, got {lhs.kind} and {rhs.kind}", node)


def _bounds(op: Operand) -> tuple[Any, Any]:
    if op.kind == "time":
        return op.sql, op.sql + 1
    return op.span


def _timespan_overlap(a: Operand, b: Operand) -> sa.ColumnElement:
    (b1, e1), (b2, e2) = _bounds(a), _bounds(b)
    return sa.and_(b1 < e2, b2 < e1)


#: Nesting from which the operands of AND/OR are put deepest first.
_DEEP = 8


def _depth(node: ex.Node) -> int:
    """Levels of AND/OR groups in ``node`` (the tree is at most ``limits.MAX_DEPTH`` deep)."""
    below = max((_depth(child) for child in node.children()), default=0)
    return below + 1 if isinstance(node, ex.LogicalOp) else below


def _deepest_first(operands: Sequence[ex.Node]) -> list[ex.Node]:
    """``operands`` with deeply nested ones first (the same condition: AND and OR commute).

    SQLite's parser keeps each group still open on a stack of 100 entries: ``a AND (b OR (c
    AND (...)))`` overflows it from about 16 levels, while ``(((...) AND c) OR b) AND a``, whose
    groups close as they are read, takes 90."""
    depths = [_depth(o) for o in operands]
    if max(depths) < _DEEP:
        return list(operands)
    return [o for _, o in sorted(zip(depths, operands), key=lambda pair: -pair[0])]


def _equalities_as_lists(operands: tuple[ex.Node, ...]) -> list[ex.Node]:
    """The operands of an OR with ``x = 1 OR x = 2 OR ...`` (a column equal to an integer or
    string literal) gathered into ``x IN (1, 2, ...)``: the same answer, and a generated chain of
    thousands of values stays within SQLite's limit on an expression's depth (1,000)."""
    lists: dict[str, list[ex.BinaryOp]] = {}
    rest: list[ex.Node] = []
    for operand in operands:
        if (isinstance(operand, ex.BinaryOp) and operand.op == "=" and isinstance(operand.lhs, ex.Identifier)
                and isinstance(operand.rhs, (ex.IntLiteral, ex.StringLiteral))):
            lists.setdefault(operand.lhs.to_text(), []).append(operand)
        else:
            rest.append(operand)
    gathered = [ex.InList(lhs=same[0].lhs, items=tuple(o.rhs for o in same), column=same[0].column)
                if len(same) > 1 else same[0]
                for same in lists.values()]
    return gathered + rest
