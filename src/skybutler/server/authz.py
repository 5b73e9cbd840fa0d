"""Applying a user's collection rights to what a request names.

Every lookup a request makes goes through here first, so that a collection or a
dataset a user may not read does not exist for them: the errors are the very ones a
missing name gives (404), and queries, counts and explanations run over the readable
collections only.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence

from ..access import User
from ..butler import Butler
from ..embargo import EmbargoCheck
from ..errors import DatasetNotFoundError, MissingCollectionError, PermissionDeniedError
from ..models import CollectionType, DatasetRef


def _missing(name: str) -> MissingCollectionError:
    return MissingCollectionError(f"no collection named {name!r}")


def check_visible(butler: Butler, user: User, name: str) -> CollectionType:
    """The type of a collection the user may read; the missing-collection error otherwise."""
    if not user.may(name, "read"):
        raise _missing(name)
    return butler.registry.collections.lookup(name)[1]


def readable_path(butler: Butler, user: User, collections: Sequence[str]) -> list[str]:
    """The search path of ``collections`` with chains flattened and only the collections the
    user may read kept (a chain grants nothing by itself); a named collection the user may
    not read is reported missing, exactly like one that does not exist."""
    out: list[str] = []
    for name in collections:
        check_visible(butler, user, name)
        for leaf in butler.registry.collections.flatten([name]):
            if leaf not in out and user.may(leaf, "read"):
                out.append(leaf)
    return out


def require(butler: Butler, user: User, name: str, level: str, *, must_exist: bool = True) -> None:
    """Refuse unless the user has ``level`` on ``name``.  To a user who may not even read it, the
    answer does not depend on whether it exists: missing (404) where it must exist, forbidden
    (403) where it may be made (a put into a new RUN)."""
    if user.may(name, level):
        return
    if user.may(name, "read") and butler.registry.collections.exists(name) or not must_exist:
        raise PermissionDeniedError(f"user {user.name!r} may not {_verb(level)} collection {name!r}")
    raise _missing(name)


def _verb(level: str) -> str:
    return {"read": "read", "write": "write to", "admin": "administer"}[level]


def visible_ref(butler: Butler, user: User, dataset_id: uuid.UUID | str) -> DatasetRef:
    """A dataset by ID, if its RUN is readable to the user and no embargo hides it from them;
    the missing-dataset error otherwise."""
    try:
        key = dataset_id if isinstance(dataset_id, uuid.UUID) else uuid.UUID(str(dataset_id))
    except ValueError:
        raise DatasetNotFoundError(f"no dataset with ID {str(dataset_id)[:64]!r}") from None
    refs = butler.registry.refs_by_id([key])
    hidden = bool(refs) and bool(user.embargoes) and EmbargoCheck(butler, user).hidden_ref(refs[0])
    if not refs or hidden or not (user.may(refs[0].run, "read") or _held_where_readable(butler, user, refs[0])):
        raise DatasetNotFoundError(f"no dataset with ID {key}")
    return refs[0]


def _held_where_readable(butler: Butler, user: User, ref: DatasetRef) -> bool:
    """Whether a TAGGED or CALIBRATION collection the user may read holds the dataset (what a
    query of that collection showed them, they may read by ID)."""
    for info in butler.collections.query("*", [CollectionType.TAGGED, CollectionType.CALIBRATION]):
        if user.may(info.name, "read") and ref.id in butler.registry.datasets.ids_in_collection(
                info.name, ref.dataset_type.name):
            return True
    return False


def visible_refs(butler: Butler, user: User, ids: Iterable[uuid.UUID | str]) -> list[DatasetRef]:
    """Datasets by ID (looked up together), each as :func:`visible_ref` judges it: the
    missing-dataset error for the first the user may not see."""
    keys = []
    for given in ids:
        try:
            keys.append(given if isinstance(given, uuid.UUID) else uuid.UUID(str(given)))
        except ValueError:
            raise DatasetNotFoundError(f"no dataset with ID {str(given)[:64]!r}") from None
    found = {r.id: r for r in butler.registry.refs_by_id(keys)}
    check = EmbargoCheck(butler, user) if user.embargoes else None
    out = []
    for key in keys:
        ref = found.get(key)
        if ref is None or (check is not None and check.hidden_ref(ref)) or not (
                user.may(ref.run, "read") or _held_where_readable(butler, user, ref)):
            raise DatasetNotFoundError(f"no dataset with ID {key}")
        out.append(ref)
    return out


def visible_collections(user: User, infos: Iterable) -> list:
    """Collection descriptions the user may read, each chain listing only readable children."""
    out = []
    for info in infos:
        if not user.may(info.name, "read"):
            continue
        if info.children:
            info = dataclasses.replace(info, children=tuple(c for c in info.children if user.may(c, "read")))
        out.append(info)
    return out
