"""Who may do what in a served repository: tokens, users and groups, collection rules.

A token is ``sbt_<id>.<secret>``: the id finds its row, the secret is checked against
the argon2 hash stored there (never the secret itself).  A user's rights on a
collection are the highest level any rule grants them (``read`` < ``write`` <
``admin``) through their name, one of their groups or ``*`` (every user), on a glob
pattern matching the collection's name; every user administers ``u/<user>`` and
everything under it, and an administrator everything.  A CHAINED collection grants
nothing by itself: searching it searches only the children the user may read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import AccessError, AuthenticationError, QuotaExceededError
from .registry.access_store import AccessStore, EmbargoRow, TokenRow

if TYPE_CHECKING:
    from .butler import Butler

LEVELS = ("read", "write", "admin")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}")
_TOKEN = re.compile(r"sbt_([0-9a-f]{16})\.([A-Za-z0-9_-]{20,100})")
_TOKEN_ID = re.compile(r"(?:sbt_)?([0-9a-f]{16})(?:\.[A-Za-z0-9_-]{20,100})?")


def check_name(kind: str, name: str) -> str:
    """A user or group name: letters, digits and ``_.@-``, at most 128 characters."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise AccessError(f"invalid {kind} name {name!r}: use letters, digits and _.@- (at most 128)")
    return name


def check_pattern(what: str, pattern: str) -> str:
    """A glob over collection or dataset type names in a rule: 1 to 512 printable characters
    (a control character could forge a line of the audit log)."""
    if not isinstance(pattern, str) or not 0 < len(pattern) <= 512:
        raise AccessError(f"{what} must be a pattern of 1 to 512 characters")
    if not pattern.isprintable():
        raise AccessError(f"{what} {pattern!r} holds a control character")
    return pattern


def check_token_id(token_id: str) -> str:
    """A token's id (16 hex digits), given as itself or as the whole token."""
    found = _TOKEN_ID.fullmatch(token_id) if isinstance(token_id, str) else None
    if found is None:
        # at most what could be an id: a token's secret (after its '.') is never echoed
        shown = re.sub(r"(?<=[0-9a-f]{16})\..*", ".<secret>", token_id[:40], flags=re.S) \
            if isinstance(token_id, str) else token_id
        raise AccessError(f"no token {shown!r}: give a token's id (16 hex digits, as token list shows it) "
                          "or the token itself")
    return found.group(1)


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise AccessError(f"unknown access level {level!r}; use one of {', '.join(LEVELS)}")
    return level


def principal(kind: str, name: str) -> str:
    """The principal of a rule: ``user:NAME``, ``group:NAME`` or ``*`` (every user)."""
    if kind == "*" or name == "*":
        return "*"
    if kind not in ("user", "group"):
        raise AccessError(f"a rule names a user or a group, not a {kind!r}")
    return f"{kind}:{check_name(kind, name)}"


def quota_area(run: str) -> tuple[str, str] | None:
    """The area whose quota a write into ``run`` counts against: ("user", NAME) for ``u/NAME/...``,
    ("group", NAME) for ``g/NAME/...``, None for any other RUN."""
    parts = run.split("/")
    if len(parts) < 2 or parts[0] not in ("u", "g") or _NAME.fullmatch(parts[1]) is None:
        return None
    return ("user" if parts[0] == "u" else "group"), parts[1]


def _hasher():
    from .extras import require

    argon2 = require("argon2", "hashing server tokens")
    # The secrets are 256 random bits, so a hash need not be slow to resist guessing:
    # OWASP's smallest argon2id setting, which keeps a cold check well under 100 ms.
    return argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


@functools.cache
def _decoy_hash() -> str:
    """The hash an unknown token's secret is checked against: of a secret no token has."""
    return _hasher().hash(secrets.token_urlsafe(32) + "!")


