"""The sky-region terms of a where-expression: region literals and region overlaps.

A literal (``POINT``, ``CIRCLE``, ``BOX``, ``POLYGON``, ``REGION``) becomes an
:class:`lsst.sphgeom.Region`; an OVERLAPS between regions becomes a coarse sky-pixel condition
in SQL (through the elements' sky-pixel overlap tables) plus an exact test registered as a row
filter, to be applied to the rows afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import lsst.sphgeom as sphgeom
import sqlalchemy as sa

from ..dimensions import regions as sky
from ..errors import QueryError
from . import expression as ex
from .region_tests import RegionFilter

if TYPE_CHECKING:
    from ..dimensions.universe import DimensionUniverse
    from .joins import JoinBuilder
    from .where import CompiledWhere, Operand

#: The arithmetic of numeric operands (SQL expressions, or constants such as a region's degrees).
ARITHMETIC = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
               "/": lambda a, b: a / b, "%": lambda a, b: a % b}


class RegionTerms:
    """The region part of :class:`~skybutler.query.where.WhereCompiler`."""

    joins: JoinBuilder
    universe: DimensionUniverse
    result: CompiledWhere
    error: Callable[[str, ex.Node | None], QueryError]

    def _constant(self, node: ex.Node, function: str) -> float:
        """A region argument's value in degrees: a number, or arithmetic on numbers."""
        if isinstance(node, (ex.IntLiteral, ex.FloatLiteral)):
            return float(node.value)
        if isinstance(node, ex.UnaryOp):
            return -self._constant(node.operand, function)
        if isinstance(node, ex.BinaryOp) and node.op in ARITHMETIC:
            try:
                return float(ARITHMETIC[node.op](self._constant(node.lhs, function),
                                                  self._constant(node.rhs, function)))
            except ZeroDivisionError:
                raise self.error(f"{node.to_text()!r} divides by zero", node) from None
        raise self.error(f"{function}() takes numbers in degrees, found {node.to_text()!r}", node)

    def _region_literal(self, node: ex.RegionFunction) -> sphgeom.Region:
        if node.name == "REGION":
            (arg,) = node.args
            if not isinstance(arg, ex.StringLiteral):
                raise self.error(f"REGION() takes an IVOA region string, found {arg.to_text()!r}", arg)
            try:
                return sphgeom.Region.from_ivoa_pos(arg.value)
            except (ValueError, RuntimeError, TypeError, IndexError) as err:
                raise self.error(f"{arg.value!r} is not an IVOA region (CIRCLE ra dec r, RANGE ra1 ra2 dec1 "
                                 f"dec2 or POLYGON ra1 dec1 ra2 dec2 ...): {err}", arg) from None
        values = [self._constant(a, node.name) for a in node.args]
        decs = values[1::2] if node.name == "POLYGON" else values[1:2]
        for value, dec in zip(node.args[1::2] if node.name == "POLYGON" else node.args[1:2], decs):
            if not -90 <= dec <= 90:
                raise self.error(f"{node.name}() declination {dec} is outside [-90, 90]", value)
        for arg, size in zip(node.args[2:], values[2:] if node.name in ("CIRCLE", "BOX") else []):
            if size < 0:
                raise self.error(f"{node.name}() size {size} must not be negative", arg)
        try:
            if node.name == "POINT":
                return sky.tiny_circle(*values)
            if node.name == "CIRCLE":
                return sky.circle(*values)
            if node.name == "BOX":
                return sky.rectangle(*values)
            return sky.polygon(list(zip(values[0::2], values[1::2])))
        except (ValueError, RuntimeError) as err:  # sphgeom's refusal of a degenerate shape
            raise self.error(f"{node.to_text()} is not a region: {err}", node) from None

    def region_overlap(self, lhs: Operand, rhs: Operand, node: ex.Node | None = None) -> sa.ColumnElement:
        """Coarse sky-pixel condition in SQL, exact test registered as a row filter."""
        if lhs.element is None:
            lhs, rhs = rhs, lhs
        if lhs.element is None:
            return sa.true() if sky.overlaps(lhs.region, rhs.region) else sa.false()
        if lhs.coarse is not None or rhs.coarse is not None:
            if rhs.element is not None:
                raise self.error("a dataset's region can only be tested against a constant region "
                                 "(POINT, CIRCLE, BOX, POLYGON or a bound region)", node)
            self.result.region_filters.append(RegionFilter(self._region_column(lhs), rhs.region))
            return lhs.coarse(rhs.region)
        index = self.universe.spatial_index
        if index is None:
            raise self.error("this universe has no spatial index; region queries are unavailable", node)
        system, level = self.universe[index].skypix
        left_label = self._region_column(lhs)
        if rhs.element is None:
            pixels = sky.envelope(rhs.region, system, level)
            self.result.region_filters.append(RegionFilter(left_label, rhs.region))
            return self._in_pixels(lhs.element, system, level, pixels)
        if rhs.element == lhs.element:
            raise self.error(f"this OVERLAPS compares {lhs.element}'s region with itself, which is true of every "
                             f"{lhs.element} with a region; compare it with another element's region or a "
                             "constant one", node)
        right_label = self._region_column(rhs)
        self.result.region_filters.append(RegionFilter(left_label, right_label))
        return self._pixels_meet(lhs.element, rhs.element, system, level)

    def _region_column(self, operand: Operand) -> str:
        label = f"region_{operand.element}"
        self.result.region_columns[label] = operand.sql
        return label

    def _identity_columns(self, element_name: str) -> list[sa.ColumnElement]:
        element = self.universe[element_name]
        table = self.joins.join_element(element_name)
        return [table.c[element.column_of(d)] for d in element.identity]

    def _in_pixels(self, element_name: str, system: str, level: int, pixels: list[int]) -> sa.ColumnElement:
        element = self.universe[element_name]
        overlap = self.joins.schema.skypix_overlaps[element_name]
        ident = [overlap.c[element.column_of(d)] for d in element.identity]
        sub = sa.select(*ident).where(overlap.c.skypix_system == system, overlap.c.skypix_level == level,
                                      overlap.c.skypix_index.in_(pixels))
        return sa.tuple_(*self._identity_columns(element_name)).in_(sub)

    def _pixels_meet(self, a: str, b: str, system: str, level: int) -> sa.ColumnElement:
        schema = self.joins.schema
        oa = schema.alias(schema.skypix_overlaps[a], f"ov_{a}")
        ob = schema.alias(schema.skypix_overlaps[b], f"ov_{b}")
        ea, eb = self.universe[a], self.universe[b]
        cond = [oa.c.skypix_system == system, oa.c.skypix_level == level, ob.c.skypix_system == system,
                ob.c.skypix_level == level, oa.c.skypix_index == ob.c.skypix_index]
        cond += [oa.c[ea.column_of(d)] == c for d, c in zip(ea.identity, self._identity_columns(a))]
        cond += [ob.c[eb.column_of(d)] == c for d, c in zip(eb.identity, self._identity_columns(b))]
        return sa.exists(sa.select(sa.literal(1)).select_from(oa.join(ob, sa.true())).where(*cond))
