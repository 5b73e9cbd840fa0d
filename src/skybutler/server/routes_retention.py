"""Retention through a server.  Administration -- applying the policies, purging, moving to and
staging from the cold tier, the per-type status -- acts on (or counts) datasets of every
collection, so it is for a repository administrator only.  Recomputing purged datasets (and
its estimate) is for anyone who may write every RUN it would write into: the datasets named
must be ones they may see, and re-created files count against their area's quota first."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from ..access import Access, User
from ..errors import SkybutlerError
from ..remote import wire
from . import authz
from .app import Ids, current_user
from .routes_provenance import _record, linked_ids
from .routes_registry import _admin

router = APIRouter()


class RetentionRequest(BaseModel):
    ids: Ids = []
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


class RecomputeRequest(BaseModel):
    ids: Ids
    on_drift: Literal["refuse", "note"] = "refuse"
    on_calibration: Literal["refuse", "recorded", "today"] = "refuse"


def _planned(butler: Any, user: User, ids: list[str]) -> Any:
    """The estimate of recomputing datasets the caller may see, refused (403) unless they may
    write the RUN of every dataset it would re-create or stage back."""
    refs = authz.visible_refs(butler, user, ids)
    estimate = butler.retention.estimate(refs)
    for run in sorted(_runs(butler, estimate)):
        authz.require(butler, user, run, "write")
    return estimate


def _runs(butler: Any, estimate: Any) -> dict[str, int]:
    """The RUNs a recompute writes into (those of the quanta replayed, which re-create purged
    and removed datasets alike, and those of the cold datasets staged back), each with the
    bytes it gets back: the recorded sizes of the purged files and of the cold copies."""
    out = {q.run: 0 for q in estimate.quanta}
    for dataset_id, quantum in estimate.needed.items():
        state = estimate.states.get(dataset_id)
        if state is not None and state.artifact is not None:
            out[quantum.run] += state.artifact.size
    staged = butler.registry.refs_by_id(sorted(estimate.stage)) if estimate.stage else []
    for ref in staged:
        out[ref.run] = out.get(ref.run, 0) + estimate.stage[ref.id].size
    return out


def _estimate_json(butler: Any, user: User, estimate: Any) -> dict[str, Any]:
    visible = authz.visible_ids(butler, user, linked_ids(estimate.quanta))
    return {"targets": [str(i) for i in estimate.targets], "present": [str(i) for i in estimate.present],
            "quanta": [_record(q, visible) for q in estimate.quanta],
            "needed": {str(i): str(q.quantum_id) for i, q in estimate.needed.items()},
            "stage": {str(i): [a.path, a.formatter, a.size, a.checksum] for i, a in estimate.stage.items()},
            "staging_seconds": estimate.staging_seconds, "drift": estimate.drift,
            "calibrations": estimate.calibrations, "labels": {str(i): v for i, v in estimate.labels.items()}}


@router.post("/retention/estimate")
def estimate(request: Request, body: RecomputeRequest, user: User = Depends(current_user)) -> dict[str, Any]:
    with request.app.state.skybutler.butler() as butler:
        return _estimate_json(butler, user, _planned(butler, user, body.ids))


@router.post("/retention/recompute")
def recompute(request: Request, body: RecomputeRequest, user: User = Depends(current_user)) -> dict[str, Any]:
    """Replay the recorded quanta here (inline), after the rights and the quota checks."""
    from ..retention.ondemand import RecomputeOptions

    with request.app.state.skybutler.butler() as butler:
        planned = _planned(butler, user, body.ids)
        options = RecomputeOptions(on_drift=body.on_drift, on_calibration=body.on_calibration)
        with within_quotas(butler, planned):
            report = butler.retention.recompute(planned.targets, options)
        return {"estimate": _estimate_json(butler, user, report.estimate), "executor": report.executor,
                "succeeded": wire.encode(report.succeeded), "failed": wire.encode(report.failed),
                "blocked": wire.encode(report.blocked),
                "verified": {str(i): how for i, how in report.verified.items()}, "notes": report.notes,
                "seconds": report.seconds}


def within_quotas(butler: Any, planned: Any) -> Any:
    """Room for the bytes each RUN of a user's or group's area gets back, checked and held in one
    transaction before the replay (whose own writes then take their transactions): two
    recomputes at once cannot both pass a check only one of them fits."""
    return Access.of(butler).reserving({run: (size, 0) for run, size in _runs(butler, planned).items()})
