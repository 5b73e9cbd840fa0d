"""The collections page: the tree of collections the user may read (chains with their
children, RUNs, TAGGED and CALIBRATION collections with their validity ranges), each with
its dataset counts per dataset type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..access import User
from ..butler import Butler
from ..embargo import EmbargoCheck
from ..models import CollectionInfo, CollectionType
from ..server import authz
from ..server.state import ServerState
from .session import page_user
from .templating import render

router = APIRouter()

NAV = [("Collections", "/collections")]

#: Validity ranges listed per dataset type of a CALIBRATION collection before "and N more".
MAX_RANGES = 50


@dataclass
class Node:
    """One collection of the tree, with what the page shows of it."""

    info: CollectionInfo
    counts: list[tuple[str, int]] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    #: CALIBRATION only: dataset type -> [(data ID text, begin, end)], and how many were left out.
    validity: dict[str, tuple[list[tuple[str, str, str]], int]] = field(default_factory=dict)


def tree(butler: Butler, user: User) -> list[Node]:
    """The collections ``user`` may read, as trees: every chain with its (readable) children
    nested under it; a collection appears at the top unless a visible chain holds it."""
    infos = {i.name: i for i in authz.visible_collections(user, butler.collections.query("*"))}
    counts = _visible_counts(butler, user, infos)
    held = {c for i in infos.values() for c in i.children}

    def node(name: str, seen: tuple[str, ...]) -> Node:
        info = infos[name]
        out = Node(info, sorted(counts.get(name, {}).items()))
        if name not in seen:
            out.children = [node(c, seen + (name,)) for c in info.children if c in infos]
        if info.type is CollectionType.CALIBRATION:
            out.validity = _validity(butler, user, name, [t for t, _ in out.counts])
        return out

    return [node(name, ()) for name in sorted(infos) if name not in held]


def _visible_counts(butler: Butler, user: User, infos: dict[str, CollectionInfo]) -> dict[str, dict[str, int]]:
    """collection -> dataset type -> how many of its datasets the user may see (embargoed ones
    taken out, counted one by one only where an embargo rule names the type)."""
    check = EmbargoCheck(butler, user) if user.embargoes else None
    out: dict[str, dict[str, int]] = {}
    for (collection, dtype), n in butler.registry.dataset_counts().items():
        if collection not in infos or n == 0:
            continue
        if check is not None and check.applies_to(dtype):
            n = sum(1 for ref in butler.registry.refs_in_collection(collection, dtype) if not check.hidden_ref(ref))
        if n:
            out.setdefault(collection, {})[dtype] = n
    return out


def _validity(butler: Butler, user: User, name: str, dataset_types: list[str]) -> dict[str, Any]:
    check = EmbargoCheck(butler, user) if user.embargoes else None
    out: dict[str, Any] = {}
    for dtype in dataset_types:
        ranges = [(ref, span) for ref, span in butler.collections.validity(name, dtype)
                  if user.may(ref.run, "read") and (check is None or not check.hidden_ref(ref))]
        shown = [(_data_id_text(ref.data_id.mapping), _time_text(span.begin), _time_text(span.end))
                 for ref, span in ranges[:MAX_RANGES]]
        out[dtype] = (shown, len(ranges) - len(shown))
    return out


def _data_id_text(values: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _time_text(value: Any) -> str:
    return "unbounded" if value is None else value.isot


@router.get("/collections", name="web_collections")
def collections(request: Request, user: User = Depends(page_user)) -> Response:
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        roots = tree(butler, user)
    return render(request, "collections.html", user=user, roots=roots)
