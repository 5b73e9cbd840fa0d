"""The calibration query route: for each data ID of a query, the calibration of each type
valid during its exposure or visit, found first in the collections the caller may read.

The server runs the very ``Butler.query_calibrations`` a local user calls, over the
caller's readable path.  Under an embargo that applies to the caller, data IDs that only
hidden datasets support (``datasets=``) are left out, and each calibration type the embargo
names is looked up as on a repository holding only what the caller sees: in each collection
of the path in turn, the calibrations valid then that the caller may see -- none: the next
collection; one: the answer; more: an ambiguous lookup, naming those only.  So a hidden
calibration is passed over, however far down the chain the next visible one is, and makes no
lookup ambiguous (nor is named in the error of one that is).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from ..access import User
from ..embargo import EmbargoCheck
from ..errors import CalibrationLookupError
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
        check = EmbargoCheck(butler, user)
        hidden_types = [t for t in body.dataset_types if user.embargoes and check.applies_to(t)]
        found = butler.query_calibrations([t for t in body.dataset_types if t not in hidden_types], body.dimensions,
                                          body.where, datasets=body.datasets or None, collections=path, bind=bind,
                                          data_id=data_id)
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
            for name in hidden_types:
                refs[name], validity[name] = _first_visible(butler, check, name, match.data_id, path)
            out.append({"data_id": wire.encode(match.data_id.mapping),
                        "refs": {n: None if refs[n] is None else wire.ref_to_json(refs[n])
                                 for n in body.dataset_types},
                        "validity": {n: wire.encode(validity[n]) for n in body.dataset_types}})
        return out


def _first_visible(butler: Any, check: EmbargoCheck, name: str, data_id: Any, path: list[str]) -> tuple[Any, Any]:
    """The calibration of type ``name`` valid for ``data_id`` in the first collection of the path
    holding one the caller may see (with its validity), or (None, None); more than one there is
    an ambiguous lookup, whose error names only those."""
    for collection in path:
        try:
            matches = list(butler.query_calibrations(name, list(data_id.group.required), "", collections=[collection],
                                                     data_id=data_id.required))
        except CalibrationLookupError:  # two valid then: the caller may see one, both, or neither
            found = _one_visible(butler, check, name, data_id, collection)
            if found is None:
                continue
            return found
        ref = matches[0].refs[name] if matches else None
        if ref is not None and not check.hidden_ref(ref):
            return ref, matches[0].validity[name]
    return None, None


def _one_visible(butler: Any, check: EmbargoCheck, name: str, data_id: Any, collection: str) -> tuple[Any, Any] | None:
    """Of the calibrations certified in ``collection`` valid for ``data_id``, the one the caller may
    see, with its validity there; None if they see none (two or more: the ambiguity error, naming those)."""
    seen = {r.id: r for r in butler.query_datasets(name, collections=[collection], find_first=False,
                                                   data_id=data_id.required) if not check.hidden_ref(r)}
    if not seen:
        return None
    certified = [(r, t) for r, t in butler.collections.validity(collection, name) if r.id in seen]
    if len(seen) != 1 or len(certified) != 1:
        raise CalibrationLookupError(
            f"{name} for {dict(data_id.required)}: {len(certified)} calibrations are valid at the query's time in "
            "one collection: " + "; ".join(f"{r.id} valid {t}" for r, t in certified)
            + ". Give a narrower timespan, or find_first=False to list them all")
    return certified[0]
