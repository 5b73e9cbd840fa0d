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
    return visible_refs(butler, user, [dataset_id])[0]


def _key(given: uuid.UUID | str) -> uuid.UUID:
    try:
        return given if isinstance(given, uuid.UUID) else uuid.UUID(str(given))
    except ValueError:
        raise DatasetNotFoundError(f"no dataset with ID {str(given)[:64]!r}") from None


def _visible(butler: Butler, user: User, keys: Iterable[uuid.UUID]) -> dict[uuid.UUID, DatasetRef]:
    """The datasets of ``keys`` the user may see, by ID, judged together: one look-up of the IDs
    (each once, however often given) and, for datasets of RUNs the user may not read, one of
    what each readable TAGGED or CALIBRATION collection holds of each of their dataset types --
    so a request naming an ID many thousand times costs no more than naming it once."""
    found = {r.id: r for r in butler.registry.refs_by_id(list(dict.fromkeys(keys)))}
    check = EmbargoCheck(butler, user) if user.embargoes else None
    held = _HeldWhereReadable(butler, user)
    return {key: ref for key, ref in found.items()
            if not (check is not None and check.hidden_ref(ref)) and (user.may(ref.run, "read") or held(ref))}


class _HeldWhereReadable:
    """Whether a TAGGED or CALIBRATION collection the user may read holds a dataset (what a query
    of that collection showed them, they may read by ID); each collection's members of a dataset
    type are read once."""

    def __init__(self, butler: Butler, user: User):
        self.butler, self.user = butler, user
        self.collections: list[str] | None = None
        self.members: dict[tuple[str, str], set[uuid.UUID]] = {}

    def __call__(self, ref: DatasetRef) -> bool:
        if self.collections is None:
            self.collections = [info.name for info in self.butler.collections.query(
                "*", [CollectionType.TAGGED, CollectionType.CALIBRATION]) if self.user.may(info.name, "read")]
        for name in self.collections:
            key = (name, ref.dataset_type.name)
            if key not in self.members:
                self.members[key] = set(self.butler.registry.datasets.ids_in_collection(*key))
            if ref.id in self.members[key]:
                return True
        return False


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
    at once: the type and RUN of every dataset in one look-up, and whole refs in one more only of
    those an embargo may hide or whose RUN is not readable.  An ID the user may not see and one
    that does not exist are equally absent."""
    wanted = list(dict.fromkeys(i for i in ids if i is not None))
    if not wanted:
        return set()
    check = EmbargoCheck(butler, user) if user.embargoes else None
    out, doubtful, readable = set(), [], {}
    for dataset_id, (dataset_type, run) in butler.registry.owners_by_id(wanted).items():
        if run not in readable:
            readable[run] = user.may(run, "read")
        if readable[run] and (check is None or not check.applies_to(dataset_type)):
            out.add(dataset_id)
        else:
            doubtful.append(dataset_id)
    return out | set(_visible(butler, user, doubtful)) if doubtful else out


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
