"""Retention administration through a server: applying the policies, purging, moving to and
staging from the cold tier, and the per-type status.  Each acts on (or counts) datasets of
every collection, so each is for a repository administrator only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from ..access import User
from ..errors import SkybutlerError
from .app import current_user
from .routes_registry import _admin

router = APIRouter()


class RetentionRequest(BaseModel):
    ids: list[str] = []
    now: str | None = None
    dry_run: bool = False
    force: bool = False


@router.post("/retention/apply")
def apply(request: Request, body: RetentionRequest, user: User = Depends(current_user)) -> dict[str, Any]:
    _admin(user, "apply retention policies")
    with request.app.state.skybutler.butler() as butler:
        if not butler.config.retention.policies:
            raise SkybutlerError("this repository has no retention policies (add 'retention: policies:' to its "
                                 "butler.yaml)")
        return butler.retention.apply(now=body.now, dry_run=body.dry_run, force=body.force).to_dict()


@router.post("/retention/purge")
def purge(request: Request, body: RetentionRequest, user: User = Depends(current_user)) -> dict[str, Any]:
    _admin(user, "purge datasets")
    with request.app.state.skybutler.butler() as butler:
        return butler.retention.purge(body.ids, force=body.force, dry_run=body.dry_run).to_dict()


@router.post("/retention/move_to_cold")
def move_to_cold(request: Request, body: RetentionRequest, user: User = Depends(current_user)) -> dict[str, Any]:
    _admin(user, "move datasets to the cold tier")
    with request.app.state.skybutler.butler() as butler:
        moved, size = butler.retention.move_to_cold(body.ids)
        return {"moved": [str(i) for i in moved], "bytes": size}


@router.post("/retention/stage")
def stage(request: Request, body: RetentionRequest, user: User = Depends(current_user)) -> list[str]:
    _admin(user, "stage datasets from the cold tier")
    with request.app.state.skybutler.butler() as butler:
        return [str(i) for i in butler.retention.stage(body.ids)]


@router.get("/retention/status")
def status(request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    _admin(user, "see the retention status of every dataset")
    with request.app.state.skybutler.butler() as butler:
        return butler.retention.status()
