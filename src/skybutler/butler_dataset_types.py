"""Dataset types through the facade: registering one (with its declared catalog schema, one
transaction), removing one that has no datasets left, listing them, and checking the
configuration a write would meet (a storage class skybutler does not know, a path template
that gives two datasets one file).

:class:`DatasetTypeMethods` is a base of :class:`~skybutler.Butler`; the SQL is the registry's
(``registry/dataset_type_store.py``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DatasetTypeError, StorageClassError
from .formats import get_storage_class
from .models import CollectionType, DatasetType
from .remote.served import served as _served

if TYPE_CHECKING:
    from .catalogs.declared import DeclaredSchemas
    from .catalogs.schemas import CatalogSchema
    from .collections_manager import CollectionsManager
    from .datastore import FileDatastore
    from .dimensions import DimensionUniverse
    from .registry import Registry


class DatasetTypeMethods:
    """Registering, removing, listing and checking dataset types (a base of :class:`~skybutler.Butler`)."""

    _remote: Any
    registry: Registry
    universe: DimensionUniverse
    datastore: FileDatastore
    collections: CollectionsManager
    _declared: DeclaredSchemas
    query_datasets: Callable[..., Any]

    @_served
    def register_dataset_type(self, name: str, dimensions: Iterable[str], storage_class: str, *,
                              is_calibration: bool = False, schema: str | Path | CatalogSchema | None = None,
                              schema_table: str | None = None) -> bool:
        """Register a dataset type; False if it already exists identically, an error if differently.

        ``schema`` (a Felis YAML file, for a ``Table`` type) declares the columns its tables hold
        (``schema_table`` picks the table of a schema with several); see :meth:`declare_catalog_schema`.
        A schema that is not valid Felis is refused before the type is registered; the type and
        its schema are one transaction (a process killed between them leaves neither)."""
        get_storage_class(storage_class)
        declared = None
        if schema is not None:
            from .catalogs.schemas import load_schema

            declared = load_schema(schema, schema_table)
        with self.registry.transaction():
            new = self.registry.dataset_types.register(DatasetType(
                name=name, dimensions=tuple(dimensions), storage_class=storage_class, is_calibration=is_calibration))
            if declared is not None:
                version = self._declared.get(name)
                self._declared.declare(name, declared)
                new = new or version is None or not version.same_definition(declared)
        return new

    @_served
    def remove_dataset_type(self, name: str) -> None:
        """Remove a dataset type that has no datasets (remove those first, e.g. with ``remove``);
        an error names how many remain and in which RUNs."""
        self.get_dataset_type(name)  # a clear error for an unknown name
        runs = [c.name for c in self.collections.query("*", [CollectionType.RUN])]
        if runs:
            remaining = self.query_datasets(name, collections=runs, find_first=False)
            if remaining.any():
                in_runs = sorted({ref.run for ref in remaining})
                raise DatasetTypeError(f"dataset type {name!r} still has {remaining.count()} dataset(s), in RUN(s) "
                                       f"{', '.join(in_runs)}; remove them first")
        self.registry.dataset_types.remove(name)

    @_served
    def validate_config(self, dataset_types: Iterable[str] | None = None) -> list[str]:
        """Problems of this repository's configuration that only show when a dataset is
        written: a dataset type (of ``dataset_types`` if given) whose storage class skybutler
        does not know, or whose path template would give two of its datasets one file.
        ``butler.yaml`` itself was checked when the repository was opened."""
        problems = []
        chosen = None if dataset_types is None else set(dataset_types)
        for dtype in sorted(self.registry.dataset_types.all(), key=lambda d: d.name):
            if chosen is not None and dtype.name not in chosen:
                continue
            try:
                get_storage_class(dtype.storage_class)
            except StorageClassError as err:
                problems.append(f"dataset type {dtype.name}: {err}")
            problem = self.datastore.template_problem(dtype.name, self.universe.group(dtype.dimensions).required)
            if problem:
                problems.append(problem)
        return problems

    @_served
    def get_dataset_type(self, name: str) -> DatasetType:
        return self.registry.dataset_types.get(name)[1]

    @_served
    def query_dataset_types(self, pattern: str = "*") -> list[DatasetType]:
        return [d for d in self.registry.dataset_types.all() if fnmatch.fnmatchcase(d.name, pattern)]
