"""Routes for raw ingestion and its neighbours: what ``ingest-raws``, ``register-instrument``,
``define-visits`` and ``register-skymap`` need from a butler opened on a server URL.  Each runs
on this side the very function a local command runs (``skybutler.ingest``).

Who may do what (the dimension records these write are shared by every user):

- ``POST /raws/ingest?run=RUN``: a user who may write ``RUN``.  The body streams a batch of raw
  files (``remote/ingest.py``), written to a scratch directory as it arrives (413 above the
  request-size limit).  Nothing the client says becomes a record: each file's header is read
  here again, by the translator a local ingest uses, and the batch is refused (422, naming
  the file) if one is not a readable raw or gives another data ID than the client sent.  The
  exposure, day_obs and group records the files need, the datasets and the files are then
  written in one transaction, after the quota check of ``RUN``'s area: a writer of the raws'
  RUN may so insert the exposure records of its files, but only of a camera already
  registered.  The already-ingested files are skipped, as locally.
- ``POST /instruments``: an administrator (a camera's instrument, filter and detector records
  are the repository's own definitions).
- ``POST /visits/define``: an administrator, or a user who may write the default raw RUN
  (``<instrument>/raw/all``) of every camera concerned -- who ingests a camera's raws defines
  their visits; the visits are computed here from the exposure records and the registered
  camera, never sent.
- ``POST /skymaps``: an administrator; its progress (patch records inserted) streams back as
  JSON lines, then its outcome (or the error).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..access import Access, User, quota_area
from ..butler import Butler
from ..config import BOOKKEEPING_DIR
from ..datastore.uploads import UploadedTree
from ..errors import PermissionDeniedError, SkybutlerError
from ..remote import wire
from . import authz
from .app import RequestTooLarge, current_user
from .routes_registry import _admin, _state
from .state import ServerState

router = APIRouter()


# -- raws ---------------------------------------------------------------------------------------


@router.post("/raws/ingest", openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}})
async def ingest_raws(request: Request, run: str, user: User = Depends(current_user)) -> dict[str, Any]:
    """Ingest a streamed batch of raw files into ``run``, all or nothing (module doc)."""
    from starlette.concurrency import run_in_threadpool

    state = _state(request)
    await run_in_threadpool(_require_write, state, user, run)  # refused before a byte is read
    limit = state.settings.max_request_bytes
    tree = UploadedTree(state.root / BOOKKEEPING_DIR / "uploads", limit)
    try:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise RequestTooLarge(f"the request body is above this server's limit of {limit} bytes")
            tree.feed(chunk)
        tree.finish()
        return await run_in_threadpool(_ingest_raws, state, user, run, tree)
    finally:
        tree.remove()


def _require_write(state: ServerState, user: User, run: str) -> None:
    with state.butler() as butler:
        authz.require(butler, user, run, "write", must_exist=False)


def _ingest_raws(state: ServerState, user: User, run: str, tree: UploadedTree) -> dict[str, Any]:
    from ..ingest.instruments import load_repository_instruments
    from ..ingest.raws import IngestFailure, raw_data_id, read_raws, store_raws

    files = _batch_files(tree, run)
    paths = [tree.root.joinpath(*f["name"].split("/")) for f in files]
    with state.butler() as butler:
        cameras = {i.name for i in load_repository_instruments(butler)}
        batch, names, seen = [], {}, set()
        for given, path, raw in zip(files, paths, read_raws(butler, paths)):
            shown = given["name"].split("/", 1)[-1]
            if isinstance(raw, IngestFailure):
                raise SkybutlerError(f"{shown}: {raw.reason}")
            if raw.detectors:
                raise SkybutlerError(f"{shown}: holds {len(raw.detectors)} detectors (one per image extension): a "
                                     "whole-exposure file is not ingested through a server")
            data_id = raw_data_id(raw.meta)
            if data_id != given["data_id"]:
                raise SkybutlerError(f"{shown}: its header gives data ID {data_id}, not the {given['data_id']} sent")
            if raw.meta.instrument not in cameras:
                raise PermissionDeniedError(f"{shown}: camera {raw.meta.instrument} is not registered in this "
                                            "repository; an administrator registers it (register-instrument)")
            if tuple(data_id.values()) in seen:
                raise SkybutlerError(f"{shown}: the batch holds data ID {data_id} twice")
            seen.add(tuple(data_id.values()))
            batch.append((path, raw))
            names[str(path)] = given["name"]
        result = store_raws(butler, run, batch, "move", _quota_check(butler, run, tree, names))
    skipped = {path for path, _ in result.already_ingested}
    stored = [path for path, _ in batch if str(path) not in skipped]  # in the order of result.refs
    return {"ingested": [{"name": names[str(path)], "ref": wire.ref_to_json(ref)}
                         for path, ref in zip(stored, result.refs)],
            "already_ingested": [{"name": names[path], "ref": wire.ref_to_json(ref)}
                                 for path, ref in result.already_ingested]}


def _batch_files(tree: UploadedTree, run: str) -> list[dict[str, Any]]:
    """The files the batch's header names, each one that was uploaded (and every upload named)."""
    header = tree.read_json("batch.json")
    files = header.get("files") if isinstance(header, dict) else None
    if header.get("run") != run or not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("data_id"), dict)
            for f in files):
        raise SkybutlerError("malformed raw batch: its header must give the RUN and each file's name and data ID")
    names = [f["name"] for f in files]
    if sorted(names) != sorted(set(tree.sizes) - {"batch.json"}) or len(set(names)) != len(names):
        raise SkybutlerError("malformed raw batch: the files it names are not the files uploaded")
    return files


