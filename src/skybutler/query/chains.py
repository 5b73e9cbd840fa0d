"""AND/OR of many conditions as SQL every registry database can parse.

SQLite reads ``a OR b OR c ...`` as a tree one level deeper for each operator and refuses a
tree deeper than 1,000 levels ("Expression tree is too large"), so a where-clause of a thousand
comparisons joined by OR (or AND), or a few dozen nested groups of a few dozen each, failed
there.  The same conditions grouped in parentheses, ``a OR (b OR ... OR k) OR (l OR ...) ...``,
mean the same (AND and OR are associative in SQL's three-valued logic too) and nest a few
levels for ``CHUNK`` more conditions: about 50 levels for 10,000.  The first operand stays
outside the groups: a nested group is put first (so that SQLite's parser closes it early) and
then adds only the length of the outer chain to the depth.  SQLAlchemy flattens nested
``or_``/``and_`` (parentheses included), so the groups are joined with the raw construction that
keeps them (as ``sa.and_`` joins conditions, less its simplification of TRUE and FALSE operands).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BooleanClauseList, Grouping

#: Conditions joined in one group of parentheses (and groups joined at each level above it).
CHUNK = 10


def chain(op: str, parts: Sequence[sa.ColumnElement]) -> sa.ColumnElement:
    """``parts`` joined by ``op`` ("AND" or "OR"), all but the first in groups of at most ``CHUNK``."""
    operator = operators.and_ if op == "AND" else operators.or_
    flat: list[sa.ColumnElement] = []
    for part in parts:  # a nested chain of the same operator joins this one, as SQLAlchemy would join it
        if isinstance(part, BooleanClauseList) and part.operator is operator:
            flat.extend(part.clauses)
        else:
            flat.append(part.self_group(against=operator))
    if len(flat) == 1:
        return flat[0]
    rest = flat[1:]
    while len(rest) > CHUNK:
        rest = [Grouping(BooleanClauseList._construct_raw(operator, rest[i:i + CHUNK])) if len(rest) - i > 1
                else rest[i] for i in range(0, len(rest), CHUNK)]
    return BooleanClauseList._construct_raw(operator, [flat[0], *rest])
