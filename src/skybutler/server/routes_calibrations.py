"""The calibration query route: for each data ID of a query, the calibration of each type
valid during its exposure or visit, found first in the collections the caller may read.

The server runs the very ``Butler.query_calibrations`` a local user calls, over the
caller's readable path; under an embargo that applies to the caller, data IDs that only
hidden datasets support (``datasets=``) are left out, and a hidden calibration is
searched for further down the path, one collection at a time, as ``find_dataset`` does.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from ..access import User
from ..embargo import EmbargoCheck
from ..query.builder import QuerySpec
from ..remote import wire
from . import authz
from .app import current_user
from .embargoed import supported_keys
from .routes_query import query_slot

router = APIRouter()


class CalibrationRequest(BaseModel):
    dataset_types: list[str]
    dimensions: list[str]
    where: str = ""
    datasets: list[str] = []
    collections: list[str]
    bind: dict[str, Any] = {}
    data_id: dict[str, Any] = {}


@router.post("/query/calibrations")
def query_calibrations(request: Request, body: CalibrationRequest, user: User = Depends(current_user)) -> list[Any]:
    """Each data ID with, per calibration type, the ref found and its validity (or None)."""
    with query_slot(request, user) as butler:
        path = authz.readable_path(butler, user, body.collections)
        bind, data_id = wire.decode(body.bind), wire.decode(body.data_id)
        found = butler.query_calibrations(body.dataset_types, body.dimensions, body.where,
                                          datasets=body.datasets or None, collections=path, bind=bind,
                                          data_id=data_id)
        check = EmbargoCheck(butler, user)
        supported = []
        if user.embargoes:
            spec = QuerySpec(kind="data_ids", dimensions=tuple(body.dimensions), where=body.where,
                             collections=tuple(path), bind=bind, data_id=data_id)
            supported = [supported_keys(butler, check, spec, t) for t in body.datasets if check.applies_to(t)]
        out = []
        for match in found:
            if not all(tuple(match.data_id[d] for d in dims) in keys for dims, keys in supported):
                continue
            refs, validity = dict(match.refs), dict(match.validity)
            for name, ref in match.refs.items():
                if ref is not None and user.embargoes and check.hidden_ref(ref):
                    refs[name], validity[name] = _next_visible(butler, check, name, match.data_id, path)
            out.append({"data_id": wire.encode(match.data_id.mapping),
                        "refs": {n: None if r is None else wire.ref_to_json(r) for n, r in refs.items()},
                        "validity": {n: wire.encode(v) for n, v in validity.items()}})
        return out


def _next_visible(butler: Any, check: EmbargoCheck, name: str, data_id: Any, path: list[str]) -> tuple[Any, Any]:
    """The calibration of type ``name`` valid for ``data_id`` in the first collection of the path
    holding one the caller may see (with its validity), or (None, None)."""
    for collection in path:
        for match in butler.query_calibrations(name, list(data_id.group.required), "", collections=[collection],
                                               data_id=data_id.required):
            ref = match.refs[name]
            if ref is not None and not check.hidden_ref(ref):
                return ref, match.validity[name]
    return None, None
