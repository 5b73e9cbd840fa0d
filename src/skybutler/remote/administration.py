"""``butler.access`` of a butler opened on a server URL: the methods of
:class:`~skybutler.administration.Administration`, each one request.  The server decides who
may do what (``server/routes_access.py``): anyone looks up themselves, their own quota and
their own tokens; a repository administrator everything else."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..administration import AuditEntry, Rule, TokenInfo, UserInfo
from ..registry.access_store import EmbargoRow

if TYPE_CHECKING:
    from .client import RemoteTransport


def _number(value: float | None) -> float | str | None:
    """A number for a JSON body: an infinite or NaN one (which JSON cannot hold) as its text, for
    the server to refuse by name as a local butler does."""
    return value if value is None or math.isfinite(value) else str(value)


def _embargo(row: dict[str, Any]) -> EmbargoRow:
    return EmbargoRow(row["rule_id"], row["dataset_types"], row["collections"], row["hours"], tuple(row["groups"]))


class RemoteAdministration:
    """The access administration of a served repository, under the caller's rights there."""

    def __init__(self, transport: RemoteTransport):
        self._t = transport

    def whoami(self, user: str | None = None) -> UserInfo:
        found = self._t.get_json("access/whoami", **({} if user is None else {"user": user}))
        return UserInfo(found["user"], found["admin"], tuple(found["groups"]),
                        tuple(Rule(**r) for r in found["rules"]), tuple(_embargo(e) for e in found["embargoes"]))

    def users(self) -> list[str]:
        return self._t.get_json("access/users")

    def add_user(self, name: str, *, admin: bool | None = None, groups: Iterable[str] = ()) -> None:
        self._t.post_json("access/users", {"name": name, "admin": admin, "groups": list(groups)})

    def remove_from_group(self, name: str, group: str) -> None:
        self._t.post_json("access/users/ungroup", {"name": name, "group": group})

    def create_token(self, user: str, *, admin: bool | None = None, groups: Iterable[str] = (),
                     expires_in: float | None = None, note: str = "") -> str:
        body: dict[str, Any] = {"user": user, "expires_in": _number(expires_in), "note": note}
        if admin is not None or groups:  # a server of an earlier release knows neither
            body.update(admin=admin, groups=list(groups))
        return self._t.post_json("access/tokens", body)["token"]

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        return [TokenInfo(**t) for t in self._t.get_json("access/tokens", **({} if user is None else {"user": user}))]

    def revoke_token(self, token_id: str) -> None:
        self._t.post_json("access/tokens/revoke", {"token_id": token_id})

    def revoke_tokens(self, token_ids: Iterable[str]) -> None:
        ids = list(token_ids)
        if len(ids) == 1:
            self.revoke_token(ids[0])
        else:
            self._t.post_json("access/tokens/revoke", {"token_ids": ids})

    def grant(self, kind: str, name: str, pattern: str, level: str | None) -> None:
        self._t.post_json("access/rules", {"kind": kind, "name": name, "pattern": pattern, "level": level})

    def rules(self) -> list[Rule]:
        return [Rule(**r) for r in self._t.get_json("access/rules")]

    def add_embargo(self, dataset_types: str, collections: str, hours: float, groups: Iterable[str]) -> None:
        self._t.post_json("access/embargoes", {"dataset_types": dataset_types, "collections": collections,
                                               "hours": _number(hours), "groups": list(groups)})

    def embargoes(self) -> list[EmbargoRow]:
        return [_embargo(e) for e in self._t.get_json("access/embargoes")]

    def remove_embargo(self, rule_id: int) -> None:
        self._t.post_json("access/embargoes/remove", {"rule_id": rule_id})

    def set_quota(self, kind: str, name: str, *, max_bytes: int | None = None,
                  max_datasets: int | None = None) -> None:
        self._t.post_json("access/quotas", {"kind": kind, "name": name, "max_bytes": max_bytes,
                                            "max_datasets": max_datasets})

    def usage(self, kind: str = "user", name: str | None = None) -> list[dict[str, Any]]:
        """Usage and quotas: without a name, every user's for an administrator, one's own otherwise."""
        return self._t.get_json("access/usage", kind=kind, **({} if name is None else {"name": name}))

    def audit(self, limit: int = 50) -> list[AuditEntry]:
        return [AuditEntry(**e) for e in self._t.get_json("access/audit", limit=limit)]