@dataclass(frozen=True)
class User:
    """An authenticated user, with what the rules grant them."""

    name: str
    admin: bool = False
    groups: tuple[str, ...] = ()
    #: (pattern, level) of every rule that applies to this user
    rules: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    #: the embargo rules that hide datasets from this user (those of no group of theirs)
    embargoes: tuple[EmbargoRow, ...] = field(default=(), repr=False)
    #: the time (TAI-free POSIX nanoseconds) embargoes are judged at, for this request
    now_ns: int = 0

    def level(self, collection: str) -> str | None:
        """The highest level this user has on ``collection`` (None: no access at all)."""
        if self.admin or collection == f"u/{self.name}" or collection.startswith(f"u/{self.name}/"):
            return "admin"
        best = -1
        if any(collection == f"g/{g}" or collection.startswith(f"g/{g}/") for g in self.groups):
            best = LEVELS.index("write")  # a group's area: every member writes there
        for pattern, level in self.rules:
            if fnmatch.fnmatchcase(collection, pattern):
                best = max(best, LEVELS.index(level))
        return LEVELS[best] if best >= 0 else None

    def may(self, collection: str, level: str) -> bool:
        have = self.level(collection)
        return have is not None and LEVELS.index(have) >= LEVELS.index(level)


class Access:
    """Tokens, users and rules of one repository (``butler.registry.access``)."""

    def __init__(self, store: AccessStore, *, recheck_seconds: float = 0.0):
        """``recheck_seconds``: how long what authentication learnt is trusted before the access
        tables are asked again whether anything changed (0: on every call).  A change made through
        this object applies at once; one made by another process (an admin command) within that time."""
        self.store = store
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        # What authentication learnt, kept while the access tables are unchanged: every change to
        # them (a revocation, a grant, a new group member, an embargo) writes an audit row, so one
        # look-up of the latest audit entry tells whether any of it is stale.
        self._version: int | None = None
        self._checked = -float("inf")  # time.monotonic() of the last look-up
        self._tokens: dict[str, TokenRow] = {}  # sha256 of a verified token -> its row
        self._users: dict[str, User] = {}

    @classmethod
    def of(cls, butler: Butler, *, recheck_seconds: float = 0.0) -> Access:
        """The access of ``butler``'s repository over that butler's own registry, so that a quota
        check and its lock (:meth:`check_quota_locked`) are in that butler's transaction."""
        return cls(butler.registry.access, recheck_seconds=recheck_seconds)

    def _current(self) -> int | None:
        """Forget what was cached if the access tables changed since (in any process); returns
        the tables' version, under which what is read next may be cached."""
        now = time.monotonic()
        if now - self._checked < self.recheck_seconds:
            return self._version
        version = self.store.version()
        if version != self._version:
            self._forget(version)
        self._checked = now
        return version

    def forget(self) -> None:
        """Drop what authentication learnt, so that a change just made applies to the next call."""
        self._forget()

    def _forget(self, version: int | None = None) -> None:
        with self._lock:
            self._tokens.clear()
            self._users.clear()
            self._version = version
            self._checked = -float("inf")

    def _keep(self, cache: dict[str, Any], key: str, value: Any, version: int | None) -> None:
        """Cache ``value`` if the tables are still at the ``version`` it was read under (a change
        committed meanwhile may have made it stale)."""
        with self._lock:
            if self._version == version:
                if len(cache) > 10_000:
                    cache.clear()
                cache[key] = value

    # -- administration ---------------------------------------------------------

    def add_user(self, name: str, *, admin: bool | None = None, groups: Iterable[str] = (),
                 actor: str = "admin") -> None:
        """Add ``name`` or update them; ``admin=None`` keeps an existing user's flag."""
        self.store.add_user(actor, check_name("user", name), admin, [check_name("group", g) for g in groups])
        self._forget()

    def create_token(self, user: str, *, admin: bool | None = None, groups: Iterable[str] = (),
                     expires_in: float | None = None, note: str = "", actor: str = "admin",
                     now: float | None = None) -> str:
        """A new token for ``user`` (made if missing; ``admin`` and ``groups`` as :meth:`add_user`
        takes them), valid ``expires_in`` seconds (None: until revoked), in one transaction: a
        token is never made without its user's change, nor a user without the token.  The token
        is shown once: only its hash is kept."""
        if not isinstance(note, str) or len(note) > 1000 or not note.isprintable():
            raise AccessError("a token's note is at most 1000 printable characters")
        if expires_in is not None and not 0 < expires_in < 1e10:
            raise AccessError(f"a token lasts a positive number of seconds, not {expires_in!r}")
        user, groups = check_name("user", user), [check_name("group", g) for g in groups]
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        created = time.time_ns() if now is None else int(now * 1e9)
        expires = None if expires_in is None else created + int(expires_in * 1e9)
        row = TokenRow(token_id, user, _hasher().hash(secret), created, expires, None, note)
        with self.store.db.transaction():
            if admin is not None or groups or self.store.user(user) is None:
                self.store.add_user(actor, user, admin, groups)
            self.store.add_token(actor, row)
        self._forget()
        return f"sbt_{token_id}.{secret}"

    def revoke_token(self, token_id: str, *, actor: str = "admin") -> None:
        self.revoke_tokens([token_id], actor=actor)

    def revoke_tokens(self, token_ids: Iterable[str], *, actor: str = "admin") -> None:
        """Revoke every token of ``token_ids`` (ids or tokens) in one transaction, or none: an
        unknown one is refused (naming it) before any is revoked."""
        ids = list(dict.fromkeys(check_token_id(t) for t in token_ids))
        with self.store.db.transaction():
            for token_id in ids:
                if self.store.token(token_id) is None:
                    raise AccessError(f"no token {token_id!r}")
            for token_id in ids:
                self.store.revoke_token(actor, token_id)
        self._forget()

    def grant(self, kind: str, name: str, pattern: str, level: str | None, *, actor: str = "admin") -> None:
        """Give ``level`` on collections matching ``pattern`` to a user, a group or ``*``;
        ``level=None`` takes the grant away."""
        check_pattern("a rule's collection pattern", pattern)
        self.store.set_rule(actor, principal(kind, name), pattern, None if level is None else check_level(level))
        self._forget()

    # -- authentication ---------------------------------------------------------

    def authenticate(self, token: str | None, now: float | None = None) -> User:
        """The user a bearer token belongs to; AuthenticationError if it is missing, malformed,
        unknown, revoked or expired (all with the same message: nothing to learn from it)."""
        refused = AuthenticationError("a valid bearer token is required (missing, invalid, expired or revoked)")
        match = _TOKEN.fullmatch(token or "")
        if match is None:
            raise refused
        now_ns = time.time_ns() if now is None else int(now * 1e9)
        version = self._current()
        digest = hashlib.sha256(token.encode()).hexdigest()
        row = self._tokens.get(digest)
        if row is None:
            row = self.store.token(match.group(1))
            from argon2.exceptions import InvalidHashError, VerificationError

            # the secret is checked even for an unknown or revoked id (against a hash it cannot
            # match), so that the time of a refusal does not tell which ids exist
            try:
                _hasher().verify(_decoy_hash() if row is None else row.secret_hash, match.group(2))
            except (VerificationError, InvalidHashError):
                raise refused from None
            if row is None or row.revoked_ns is not None:
                raise refused
            self._keep(self._tokens, digest, row, version)
        if row.expires_ns is not None and now_ns >= row.expires_ns:
            raise refused
        return self._user(row.user, now_ns, version)

    def user(self, name: str, now_ns: int | None = None) -> User:
        """A user with the rules that apply to them now."""
        version = self._current()
        return self._user(name, time.time_ns() if now_ns is None else now_ns, version)

    def _user(self, name: str, now_ns: int, version: int | None) -> User:
        found = self._users.get(name)
        if found is None:
            found = self._load_user(name)
            self._keep(self._users, name, found, version)
        return dataclasses.replace(found, now_ns=now_ns)

    def _load_user(self, name: str) -> User:
        found = self.store.user(name)
        if found is None:
            raise AuthenticationError("a valid bearer token is required (missing, invalid, expired or revoked)")
        admin, groups = found
        mine = {"*", f"user:{name}", *(f"group:{g}" for g in groups)}
        rules = tuple((pattern, level) for who, pattern, level in self.store.rule_rows() if who in mine)
        embargoes = () if admin else tuple(e for e in self.store.embargo_rows() if not set(e.groups) & set(groups))
        return User(name, admin, groups, rules, embargoes)

    def set_quota(self, kind: str, name: str, *, max_bytes: int | None = None, max_datasets: int | None = None,
                  actor: str = "admin") -> None:
        """Limit the bytes and/or datasets of a user's area ``u/<user>`` (kind ``user``) or a group's
        ``g/<group>`` (kind ``group``); None lifts that limit."""
        if kind not in ("user", "group"):
            raise AccessError(f"a quota is a user's or a group's, not a {kind!r}'s")
        for value in (max_bytes, max_datasets):
            if value is not None and not (isinstance(value, int) and 0 <= value < 2**63):
                raise AccessError(f"a quota is a number of bytes or datasets, not {value!r}")
        self.store.set_quota(actor, principal(kind, name), max_bytes, max_datasets)

    def usage(self, kind: str, name: str) -> dict[str, int | None]:
        """Datasets and bytes in a user's or group's area, with its quota (None: unlimited)."""
        area = f"{'u' if kind == 'user' else 'g'}/{check_name(kind, name)}"
        count, size = self.store.usage(area)
        quota = self.store.quota(principal(kind, name)) or (None, None)
        return {"datasets": count, "bytes": size, "max_datasets": quota[1], "max_bytes": quota[0]}

    def check_quota(self, run: str, new_bytes: int, new_datasets: int) -> None:
        """QuotaExceededError if writing this much into ``run`` would take its user's or group's
        area over its quota (RUNs outside ``u/`` and ``g/`` have none), the room other writes
        hold (:meth:`reserving`) counted as used.  A write calls :meth:`check_quota_locked`,
        which locks the area first, so that no other write into it comes between the check and
        the commit."""
        area = quota_area(run)
        if area is None:
            return
        kind, name = area
        used = self.usage(kind, name)
        shown = f"{'u' if kind == 'user' else 'g'}/{name}"
        held = dict(zip(("datasets", "bytes"), self.store.reserved(shown, time.time_ns())))
        for what, new in (("bytes", new_bytes), ("datasets", new_datasets)):
            limit = used[f"max_{what}"]
            if limit is not None and used[what] + held[what] + new > limit:
                writing = f" ({held[what]} more held by writes under way)" if held[what] else ""
                raise QuotaExceededError(f"{shown} holds {used[what]} {what} of its quota of {limit}{writing}; "
                                         f"this write of {new} more is refused")

    def check_quota_locked(self, run: str, new_bytes: int, new_datasets: int) -> None:
        """:meth:`check_quota` with ``run``'s quota area locked until the current write transaction
        ends: called inside the write's own transaction, no other write into the area comes
        between the check and the commit (two uploads at once cannot both pass a check only one
        of them fits)."""
        area = quota_area(run)
        if area is None:
            return
        self.store.lock_area("/".join(area))
        self.check_quota(run, new_bytes, new_datasets)

    @contextlib.contextmanager
    def reserving(self, sizes: Mapping[str, tuple[int, int]], seconds: float = 3600.0) -> Iterator[None]:
        """Check and hold room for a write made in transactions of its own (a recompute), given as
        (bytes, datasets) per RUN: the check and the reservation are one transaction with each
        quota area locked, so two such writes cannot both pass a check only one of them fits;
        every later check counts the room held until the block ends (or, for a server that died
        in it, ``seconds`` later)."""
        areas: dict[tuple[str, str], tuple[str, int, int]] = {}
        for run, (size, count) in sizes.items():
            area = quota_area(run)
            if area is not None:
                _, held_size, held_count = areas.get(area, (run, 0, 0))
                areas[area] = (run, held_size + size, held_count + count)
        if not areas:
            yield
            return
        reservation, now = secrets.token_hex(16), time.time_ns()
        with self.store.db.transaction():
            for area in sorted(areas):
                self.store.lock_area("/".join(area))  # the key every write into the area locks
            for (kind, name), (run, size, count) in sorted(areas.items()):
                self.check_quota(run, size, count)
                self.store.reserve(reservation, f"{'u' if kind == 'user' else 'g'}/{name}", size, count, now,
                                   now + int(seconds * 1e9))
        try:
            yield
        finally:
            self.store.release(reservation)

    def add_embargo(self, dataset_types: str, collections: str, hours: float, groups: Iterable[str], *,
                    actor: str = "admin") -> None:
        """Hide datasets of types matching ``dataset_types`` in RUNs matching ``collections`` from
        everyone outside ``groups`` until ``hours`` after their exposure (or visit, or observing
        day) ends; then they are visible to whoever may read their RUN, with nothing copied."""
        if not (0 < hours < 1e6):
            raise AccessError(f"an embargo lasts a positive number of hours, not {hours!r}")
        check_pattern("an embargo's dataset type pattern", dataset_types)
        check_pattern("an embargo's collection pattern", collections)
        self.store.add_embargo(actor, dataset_types, collections, float(hours),
                               [check_name("group", g) for g in groups])
        self._forget()
