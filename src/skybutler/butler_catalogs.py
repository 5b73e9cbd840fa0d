"""The catalog methods of the Butler: declared (Felis) schemas of catalog dataset types,
publishing catalogs as HATS, and loading catalogs into a user's SQL database.

:class:`CatalogMethods` is a base of :class:`~skybutler.Butler`; the rules live in
``catalogs/`` (``declared.py``, ``publish.py``, ``sql_load.py``), the schema rows in the registry.  They
work on a repository opened locally: a butler opened on a server URL refuses them by name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SkybutlerError

if TYPE_CHECKING:
    from .catalogs.declared import DeclaredSchemas
    from .catalogs.publish import Publication
    from .catalogs.schemas import CatalogSchema
    from .catalogs.sql_load import LoadSummary


class CatalogMethods:
    """Declared catalog schemas and SQL loading (a base of :class:`~skybutler.Butler`)."""

    _remote: Any
    _search_path: Callable[..., Any]

    def declare_catalog_schema(self, dataset_type: str, schema: str | Path | CatalogSchema, *,
                               table: str | None = None, new_version: bool = False) -> int:
        """Declare the schema of a catalog dataset type from a Felis YAML file (read and validated
        by ``lsst-felis``; ``table`` picks one of several tables); returns the version in force.

        Every later put and ingest of the type is validated against it.  The same schema again
        changes nothing; a different one replaces the current version while the type has no
        datasets, and otherwise needs ``new_version=True`` (a CatalogSchemaError says so)."""
        self._local_only("declare_catalog_schema")
        return self._declared.declare(dataset_type, schema, table=table, new_version=new_version)

    def get_catalog_schema(self, dataset_type: str, version: int | None = None) -> CatalogSchema | None:
        """The declared schema of a dataset type (the latest version, or ``version``); None if none."""
        self._local_only("get_catalog_schema")
        return self._declared.get(dataset_type, version)

    def catalog_schema_versions(self, dataset_type: str) -> list[CatalogSchema]:
        """Every declared version of a dataset type's schema, oldest first."""
        self._local_only("catalog_schema_versions")
        return self._declared.versions(dataset_type)

    def load_catalog(self, dataset_type: str, db_url: str, *, collections: str | Sequence[str] | None = None,
                     where: str = "", bind: Mapping[str, Any] | None = None, table: str | None = None,
                     progress: Callable[[int, int], None] | None = None) -> LoadSummary:
        """Load the rows of a catalog dataset type's datasets (those of a query) into a table of
        the SQL database ``db_url`` (``sqlite:///file``, ``postgresql://...``, ``duckdb:///file``),
        creating it from the declared schema with a ``_healpix_29`` index column (default name:
        the schema's table).  Idempotent: a dataset already loaded there is skipped, and each
        dataset's rows commit together with the record that it was loaded
        (see :mod:`skybutler.catalogs.sql_load`)."""
        self._local_only("load_catalog")
        from .catalogs.sql_load import load_catalog

        return load_catalog(self, dataset_type, db_url, collections=collections, where=where, bind=bind,
                            table=table, progress=progress)

    def publish_catalog(self, dataset_type: str, destination: str | Path, *,
                        collections: str | Sequence[str] | None = None, where: str = "",
                        bind: Mapping[str, Any] | None = None, **options: Any) -> Publication:
        """Publish the ``dataset_type`` catalogs a query finds as a HATS catalog at ``destination``,
        or add the ones not yet published to it; the new version appears atomically and is
        registered as a ``<dataset_type>_hats`` dataset with its provenance.  ``options``:
        ``name``, ``run``, ``margin_arcsec``, ``max_rows``, ``max_bytes``, ``ra_column``,
        ``dec_column``, ``rebuild``, ``progress`` (see :func:`skybutler.catalogs.publish.publish_catalog`)."""
        self._local_only("publish_catalog")
        from .catalogs.publish import publish_catalog

        return publish_catalog(self, dataset_type, destination, collections=self._search_path(collections),
                               where=where, bind=bind, **options)

    @functools.cached_property
    def _declared(self) -> DeclaredSchemas:
        from .catalogs.declared import DeclaredSchemas

        return DeclaredSchemas(self)

    def _local_only(self, name: str) -> None:
        if self._remote is not None:
            raise SkybutlerError(f"{name} works on a repository opened locally, not over HTTP")
