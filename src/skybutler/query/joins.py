"""The FROM clause of a query: which tables supply which dimension columns.

A :class:`JoinBuilder` starts from nothing (or from dataset membership tables) and
adds dimension element tables until every dimension the query needs has a source
column, joining each new table on the dimensions it shares with those already
there.  Implied dimensions come from the table that implies them (a visit's band
from its physical_filter), so a query joins only the tables it needs.
"""

from __future__ import annotations

import sqlalchemy as sa

from ..dimensions import DimensionUniverse
from ..errors import QueryError
from ..registry.schema import RegistrySchema


class JoinBuilder:
    """Accumulates a FROM clause and the source column of every dimension in it."""

    def __init__(self, schema: RegistrySchema):
        self.schema = schema
        self.universe: DimensionUniverse = schema.universe
        self.from_clause: sa.FromClause | None = None
        self.sources: dict[str, sa.ColumnElement] = {}
        self.element_tables: dict[str, sa.FromClause] = {}
        self.where: list[sa.ColumnElement] = []

    def add(self, table: sa.FromClause, columns: dict[str, sa.ColumnElement]) -> None:
        """Join ``table``, whose ``columns`` hold the named dimensions, on every shared dimension."""
        on = [self.sources[d] == col for d, col in columns.items() if d in self.sources]
        if self.from_clause is None:
            self.from_clause = table
        elif on:
            self.from_clause = self.from_clause.join(table, sa.and_(*on))
        else:
            self.from_clause = self.from_clause.join(table, sa.true())
        for d, col in columns.items():
            self.sources.setdefault(d, col)

    def join_element(self, name: str) -> sa.FromClause:
        """Join an element's own table (once), with its identity and implied columns."""
        found = self.element_tables.get(name)
        if found is not None:
            return found
        element = self.universe[name]
        if element.skypix is not None:
            raise QueryError(f"{name} is a sky-pixel dimension; it has no table to join")
        table = self.schema.alias(self.schema.elements[name], f"e_{name}")
        self.element_tables[name] = table
        # The table's own columns source its requirements (their records exist: foreign
        # keys), so {visit, detector} needs no join of the instrument table.
        cols = {d: table.c[element.column_of(d)] for d in element.identity + element.implies}
        self.add(table, cols)
        return table

    def ensure(self, dimension: str, available: set[str] | None = None) -> sa.ColumnElement:
        """A source column for ``dimension``, joining tables as needed.

        An implied dimension is taken from an element that implies it and is already
        (or can be) part of the query, so {visit, band} joins visit -> physical_filter.
        """
        if dimension in self.sources:
            return self.sources[dimension]
        for name, table in self.element_tables.items():
            if dimension in self.universe[name].implies:
                self.sources[dimension] = table.c[dimension]
                return self.sources[dimension]
        candidates = available if available is not None else set(self.sources)
        for name in sorted(candidates, key=self.universe.order.__getitem__):
            element = self.universe[name]
            if dimension in element.implies and name != dimension:
                self.ensure(name, available)
                self.join_element(name)
                return self.sources[dimension]
        for name in sorted(candidates, key=self.universe.order.__getitem__):
            element = self.universe[name]
            for implied in element.implies:
                if dimension in self.universe[implied].implies:
                    self.ensure(implied, available)
                    self.join_element(implied)
                    return self.sources[dimension]
        self.join_element(dimension)
        return self.sources[dimension]

    def join_relationships(self) -> None:
        """Join every pure relationship element (no key, no region: visit_definition) whose
        dimensions are all in the query, so exposures pair only with their own visits."""
        for name, element in self.universe.elements.items():
            if (element.key is None and not element.region and not element.timespan and not element.fields
                    and name not in self.element_tables and all(d in self.sources for d in element.identity)):
                self.join_element(name)

    def select_from(self) -> sa.FromClause:
        if self.from_clause is None:
            raise QueryError("the query has no dimensions or datasets to select from")
        return self.from_clause
