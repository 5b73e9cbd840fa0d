"""Bind parameters: values given beside a where-clause, named ``:name`` or ``name`` in it.

Values of every type a user holds are accepted: numbers, strings, booleans, None,
astropy ``Time`` and ``datetime`` (UTC), :class:`~skybutler.Timespan` (or the Rubin
butler's), ``uuid.UUID``,
sky regions (``lsst.sphgeom`` regions, ``LonLat`` and astropy ``SkyCoord`` points), and
lists, tuples, sets or ranges of scalars for ``x IN (name)``.  A ``:name`` that is not
given, and a given bind that the expression never names, are errors naming it.
"""

from __future__ import annotations

import datetime
import math
import numbers
import uuid
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import lsst.sphgeom as sphgeom
from astropy.time import Time

from ..dimensions import regions as sky
from ..errors import QueryError
from ..timespan import Timespan
from .expression import (
    Bind,
    BoolLiteral,
    FloatLiteral,
    Glob,
    Identifier,
    InList,
    IntLiteral,
    Node,
    NullLiteral,
    RangeLiteral,
    StringLiteral,
    TimeLiteral,
    TimespanExpr,
    TimespanLiteral,
    UuidLiteral,
    bind_names,
    identifiers,
    walk,
)
from .limits import check_string, check_tree
from .parser import make_timespan, parse_expression


def region_value(value: Any) -> sphgeom.Region | None:
    """The sky region a bind value stands for (a point is a tiny circle); None if it is none."""
    if isinstance(value, sphgeom.Region):
        return value
    if isinstance(value, sphgeom.LonLat):
        return sky.tiny_circle(value.getLon().asDegrees(), value.getLat().asDegrees())
    if type(value).__name__ == "SkyCoord" and getattr(value, "isscalar", False):
        icrs = value.icrs
        return sky.tiny_circle(float(icrs.ra.deg), float(icrs.dec.deg))
    return None


def split_binds(tree: Node | None, bind: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, sphgeom.Region]]:
    """Split ``bind`` into plain values and sky regions; `QueryError` naming a ``:name`` of the
    expression that is not given."""
    wanted = bind_names(tree)
    missing = sorted(wanted - set(bind))
    if missing:
        node = next(n for n in _binds(tree) if n.name == missing[0])
        raise QueryError(f"bind parameter :{missing[0]} is not given; pass bind={{{missing[0]!r}: ...}}",
                         column=node.column)
    plain: dict[str, Any] = {}
    regions: dict[str, sphgeom.Region] = {}
    for name, value in bind.items():
        region = region_value(value)
        if region is not None:
            regions[name] = region
        else:
            plain[name] = value
    return plain, regions


@lru_cache(maxsize=512)
def _names(where: str) -> tuple[frozenset[str], frozenset[str]]:
    """The ``:name`` binds and the identifiers of an expression (kept like its parsed tree)."""
    tree = parse_expression(where)
    return frozenset(bind_names(tree)), frozenset(identifiers(tree))


def parse_with_binds(where: str, bind: Mapping[str, Any], tree: Node | None = None
                     ) -> tuple[Node | None, dict[str, sphgeom.Region]]:
    """Parse a where-clause (or take its ``tree``, parsed already by a remote client) and put
    its bind values in: the tree, and the sky-region binds (kept aside for the compiler).
    Errors point into the expression."""
    tree = parse_expression(where) if tree is None else tree
    try:
        if not bind and not _names(where)[0]:
            check_tree(tree)
            return tree, {}
        plain, regions = split_binds(tree, bind)
        resolved = resolve_binds(tree, plain)
        check_tree(resolved)
        return resolved, regions
    except QueryError as err:
        raise _in_expression(err, where) from None


def check_all_used(where: str, bind: Mapping[str, Any]) -> None:
    """Raise `QueryError` naming the given binds the expression never names (a misspelled
    bind would otherwise silently constrain nothing).  Checked after compiling, so that an
    unknown name in the expression is reported first, at its column."""
    if not bind:
        return
    wanted, names = _names(where)
    used = wanted | {name for name in names if name in bind}
    unused = sorted(set(bind) - used)
    if unused:
        raise QueryError(f"bind parameter{'s' if len(unused) > 1 else ''} {', '.join(map(repr, unused))} "
                         f"given but not named in the expression {where if len(where) <= 200 else where[:200] + '...'!r}")


def _in_expression(err: QueryError, where: str) -> QueryError:
    if err.expression is not None:
        return err
    if err.column is None:
        shown = where if len(where) <= 200 else where[:200] + f"... ({len(where):,} characters)"
        return QueryError(f"{err.message} in {shown!r}")
    return QueryError(err.message, where, err.column)


