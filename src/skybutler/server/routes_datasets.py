"""Dataset routes: find, get (read parameters applied here), file download with HTTP
range requests or a pre-signed URL, put, put_many, ingest and removal."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from ..access import Access, User, quota_area
from ..butler import Butler
from ..config import BOOKKEEPING_DIR
from ..datastore.uploads import uploaded_files
from ..embargo import EmbargoCheck
from ..errors import DatasetNotFoundError, SkybutlerError
from ..formats.wire_objects import decode_object, encode_object
from ..models import DatasetRef
from ..remote import wire
from ..remote.wire import MAX_IDS
from . import authz
from .app import Ids, RequestTooLarge, current_user
from .state import ServerState

router = APIRouter()


def _state(request: Request) -> ServerState:
    return request.app.state.skybutler


class Lookup(BaseModel):
    """A dataset by ID, or by type + data ID searched in collections."""

    id: str | None = None
    dataset_type: str | None = None
    data_id: dict[str, Any] = {}
    collections: list[str] = []
    timespan: Any = None
    parameters: dict[str, Any] | None = None
    component: str | None = None


def _find(butler: Butler, user: User, body: Lookup) -> DatasetRef | None:
    if body.id is not None:
        return authz.visible_ref(butler, user, body.id)
    if not body.dataset_type:
        raise SkybutlerError("a dataset lookup needs an id or a dataset_type")
    path = authz.readable_path(butler, user, body.collections)
    data_id, timespan = wire.decode(body.data_id), wire.decode(body.timespan)
    check = EmbargoCheck(butler, user)
    if not (user.embargoes and check.applies_to(body.dataset_type)):
        return butler.find_dataset(body.dataset_type, data_id, collections=path, timespan=timespan) if path else None
    # A dataset hidden from the user is as if it were not there: the search goes on to the
    # next collection of the path, exactly as it would if that dataset did not exist.
    for collection in path:
        ref = butler.find_dataset(body.dataset_type, data_id, collections=[collection], timespan=timespan)
        if ref is not None and not check.hidden_ref(ref):
            return ref
    return None


def _resolved(butler: Butler, user: User, body: Lookup) -> DatasetRef:
    ref = _find(butler, user, body)
    if ref is None:
        raise DatasetNotFoundError(f"no {body.dataset_type} dataset with data ID {body.data_id} in collections "
                                   f"{body.collections}")
    return ref


@router.post("/datasets/find")
def find_dataset(request: Request, body: Lookup, user: User = Depends(current_user)) -> Any:
    with _state(request).butler() as butler:
        ref = _find(butler, user, body)
        if ref is not None and body.id is not None:  # by ID (get_dataset): with implied values, as found by data ID
            ref = butler._with_implied(ref)
        return None if ref is None else wire.ref_to_json(ref)


class ManyLookup(BaseModel):
    """Many data IDs (their required values) of one dataset type, searched in collections."""

    dataset_type: str
    #: at most ``MAX_IDS`` of them (413 otherwise), as a list of dataset IDs
    data_ids: Annotated[list[dict[str, Any]], Field(max_length=MAX_IDS)]
    collections: list[str] = []


@router.post("/datasets/find_many")
def find_many(request: Request, body: ManyLookup, user: User = Depends(current_user)) -> list[Any]:
    """What ``datasets/find`` answers for each data ID, in order, in one request and one statement
    per chunk (a pipeline run looks up every in-run input and planned output so)."""
    from ..dimensions import DataCoordinate

    with _state(request).butler() as butler:
        dtype = butler.get_dataset_type(body.dataset_type)
        if dtype.is_calibration:
            raise SkybutlerError(f"{dtype.name} is a calibration: look each data ID up with its time (find)")
        path = authz.readable_path(butler, user, body.collections)
        group = dtype.group(butler.universe)
        coords = [DataCoordinate.standardize(group, wire.decode(d)) for d in body.data_ids]
        check = EmbargoCheck(butler, user)
        hiding = bool(user.embargoes) and check.applies_to(dtype.name)
        found: dict[Any, DatasetRef] = {}
        # as in _find: under an embargo, a hidden dataset is as if absent, so the search goes on
        for step in ([[c] for c in path] if hiding else [path] if path else []):
            todo = [c for c in coords if c not in found]
            if not todo:
                break
            for coord, ref in butler.registry.find_many(dtype, todo, step).items():
                if not (hiding and check.hidden_ref(ref)):
                    found[coord] = ref
        return [wire.ref_to_json(found[c]) if c in found else None for c in coords]


@router.post("/datasets/get")
def get(request: Request, body: Lookup, user: User = Depends(current_user)) -> Response:
    """The dataset (or its component, or the subset its parameters select), read here."""
    with _state(request).butler() as butler:
        ref = _resolved(butler, user, body)
        obj = butler.get(ref, parameters=wire.decode(body.parameters), component=body.component)
    kind, data = encode_object(obj)
    return Response(data, media_type="application/octet-stream", headers={"X-Skybutler-Object": kind})


@router.post("/datasets/exists")
def exists(request: Request, body: Lookup, user: User = Depends(current_user)) -> bool:
    with _state(request).butler() as butler:
        try:
            ref = _resolved(butler, user, body)
        except DatasetNotFoundError:
            return False
        return butler.exists(ref)


@router.post("/datasets/metadata")
def metadata(request: Request, body: Lookup, user: User = Depends(current_user)) -> Any:
    with _state(request).butler() as butler:
        return wire.encode(butler.get_metadata(_resolved(butler, user, body)))


@router.get("/datasets/{dataset_id}/url")
def file_url(request: Request, dataset_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
    """Where to download the dataset's file: a short-lived pre-signed URL (when the server
    hands them out and the datastore signs them), else this server's download route."""
    state = _state(request)
    with state.butler() as butler:
        ref = butler._resolve(authz.visible_ref(butler, user, dataset_id), None, None, None, {})
        seconds = state.settings.presign_seconds
        signed = butler.datastore.presigned_url(ref.artifact, seconds) if seconds else None
    return {"url": signed or str(request.url_for("download", dataset_id=str(ref.id))),
            "presigned": signed is not None, "size": ref.artifact.size, "formatter": ref.artifact.formatter}


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@router.get("/datasets/{dataset_id}/file", name="download")
def download(request: Request, dataset_id: str, user: User = Depends(current_user)) -> Response:
    """The dataset's file, streamed; a ``Range: bytes=a-b`` header gets those bytes (206)."""
    with _state(request).butler() as butler:
        ref = butler._resolve(authz.visible_ref(butler, user, dataset_id), None, None, None, {})
        size = butler.datastore.size(ref.artifact)
        datastore = butler.datastore
    start, end, status = 0, size, 200
    wanted = request.headers.get("range")
    if wanted:
        match = _RANGE.fullmatch(wanted.strip())
        if match is None or match.groups() == ("", ""):
            return JSONResponse({"error": "RangeError", "message": f"unsupported range {wanted[:80]!r}"}, 416,
                                headers={"Content-Range": f"bytes */{size}"})
        first, last = match.groups()
        if first == "":
            start, end = max(size - int(last), 0), size
        else:
            start, end = int(first), size if last == "" else min(int(last) + 1, size)
        if start >= size or start >= end:
            return JSONResponse({"error": "RangeError", "message": f"range {wanted[:80]!r} is outside the "
                                 f"{size}-byte file"}, 416, headers={"Content-Range": f"bytes */{size}"})
        status = 206
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start)}
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(datastore.read_range(ref.artifact, start, end), status_code=status,
                             media_type="application/octet-stream", headers=headers)


