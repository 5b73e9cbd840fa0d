"""``butler.collections``: register, chain, tag and certify collections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import CollectionError
from .models import CollectionInfo, CollectionType, DatasetRef
from .registry import Registry
from .rubin_registry import RubinCollectionCalls
from .timespan import Timespan


class CollectionsManager(RubinCollectionCalls):
    """The collection operations of a butler, over its registry."""

    def __init__(self, registry: Registry):
        self._registry = registry

    def register(self, name: str, type: CollectionType | str = CollectionType.RUN, doc: str | None = "") -> bool:
        """Create a collection (``run``, ``tagged``, ``chained``, ``calibration``); False if it exists."""
        return self._registry.collections.register(name, type, doc)

    def info(self, name: str) -> CollectionInfo:
        _, kind = self._registry.collections.lookup(name)
        children = self._registry.collections.children(name) if kind is CollectionType.CHAINED else ()
        return CollectionInfo(name=name, type=kind, doc=self._registry.collections.doc(name), children=children)

    def dataset_types(self, names: str | Iterable[str]) -> dict[str, list[str]]:
        """The sorted names of the dataset types each collection holds datasets of now; for a
        chain, those of the collections it searches (as the Rubin butler's collection summary,
        which also keeps a type whose datasets were all removed)."""
        names = [names] if isinstance(names, str) else list(names)
        searched = {name: self._registry.collections.flatten([name]) for name in names}
        held = self._registry.datasets.types_in({leaf for leaves in searched.values() for leaf in leaves})
        return {name: sorted(set().union(*(held[leaf] for leaf in leaves))) for name, leaves in searched.items()}

    def exists(self, name: str) -> bool:
        return self._registry.collections.exists(name)

    def set_chain(self, name: str, children: Sequence[str]) -> None:
        """Define (or redefine) a CHAINED collection's ordered search path; cycles are refused."""
        self._registry.collections.set_chain(name, list(children))

    def get_chain(self, name: str) -> tuple[str, ...]:
        return self._registry.collections.children(name)


    def parents(self, name: str) -> list[str]:
        """The CHAINED collections that list ``name`` as a child."""
        return self._registry.collections.parents(name)

    def flatten(self, names: str | Iterable[str]) -> list[str]:
        """The ordered search path of non-chained collections."""
        return self._registry.collections.flatten([names] if isinstance(names, str) else names)

    def query(self, pattern: str = "*", types: Iterable[CollectionType | str] | None = None,
              flatten_chains: bool = False) -> list[CollectionInfo]:
        """Collections whose names match a glob pattern."""
        return self._registry.collections.query(pattern, types, flatten_chains)

    def associate(self, name: str, refs: Iterable[DatasetRef]) -> None:
        """Add datasets to a TAGGED collection (created if missing)."""
        with self._registry.transaction():  # a refused association does not create the collection
            self.register(name, CollectionType.TAGGED)
            self._registry.datasets.associate(name, list(refs))

    def disassociate(self, name: str, refs: Iterable[DatasetRef]) -> None:
        self._registry.datasets.disassociate(name, list(refs))

    def certify(self, name: str, refs: Iterable[DatasetRef], begin: Any = None, end: Any = None, *,
                timespan: Timespan | None = None) -> None:
        """Make calibrations valid over ``[begin, end)`` in a CALIBRATION collection (created if
        missing); an overlap with an existing range for the same data ID is refused."""
        span = timespan if timespan is not None else Timespan(begin, end)
        with self._registry.transaction():  # a refused certification does not create the collection
            self.register(name, CollectionType.CALIBRATION)
            self._registry.calibrations.certify(name, list(refs), span)

    def decertify(self, name: str, dataset_type: str, begin: Any = None, end: Any = None, *,
                  timespan: Timespan | None = None, data_ids: Iterable[Mapping[str, Any]] | None = None) -> int:
        """End the validity of ``dataset_type``'s calibrations over ``[begin, end)`` (ranges partly
        inside are cut), of those data IDs only if ``data_ids`` is given; returns the ranges touched."""
        span = timespan if timespan is not None else Timespan(begin, end)
        if data_ids is not None:
            from .dimensions import DataCoordinate

            group = self._registry.dataset_types.get(dataset_type)[1].group(self._registry.universe)
            data_ids = [DataCoordinate.standardize(group, {k: v for k, v in dict(d).items() if k in group.names})
                        for d in data_ids]
        return self._registry.calibrations.decertify(name, dataset_type, span, data_ids=data_ids)

    def validity(self, name: str, dataset_type: str) -> list[tuple[DatasetRef, Timespan]]:
        return self._registry.calibrations.validity(name, dataset_type)

    def remove(self, name: str) -> None:
        """Remove a TAGGED, CHAINED or CALIBRATION collection (not its datasets); RUNs go with
        ``butler.remove_runs``."""
        _, kind = self._registry.collections.lookup(name)
        if kind is CollectionType.RUN:
            raise CollectionError(f"{name!r} is a RUN: remove it (and its datasets) with remove_runs")
        self._registry.collections.remove(name)
