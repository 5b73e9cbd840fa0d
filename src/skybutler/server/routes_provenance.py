"""Provenance routes: what made a dataset, what used it, stale products, and recompute requests,
under the same rights as every read (a link to a dataset the caller may not see is left out,
the links of an answer judged all at once by ``authz.visible_ids``).  A dataset the caller may
not see answers exactly as an ID that does not exist."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from ..access import User
from ..butler import Butler
from ..remote import wire
from . import authz
from .app import current_user
from .state import ServerState

router = APIRouter()


class Target(BaseModel):
    id: str


def linked_ids(records: Iterable[Any]) -> list[Any]:
    """Every dataset ID the quanta's links name (to judge them all at once)."""
    return [link.dataset_id for r in records for link in (*r.inputs, *r.outputs)]


def _record(record: Any, visible: set[Any]) -> dict[str, Any]:
    """A quantum record as the caller may see it: links only to the ``visible`` datasets (judged
    together by ``authz.visible_ids``), and no log (a task's log may name what they may not see)."""
    out = dataclasses.asdict(record)
    for side in ("inputs", "outputs"):
        out[side] = [link for link, kept in zip(out[side], getattr(record, side))
                     if kept.dataset_id is None or kept.dataset_id in visible]
    out.pop("log", None)
    return wire.encode(out)


@router.post("/provenance/producer")
def producer(request: Request, body: Target, user: User = Depends(current_user)) -> Any:
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        ref = authz.visible_ref(butler, user, body.id)
        record = butler.provenance.producer(ref)
        if record is None or not user.may(record.run, "read"):
            return None
        return _record(record, authz.visible_ids(butler, user, linked_ids([record])))


@router.post("/provenance/consumers")
def consumers(request: Request, body: Target, user: User = Depends(current_user)) -> list[Any]:
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        ref = authz.visible_ref(butler, user, body.id)
        records = [r for r in butler.provenance.consumers(ref) if user.may(r.run, "read")]
        visible = authz.visible_ids(butler, user, linked_ids(records))
        return [_record(r, visible) for r in records]


@router.post("/provenance/recompute")
def recompute(request: Request, body: Target, user: User = Depends(current_user)) -> Any:
    """Re-create a purged dataset from its recorded quantum, stored back under its ID (needs
    write access to every RUN it writes, and room in their quotas)."""
    from .routes_retention import _planned, within_quotas

    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        ref = authz.visible_ref(butler, user, body.id)
        authz.require(butler, user, ref.run, "write")
        with within_quotas(butler, _planned(butler, user, [body.id])):
            butler.provenance.recompute(ref)
        return wire.ref_to_json(ref)


class TreeRequest(BaseModel):
    id: str
    max_depth: int = 50


@router.post("/provenance/tree")
def tree(request: Request, body: TreeRequest, user: User = Depends(current_user)) -> Any:
    """What made a dataset, recursively, as the caller may see it: a quantum only if its RUN is
    readable, an input only if the caller may see that dataset (as the web view's graph does);
    with the software environment of every quantum shown."""
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        ref = authz.visible_ref(butler, user, body.id)
        root = butler.provenance.tree(ref, max_depth=max(1, min(body.max_depth, 50)))
        quanta = [n.quantum for n in root.walk() if n.quantum is not None and user.may(n.quantum.run, "read")]
        visible = authz.visible_ids(butler, user, [n.dataset_id for n in root.walk()] + linked_ids(quanta)) | {ref.id}
        environments: dict[str, Any] = {}

        def node(item: Any) -> dict[str, Any]:
            quantum = item.quantum if item.quantum is not None and user.may(item.quantum.run, "read") else None
            if quantum is not None and quantum.env_id and quantum.env_id not in environments:
                environments[quantum.env_id] = butler.provenance.environment(quantum)
            return {"dataset_id": str(item.dataset_id), "dataset_type": item.dataset_type,
                    "data_id": wire.encode(item.data_id), "exists": item.exists,
                    "quantum": None if quantum is None else _record(quantum, visible),
                    "inputs": [] if quantum is None else [node(c) for c in item.inputs if c.dataset_id in visible]}

        return {"tree": node(root), "environments": wire.encode(environments)}


class QuantaRequest(BaseModel):
    run: str | None = None
    task: str | None = None
    status: str | None = None


@router.post("/provenance/quanta")
def quanta(request: Request, body: QuantaRequest, user: User = Depends(current_user)) -> list[Any]:
    """Recorded quanta of the RUNs the caller may read (filtered by RUN, task and status), their
    links to datasets the caller may not see left out (looked up in bulk) and their logs too."""
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        if body.run is not None:
            authz.check_visible(butler, user, body.run)
        records = [r for r in butler.provenance.quanta(run=body.run, task=body.task, status=body.status)
                   if user.may(r.run, "read")]
        visible = authz.visible_ids(butler, user, linked_ids(records))
        return [_record(r, visible) for r in records]


class StalenessRequest(BaseModel):
    dataset_type: str
    collections: list[str]
    where: str = ""
    bind: dict[str, Any] = {}
    config: bool = True
    software: bool = False


@router.post("/provenance/staleness")
def staleness(request: Request, body: StalenessRequest, user: User = Depends(current_user)) -> dict[str, Any]:
    """The stale ``dataset_type`` products of the collections (over the caller's readable path,
    with the pipeline recorded with the products), and how many were judged.  An answer that
    rests on a dataset an embargo hides from the caller is refused: its reasons would name it."""
    from .routes_query import query_slot

    with query_slot(request, user) as butler:
        path = authz.readable_path(butler, user, body.collections)
        bind = wire.decode(body.bind)
        result = butler.provenance.staleness(body.dataset_type, path, body.where, bind=bind, config=body.config,
                                             software=body.software)
        if user.embargoes:
            _refuse_if_embargoed(butler, user, result.graph.dataset_types, path)
        products = result.products(body.dataset_type)
        shown = authz.visible_ids(butler, user, [p.dataset_id for p in products])
        return {"products": [wire.encode(p.to_dict()) for p in products if p.dataset_id in shown],
                "total": result.total(body.dataset_type)}


def _refuse_if_embargoed(butler: Butler, user: User, dataset_types: Any, path: list[str]) -> None:
    from ..embargo import EmbargoCheck
    from ..errors import PermissionDeniedError

    check = EmbargoCheck(butler, user)
    for name in dataset_types:
        if check.applies_to(name) and any(check.hidden_ref(ref) for ref in butler.query_datasets(
                name, collections=path, find_first=False)):
            raise PermissionDeniedError("these products are judged against datasets an embargo still hides from "
                                        "you: ask again once it ends, or ask a user with the data rights")
