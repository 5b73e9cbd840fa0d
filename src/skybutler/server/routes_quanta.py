"""Recording the quanta of a pipeline run on a client's machine: each record (the quantum and
its links to what it read and wrote) is the caller's write to its RUN, sent in the same batch
as the quantum's outputs so that both are committed together or not at all; and the software
environments the records name."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from ..access import User
from ..errors import SkybutlerError
from ..provenance.software import environment_id
from ..registry.quantum_store import STATUSES, QuantumRecord
from ..remote import wire
from ..remote.wire import MAX_IDS
from . import authz
from .app import RequestTooLarge, current_user
from .state import ServerState

router = APIRouter()


class QuantumRecords(BaseModel):
    records: Annotated[list[dict[str, Any]], Field(max_length=MAX_IDS)]


class Environment(BaseModel):
    env_id: str
    description: dict[str, Any]


@functools.cache
def _adapter() -> TypeAdapter:
    return TypeAdapter(QuantumRecord)


def _parse(values: dict[str, Any]) -> QuantumRecord:
    try:
        record = _adapter().validate_python(wire.decode(values))
    except (ValidationError, ValueError, TypeError) as err:
        raise SkybutlerError(f"malformed quantum record: {' '.join(str(err).split())[:300]}") from None
    if record.status not in STATUSES:
        raise SkybutlerError(f"a quantum's status is one of {', '.join(STATUSES)}, not {record.status[:20]!r}")
    return record


@router.post("/provenance/record")
def record_quanta(request: Request, body: QuantumRecords, user: User = Depends(current_user)) -> int:
    """Record quanta into RUNs the caller may write: every dataset a record names must be one they
    may see (a hidden one answers as a missing one), every output one of the quantum's own RUN."""
    state: ServerState = request.app.state.skybutler
    records = [_parse(values) for values in body.records]
    named = [i for r in records for i in (r.config_dataset_id, *(link.dataset_id for link in (*r.inputs, *r.outputs)))
             if i is not None]
    if len(named) > MAX_IDS:
        raise RequestTooLarge(f"these quantum records name {len(named)} dataset IDs; a request names at most "
                              f"{MAX_IDS} (the server's max_ids): send the records in several requests (a remote "
                              "butler does so itself)")
    with state.butler() as butler:
        for run in dict.fromkeys(r.run for r in records):
            authz.require(butler, user, run, "write")
        seen = {ref.id: ref for ref in authz.visible_refs(butler, user, named)}  # all judged at once
        for record in records:
            for ref in (seen[link.dataset_id] for link in record.outputs if link.dataset_id is not None):
                if ref.run != record.run:
                    raise SkybutlerError(f"output {ref.id} of a quantum of RUN {record.run!r} is a dataset of "
                                         f"another RUN")
        butler.provenance.store.ensure()  # made by the run's first environment, before any batch
        known = butler.provenance.store.get([r.quantum_id for r in records])
        if known:
            raise SkybutlerError(f"quantum {known[0].quantum_id} is already recorded")
        butler.provenance.store.insert(records)
    return len(records)


@router.post("/provenance/environment")
def record_environment(request: Request, body: Environment, user: User = Depends(current_user)) -> None:
    """Record a software environment (by its content hash, which it must match)."""
    if environment_id(body.description) != body.env_id:
        raise SkybutlerError("an environment's ID is the hash of its description; this one is not")
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        butler.provenance.store.add_environment(body.env_id, body.description)
