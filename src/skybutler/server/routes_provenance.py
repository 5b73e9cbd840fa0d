"""Provenance routes: what made a dataset, what used it, and recompute requests, under the
same rights as every read (a link to a dataset the caller may not see is left out)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from ..access import User
from ..butler import Butler
from ..errors import DatasetNotFoundError
from ..remote import wire
from . import authz
from .app import current_user
from .state import ServerState

router = APIRouter()


class Target(BaseModel):
    id: str


def _visible(butler: Butler, user: User, dataset_id: Any) -> bool:
    try:
        authz.visible_ref(butler, user, dataset_id)
    except DatasetNotFoundError:
        return False
    return True


def _record(butler: Butler, user: User, record: Any) -> dict[str, Any]:
    out = dataclasses.asdict(record)
    for side in ("inputs", "outputs"):
        out[side] = [link for link, kept in zip(out[side], getattr(record, side))
                     if kept.dataset_id is None or _visible(butler, user, kept.dataset_id)]
    out.pop("log", None)  # a task's log may name what the caller may not see
    return wire.encode(out)


@router.post("/provenance/producer")
def producer(request: Request, body: Target, user: User = Depends(current_user)) -> Any:
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        ref = authz.visible_ref(butler, user, body.id)
        record = butler.provenance.producer(ref)
        return None if record is None or not user.may(record.run, "read") else _record(butler, user, record)


@router.post("/provenance/consumers")
def consumers(request: Request, body: Target, user: User = Depends(current_user)) -> list[Any]:
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        ref = authz.visible_ref(butler, user, body.id)
        return [_record(butler, user, r) for r in butler.provenance.consumers(ref) if user.may(r.run, "read")]


@router.post("/provenance/recompute")
def recompute(request: Request, body: Target, user: User = Depends(current_user)) -> Any:
    """Re-create a purged dataset from its recorded quantum, stored back under its ID (needs
    write access to its RUN)."""
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        ref = authz.visible_ref(butler, user, body.id)
        authz.require(butler, user, ref.run, "write")
        butler.provenance.recompute(ref)
        return wire.ref_to_json(ref)
