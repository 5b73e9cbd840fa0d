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
from ..registry.registry import Readable


def _missing(name: str) -> MissingCollectionError:
    return MissingCollectionError(f"no collection named {name!r}")


def check_visible(butler: Butler, user: User, name: str) -> CollectionType:
    """The type of a collection the user may read; the missing-collection error otherwise."""
    if not user.may(name, "read"):
        raise _missing(name)
    return butler.registry.collection_type(name)


def readable_path(butler: Butler, user: User, collections: Sequence[str]) -> list[str]:
    """The search path of ``collections`` with chains flattened and only the collections the
    user may read kept (a chain grants nothing by itself); a named collection the user may
    not read is reported missing, exactly like one that does not exist."""
    out: list[str] = []
    for name in collections:
        check_visible(butler, user, name)
        for leaf in butler.collections.flatten(name):
            if leaf not in out and user.may(leaf, "read"):
                out.append(leaf)
    return out


def require(butler: Butler, user: User, name: str, level: str, *, must_exist: bool = True) -> None:
    """Refuse unless the user has ``level`` on ``name``.  To a user who may not even read it, the
    answer does not depend on whether it exists: missing (404) where it must exist, forbidden
    (403) where it may be made (a put into a new RUN)."""
    if user.may(name, level):
        return
    if user.may(name, "read") and butler.collections.exists(name) or not must_exist:
        raise PermissionDeniedError(f"user {user.name!r} may not {_verb(level)} collection {name!r}")
    raise _missing(name)


def _verb(level: str) -> str:
    return {"read": "read", "write": "write to", "admin": "administer"}[level]


def visible_ref(butler: Butler, user: User, dataset_id: uuid.UUID | str) -> DatasetRef:
    """A dataset by ID, if its RUN is readable to the user and no embargo hides it from them;
    the missing-dataset error otherwise."""
    return visible_refs(butler, user, [dataset_id])[0]


def _key(given: uuid.UUID | str) -> uuid.UUID:
    try:
        return given if isinstance(given, uuid.UUID) else uuid.UUID(str(given))
    except ValueError:
        raise DatasetNotFoundError(f"no dataset with ID {str(given)[:64]!r}") from None


def readable(butler: Butler, user: User) -> Readable | None:
    """The collections whose datasets the user may read (``Registry.readable_ids``), for the
    registry to judge datasets by in the statement that looks them up; None for an administrator
    or a user who may read every RUN.  One statement at most, whatever IDs follow."""
    if user.admin:
        return None
    return butler.registry.readable_ids(lambda name: user.may(name, "read"))


def _visible(butler: Butler, user: User, keys: Iterable[uuid.UUID]) -> dict[uuid.UUID, DatasetRef]:
    """The datasets of ``keys`` the user may see, by ID, judged together: those of RUNs the user
    may read or held by a TAGGED or CALIBRATION collection they may read (what a query of it
    showed them, they may read by ID), in the very statements that look the IDs up (each once,
    however often given) -- so a dataset hidden from the user costs what an ID that does not
    exist costs: the same statements, no more -- less those an embargo hides."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    found = butler.registry.refs_by_id(keys, readable(butler, user))
    check = EmbargoCheck(butler, user) if user.embargoes else None
    return {ref.id: ref for ref in found if check is None or not check.hidden_ref(ref)}


def visible_refs(butler: Butler, user: User, ids: Iterable[uuid.UUID | str]) -> list[DatasetRef]:
    """Datasets by ID (looked up together), each as :func:`visible_ref` judges it: the
    missing-dataset error for the first the user may not see."""
    keys = [_key(given) for given in ids]
    seen = _visible(butler, user, keys)
    for key in keys:
        if key not in seen:
            raise DatasetNotFoundError(f"no dataset with ID {key}")
    return [seen[key] for key in keys]


def visible_ids(butler: Butler, user: User, ids: Iterable[uuid.UUID | None]) -> set[uuid.UUID]:
    """Those of ``ids`` (None skipped) the user may see, as :func:`visible_ref` judges, all judged
    at once: the type and RUN of every dataset the user's rights let them see in one look-up (the
    rights judged in it), and whole refs in one more only of those an embargo may hide.  An ID the
    user may not see and one that does not exist are equally absent, and cost the same."""
    wanted = list(dict.fromkeys(i for i in ids if i is not None))
    if not wanted:
        return set()
    check = EmbargoCheck(butler, user) if user.embargoes else None
    out, doubtful = set(), []
    for dataset_id, (dataset_type, _) in butler.registry.owners_by_id(wanted, readable(butler, user)).items():
        if check is None or not check.applies_to(dataset_type):
            out.add(dataset_id)
        else:
            doubtful.append(dataset_id)
    return out | {ref.id for ref in butler.registry.refs_by_id(doubtful) if not check.hidden_ref(ref)} \
        if doubtful else out


def visible_subset(butler: Butler, user: User, ids: Iterable[uuid.UUID | str]) -> list[DatasetRef]:
    """The datasets of ``ids`` the user may see, in the order given, the others (and IDs that
    are not IDs) left out."""
    keys = []
    for given in ids:
        try:
            keys.append(_key(given))
        except DatasetNotFoundError:
            pass
    seen = _visible(butler, user, keys)
    return [seen[key] for key in keys if key in seen]


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
