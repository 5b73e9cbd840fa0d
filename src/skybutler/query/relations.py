"""How a query's dimensions are related beyond their keys: the region overlap that joins an
observation (visit, detector) to a sky map (tract, patch) when both are queried and nothing
relates them, and the relations a where-clause states itself, which the join rule checks
(:meth:`~skybutler.query.joins.JoinBuilder.check_related`)."""

from __future__ import annotations

from typing import Any

from ..dimensions import DimensionGroup
from . import expression as ex
from .joins import JoinBuilder
from .where import Operand, WhereCompiler


def spatial_join(joins: JoinBuilder, where: WhereCompiler, group: DimensionGroup) -> list[tuple[str, ...]]:
    """Relate an observation family (visit/detector) to a sky-map family (tract/patch)
    by region overlap when both are in the query but no expression relates them; returns
    the dimensions it relates."""
    names = set(group.names)
    obs = "visit_detector_region" if {"visit", "detector"} <= names else ("visit" if "visit" in names else None)
    sky_map = "patch" if "patch" in names else ("tract" if "tract" in names else None)
    if obs is None or sky_map is None:
        return []
    related = [joins.universe[obs].identity + joins.universe[sky_map].identity]
    if any(f.left == f"region_{obs}" and f.right == f"region_{sky_map}" for f in where.result.region_filters):
        return related
    lhs = Operand("region", sql=joins.join_element(obs).c.region, element=obs)
    rhs = Operand("region", sql=joins.join_element(sky_map).c.region, element=sky_map)
    joins.where.append(where.region_overlap(lhs, rhs))
    return related


def stated_relations(universe: Any, tree: ex.Node | None) -> list[tuple[str, ...]]:
    """The dimensions that a comparison or OVERLAPS of the where-clause relates: those of the
    elements named on its two sides (``visit.region OVERLAPS tract.region``,
    ``exposure.timespan OVERLAPS visit.timespan``), for the join rule's check."""
    out: list[tuple[str, ...]] = []
    for node in ex.walk(tree):
        if not isinstance(node, (ex.BinaryOp, ex.Overlaps)) or isinstance(node, ex.BinaryOp) and node.op not in (
                "=", "!=", "<", "<=", ">", ">="):
            continue
        sides = []
        for side in (node.lhs, node.rhs):
            heads = {n.split(".", 1)[0] for n in ex.identifiers(side)}
            sides.append([d for h in heads if h in universe.elements for d in universe[h].identity])
        if sides[0] and sides[1]:
            out.append(tuple(sides[0] + sides[1]))
    return out

