"""The FROM clause of a query: which tables supply which dimension columns.

A :class:`JoinBuilder` starts from nothing (or from dataset membership tables) and
adds dimension element tables until every dimension the query needs has a source
column, joining each new table on the dimensions it shares with those already
there.  Implied dimensions come from the table that implies them (a visit's band
from its physical_filter), so a query joins only the tables it needs.

The join rule: every dimension of a query (requested, named in the where-clause, a
bind, the data ID or a dataset type) is related to the others through the universe's
relationship tables (``visit_definition`` pairs an exposure only with its own visits),
through the elements that require or imply it, or through a spatial or temporal
relation the query states; :meth:`JoinBuilder.check_related` refuses a query whose
dimensions fall apart into unrelated families (an exposure and a tract), which a
bare cross product would answer with a different question.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
        # A dimension of the element that the query already implies (the day_obs of its
        # exposures) is taken from there first, so the table joins on it: joined on the
        # instrument alone, every day_obs record would pair with every exposure.
        for d in element.identity:
            if d not in self.sources:
                self._source_implied(d, None)
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
        if dimension in self.sources or self._source_implied(dimension, available):
            return self.sources[dimension]
        self.join_element(dimension)
        return self.sources[dimension]

    def _source_implied(self, dimension: str, available: set[str] | None) -> bool:
        """Source ``dimension`` from an element of the query that implies it (directly, or
        through an implied dimension: a visit's band through its physical_filter); False
        if none does."""
        for name, table in self.element_tables.items():
            if dimension in self.universe[name].implies:
                self.sources[dimension] = table.c[dimension]
                return True
        candidates = available if available is not None else set(self.sources)
        for name in sorted(candidates, key=self.universe.order.__getitem__):
            element = self.universe[name]
            if dimension in element.implies and name != dimension:
                self.ensure(name, available)
                self.join_element(name)
                return True
        for name in sorted(candidates, key=self.universe.order.__getitem__):
            element = self.universe[name]
            for implied in element.implies:
                if dimension in self.universe[implied].implies:
                    self.ensure(implied, available)
                    self.join_element(implied)
                    return True
        return False

    def join_relationships(self) -> None:
        """Join every pure relationship element (no key, no region: visit_definition) whose
        dimensions are all in the query, so exposures pair only with their own visits.
        Called once every dimension of the query has its source, wherever it was named."""
        pure = _RELATIONSHIPS.get(self.universe)
        if pure is None:
            pure = _RELATIONSHIPS[self.universe] = [
                (name, element.identity) for name, element in self.universe.elements.items()
                if element.key is None and not element.region and not element.timespan and not element.fields]
        for name, identity in pure:
            if name not in self.element_tables and all(d in self.sources for d in identity):
                self.join_element(name)

    def check_related(self, relations: Callable[[], Iterable[Iterable[str]]] = tuple) -> None:
        """Refuse a query whose dimensions fall into families that nothing relates.

        Dimensions are related by the elements that require or imply them (a detector
        and an exposure of one instrument), by the relationship tables joined here, and by
        ``relations()``: groups of dimensions a spatial or temporal condition of the query
        ties together (asked for only when the rest leaves families apart: most queries
        never pay for finding them).  A family made only of dimensions that require
        nothing (a band, a sky map) may go with any other (every band of each patch); two
        families that each hold a dependent dimension (an exposure, a tract) may not:
        their cross product answers no question a user asks."""
        key = (frozenset(self.sources), frozenset(self.element_tables))
        related = _RELATED.setdefault(self.universe, set())
        if key in related:  # the same tables and dimensions were found related before
            return
        names = [d for d in self.sources if self.universe[d].skypix is None]
        parent = {d: d for d in names}

        def find(d: str) -> str:
            while parent[d] != d:
                parent[d] = parent[parent[d]]
                d = parent[d]
            return d

        def union(group: Iterable[str]) -> None:
            roots = [find(d) for d in group if d in parent]
            for r in roots[1:]:
                parent[r] = roots[0]

        for d in names:
            element = self.universe[d]
            union((d, *element.requires, *element.implies))
        for name in self.element_tables:
            element = self.universe[name]
            union((*element.identity, *element.implies))

        def dependent_families() -> list[list[str]]:
            families: dict[str, list[str]] = {}
            for d in self.universe.sorted(names):
                families.setdefault(find(d), []).append(d)
            return [f for f in families.values() if any(self.universe[d].requires for d in f)]

        dependent = dependent_families()
        if len(dependent) <= 1:
            if len(related) < 4096:
                related.add(key)
            return
        for group in relations():
            union(group)
        dependent = dependent_families()
        if len(dependent) > 1:
            # Name each family by its most specific dimensions (exposure, not its instrument).
            shown = " and ".join(", ".join(d for d in f if not any(
                d in self.universe[o].requires + self.universe[o].implies for o in f)) for f in dependent)
            raise QueryError(
                f"the query's dimensions {shown} are unrelated: no relationship table of the universe joins "
                "them and the query states no spatial or temporal relation between them; relate them in the "
                "where-clause (e.g. visit.region OVERLAPS tract.region) or query them separately")

    def select_from(self) -> sa.FromClause:
        if self.from_clause is None:
            raise QueryError("the query has no dimensions or datasets to select from")
        return self.from_clause


#: Per universe, its pure relationship elements and their identities.
_RELATIONSHIPS: dict[DimensionUniverse, list[tuple[str, tuple[str, ...]]]] = {}
#: Per universe, the (dimensions, element tables) of queries already found related without
#: any stated relation (the answer depends on nothing else), so most queries check once.
_RELATED: dict[DimensionUniverse, set[tuple[frozenset[str], frozenset[str]]]] = {}
