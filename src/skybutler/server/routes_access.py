"""The access administration through a server: ``butler.access`` of a remote butler.

Anyone looks up themselves (``whoami``), their own area's usage and quota (and those of
their groups' areas), and lists and revokes their own tokens.  Everything else -- users and
groups, tokens of others, collection and embargo rules, quotas, the audit log -- is for a
repository administrator (the ``admin`` flag of ``add-user --admin``; an ``admin`` grant on
collections is not one), 403 otherwise with nothing written.  A question about another
user gets the same 403 whether that user exists or not, and another's token is "no token",
exactly as a missing one.  Each call runs the method of
:class:`~skybutler.administration.Administration` a local butler runs, with the caller as the
actor of its audit entry and the server's own :class:`~skybutler.access.Access`, so that a
revocation or a demotion applies to the very next request.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from ..access import User, check_token_id
from ..administration import Administration
from ..errors import AccessError
from .app import Ids, current_user
from .routes_registry import _admin

router = APIRouter()


@contextlib.contextmanager
def _administration(request: Request, user: User, admin_only: str | None = None) -> Iterator[Administration]:
    """The administration, acting as the caller ``user``; with ``admin_only`` (what is being done,
    for the 403), for an administrator only, refused before the repository is opened."""
    if admin_only is not None:
        _admin(user, admin_only)
    state = request.app.state.skybutler
    with state.butler() as butler:
        yield Administration(butler, state.access, user, state.settings.clock)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field (an "actor") is refused, not ignored


class NewUser(_Body):
    name: str
    admin: bool | None = None  # None: an existing user keeps their flag
    groups: list[str] = []


class Membership(_Body):
    name: str
    group: str


class NewToken(_Body):
    user: str
    admin: bool | None = None
    groups: list[str] = []
    expires_in: float | None = None
    note: str = ""


class TokenId(_Body):
    """One token (``token_id``) or several, revoked together (``token_ids``)."""

    token_id: str | None = None
    token_ids: Ids = []


class NewRule(_Body):
    kind: str
    name: str
    pattern: str
    level: Literal["read", "write", "admin"] | None


class NewEmbargo(_Body):
    dataset_types: str
    collections: str = "*"
    hours: float
    groups: list[str] = []


class RuleId(_Body):
    rule_id: int


class NewQuota(_Body):
    kind: str
    name: str
    max_bytes: int | None = None
    max_datasets: int | None = None


# -- anyone, about themselves ------------------------------------------------------


@router.get("/access/whoami")
def whoami(request: Request, user: str | None = None, caller: User = Depends(current_user)) -> dict[str, Any]:
    """The caller (or, for an administrator, ``user``) with their groups and the rules that apply."""
    if user is not None and user != caller.name:
        _admin(caller, "look up another user")
    with _administration(request, caller) as admin:
        return dataclasses.asdict(admin.whoami(user))


@router.get("/access/usage")
def usage(request: Request, kind: str = "user", name: str | None = None,
          caller: User = Depends(current_user)) -> list[dict[str, Any]]:
    """Usage and quotas of areas: one's own (and one's groups'); any, for an administrator."""
    if not caller.admin:
        if kind == "user" and name in (None, caller.name):
            name = caller.name
        elif not (kind == "group" and name in caller.groups):
            _admin(caller, "see the usage of another user's or group's area")
    with _administration(request, caller) as admin:
        return admin.usage(kind, name)


@router.get("/access/tokens")
def tokens(request: Request, user: str | None = None, caller: User = Depends(current_user)) -> list[dict[str, Any]]:
    """Tokens (never their secrets): one's own; anyone's, for an administrator."""
    if not caller.admin:
        if user not in (None, caller.name):
            _admin(caller, "list another user's tokens")
        user = caller.name
    with _administration(request, caller) as admin:
        return [dataclasses.asdict(t) for t in admin.tokens(user)]


@router.post("/access/tokens/revoke")
def revoke_token(request: Request, body: TokenId, caller: User = Depends(current_user)) -> None:
    """Revoke tokens: one's own; anyone's, for an administrator (another's is "no token"); all
    of them or none."""
    given = ([body.token_id] if body.token_id is not None else []) + body.token_ids
    if not given:
        raise AccessError("name the tokens to revoke")
    if not caller.admin:
        for token_id in map(check_token_id, given):
            row = request.app.state.skybutler.access.store.token(token_id)
            if row is None or row.user != caller.name:
                raise AccessError(f"no token {token_id!r}")
    with _administration(request, caller) as admin:
        admin.revoke_tokens(given)


# -- administrators ------------------------------------------------------------------


@router.get("/access/users")
def users(request: Request, caller: User = Depends(current_user)) -> list[str]:
    with _administration(request, caller, "list the users") as admin:
        return admin.users()


@router.post("/access/users")
def add_user(request: Request, body: NewUser, caller: User = Depends(current_user)) -> None:
    with _administration(request, caller, "add users or change their groups") as admin:
        admin.add_user(body.name, admin=body.admin, groups=body.groups)


@router.post("/access/users/ungroup")
def remove_from_group(request: Request, body: Membership, caller: User = Depends(current_user)) -> None:
    with _administration(request, caller, "change users' groups") as admin:
        admin.remove_from_group(body.name, body.group)


@router.post("/access/tokens")
def create_token(request: Request, body: NewToken, caller: User = Depends(current_user)) -> dict[str, str]:
    """A new token, answered this once (only its hash is kept)."""
    with _administration(request, caller, "create tokens") as admin:
        return {"token": admin.create_token(body.user, admin=body.admin, groups=body.groups,
                                            expires_in=body.expires_in, note=body.note)}


@router.get("/access/rules")
def rules(request: Request, caller: User = Depends(current_user)) -> list[dict[str, str]]:
    with _administration(request, caller, "list the collection rules") as admin:
        return [dataclasses.asdict(r) for r in admin.rules()]


@router.post("/access/rules")
def grant(request: Request, body: NewRule, caller: User = Depends(current_user)) -> None:
    with _administration(request, caller, "grant or revoke access to collections") as admin:
        admin.grant(body.kind, body.name, body.pattern, body.level)


@router.get("/access/embargoes")
def embargoes(request: Request, caller: User = Depends(current_user)) -> list[dict[str, Any]]:
    with _administration(request, caller, "list the embargo rules") as admin:
        return [dataclasses.asdict(e) for e in admin.embargoes()]


@router.post("/access/embargoes")
def add_embargo(request: Request, body: NewEmbargo, caller: User = Depends(current_user)) -> None:
    with _administration(request, caller, "add embargo rules") as admin:
        admin.add_embargo(body.dataset_types, body.collections, body.hours, body.groups)


@router.post("/access/embargoes/remove")
def remove_embargo(request: Request, body: RuleId, caller: User = Depends(current_user)) -> None:
    with _administration(request, caller, "remove embargo rules") as admin:
        admin.remove_embargo(body.rule_id)


@router.post("/access/quotas")
def set_quota(request: Request, body: NewQuota, caller: User = Depends(current_user)) -> None:
    with _administration(request, caller, "set quotas") as admin:
        admin.set_quota(body.kind, body.name, max_bytes=body.max_bytes, max_datasets=body.max_datasets)


@router.get("/access/audit")
def audit(request: Request, limit: int = 50, caller: User = Depends(current_user)) -> list[dict[str, Any]]:
    with _administration(request, caller, "read the audit log") as admin:
        return [dataclasses.asdict(e) for e in admin.audit(limit)]

