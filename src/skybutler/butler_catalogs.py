"""The catalog methods of the Butler: declared (Felis) schemas of catalog dataset types,
publishing catalogs as HATS, and loading catalogs into a user's SQL database.

:class:`CatalogMethods` is a base of :class:`~skybutler.Butler`; the rules live in
``catalogs/`` (``declared.py``, ``publish.py``, ``sql_load.py``), the schema rows in the registry.  The
searches of a published catalog, the declared schemas and loading into a SQL database also work
on a butler opened on a server URL (the server searches; the rows to load are read through it),
and so do declaring a schema (by an administrator) and publishing (the server builds the
publication in its repository from the datasets the caller may see; ``remote/catalogs.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DatasetNotFoundError, MissingDatasetTypeError, PublicationError, SkybutlerError
from .remote.served import served as _served

if TYPE_CHECKING:
    import pyarrow as pa

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
        datasets, and otherwise needs ``new_version=True`` (a CatalogSchemaError says so).
        Through a server the schema is read and validated here and declared by the server, for
        an administrator only: a schema binds every user's puts of the type."""
        if self._remote is not None:
            from .catalogs.schemas import load_schema

            declared = load_schema(schema, table)
            return int(self._remote.post_json(f"catalogs/schemas/{dataset_type}", {
                "felis": declared.felis, "table": declared.table, "new_version": new_version})["version"])
        return self._declared.declare(dataset_type, schema, table=table, new_version=new_version)

    def get_catalog_schema(self, dataset_type: str, version: int | None = None) -> CatalogSchema | None:
        """The declared schema of a dataset type (the latest version, or ``version``); None if none."""
        if self._remote is not None:
            from .catalogs.schemas import schema_from_json

            found = self._remote.get_json(f"catalogs/schemas/{dataset_type}",
                                          **({} if version is None else {"version": version}))
            return None if found is None else schema_from_json(found["felis"], found["table"], found["version"])
        return self._declared.get(dataset_type, version)

    def catalog_schema_versions(self, dataset_type: str) -> list[CatalogSchema]:
        """Every declared version of a dataset type's schema, oldest first."""
        if self._remote is not None:
            from .catalogs.schemas import schema_from_json

            return [schema_from_json(s["felis"], s["table"], s["version"])
                    for s in self._remote.get_json(f"catalogs/schemas/{dataset_type}/versions")]
        return self._declared.versions(dataset_type)

    def load_catalog(self, dataset_type: str, db_url: str, *, collections: str | Sequence[str] | None = None,
                     where: str = "", bind: Mapping[str, Any] | None = None, table: str | None = None,
                     progress: Callable[[int, int], None] | None = None) -> LoadSummary:
        """Load the rows of a catalog dataset type's datasets (those of a query) into a table of
        the SQL database ``db_url`` (``sqlite:///file``, ``postgresql://...``, ``duckdb:///file``),
        creating it from the declared schema with a ``_healpix_29`` index column (default name:
        the schema's table).  Idempotent: a dataset already loaded there is skipped, and each
        dataset's rows commit together with the record that it was loaded
        (see :mod:`skybutler.catalogs.sql_load`).  On a butler opened on a server URL the rows
        are read through the server (the datasets the caller may see) and loaded here."""
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
        ``dec_column``, ``rebuild``, ``progress`` (see :func:`skybutler.catalogs.publish.publish_catalog`).

        On a butler opened on a server URL, ``destination`` is the publication's name: the server
        builds it in its repository from the datasets the caller may see and registers it in
        ``publications/<name>/<UTC time>``, which the caller must be allowed to write (see
        ``server/routes_catalogs.py``); the report's ``path`` is then that name."""
        if self._remote is not None:
            from .remote.catalogs import publish_catalog as publish_through

            return publish_through(self, dataset_type, str(destination), collections=self._search_path(collections),
                                   where=where, bind=bind, **options)
        from .catalogs.publish import publish_catalog

        return publish_catalog(self, dataset_type, destination, collections=self._search_path(collections),
                               where=where, bind=bind, **options)

    def cone_search(self, dataset_type: str, ra: float, dec: float, radius: float, *,
                    collections: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                    as_: str = "arrow") -> Any:
        """Rows of the published HATS catalog of ``dataset_type`` (its ``<dataset_type>_hats``
        publication, found first in ``collections``) within ``radius`` degrees of (``ra``, ``dec``),
        as Arrow, astropy or pandas (``as_``); through a server, under the caller's rights."""
        return self._searched(dataset_type, {"cone": [ra, dec, radius]}, collections, columns, as_)

    def box_search(self, dataset_type: str, ra: Sequence[float], dec: Sequence[float], *,
                   collections: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                   as_: str = "arrow") -> Any:
        """Rows of the published catalog with RA in ``ra=(start, end)`` (eastwards) and Dec in
        ``dec=(min, max)``, degrees (see :meth:`cone_search`)."""
        return self._searched(dataset_type, {"box": [list(ra), list(dec)]}, collections, columns, as_)

    def polygon_search(self, dataset_type: str, vertices: Sequence[Sequence[float]], *,
                       collections: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                       as_: str = "arrow") -> Any:
        """Rows of the published catalog inside the convex polygon with these (ra, dec) vertices
        (see :meth:`cone_search`)."""
        return self._searched(dataset_type, {"polygon": [list(v) for v in vertices]}, collections, columns, as_)

    def _searched(self, dataset_type: str, shape: dict[str, Any], collections: Any, columns: Any, as_: str) -> Any:
        from .catalogs.search import region_of
        from .formats.tables import TABLE_KINDS, from_arrow

        if as_ not in TABLE_KINDS:
            raise SkybutlerError(f"as_ must be one of {', '.join(TABLE_KINDS)}, not {as_!r}")
        region_of(shape)  # a bad region is refused here, before the publication is looked for or a request made
        return from_arrow(self.search_catalog(dataset_type, shape, collections=collections,
                                              columns=None if columns is None else list(columns)), as_)

    @_served
    def search_catalog(self, dataset_type: str, shape: dict[str, Any], *,
                       collections: str | Sequence[str] | None = None,
                       columns: Sequence[str] | None = None) -> pa.Table:
        """The rows of a published catalog inside a region given as ``{"cone": [ra, dec, radius]}``,
        ``{"box": [ra_range, dec_range]}`` or ``{"polygon": vertices}`` (what the three searches send)."""
        import pyarrow as pa

        name = f"{dataset_type}_hats"
        try:
            ref = self.find_dataset(name, {}, collections=collections)
        except MissingDatasetTypeError:  # nothing was ever published: no publication here either
            ref = None
        if ref is None:
            raise no_publication(dataset_type, self._search_path(collections))
        return pa.concat_tables(list(published_rows(self, ref, shape, columns)))

    @functools.cached_property
    def _declared(self) -> DeclaredSchemas:
        from .catalogs.declared import DeclaredSchemas

        return DeclaredSchemas(self)


def no_publication(dataset_type: str, collections: Sequence[str]) -> DatasetNotFoundError:
    """The error for a search whose publication is not in the collections (the same through a server)."""
    return DatasetNotFoundError(f"no publication of {dataset_type} (a {dataset_type}_hats dataset) in collections "
                                f"{list(collections)}")


def published_rows(butler: Any, ref: Any, shape: dict[str, Any], columns: Sequence[str] | None) -> Iterator[pa.Table]:
    """The rows inside ``shape`` of the HATS catalog a ``<type>_hats`` publication records, one
    table per partition read.  Only a manifest that ``publish_catalog`` wrote is followed (its
    recorded quantum says so): a Dict a user put under that type's name names no path to read."""
    from .catalogs.search import region_of, search_parts

    producer = butler.provenance.producer(ref)
    if producer is None or producer.task_label != "publish_catalog":
        raise PublicationError(f"dataset {ref.id} of {ref.dataset_type.name} was not written by publish_catalog: "
                               "it names no published catalog")
    path = Path(butler.get(ref)["path"])  # relative: inside the repository (see publish._recorded_path)
    return search_parts(path if path.is_absolute() else Path(butler.root) / path, region_of(shape), columns)
