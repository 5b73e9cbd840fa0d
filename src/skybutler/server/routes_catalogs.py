"""Catalog searches through a server, and declared catalog schemas (what ``load-catalog`` makes
its table from: a dataset type's schema, like the type itself, is there for every user; an
administrator declares one).
The searches: cone, box and polygon searches of a published HATS
catalog, found as its ``<type>_hats`` publication in the collections the caller may read
(the same lookup as ``find_dataset``: invisible or embargoed publications do not exist for
them), the rows sent as an Arrow IPC stream, one partition's rows at a time."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..access import User
from ..butler_catalogs import published_rows
from ..errors import PermissionDeniedError
from .app import current_user
from .routes_datasets import Lookup, _resolved
from .routes_query import ClosingStream, _arrow_stream, query_slot

router = APIRouter()


class Search(BaseModel):
    dataset_type: str
    shape: dict[str, Any]
    collections: list[str]
    columns: list[str] | None = None


@router.post("/catalogs/search")
def search(request: Request, body: Search, user: User = Depends(current_user)) -> StreamingResponse:
    """The rows of the publication inside the region; a bad region, an unknown column or a
    publication the caller may not see is answered before any row is sent."""
    with query_slot(request, user) as butler:
        lookup = Lookup(dataset_type=f"{body.dataset_type}_hats", collections=body.collections)
        parts = published_rows(butler, _resolved(butler, user, lookup), body.shape, body.columns)
        first = next(parts)
    tables = SimpleNamespace(arrow_batches=lambda: itertools.chain([first], parts))
    return ClosingStream(_arrow_stream(tables), media_type="application/vnd.apache.arrow.stream")


def _schema(schema: Any) -> dict[str, Any]:
    return {"felis": schema.felis, "table": schema.table, "version": schema.version}


@router.get("/catalogs/schemas/{dataset_type}")
def catalog_schema(request: Request, dataset_type: str, version: int | None = None) -> dict[str, Any] | None:
    """The declared schema of a dataset type (the latest, or ``version``), or null."""
    with request.app.state.skybutler.butler() as butler:
        found = butler.get_catalog_schema(dataset_type, version)
        return None if found is None else _schema(found)


class Declaration(BaseModel):
    felis: str
    table: str
    new_version: bool = False


@router.post("/catalogs/schemas/{dataset_type}")
def declare_catalog_schema(request: Request, dataset_type: str, body: Declaration,
                           user: User = Depends(current_user)) -> dict[str, int]:
    """Declare a dataset type's schema (Felis JSON, validated again here): an administrator only,
    since a schema binds every user's later puts of the type; returns the version in force."""
    from ..catalogs.schemas import schema_from_json

    if not user.admin:
        raise PermissionDeniedError(f"only a repository administrator may declare the schema of {dataset_type!r} "
                                    "(it binds every user's puts of the type)")
    schema = schema_from_json(body.felis, body.table, where="the schema sent")
    with request.app.state.skybutler.butler() as butler:
        return {"version": butler.declare_catalog_schema(dataset_type, schema, new_version=body.new_version)}


@router.get("/catalogs/schemas/{dataset_type}/versions")
def catalog_schema_versions(request: Request, dataset_type: str) -> list[dict[str, Any]]:
    with request.app.state.skybutler.butler() as butler:
        return [_schema(s) for s in butler.catalog_schema_versions(dataset_type)]