def _quota_check(butler: Butler, run: str, tree: UploadedTree, names: dict[str, str]) -> Callable[[list], None]:
    """The check of the files still to store against ``run``'s area quota, the area locked until
    the commit (so two uploads at once cannot both pass a check only one fits)."""
    def check(todo: list[tuple[Path, Any]]) -> None:
        if quota_area(run) is None or not todo:
            return
        size = sum(tree.sizes[names[str(path)]] for path, _ in todo)
        Access.of(butler).check_quota_locked(run, size, len(todo))

    return check


# -- cameras, visits, sky maps --------------------------------------------------------------------


class CameraRequest(BaseModel):
    description: dict[str, Any]
    update: bool = False


@router.post("/instruments")
def register_instrument(request: Request, body: CameraRequest, user: User = Depends(current_user)) -> dict[str, Any]:
    """Register a camera from its description (or replace a registered one's, ``update``)."""
    from ..ingest.instruments import register_instrument as register
    from ..ingest.instruments import update_instrument
    from ..instruments import Instrument

    _admin(user, f"register or update a camera ({str(body.description.get('name'))[:64]}), with register-instrument")
    instrument = Instrument.from_dict(body.description, source="the camera description sent")
    with _state(request).butler() as butler:
        if body.update:
            instrument, changed = update_instrument(butler, instrument)
            return {"description": instrument.to_dict(), "new": changed == ["registered"], "changed": changed}
        instrument, new = register(butler, instrument)
    return {"description": instrument.to_dict(), "new": new, "changed": ["registered"] if new else []}


class VisitRequest(BaseModel):
    instrument: str | None = None
    exposures: list[int] | None = None
    where: str | None = None
    observation_types: list[str] | None = None


@router.post("/visits/define")
def define_visits(request: Request, body: VisitRequest, user: User = Depends(current_user)) -> dict[str, Any]:
    """Define the visits of exposures not yet in one (module doc: who may)."""
    from ..ingest.instruments import instrument_names
    from ..ingest.raws import raw_run
    from ..ingest.visits import VISIT_OBSERVATION_TYPES
    from ..ingest.visits import define_visits as define

    with _state(request).butler() as butler:
        cameras = [body.instrument] if body.instrument is not None else sorted(instrument_names(butler))
        for camera in cameras:
            if not user.may(raw_run(camera), "write"):
                raise PermissionDeniedError(f"user {user.name!r} may not define visits of camera {camera!r}: an "
                                            f"administrator or a user who may write {raw_run(camera)!r} may")
        result = define(butler, instrument=body.instrument, exposures=body.exposures, where=body.where,
                        observation_types=tuple(body.observation_types or VISIT_OBSERVATION_TYPES))
    return {"defined": result.defined, "existing": result.existing, "skipped": result.skipped,
            "unplaced": result.unplaced}


class SkyMapRequest(BaseModel):
    name: str
    kind: str = "rings"
    config: dict[str, Any] = {}


@router.post("/skymaps")
def register_skymap(request: Request, body: SkyMapRequest, user: User = Depends(current_user)) -> StreamingResponse:
    """Register a sky map; streams ``{"progress": [done, total]}`` lines, then ``{"result": ...}``
    (or ``{"error": ..., "message": ...}``)."""
    from ..ingest.skymaps import register_skymap as register

    _admin(user, "register a sky map")
    state = _state(request)

    def work(progress: Callable[[int, int], None]) -> dict[str, Any]:
        with state.butler() as butler:
            skymap, new = register(butler, body.name, body.kind, progress=progress, **body.config)
        return {"config": skymap.config(), "new": new}

    return StreamingResponse(streamed(work, state), media_type="application/x-ndjson")


def streamed(work: Callable[[Callable[[int, int], None]], dict[str, Any]], state: ServerState) -> Iterator[str]:
    """JSON lines of ``work``'s progress while it runs in a thread of its own, then of its outcome;
    an error's message names no path of the server's (``state.public_message``), as every other
    answer's (the status is sent before the work ends, so no exception handler sees the error)."""
    lines: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def run() -> None:
        try:
            lines.put({"result": work(lambda done, total: lines.put({"progress": [done, total]}))})
        except SkybutlerError as err:
            lines.put({"error": type(err).__name__, "message": state.public_message(str(err))})
        except Exception as err:  # noqa: BLE001 -- the client is told; the stream must end
            lines.put({"error": "ServerError",
                       "message": state.public_message(f"internal error ({type(err).__name__}: {err})")})
        finally:
            lines.put(None)

    threading.Thread(target=run, daemon=True).start()
    while (line := lines.get()) is not None:
        yield json.dumps(line) + "\n"