def _binds(tree: Node | None) -> list[Bind]:
    return [n for n in walk(tree) if isinstance(n, Bind)]


def resolve_binds(tree: Node | None, bind: Mapping[str, Any]) -> Node | None:
    """Replace ``:name`` binds and identifiers named in ``bind`` by literal nodes.

    A list/tuple/set/range expands into the items of ``x IN (name)``.  Raises
    `QueryError` naming the bind when a value cannot be used where it stands.
    """
    if tree is None or not bind:
        return tree
    return _resolve(tree, bind)


def _is_collection(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset, range))


def _bound_name(node: Node, bind: Mapping[str, Any]) -> str | None:
    if isinstance(node, (Identifier, Bind)) and node.name in bind:
        return node.name
    return None


def _resolve(node: Node, bind: Mapping[str, Any]) -> Node:
    name = _bound_name(node, bind)
    if name is not None:
        value = bind[name]
        if _is_collection(value):
            raise QueryError(
                f"bind {name!r} holds several values; use it as an IN list: x IN ({node.to_text()})",
                column=node.column,
            )
        return literal_from_value(value, name, node.column)
    if isinstance(node, InList):
        items: list[Node] = []
        for item in node.items:
            item_name = _bound_name(item, bind)
            if item_name is not None and _is_collection(bind[item_name]):
                items.extend(_collection_items(bind[item_name], item_name, item.column))
            else:
                items.append(_resolve(item, bind))
        if not items:  # x IN () matches nothing; x NOT IN () everything
            return BoolLiteral(value=node.negated, column=node.column)
        return InList(lhs=_resolve(node.lhs, bind), items=tuple(items), negated=node.negated, column=node.column)
    node = node.map_children(lambda child: _resolve(child, bind))
    if isinstance(node, TimespanExpr):
        return make_timespan(node.begin, node.end, node.column)
    if isinstance(node, Glob) and not isinstance(node.pattern, (StringLiteral, Identifier, Bind)):
        raise QueryError("a GLOB pattern bind must be a string", column=node.pattern.column)
    return node


def _collection_items(value: Any, name: str, column: int | None) -> list[Node]:
    if isinstance(value, range):
        if value.step > 0 and len(value):
            return [RangeLiteral(start=value.start, stop=value[-1], stride=value.step, column=column)]
        return [IntLiteral(value=v, column=column) for v in value]
    values = list(value)
    if isinstance(value, (set, frozenset)):
        try:
            values = sorted(values)
        except TypeError:
            pass
    for v in values:
        if _is_collection(v):
            raise QueryError(f"bind {name!r} holds a nested list, which is not supported", column=column)
    return [literal_from_value(v, name, column) for v in values]


def literal_from_value(value: Any, name: str, column: int | None = None) -> Node:
    """The literal node for one bind value; QueryError naming the bind if unsupported."""
    if value is None:
        return NullLiteral(column=column)
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return BoolLiteral(value=bool(value), column=column)
    if isinstance(value, numbers.Integral):
        return IntLiteral(value=int(value), column=column)
    if isinstance(value, numbers.Real):
        if not math.isfinite(float(value)):
            raise QueryError(f"bind {name!r} is {value}, but only finite numbers are supported", column=column)
        return FloatLiteral(value=float(value), column=column)
    if isinstance(value, str):
        check_string(value, name, column)
        return StringLiteral(value=value, column=column)
    if isinstance(value, Time):
        if not value.isscalar:
            raise QueryError(f"bind {name!r} is an array of times; use one time", column=column)
        if value.scale == "local":
            raise QueryError(f"bind {name!r} is a time on scale 'local', which cannot be compared with the "
                             "registry's TAI times", column=column)
        return TimeLiteral(value=value, column=column)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return TimeLiteral(value=Time(value, scale="utc"), column=column)
    if isinstance(value, Timespan):
        return TimespanLiteral(begin=value.begin, end=value.end, column=column)
    if callable(getattr(value, "isEmpty", None)) and hasattr(value, "begin") and hasattr(value, "end"):
        if value.isEmpty():  # a Rubin butler Timespan: its bounds are astropy Times or None
            raise QueryError(f"bind {name!r} is an empty timespan, which overlaps nothing", column=column)
        return TimespanLiteral(begin=value.begin, end=value.end, column=column)
    if isinstance(value, uuid.UUID):
        return UuidLiteral(value=str(value), column=column)
    raise QueryError(
        f"bind {name!r} has unsupported type {type(value).__name__}; use int, float, str, bool, None, "
        "astropy Time, datetime, Timespan, uuid.UUID, a sky region, or a list of those",
        column=column,
    )
