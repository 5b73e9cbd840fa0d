"""Index hints: conditions a query adds that are always true but steer SQLite's planner.

Each is an ``IN (SELECT ...)`` on a dimension table that a foreign key already guarantees, so
the answer never changes; what changes is which index SQLite seeks and how much of it it scans
(measured figures in each docstring).  :mod:`.builder` adds them where a dataset table joins.

PostgreSQL gains from the governor hint only when a later column of the index is bounded too
(its index condition then starts with the instrument's equality, so the visit range is a seek);
otherwise the hint is one more join for every row, and the visit hint never helps it (no skip
scan: the bare range is the same seek).  Measured at 1M datasets, minimum server execution
time: Q1 3.5 ms with both hints, 2.9 with the governor's alone, 4.3-8.2 with none; Q6's count
16.1 ms with the governor's hint, 8.5 without.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.sql import visitors

from ..dimensions import DimensionGroup
from ..registry import Registry
from . import expression as ex
from .chains import chain


def governor_hints(registry: Registry, tags: sa.FromClause, group: DimensionGroup, tree: ex.Node | None
                   ) -> list[sa.ColumnElement]:
    """``instrument IN (SELECT name FROM instrument)`` for each governor of a tags table: always
    true (a foreign key: the tags table's own to ``instrument``, or its key to a ``visit`` or
    ``detector``, whose row has one), but it lets SQLite seek the tags index on (type, collection, instrument,
    visit range) instead of skip-scanning every leading column when the query leaves the
    instrument unconstrained (5 ms instead of 35 ms for 5,000 of 1,000,000 datasets).  On
    PostgreSQL only where a later column of the index is constrained (see the module's note)."""
    order = list(group.required)
    later = None if registry.db.dialect == "sqlite" else _key_constraints(registry, tree)[1]
    out = []
    for i, d in enumerate(order):
        element = registry.universe[d]
        if element.requires or element.skypix is not None or d not in registry.schema.elements:
            continue
        if later is not None and not later.intersection(order[i + 1:]):
            continue
        table = registry.schema.elements[d]
        out.append(tags.c[d].in_(sa.select(table.c[element.column_of(d)])))
    return out


_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "="}


def _key_constraints(registry: Registry, tree: ex.Node | None) -> tuple[dict[str, list[tuple[str, int]]], set[str]]:
    """The integer bounds (``visit > 100``) that the top-level AND terms put on dimension
    keys, and every dimension those terms compare with literals (bounds, = or IN)."""
    universe = registry.universe
    bounds: dict[str, list[tuple[str, int]]] = {}
    constrained: set[str] = set()

    def key_of(node: ex.Node) -> str | None:
        if not isinstance(node, ex.Identifier):
            return None
        head, _, tail = node.name.partition(".")
        element = universe.elements.get(head)
        if element is None or not element.is_dimension or element.key is None or tail not in ("", element.key.name):
            return None
        return head

    terms = [tree] if tree is not None else []
    while terms:
        node = terms.pop()
        if isinstance(node, ex.LogicalOp) and node.op == "AND":
            terms.extend(node.operands)
        elif isinstance(node, ex.BinaryOp) and node.op in _FLIPPED:
            for key, literal, op in ((key_of(node.lhs), node.rhs, node.op), (key_of(node.rhs), node.lhs,
                                                                              _FLIPPED[node.op])):
                if key is not None and isinstance(literal, (ex.IntLiteral, ex.StringLiteral)):
                    constrained.add(key)
                    if op != "=" and isinstance(literal, ex.IntLiteral):
                        bounds.setdefault(key, []).append((op, literal.value))
        elif isinstance(node, ex.InList) and (key := key_of(node.lhs)) is not None:
            constrained.add(key)
    return bounds, constrained


def seek_hints(registry: Registry, tags: sa.FromClause, group: DimensionGroup, tree: ex.Node | None
                ) -> list[sa.ColumnElement]:
    """``visit IN (SELECT id FROM visit WHERE id > 100 AND id <= 300)`` for a dimension whose
    key the where-clause bounds, when a later column of the tags index (type, collection,
    instrument, visit, detector) is constrained too: always true (a foreign key), but SQLite
    then seeks each visit and scans only the wanted detectors, where the bare range makes
    it scan every detector of every visit in range (Q1: 20,000 index entries for 5,000
    rows, 2.6 -> 1.8 ms).  Without a constraint after it, the range scan is the better plan
    and is left alone.  Never on PostgreSQL (see the module's note)."""
    if registry.db.dialect != "sqlite":
        return []
    bounds, constrained = _key_constraints(registry, tree)
    order = list(group.required)
    out = []
    for i, d in enumerate(order):
        if d not in bounds or not constrained.intersection(order[i + 1:]) or d not in registry.schema.elements:
            continue
        element = registry.universe[d]
        key = registry.schema.elements[d].c[element.column_of(d)]
        ops = {"<": key.__lt__, "<=": key.__le__, ">": key.__gt__, ">=": key.__ge__}
        out.append(tags.c[d].in_(sa.select(key).where(*[ops[op](value) for op, value in bounds[d]])))
    return out


def without_hinted_bounds(registry: Registry, tree: ex.Node | None, terms: list[tuple[str, sa.ColumnElement]],
                          hints: list[sa.ColumnElement]) -> sa.ColumnElement | None:
    """The where-clause's condition (its top-level ``terms``, as compiled from ``tree``) without
    the bare bounds on a membership-table column that a seek hint bounds already: the hint
    ``ds_tags.visit IN (SELECT id FROM visit WHERE id > 100 AND id <= 300)`` implies
    ``ds_tags.visit > 100`` and ``ds_tags.visit <= 300``, and while those stay SQLite may plan
    the range with a skip scan of the index's leading columns instead of the seeks (the
    standard workload at 20,000 datasets: Q1's count 0.80 ms, 0.39 without them).  A bound
    is dropped only when it compares the hinted column itself (not a joined visit table's
    key) with a literal; None when nothing is dropped."""
    hinted = {id(hint.left) for hint in hints}
    if not hinted or tree is None:
        return None
    operands = tree.operands if isinstance(tree, ex.LogicalOp) and tree.op == "AND" else (tree,)
    if len(operands) != len(terms):
        return None
    kept = [sql for operand, (_, sql) in zip(operands, terms)
            if not (isinstance(operand, ex.BinaryOp) and operand.op in ("<", "<=", ">", ">=")
                    and _key_constraints(registry, operand)[0] and _sole_column(sql) in hinted)]
    if len(kept) == len(terms):
        return None
    return chain("AND", kept) if kept else sa.true()


def _sole_column(sql: sa.ColumnElement) -> int | None:
    """The identity of the one column ``sql`` reads, or None if it reads several or none."""
    columns = {id(e) for e in visitors.iterate(sql) if isinstance(e, sa.ColumnClause)}
    return columns.pop() if len(columns) == 1 else None
