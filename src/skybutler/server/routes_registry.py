"""Routes for dataset types, collections and dimension records."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from ..access import User
from ..errors import PermissionDeniedError
from ..models import CollectionInfo, DatasetType
from ..remote import wire
from . import authz
from .app import Ids, current_user
from .state import ServerState

router = APIRouter()


def _state(request: Request) -> ServerState:
    return request.app.state.skybutler


def _admin(user: User, what: str) -> None:
    if not user.admin:
        raise PermissionDeniedError(f"only a repository administrator may {what}")


# -- dataset types ------------------------------------------------------------

@router.get("/dataset_types")
def dataset_types(request: Request, pattern: str = "*") -> list[DatasetType]:
    with _state(request).butler() as butler:
        return butler.query_dataset_types(pattern)


@router.get("/dataset_types/{name}")
def dataset_type(request: Request, name: str) -> DatasetType:
    with _state(request).butler() as butler:
        return butler.get_dataset_type(name)


@router.post("/dataset_types")
def register_dataset_type(request: Request, dtype: DatasetType) -> bool:
    """Register a dataset type (any user: a definition holds no data)."""
    with _state(request).butler() as butler:
        return butler.register_dataset_type(dtype.name, dtype.dimensions, dtype.storage_class,
                                            is_calibration=dtype.is_calibration)


@router.delete("/dataset_types/{name}")
def remove_dataset_type(request: Request, name: str, user: User = Depends(current_user)) -> None:
    _admin(user, "remove a dataset type")
    with _state(request).butler() as butler:
        butler.remove_dataset_type(name)


# -- collections --------------------------------------------------------------

class CollectionQuery(BaseModel):
    pattern: str = "*"
    types: list[str] | None = None
    flatten_chains: bool = False


@router.post("/collections/query")
def query_collections(request: Request, body: CollectionQuery, user: User = Depends(current_user)
                      ) -> list[CollectionInfo]:
    with _state(request).butler() as butler:
        found = butler.collections.query(body.pattern, body.types, body.flatten_chains)
        return authz.visible_collections(user, found)


@router.get("/collections/info")
def collection_info(request: Request, name: str, user: User = Depends(current_user)) -> CollectionInfo:
    with _state(request).butler() as butler:
        authz.check_visible(butler, user, name)
        return authz.visible_collections(user, [butler.collections.info(name)])[0]


@router.get("/collections/flatten")
def flatten(request: Request, name: list[str] = Query(), user: User = Depends(current_user)) -> list[str]:
    with _state(request).butler() as butler:
        return authz.readable_path(butler, user, name)


@router.get("/collections/parents")
def parents(request: Request, name: str, user: User = Depends(current_user)) -> list[str]:
    with _state(request).butler() as butler:
        authz.check_visible(butler, user, name)
        return [p for p in butler.collections.parents(name) if user.may(p, "read")]


class RegisterCollection(BaseModel):
    name: str
    type: str = "RUN"
    doc: str = ""


@router.post("/collections")
def register_collection(request: Request, body: RegisterCollection, user: User = Depends(current_user)) -> bool:
    with _state(request).butler() as butler:
        authz.require(butler, user, body.name, "write", must_exist=False)
        return butler.collections.register(body.name, body.type, body.doc)


class Chain(BaseModel):
    name: str
    children: list[str]


@router.put("/collections/chain")
def set_chain(request: Request, body: Chain, user: User = Depends(current_user)) -> None:
    with _state(request).butler() as butler:
        authz.require(butler, user, body.name, "write", must_exist=False)
        for child in body.children:
            authz.check_visible(butler, user, child)
        butler.collections.set_chain(body.name, body.children)


class Membership(BaseModel):
    name: str
    ids: Ids
    begin: Any = None
    end: Any = None
    dataset_type: str | None = None
    #: a decertification of these data IDs only
    data_ids: list[dict[str, Any]] | None = None


@router.post("/collections/associate")
def associate(request: Request, body: Membership, user: User = Depends(current_user)) -> None:
    with _state(request).butler() as butler:
        authz.require(butler, user, body.name, "write", must_exist=False)
        butler.collections.associate(body.name, authz.visible_refs(butler, user, body.ids))


@router.post("/collections/disassociate")
def disassociate(request: Request, body: Membership, user: User = Depends(current_user)) -> None:
    with _state(request).butler() as butler:
        authz.require(butler, user, body.name, "write")
        butler.collections.disassociate(body.name, authz.visible_refs(butler, user, body.ids))


@router.post("/collections/certify")
def certify(request: Request, body: Membership, user: User = Depends(current_user)) -> None:
    with _state(request).butler() as butler:
        authz.require(butler, user, body.name, "write", must_exist=False)
        butler.collections.certify(body.name, authz.visible_refs(butler, user, body.ids),
                                   wire.decode(body.begin), wire.decode(body.end))


@router.post("/collections/decertify")
def decertify(request: Request, body: Membership, user: User = Depends(current_user)) -> int:
    with _state(request).butler() as butler:
        authz.require(butler, user, body.name, "write")
        return butler.collections.decertify(body.name, body.dataset_type or "", wire.decode(body.begin),
                                            wire.decode(body.end), data_ids=wire.decode(body.data_ids))


@router.get("/collections/validity")
def validity(request: Request, name: str, dataset_type: str, user: User = Depends(current_user)) -> list[Any]:
    with _state(request).butler() as butler:
        authz.check_visible(butler, user, name)
        return [[wire.ref_to_json(ref), wire.encode(span)]
                for ref, span in butler.collections.validity(name, dataset_type) if user.may(ref.run, "read")]


@router.delete("/collections")
def remove_collection(request: Request, name: str, user: User = Depends(current_user)) -> None:
    with _state(request).butler() as butler:
        authz.require(butler, user, name, "admin")
        butler.collections.remove(name)


# -- dimension records ----------------------------------------------------------

class Records(BaseModel):
    element: str
    records: list[dict[str, Any]] = Field(default_factory=list)
    skip_existing: bool = False
    update: bool = False


@router.post("/records")
def insert_records(request: Request, body: Records, user: User = Depends(current_user)) -> int:
    _admin(user, "insert dimension records")
    with _state(request).butler() as butler:
        return butler.insert_records(body.element, wire.decode(body.records), skip_existing=body.skip_existing)


@router.post("/records/sync")
def sync_record(request: Request, body: Records, user: User = Depends(current_user)) -> bool:
    _admin(user, "insert dimension records")
    with _state(request).butler() as butler:
        return butler.sync_record(body.element, wire.decode(body.records[0]), update=body.update)


class RecordLookup(BaseModel):
    element: str
    identity: dict[str, Any]


@router.post("/records/get")
def get_record(request: Request, body: RecordLookup) -> Any:
    with _state(request).butler() as butler:
        record = butler.get_record(body.element, **wire.decode(body.identity))
        return None if record is None else wire.encode(record)


class DataIdExpansion(BaseModel):
    dimensions: list[str]
    data_id: dict[str, Any]


@router.post("/data_ids/expand")
def expand_data_id(request: Request, body: DataIdExpansion) -> Any:
    with _state(request).butler() as butler:
        return wire.encode(butler.expand_data_id(body.dimensions, wire.decode(body.data_id)).mapping)
