"""The batch route: the writes of a remote ``butler.transaction()`` block, applied in one
registry transaction -- all of them or none (see ``remote/batch.py`` for the client's side).

The whole body (every object and file of the block) is received before anything is
applied.  Each operation then runs through the very route function that serves it
alone, so it is checked exactly as it would be on its own (write or admin rights on its
collection, quotas, visibility of the datasets it names); the routes borrow the batch's
butler (``ServerState.holding``), so they all write in its one transaction.  The first
failure rolls everything back, files included, and is answered with its own status
and the number of the operation that failed.

The same route takes the parts of one retention call (purge, cold tier, estimate, recompute)
naming more datasets than one request may list: it joins them back into the one call
(``JOINED``), which commits on its own -- so they come alone, never with other writes.
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import TypeAdapter, ValidationError

from ..access import User
from ..errors import SkybutlerError
from ..models import DatasetType
from ..remote import wire
from . import routes_datasets as datasets
from . import routes_quanta as quanta
from . import routes_registry as registry
from .app import current_user, too_long

router = APIRouter()


@functools.cache
def _adapter(kind: type[Any]) -> TypeAdapter:
    return TypeAdapter(kind)


def _model(kind: type[Any], body: Any) -> Any:
    """``body`` validated as a ``kind`` (a pydantic model or a dataclass of the data model)."""
    try:
        return _adapter(kind).validate_python(body)
    except ValidationError as err:
        refused = too_long(err.errors())
        if refused is not None:  # a list above the limit: 413, as the route alone answers
            raise refused from None
        raise SkybutlerError(f"malformed operation: {' '.join(str(err).split())[:300]}") from None


def _apply_one(request: Request, user: User, op: dict[str, Any], payloads: list[bytes]) -> Any:
    """One write of the batch, by the route that serves it alone."""
    state = request.app.state.skybutler
    method, path, body = op.get("method"), op.get("path"), op.get("json")
    params = op.get("params") or {}
    if (method, path) == ("POST", "datasets/put"):
        return datasets._put(state, user, op.get("header") or {}, payloads)
    if (method, path) == ("POST", "datasets/ingest"):
        return datasets._ingest(state, user, op.get("header") or {}, payloads)
    if method == "DELETE" and isinstance(path, str) and path.startswith("dataset_types/"):
        return registry.remove_dataset_type(request, path.removeprefix("dataset_types/"), user)
    if (method, path) == ("DELETE", "collections"):
        return registry.remove_collection(request, str(params.get("name", "")), user)
    routes = {
        ("POST", "collections"): (registry.register_collection, registry.RegisterCollection),
        ("PUT", "collections/chain"): (registry.set_chain, registry.Chain),
        ("POST", "collections/associate"): (registry.associate, registry.Membership),
        ("POST", "collections/disassociate"): (registry.disassociate, registry.Membership),
        ("POST", "collections/certify"): (registry.certify, registry.Membership),
        ("POST", "collections/decertify"): (registry.decertify, registry.Membership),
        ("POST", "records"): (registry.insert_records, registry.Records),
        ("POST", "records/sync"): (registry.sync_record, registry.Records),
        ("POST", "datasets/remove"): (datasets.remove, datasets.Removal),
        ("POST", "runs/remove"): (datasets.remove_runs, datasets.Removal),
        ("POST", "provenance/record"): (quanta.record_quanta, quanta.QuantumRecords),
    }
    if (method, path) == ("POST", "dataset_types"):
        return registry.register_dataset_type(request, _model(DatasetType, body))
    if (method, path) not in routes:
        raise SkybutlerError(f"malformed batch: {str(method)[:10]} {str(path)[:80]!r} is not a write")
    route, model = routes[(method, path)]
    return route(request, _model(model, body), user)


#: Retention calls a remote butler sends in parts when they name more datasets than one request
#: may (``remote/batch.call_in_parts``): a batch of the parts of one of them is joined back into it.
JOINED = ("retention/purge", "retention/move_to_cold", "retention/stage", "retention/estimate",
          "retention/recompute")


def _joined(request: Request, user: User, operations: list[dict[str, Any]], payloads: int) -> Any:
    """The answer of one retention call sent as parts, each listing at most ``MAX_IDS`` IDs and
    otherwise alike: their IDs, in order, in one body given to the route once -- the very call,
    with its checks, one plan and one registry transaction, as atomic as it is locally.  Not
    with other operations: retention commits on its own, so it could not join a transaction."""
    from . import routes_retention as retention

    paths = {(op.get("method"), op.get("path")) for op in operations}
    if len(paths) != 1 or payloads:
        raise SkybutlerError("malformed batch: the parts of a retention call (POST retention/...) are sent alone, "
                             "all of one call -- retention is applied at once and joins no transaction")
    path = operations[0]["path"]
    route, model = {"retention/purge": (retention.purge, retention.RetentionRequest),
                    "retention/move_to_cold": (retention.move_to_cold, retention.RetentionRequest),
                    "retention/stage": (retention.stage, retention.RetentionRequest),
                    "retention/estimate": (retention.estimate, retention.RecomputeRequest),
                    "retention/recompute": (retention.recompute, retention.RecomputeRequest)}[path]
    parts = [_model(model, op.get("json")) for op in operations]
    if operations[0].get("method") != "POST" or len({p.model_dump_json(exclude={"ids"}) for p in parts}) != 1:
        raise SkybutlerError(f"malformed batch: the parts of one {path} call differ in more than their IDs")
    return route(request, parts[0].model_copy(update={"ids": [i for part in parts for i in part.ids]}), user)


def _apply(request: Request, user: User, header: dict[str, Any], payloads: list[bytes]) -> list[Any]:
    operations = header.get("operations")
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise SkybutlerError("malformed batch: its header needs a list of operations")
    counts = [op.get("payloads", 0) for op in operations]
    if any(not isinstance(n, int) or n < 0 for n in counts) or sum(counts) != len(payloads):
        raise SkybutlerError("malformed batch: the operations' payload counts do not add up")
    if any(op.get("path") in JOINED for op in operations):
        return [_joined(request, user, operations, len(payloads))]
    state = request.app.state.skybutler
    answers, at = [], 0
    with state.butler() as butler, state.holding(butler), butler.transaction():
        for number, (op, count) in enumerate(zip(operations, counts), 1):
            try:
                answers.append(_apply_one(request, user, op, payloads[at:at + count]))
            except SkybutlerError as err:
                err.args = (f"operation {number} of {len(operations)} ({op.get('method')} {op.get('path')}), "
                            f"nothing of the transaction was written: {err}",)
                raise
            at += count
    return answers


@router.post("/batch", openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}})
async def batch(request: Request, user: User = Depends(current_user)) -> Any:
    """Apply the writes of a remote transaction (a packed body: a header listing the operations,
    each a write route's method, path and body, then the payloads of its puts and ingests) in one
    transaction."""
    from starlette.concurrency import run_in_threadpool

    header, payloads = wire.unpack(await datasets._body(request))
    return await run_in_threadpool(_apply, request, user, header, payloads)
