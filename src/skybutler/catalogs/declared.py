"""The declared schemas of a repository's catalog dataset types: declaring, versioning, looking up.

The facade's side of declared schemas (``butler.declare_catalog_schema`` and friends):
the rules live here, the rows in the registry (``registry/catalog_schema_store.py``).

- A dataset type stored as Parquet may declare a schema; its first declaration is version 1.
- Declaring the same schema again changes nothing.
- Declaring a different one replaces the latest version while the type has no datasets
  (nothing was validated against it yet); once it has datasets, the change must be
  asked for as a new version (``new_version=True``), which becomes the one new tables are
  validated against.  Older versions stay recorded, and each stored file names the
  version it conforms to in its Parquet metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CatalogSchemaError
from ..formats import get_storage_class
from ..models import CollectionType, DatasetType
from .schemas import CatalogSchema, load_schema, schema_from_json

if TYPE_CHECKING:
    from ..butler import Butler


class DeclaredSchemas:
    """The catalog schemas of one butler's repository, with parsed schemas cached by (type, version)."""

    def __init__(self, butler: Butler):
        self.butler = butler
        self._parsed: dict[tuple[int, int], CatalogSchema] = {}

    def _type(self, name: str) -> tuple[int, DatasetType]:
        return self.butler.registry.dataset_types.get(name)

    def declare(self, dataset_type: str, schema: str | Path | Any, *, table: str | None = None,
                new_version: bool = False) -> int:
        """Declare ``schema`` for ``dataset_type``; returns the version now in force."""
        type_id, dtype = self._type(dataset_type)
        if "parquet" not in get_storage_class(dtype.storage_class).formatters:
            raise CatalogSchemaError(f"dataset type {dtype.name!r} is stored as {dtype.storage_class}, not as a "
                                     "Parquet table: only catalog (Table) dataset types declare a schema")
        declared = load_schema(schema, table)
        store = self.butler.registry.catalog_schemas
        latest = store.latest(type_id)
        if latest is None:
            store.put(type_id, 1, declared.table, declared.felis)
            return 1
        version, table_name, felis = latest
        if (declared.table, declared.felis) == (table_name, felis):
            return version
        if new_version:
            store.put(type_id, version + 1, declared.table, declared.felis)
            return version + 1
        count = self._dataset_count(dtype)
        if count:
            raise CatalogSchemaError(
                f"dataset type {dtype.name!r} has {count} dataset(s) stored under schema version {version}, which "
                "this schema differs from: declare it as a new version (new_version=True; CLI: --new-version)")
        store.put(type_id, version, declared.table, declared.felis, replace=True)
        self._parsed.pop((type_id, version), None)
        return version

    def _dataset_count(self, dtype: DatasetType) -> int:
        runs = [c.name for c in self.butler.collections.query("*", [CollectionType.RUN])]
        if not runs:
            return 0
        return self.butler.query_datasets(dtype.name, collections=runs, find_first=False).count()

    def get(self, dataset_type: str, version: int | None = None) -> CatalogSchema | None:
        """The declared schema (the latest, or ``version``); None if the type declares none."""
        type_id, dtype = self._type(dataset_type)
        return self.for_type(type_id, dtype, version)

    def for_type(self, type_id: int, dtype: DatasetType, version: int | None = None) -> CatalogSchema | None:
        store = self.butler.registry.catalog_schemas
        if version is None:
            row = store.latest(type_id)
        else:
            row = next((r for r in store.versions(type_id) if r[0] == version), None)
            if row is None:
                known = [r[0] for r in store.versions(type_id)]
                raise CatalogSchemaError(f"dataset type {dtype.name!r} has no schema version {version} "
                                         f"(versions: {known or 'none declared'})")
        if row is None:
            return None
        key = (type_id, row[0])
        if key not in self._parsed:
            self._parsed[key] = schema_from_json(row[2], row[1], version=row[0])
        return self._parsed[key]

    def versions(self, dataset_type: str) -> list[CatalogSchema]:
        """Every declared version of a dataset type's schema, oldest first."""
        type_id, dtype = self._type(dataset_type)
        return [self.for_type(type_id, dtype, v) for v, _, _ in self.butler.registry.catalog_schemas.versions(type_id)]

    def for_writing(self, dtype: DatasetType) -> CatalogSchema | None:
        """The schema a put or ingest of ``dtype`` validates against (None for types without one)."""
        if "parquet" not in get_storage_class(dtype.storage_class).formatters:
            return None
        type_id, _ = self._type(dtype.name)
        return self.for_type(type_id, dtype)
