"""The collections one query searches, and which of them hold each dataset type.

A query looks its collections up once (a CHAINED collection flattened into its search
path) and asks, for each dataset type it touches, which RUN and TAGGED collections of
that path hold any dataset of the type: one probe per (type, collection) pair, kept in
the registry's read cache, so that a type absent from every searched collection makes
the query certainly empty before its own statement runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..models import CollectionType, DatasetType
from ..registry import Registry

if TYPE_CHECKING:
    from .builder import QuerySpec


class CollectionSearch:
    """The searched collections of one query, and which of them hold each dataset type:
    looked up once however many dataset types the query has."""

    def __init__(self, registry: Registry, spec: QuerySpec):
        self.registry = registry
        self.path = registry.collections.flatten(spec.collections) if spec.collections else []
        self.ids = [registry.collections.lookup(c) for c in self.path]
        self._members: dict[str, list[int]] = {}

    def member_ids(self, dtype: DatasetType, *more: DatasetType) -> list[int]:
        """IDs of the RUN/TAGGED collections in the path that hold any dataset of ``dtype``
        (in path order); ``more`` types with the same tags table are looked up in the same
        statement, for later calls."""
        if dtype.name in self._members:
            return self._members[dtype.name]
        registry = self.registry
        tags = registry.schema.tags_table(registry.dataset_types.group(dtype))
        batch = [dtype] + [d for d in more if d.name not in self._members
                           and registry.schema.tags_table(registry.dataset_types.group(d)) is tags]
        type_ids = {registry.dataset_types.get(d.name)[0]: d.name for d in batch}
        candidates = [cid for cid, kind in self.ids if kind in (CollectionType.RUN, CollectionType.TAGGED)]

        def lookup() -> frozenset[tuple[int, int]]:
            with registry.db.reading() as conn:
                rows = conn.execute(_membership(registry, tags), {"types": list(type_ids), "collections": candidates})
                return frozenset((type_id, cid) for type_id, cid in rows)

        key = ("members", tags.name, tuple(sorted(type_ids)), tuple(candidates))
        present = registry.db.read_cache.get(key, lookup) if candidates else frozenset()
        for type_id, name in type_ids.items():
            self._members[name] = [cid for cid in candidates if (type_id, cid) in present]
        return self._members[dtype.name]


def _membership(registry: Registry, tags: sa.Table) -> sa.Select:
    """Which (dataset type, collection) pairs of ``:types`` x ``:collections`` hold a dataset
    in ``tags``: one statement per table, kept in the table's ``info`` and reused (SQLAlchemy
    then neither builds nor keys it again: a third of a small query's client time on
    PostgreSQL, where this runs for every query).  One index probe per pair: a DISTINCT over
    the membership rows would read every dataset of the types (50,000 index entries, 30 ms on
    PostgreSQL), and so does PostgreSQL's plan for an EXISTS (a semi-join): a LIMIT keeps it a probe."""
    found = tags.info.get("membership")
    if found is None:
        types, collections = registry.schema.dataset_type.c, registry.schema.collection.c
        held = sa.select(sa.literal(1)).where(tags.c.dataset_type_id == types.dataset_type_id,
                                              tags.c.collection_id == collections.collection_id
                                              ).limit(1).scalar_subquery().is_not(None)
        found = tags.info["membership"] = sa.select(types.dataset_type_id, collections.collection_id).select_from(
            registry.schema.dataset_type.join(registry.schema.collection, sa.true())).where(
            types.dataset_type_id.in_(sa.bindparam("types", expanding=True)),
            collections.collection_id.in_(sa.bindparam("collections", expanding=True)), held)
    return found