async def _body(request: Request) -> bytes:
    limit = _state(request).settings.max_request_bytes
    parts, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestTooLarge(f"the request body is above this server's limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


@contextlib.contextmanager
def _within_quota(state: ServerState, butler: Butler, run: str, new_bytes: int, new_datasets: int) -> Iterator[None]:
    """The quota check and the write in one transaction, the area locked: two uploads at once
    cannot both pass a check that only one of them fits."""
    if quota_area(run) is None:
        yield
        return
    with butler.transaction():
        # the usage is read in the write's own transaction: a batch's earlier writes count too
        Access.of(butler).check_quota_locked(run, new_bytes, new_datasets)
        yield


@router.post("/datasets/put", openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}})
async def put_many(request: Request, user: User = Depends(current_user)) -> Any:
    """Store datasets of one type in one transaction: a packed body (``remote.wire.pack``) whose
    header names the type, RUN and each item's data ID and object kind."""
    from starlette.concurrency import run_in_threadpool

    header, payloads = wire.unpack(await _body(request))
    return await run_in_threadpool(_put, _state(request), user, header, payloads)


def _put(state: ServerState, user: User, header: dict[str, Any], payloads: list[bytes]) -> list[Any]:
    items = header.get("items") or []
    if len(items) != len(payloads):
        raise SkybutlerError("malformed request body: one payload per item is needed")
    run = header.get("run")
    if not isinstance(run, str) or not run:
        raise SkybutlerError("a put needs a RUN: give run= here or when opening the Butler")
    objects = [(decode_object(item["kind"], data), wire.decode(item["data_id"])) for item, data in zip(items, payloads)]
    ids, check_ids = _client_ids(header, len(objects))
    with state.butler() as butler:
        authz.require(butler, user, run, "write", must_exist=False)
        with _within_quota(state, butler, run, sum(map(len, payloads)), len(payloads)):
            refs = butler.put_many(header["dataset_type"], objects, run=run,
                                   id_mode=header.get("id_mode", "random"), ids=ids)
            check_ids(refs)
    return [wire.ref_to_json(ref) for ref in refs]


