"""Maintenance through a server: ``verify`` (and its repair) and the extraction of datasets'
facts, under the caller's rights.

An administrator's ``verify`` is the local one: every artifact record against every file, and
the files no dataset explains.  Anyone else's covers the datasets they may see (present, of
their size, of their checksum) and nothing more: a file no dataset explains belongs to nobody
in particular, and its name may say what the caller may not see.  A repair is an
administration action."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from ..access import User
from ..errors import PermissionDeniedError
from ..verify import plan_repair, repair, verify, verify_datasets
from . import authz
from .app import current_user
from .routes_query import query_slot
from .routes_registry import _admin

router = APIRouter()


class VerifyRequest(BaseModel):
    sizes: bool = False
    checksums: bool = False


class Step(BaseModel):
    action: str
    path: str


class RepairRequest(BaseModel):
    plan: list[Step]


@router.post("/verify")
def verify_route(request: Request, body: VerifyRequest, user: User = Depends(current_user)) -> dict[str, Any]:
    """The ``verify --json`` report: of the whole repository for an administrator, of the
    datasets the caller may see for anyone else."""

    with query_slot(request, user) as butler:
        if user.admin:
            return verify(butler, check_sizes=body.sizes, check_checksums=body.checksums).summary()
        return verify_datasets(butler, lambda ids: authz.visible_ids(butler, user, ids), check_sizes=body.sizes,
                               check_checksums=body.checksums).summary()


@router.post("/verify/repair")
def repair_route(request: Request, body: RepairRequest, user: User = Depends(current_user)) -> dict[str, Any]:
    """Carry out the steps of the caller's plan that a fresh verify here plans too (what the
    client showed its user, and no step the server cannot prove again)."""
    _admin(user, "repair the repository")
    with request.app.state.skybutler.butler() as butler:
        wanted = {(s.action, s.path) for s in body.plan}
        plan = [a for a in plan_repair(verify(butler)) if (a.action, a.path) in wanted]
        done = repair(butler, plan)
        return {"deleted": done.deleted, "quarantined": done.quarantined, "quarantine": done.quarantine}


class ExtractRequest(BaseModel):
    dataset_types: list[str]
    collections: list[str] | None = None
    where: str = ""
    replace: bool = False


@router.post("/datasets/extract_metadata")
def extract_metadata(request: Request, body: ExtractRequest, user: User = Depends(current_user)) -> int:
    """Extract the facts of the matching datasets the caller may see, which must all be in RUNs
    they may write (facts are part of a dataset's record); no collections: every RUN they may write."""
    from ..fact_backfill import extract_metadata as extract

    with query_slot(request, user) as butler:
        if body.collections is None:
            searched: Sequence[str] = [c.name for c in butler.collections.query("*", ["run"])
                                       if user.may(c.name, "write")]
        else:
            searched = authz.readable_path(butler, user, body.collections)
        if not searched:
            return 0
        return extract(butler, body.dataset_types, collections=searched, where=body.where, replace=body.replace,
                       keep=lambda refs: _writable(butler, user, refs))


def _writable(butler: Any, user: User, refs: list) -> list:
    """The refs the user may see, refused (403) if one of them is in a RUN they may not write."""

    visible = authz.visible_ids(butler, user, [r.id for r in refs])
    kept = [r for r in refs if r.id in visible]
    for ref in kept:
        if not user.may(ref.run, "write"):
            where = f"collection {ref.run!r}" if user.may(ref.run, "read") else "the RUN"
            raise PermissionDeniedError(f"user {user.name!r} may not write to {where} of a {ref.dataset_type.name} "
                                        "dataset matching this request (its facts are part of its record)")
    return kept
