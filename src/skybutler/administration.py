"""``butler.access``: the administration of a served repository -- users and groups, tokens,
collection rules, embargo rules, quotas and the audit log -- one API for a butler opened on
the repository's path and one opened on a server's URL.

On the path the caller holds every right (the files are theirs) and the changes are audited
as ``admin``.  Through a server (``remote/administration.py`` sends the same calls) the server
first checks the caller's rights (``server/routes_access.py``), then runs the very method here
with the caller as the actor, so a change lands in the audit log as the local command writes
it, under the caller's name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .access import Access, User, check_name
from .errors import AccessError
from .registry.access_store import EmbargoRow

if TYPE_CHECKING:
    from .butler import Butler

#: Who the changes made on the repository's path are audited as.
LOCAL_ACTOR = "admin"


@dataclass(frozen=True)
class TokenInfo:
    """A token as an administrator (or its owner) sees it: never its secret nor its hash."""

    token_id: str
    user: str
    created_ns: int
    expires_ns: int | None
    revoked_ns: int | None
    note: str

    def state(self, now_ns: int) -> str:
        """``valid``, ``expired`` or ``revoked`` at ``now_ns``."""
        if self.revoked_ns is not None:
            return "revoked"
        return "expired" if self.expires_ns is not None and self.expires_ns <= now_ns else "valid"


@dataclass(frozen=True)
class Rule:
    """A collection rule: ``level`` on collections matching ``pattern`` for ``principal``
    (``user:NAME``, ``group:NAME`` or ``*``, every user)."""

    principal: str
    pattern: str
    level: str


@dataclass(frozen=True)
class UserInfo:
    """Who a user is in the repository and what applies to them."""

    user: str
    admin: bool
    groups: tuple[str, ...]
    #: the collection rules given to them, to one of their groups or to everyone
    rules: tuple[Rule, ...]
    #: the embargo rules that hide datasets from them (those of none of their groups)
    embargoes: tuple[EmbargoRow, ...]


@dataclass(frozen=True)
class AuditEntry:
    time_ns: int
    actor: str
    action: str
    detail: str


class Administration:
    """The access administration of one repository (``butler.access`` of a local butler).

    ``access`` is the :class:`~skybutler.access.Access` whose caches a change must clear (a
    server's own, so that a revocation applies to its next request); ``caller`` the user a
    server acts for (None: the repository's path, every right); ``clock`` the time embargo
    releases are judged at."""

    def __init__(self, butler: Butler, access: Access | None = None, caller: User | None = None,
                 clock: Callable[[], float] = time.time):
        self._butler = butler
        self._access = access if access is not None else Access.of(butler)
        self._store = self._access.store
        self._caller = caller
        self._actor = caller.name if caller is not None else LOCAL_ACTOR
        self._clock = clock

    # -- users and groups -------------------------------------------------------

    def whoami(self, user: str | None = None) -> UserInfo:
        """``user`` (default: the caller) with their groups and the rules that apply to them; on
        the repository's path the caller is ``admin``, holding every right."""
        if user is None and self._caller is None:
            return UserInfo(LOCAL_ACTOR, True, (), (), ())
        name = check_name("user", user if user is not None else self._actor)
        found = self._store.user(name)
        if found is None:
            raise AccessError(f"no user {name!r}")
        admin, groups = found
        mine = {"*", f"user:{name}", *(f"group:{g}" for g in groups)}
        rules = tuple(Rule(*r) for r in self._store.rule_rows() if r[0] in mine)
        embargoes = () if admin else tuple(e for e in self._store.embargo_rows() if not set(e.groups) & set(groups))
        return UserInfo(name, admin, groups, rules, embargoes)

    def users(self) -> list[str]:
        return self._store.user_names()

    def add_user(self, name: str, *, admin: bool | None = None, groups: Iterable[str] = ()) -> None:
        """Add ``name`` and add them to ``groups``; ``admin`` sets their administrator flag
        (``None``: an existing user keeps theirs, a new one is not an administrator)."""
        self._access.add_user(name, admin=admin, groups=list(groups), actor=self._actor)

    def remove_from_group(self, name: str, group: str) -> None:
        found = self._store.user(check_name("user", name))
        if found is None or check_name("group", group) not in found[1]:
            raise AccessError(f"user {name!r} is not in group {group!r}")
        self._store.remove_from_group(self._actor, name, group)
        self._access.forget()

    # -- tokens -----------------------------------------------------------------

    def create_token(self, user: str, *, admin: bool | None = None, groups: Iterable[str] = (),
                     expires_in: float | None = None, note: str = "") -> str:
        """A new token for ``user`` (made if missing, ``admin`` and ``groups`` set as by
        :meth:`add_user`, in the token's transaction), shown this once: only its hash is kept."""
        return self._access.create_token(user, admin=admin, groups=list(groups), expires_in=expires_in, note=note,
                                         actor=self._actor)

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        """Tokens (of ``user``), oldest first."""
        if user is not None:
            check_name("user", user)
        return [TokenInfo(t.token_id, t.user, t.created_ns, t.expires_ns, t.revoked_ns, t.note)
                for t in self._store.token_rows(user)]

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token by its id (as ``tokens`` lists it) or by the token itself."""
        self.revoke_tokens([token_id])

    def revoke_tokens(self, token_ids: Iterable[str]) -> None:
        """Revoke tokens (ids or tokens) all at once, or none if one is unknown."""
        self._access.revoke_tokens(token_ids, actor=self._actor)

    # -- rules ------------------------------------------------------------------

    def grant(self, kind: str, name: str, pattern: str, level: str | None) -> None:
        """Give ``level`` on collections matching ``pattern`` to a user, a group or ``*``
        (every user); ``level=None`` takes the grant away."""
        self._access.grant(kind, name, pattern, level, actor=self._actor)

    def rules(self) -> list[Rule]:
        return [Rule(*r) for r in self._store.rule_rows()]

    def add_embargo(self, dataset_types: str, collections: str, hours: float, groups: Iterable[str]) -> None:
        self._access.add_embargo(dataset_types, collections, hours, list(groups), actor=self._actor)

    def embargoes(self) -> list[EmbargoRow]:
        return self._store.embargo_rows()

    def remove_embargo(self, rule_id: int) -> None:
        """Remove an embargo rule: its datasets become visible to their RUN's readers at once."""
        if rule_id not in {e.rule_id for e in self._store.embargo_rows()}:
            raise AccessError(f"no embargo rule {rule_id}")
        self._store.remove_embargo(self._actor, rule_id)
        self._access.forget()

    # -- quotas and the audit log -------------------------------------------------

    def set_quota(self, kind: str, name: str, *, max_bytes: int | None = None,
                  max_datasets: int | None = None) -> None:
        self._access.set_quota(kind, name, max_bytes=max_bytes, max_datasets=max_datasets, actor=self._actor)

    def usage(self, kind: str = "user", name: str | None = None) -> list[dict[str, Any]]:
        """Datasets and bytes in a user's area ``u/<user>`` (kind ``group``: ``g/<group>``) with
        its quotas (None: unlimited); without a name, every user's."""
        if kind not in ("user", "group"):
            raise AccessError(f"a quota area is a user's or a group's, not a {kind!r}'s")
        if name is None and kind == "group":
            raise AccessError("name the group whose area to report")
        names = [name] if name is not None else self._store.user_names()
        return [{kind: n, **self._access.usage(kind, n)} for n in names]

    def audit(self, limit: int = 50) -> list[AuditEntry]:
        """The latest ``limit`` entries, newest first, after writing the embargo releases that
        happened since they were last written."""
        from .embargo import record_releases

        if not 0 < limit <= 100_000:
            raise AccessError(f"ask for 1 to 100000 audit entries, not {limit}")
        record_releases(self._butler, int(self._clock() * 1e9))
        return [AuditEntry(*row) for row in self._store.audit_rows(limit)]
