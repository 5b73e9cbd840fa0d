"""``column IN (v1, v2, ...)`` for long lists, sent as one parameter.

A list of values in SQL is one parameter a value, and the databases take only so many
(PostgreSQL 65,535 a statement, SQLite 32,766 or 250,000 by its build), each with its cost
of planning.  A long list is therefore sent as one JSON text read by ``json_each`` on
SQLite, and as one array on PostgreSQL (``= ANY``, which PostgreSQL hashes), whatever its
length.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement

#: Lists longer than this go as one parameter.
ONE_PARAMETER_FROM = 500

_ARRAY_TYPES = {"int": sa.BigInteger, "float": sa.Float, "str": sa.Text}


class InMany(ColumnElement):
    """``column IN (values)`` for a list of non-NULL int, float or str values of one kind."""

    inherit_cache = False  # each list is its own statement: not worth SQLAlchemy's cache
    type = sa.Boolean()

    def __init__(self, column: ColumnElement, values: Sequence[Any], kind: str):
        self.column = column
        self.values = list(values)
        self.kind = kind


@compiles(InMany)
def _in_json(element: InMany, compiler: Any, **kw: Any) -> str:
    values = sa.bindparam(None, json.dumps(element.values), type_=sa.Text)
    return f"{compiler.process(element.column, **kw)} IN (SELECT value FROM json_each({compiler.process(values, **kw)}))"


@compiles(InMany, "postgresql")
def _in_array(element: InMany, compiler: Any, **kw: Any) -> str:
    values = sa.bindparam(None, element.values, type_=postgresql.ARRAY(_ARRAY_TYPES[element.kind]))
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(values, **kw)})"


def in_values(column: ColumnElement, values: Sequence[Any], kind: str) -> ColumnElement:
    """``column IN values``; a long list of int, float or str values as one parameter."""
    if len(values) == 1:
        return column == values[0]
    if len(values) < ONE_PARAMETER_FROM or kind not in _ARRAY_TYPES:
        return column.in_(values)
    return InMany(column, values, kind)