def _client_ids(header: dict[str, Any], count: int) -> tuple[list[uuid.UUID] | None, Any]:
    """The dataset IDs a client chose (a write inside its transaction): random ones are taken if
    they are version-7 UUIDs, as the server makes them (so that no one claims the deterministic ID
    of a dataset yet to come); deterministic ones are made here by their rule and must be the
    client's.  Returns the IDs to write with and a check of the refs written."""
    given = header.get("ids")
    if given is None:
        return None, lambda refs: None
    try:
        ids = [uuid.UUID(str(i)) for i in given]
    except ValueError:
        raise SkybutlerError("malformed request: a dataset ID is not a UUID") from None
    if len(ids) != count:
        raise SkybutlerError("malformed request: one dataset ID per item is needed")
    if header.get("id_mode", "random") == "random":
        if any(i.version != 7 for i in ids):
            raise SkybutlerError("a client-chosen random dataset ID must be a version-7 UUID")
        return ids, lambda refs: None

    def check(refs: list[DatasetRef]) -> None:
        if [r.id for r in refs] != ids:
            raise SkybutlerError("the client's deterministic dataset IDs are not the server's: the data IDs "
                                 "given differ from what the server made of them")

    return None, check


@router.post("/datasets/ingest", openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}})
async def ingest(request: Request, user: User = Depends(current_user)) -> Any:
    """Ingest uploaded files (a packed body whose header names each file and its data ID)."""
    from starlette.concurrency import run_in_threadpool

    header, payloads = wire.unpack(await _body(request))
    return await run_in_threadpool(_ingest, _state(request), user, header, payloads)


def _ingest(state: ServerState, user: User, header: dict[str, Any], payloads: list[bytes]) -> list[Any]:
    files = header.get("files") or []
    run = header.get("run")
    if len(files) != len(payloads) or not isinstance(run, str) or not run:
        raise SkybutlerError("malformed ingest request: one payload per file and a RUN are needed")
    ids, check_ids = _client_ids(header, len(files))
    with state.butler() as butler:
        authz.require(butler, user, run, "write", must_exist=False)
        with uploaded_files(state.root / BOOKKEEPING_DIR / "uploads",
                            [(f["name"], data) for f, data in zip(files, payloads)]) as paths, \
                _within_quota(state, butler, run, sum(map(len, payloads)), len(payloads)):
            refs = butler.ingest(header["dataset_type"], [(p, wire.decode(f["data_id"])) for p, f in zip(paths, files)],
                                 run=run, transfer="move", formatter=header.get("formatter"),
                                 id_mode=header.get("id_mode", "random"), ids=ids,
                                 skip_existing=bool(header.get("skip_existing")))
            check_ids(refs)
    return [wire.ref_to_json(ref) for ref in refs]


class Removal(BaseModel):
    ids: Ids = []
    runs: Ids = []


@router.post("/datasets/remove")
def remove(request: Request, body: Removal, user: User = Depends(current_user)) -> int:
    with _state(request).butler() as butler:
        refs = authz.visible_refs(butler, user, body.ids)
        for run in sorted({r.run for r in refs}):
            authz.require(butler, user, run, "write")
        return butler.remove(refs)


@router.post("/datasets/states")
def states(request: Request, body: Removal, user: User = Depends(current_user)) -> dict[str, str]:
    """The retention state of each dataset by ID (those the caller may not see are left out)."""
    with _state(request).butler() as butler:
        visible = [ref.id for ref in authz.visible_subset(butler, user, body.ids)]
        return {str(k): v for k, v in butler.retention.states(visible).items()}


@router.post("/runs/remove")
def remove_runs(request: Request, body: Removal, user: User = Depends(current_user)) -> int:
    with _state(request).butler() as butler:
        for run in body.runs:
            authz.require(butler, user, run, "admin")
        return butler.remove_runs(body.runs)
