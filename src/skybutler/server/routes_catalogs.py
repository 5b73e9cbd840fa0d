"""Catalog searches and publications through a server, and declared catalog schemas (what
``load-catalog`` makes its table from: a dataset type's schema, like the type itself, is there
for every user; an administrator declares one).

The searches: cone, box and polygon searches of a published HATS
catalog, found as its ``<type>_hats`` publication in the collections the caller may read
(the same lookup as ``find_dataset``: invisible or embargoed publications do not exist for
them), the rows sent as an Arrow IPC stream, one partition's rows at a time.

A publication: the client names it (one directory name, :data:`PUBLICATION_NAME`) and the
server writes it in a directory of its own repository, ``.skybutler/publications/<name>``,
never one a client chooses.  It is made of the datasets of the caller's query that they may
see (their readable path, embargoes applied as in every query) and registered in the RUN
``publications/<name>/<UTC time>`` (a ``run`` given must lie there too), which the caller must
be allowed to write: every version of a name is registered under ``publications/<name>``, so
who may read a publication is decided in one place, and an administrator lets users publish by
granting ``write`` on ``publications/*`` (or ``publications/<name>/*``).  An update keeps the
datasets already published only if the caller may see every one of them (else 403: rebuild it,
or choose another name).  The name, the RUN and the rights are checked before anything is
written; then the work runs in a thread of its own and its progress streams as JSON lines."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..access import User
from ..butler_catalogs import no_publication, published_rows
from ..config import PUBLICATIONS_DIR
from ..errors import (
    DatasetNotFoundError,
    MissingDatasetTypeError,
    PermissionDeniedError,
    PublicationError,
    SkybutlerError,
)
from ..remote import wire
from . import authz
from .app import current_user
from .routes_datasets import Lookup, _find
from .routes_ingest import streamed
from .routes_query import ClosingStream, QueryRequest, _arrow_stream, _results, query_slot

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
        try:
            ref = _find(butler, user, lookup)
        except MissingDatasetTypeError:  # nothing was ever published: answered as locally
            ref = None
        if ref is None:
            raise no_publication(body.dataset_type, body.collections)
        parts = published_rows(butler, ref, body.shape, body.columns)
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


#: A publication's name through a server: one directory name, not hidden, of printable ASCII.
PUBLICATION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class Publish(BaseModel):
    """A publication through a server: the query the caller's datasets come from, its name
    (``destination``) and the settings of ``Butler.publish_catalog``."""

    dataset_type: str
    destination: str
    query: QueryRequest
    name: str | None = None
    run: str | None = None
    margin_arcsec: float | None = None
    max_rows: int | None = None
    max_bytes: int | None = None
    ra_column: str | None = None
    dec_column: str | None = None
    rebuild: bool = False


@router.post("/catalogs/publish")
def publish(request: Request, body: Publish, user: User = Depends(current_user)) -> StreamingResponse:
    """Publish the datasets of the query the caller may see as the HATS catalog ``destination``
    (see the module doc); streams ``{"progress": [done, total]}`` lines, then ``{"result": ...}``
    (the publication's summary) or ``{"error": ..., "message": ...}``."""
    from ..catalogs.publish import version_now

    name = _publication_name(body.destination)
    if body.name is not None and body.name != name:
        raise PublicationError(f"through a server a publication's catalog is named as the publication itself "
                               f"({name!r}), not {body.name[:80]!r}: leave name out")
    run = body.run or f"publications/{name}/{version_now()}"
    if not run.startswith(f"publications/{name}/") or run == f"publications/{name}/":
        raise PublicationError(f"through a server the publication {name!r} is registered in a RUN under "
                               f"publications/{name}/ (where every version of it is), not in {run[:200]!r}")
    spec = {**body.query.spec, "kind": "datasets", "dataset_types": [body.dataset_type], "find_first": True}
    query = QueryRequest(spec=spec)
    with query_slot(request, user) as butler:
        authz.require(butler, user, run, "write", must_exist=False)
        results = _results(butler, user, query)
        refs = [ref for batch in results._converted_batches() for ref in batch]
    state = request.app.state.skybutler
    options = body.model_dump(include={"margin_arcsec", "max_rows", "max_bytes", "ra_column", "dec_column",
                                       "rebuild"})
    dest = state.root / PUBLICATIONS_DIR / name

    def work(progress: Callable[[int, int], None]) -> dict[str, Any]:
        try:
            with state.butler() as butler:
                done = butler.publish_catalog(body.dataset_type, dest, collections=list(spec.get("collections") or ()),
                                              where=str(spec.get("where") or ""), name=name, run=run,
                                              progress=progress, refs=refs, admit=_admitted(butler, user, name),
                                              **options)
        except SkybutlerError as err:
            raise _unplaced(err, dest, state.root, name) from None
        except OSError as err:
            raise PublicationError(f"the server could not write the publication {name!r}: "
                                   f"{err.strerror or type(err).__name__}") from None
        # not the path: the server's own (the client knows the publication by its name)
        summary = {f.name: getattr(done, f.name) for f in dataclasses.fields(done) if f.name not in ("path", "ref")}
        return {**summary, "ref": None if done.ref is None else wire.ref_to_json(done.ref)}

    return StreamingResponse(streamed(work, state), media_type="application/x-ndjson")


def _publication_name(text: str) -> str:
    if PUBLICATION_NAME.fullmatch(text) is None:
        raise PublicationError(f"a publication through a server is named by one directory name of letters, digits "
                               f"and _.- (not starting with . or -, at most 128), not {text[:80]!r}: the server "
                               "chooses where it is written")
    return text


def _unplaced(err: SkybutlerError, dest: Path, root: Path, name: str) -> SkybutlerError:
    """The error with the server's paths taken out of its message: the publication by its name."""
    message = str(err).replace(str(dest), f"the publication {name!r}").replace(str(root), "the repository")
    try:
        return type(err)(message)
    except (TypeError, ValueError):  # an error made of more than a message
        return SkybutlerError(message)


def _admitted(butler: Any, user: User, name: str) -> Callable[[list[str]], None]:
    """The check that an update may keep what the publication holds: every dataset, visible to the caller."""
    def admit(ids: list[str]) -> None:
        try:
            authz.visible_refs(butler, user, ids)
        except DatasetNotFoundError:
            raise PermissionDeniedError(f"the publication {name!r} holds datasets you may not see (or that were "
                                        "removed since): rebuild it from those you may see (rebuild=True, CLI "
                                        "--rebuild) or publish under another name") from None

    return admit
