"""Who may use a served repository: users, groups, bearer tokens, collection rules,
embargo rules, quotas and the audit log, in the registry's own database.

These tables are made the first time an administrator writes one of them (a
repository nobody serves never has them), in a metadata collection of their own so
the registry schema proper is unchanged.  Token secrets are never stored: only their
argon2 hashes (computed by :mod:`skybutler.access`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .database import Database
from .schema import RegistrySchema


@dataclass(frozen=True)
class TokenRow:
    token_id: str
    user: str
    secret_hash: str
    created_ns: int
    expires_ns: int | None
    revoked_ns: int | None
    note: str


@dataclass(frozen=True)
class EmbargoRow:
    rule_id: int
    dataset_types: str
    collections: str
    hours: float
    groups: tuple[str, ...]


class AccessStore:
    """Reads and writes the access tables."""

    def __init__(self, db: Database, schema: RegistrySchema):
        self.db = db
        self.schema = schema
        md = sa.MetaData(schema=db.schema)
        self.users = sa.Table(
            "access_user", md,
            sa.Column("name", sa.String(128), primary_key=True),
            sa.Column("admin", sa.Boolean, nullable=False, default=False))
        self.members = sa.Table(
            "access_group_member", md,
            sa.Column("group_name", sa.String(128), primary_key=True),
            sa.Column("user_name", sa.String(128), sa.ForeignKey("access_user.name", ondelete="CASCADE"),
                      primary_key=True))
        self.tokens = sa.Table(
            "access_token", md,
            sa.Column("token_id", sa.String(32), primary_key=True),
            sa.Column("user_name", sa.String(128), sa.ForeignKey("access_user.name", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("secret_hash", sa.String(256), nullable=False),
            sa.Column("created_ns", sa.BigInteger, nullable=False),
            sa.Column("expires_ns", sa.BigInteger, nullable=True),
            sa.Column("revoked_ns", sa.BigInteger, nullable=True),
            sa.Column("note", sa.Text, nullable=False, default=""))
        self.rules = sa.Table(
            "access_rule", md,
            sa.Column("principal", sa.String(140), primary_key=True),
            sa.Column("pattern", sa.String(512), primary_key=True),
            sa.Column("level", sa.String(8), nullable=False))
        self.embargoes = sa.Table(
            "access_embargo", md,
            sa.Column("rule_id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("dataset_types", sa.String(512), nullable=False),
            sa.Column("collections", sa.String(512), nullable=False),
            sa.Column("hours", sa.Float, nullable=False),
            sa.Column("groups", sa.Text, nullable=False))
        self.quotas = sa.Table(
            "access_quota", md,
            sa.Column("principal", sa.String(140), primary_key=True),
            sa.Column("max_bytes", sa.BigInteger, nullable=True),
            sa.Column("max_datasets", sa.BigInteger, nullable=True))
        self.audit = sa.Table(
            "access_audit", md,
            sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("time_ns", sa.BigInteger, nullable=False),
            sa.Column("actor", sa.String(128), nullable=False),
            sa.Column("action", sa.String(64), nullable=False),
            sa.Column("detail", sa.Text, nullable=False))
        self._tables = [self.users, self.members, self.tokens, self.rules, self.embargoes, self.quotas, self.audit]
        self._exists: bool | None = None
        # Room held in a quota area by a write made in transactions of its own (a recompute): made on
        # first use, apart from the tables above (which repositories served before it already have).
        self.reservations = sa.Table(
            "access_quota_reservation", md,
            sa.Column("reservation_id", sa.String(32), primary_key=True),
            sa.Column("area", sa.String(140), primary_key=True),
            sa.Column("bytes", sa.BigInteger, nullable=False),
            sa.Column("datasets", sa.BigInteger, nullable=False),
            sa.Column("expires_ns", sa.BigInteger, nullable=False))
        self._reserving: bool | None = None

    # -- tables ---------------------------------------------------------------

    def _ensure(self, conn: sa.Connection, joined: bool) -> None:
        """Create the tables on first use.  Made inside an enclosing transaction (``joined``), they
        may yet be rolled back with it: then they are not taken as there until looked for again."""
        if not self._exists:
            self.db.create_tables(conn, self._tables)
            self._exists = None if joined else True

    def _present(self) -> bool:
        if not self._exists:
            with self.db.reading() as conn:
                self._exists = sa.inspect(conn).has_table("access_audit", schema=self.users.schema)
        return bool(self._exists)

    def _select(self, stmt: sa.Select) -> list[sa.Row]:
        if not self._present():
            return []
        with self.db.reading() as conn:
            return list(conn.execute(stmt))

    def _write(self, actor: str, action: str, detail: str, *statements: Any) -> None:
        """Run ``statements`` and record them in the audit log, in one transaction."""
        joined = self.db.in_transaction
        with self.db.transaction() as conn:
            self._ensure(conn, joined)
            for stmt in statements:
                conn.execute(stmt)
            conn.execute(self.audit.insert().values(time_ns=time.time_ns(), actor=actor, action=action,
                                                    detail=detail))

    # -- users and groups -----------------------------------------------------

    def add_user(self, actor: str, name: str, admin: bool | None, groups: Sequence[str]) -> None:
        """Add ``name`` or update them; ``admin=None`` keeps an existing user's flag (False if new)."""
        joined = self.db.in_transaction
        with self.db.transaction() as conn:
            self._ensure(conn, joined)
            exists = conn.execute(sa.select(self.users.c.admin).where(self.users.c.name == name)).first()
            if admin is None:
                admin = bool(exists[0]) if exists else False
            stmt = (self.users.update().where(self.users.c.name == name).values(admin=admin) if exists
                    else self.users.insert().values(name=name, admin=admin))
            self._write(actor, "user", f"{name} admin={admin} groups={','.join(groups)}", stmt,
                        *[self.members.insert().values(group_name=g, user_name=name)
                          for g in groups if (g, name) not in self._memberships(conn)])

    def _memberships(self, conn: sa.Connection) -> set[tuple[str, str]]:
        return {(g, u) for g, u in conn.execute(sa.select(self.members.c.group_name, self.members.c.user_name))}

    def remove_from_group(self, actor: str, name: str, group: str) -> None:
        self._write(actor, "ungroup", f"{name} from {group}", self.members.delete().where(
            (self.members.c.user_name == name) & (self.members.c.group_name == group)))

    def user(self, name: str) -> tuple[bool, tuple[str, ...]] | None:
        """(admin, groups) of a user, or None if there is no such user."""
        rows = self._select(sa.select(self.users.c.admin).where(self.users.c.name == name))
        if not rows:
            return None
        groups = self._select(sa.select(self.members.c.group_name).where(self.members.c.user_name == name))
        return bool(rows[0][0]), tuple(sorted(g for (g,) in groups))

    def user_names(self) -> list[str]:
        return sorted(n for (n,) in self._select(sa.select(self.users.c.name)))

    # -- tokens ---------------------------------------------------------------

    def add_token(self, actor: str, row: TokenRow) -> None:
        self._write(actor, "token-create", f"{row.token_id} for {row.user}", self.tokens.insert().values(
            token_id=row.token_id, user_name=row.user, secret_hash=row.secret_hash, created_ns=row.created_ns,
            expires_ns=row.expires_ns, revoked_ns=None, note=row.note))

    def token(self, token_id: str) -> TokenRow | None:
        rows = self._select(sa.select(self.tokens).where(self.tokens.c.token_id == token_id))
        return _token(rows[0]) if rows else None

    def token_rows(self, user: str | None = None) -> list[TokenRow]:
        stmt = sa.select(self.tokens).order_by(self.tokens.c.created_ns)
        if user is not None:
            stmt = stmt.where(self.tokens.c.user_name == user)
        return [_token(r) for r in self._select(stmt)]

    def revoke_token(self, actor: str, token_id: str) -> bool:
        if self.token(token_id) is None:
            return False
        self._write(actor, "token-revoke", token_id, self.tokens.update().where(
            self.tokens.c.token_id == token_id).values(revoked_ns=time.time_ns()))
        return True

    # -- collection rules -----------------------------------------------------

    def set_rule(self, actor: str, principal: str, pattern: str, level: str | None) -> None:
        """Grant ``level`` on collections matching ``pattern`` (None: take the grant away)."""
        where = (self.rules.c.principal == principal) & (self.rules.c.pattern == pattern)
        statements: list[Any] = [self.rules.delete().where(where)]
        if level is not None:
            statements.append(self.rules.insert().values(principal=principal, pattern=pattern, level=level))
        self._write(actor, "grant" if level else "revoke", f"{level or '-'} on {pattern} to {principal}",
                    *statements)

    def rule_rows(self) -> list[tuple[str, str, str]]:
        return [tuple(r) for r in self._select(sa.select(self.rules.c.principal, self.rules.c.pattern,
                                                         self.rules.c.level).order_by(self.rules.c.pattern))]

    # -- embargoes and quotas -------------------------------------------------

    def add_embargo(self, actor: str, dataset_types: str, collections: str, hours: float,
                    groups: Sequence[str]) -> None:
        self._write(actor, "embargo", f"{dataset_types} in {collections}: {hours} h, groups {','.join(groups)}",
                    self.embargoes.insert().values(dataset_types=dataset_types, collections=collections,
                                                   hours=hours, groups=",".join(groups)))

    def remove_embargo(self, actor: str, rule_id: int) -> None:
        self._write(actor, "embargo-remove", str(rule_id),
                    self.embargoes.delete().where(self.embargoes.c.rule_id == rule_id))

    def embargo_rows(self) -> list[EmbargoRow]:
        return [EmbargoRow(r.rule_id, r.dataset_types, r.collections, r.hours,
                           tuple(g for g in r.groups.split(",") if g))
                for r in self._select(sa.select(self.embargoes).order_by(self.embargoes.c.rule_id))]

    def set_quota(self, actor: str, principal: str, max_bytes: int | None, max_datasets: int | None) -> None:
        self._write(actor, "quota", f"{principal}: bytes={max_bytes} datasets={max_datasets}",
                    self.quotas.delete().where(self.quotas.c.principal == principal),
                    self.quotas.insert().values(principal=principal, max_bytes=max_bytes,
                                                max_datasets=max_datasets))

    def quota(self, principal: str) -> tuple[int | None, int | None] | None:
        rows = self._select(sa.select(self.quotas.c.max_bytes, self.quotas.c.max_datasets)
                            .where(self.quotas.c.principal == principal))
        return (rows[0][0], rows[0][1]) if rows else None

    def usage(self, area: str) -> tuple[int, int]:
        """(datasets, bytes of their files) of the RUNs ``area`` and ``area/...``."""
        ds, loc, col = self.schema.dataset, self.schema.location, self.schema.collection
        escaped = area.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = (sa.select(sa.func.count(ds.c.id), sa.func.coalesce(sa.func.sum(loc.c.size), 0))
                .select_from(ds.join(col, col.c.collection_id == ds.c.run_id)
                             .outerjoin(loc, loc.c.dataset_id == ds.c.id))
                .where((col.c.name == area) | col.c.name.like(f"{escaped}/%", escape="\\")))
        with self.db.reading() as conn:
            count, size = conn.execute(stmt).one()
        return int(count), int(size)

    def _has_reservations(self) -> bool:
        if not self._reserving:
            with self.db.reading() as conn:
                self._reserving = sa.inspect(conn).has_table(self.reservations.name, schema=self.users.schema)
        return bool(self._reserving)

    def reserved(self, area: str, now_ns: int) -> tuple[int, int]:
        """(datasets, bytes) held in ``area`` by reservations that have not expired."""
        if not self._has_reservations():
            return 0, 0
        r = self.reservations
        stmt = (sa.select(sa.func.coalesce(sa.func.sum(r.c.datasets), 0), sa.func.coalesce(sa.func.sum(r.c.bytes), 0))
                .where(r.c.area == area, r.c.expires_ns > now_ns))
        with self.db.reading() as conn:
            count, size = conn.execute(stmt).one()
        return int(count), int(size)

    def reserve(self, reservation_id: str, area: str, size: int, count: int, now_ns: int, expires_ns: int) -> None:
        """Hold room in ``area`` (inside the caller's transaction, after :meth:`lock_area`); the
        area's expired reservations (of a server that died mid-write) are dropped."""
        r = self.reservations
        with self.db.transaction() as conn:
            if not self._has_reservations():
                self.db.create_tables(conn, [r])
                self._reserving = True
            conn.execute(r.delete().where(r.c.area == area, r.c.expires_ns <= now_ns))
            conn.execute(r.insert().values(reservation_id=reservation_id, area=area, bytes=size, datasets=count,
                                           expires_ns=expires_ns))

    def release(self, reservation_id: str) -> None:
        if self._has_reservations():
            with self.db.transaction() as conn:
                conn.execute(self.reservations.delete().where(self.reservations.c.reservation_id == reservation_id))

    def lock_area(self, area: str) -> None:
        """Hold, until the current write transaction ends, the right to write into a quota area
        (or to record embargo releases): two writes into one area then check its usage one after
        the other.  On SQLite the write
        transaction already holds the database's only write lock (``BEGIN IMMEDIATE``); on
        PostgreSQL a transaction-scoped advisory lock keyed by the area's name is taken."""
        if self.db.dialect != "postgresql":
            return
        import hashlib

        key = int.from_bytes(hashlib.sha256(f"skybutler-quota:{area}".encode()).digest()[:8], "big", signed=True)
        with self.db.transaction() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))

    # -- audit ----------------------------------------------------------------

    def record(self, actor: str, action: str, detail: str) -> None:
        self._write(actor, action, detail)

    def version(self) -> int | None:
        """The latest audit entry's number: it changes with every change to the access tables."""
        if not self._present():
            return None
        with self.db.reading() as conn:
            return conn.execute(sa.select(sa.func.max(self.audit.c.entry_id))).scalar()

    def releases_recorded_until(self) -> int | None:
        """The time (POSIX ns) up to which embargo releases are in the audit log (None: none yet)."""
        a = self.audit
        rows = self._select(sa.select(a.c.detail).where(a.c.action == "embargo-sweep")
                            .order_by(a.c.entry_id.desc()).limit(1))
        return int(rows[0][0].split()[-1]) if rows else None

    def record_releases(self, releases: Sequence[str], since_ns: int | None, until_ns: int) -> bool:
        """Add one audit entry per release and the mark of how far they go, in one transaction,
        if the mark is still ``since_ns`` (else another server recorded them meanwhile: False)."""
        joined = self.db.in_transaction
        with self.db.transaction() as conn:
            self._ensure(conn, joined)
            self.lock_area("embargo-releases")
            if self.releases_recorded_until() != since_ns:
                return False
            now = time.time_ns()
            rows = [{"time_ns": now, "actor": "embargo", "action": "embargo-release", "detail": d} for d in releases]
            rows.append({"time_ns": now, "actor": "embargo", "action": "embargo-sweep",
                         "detail": f"releases recorded until {until_ns}"})
            conn.execute(self.audit.insert(), rows)
        return True

    def audit_rows(self, limit: int = 100) -> list[tuple[int, str, str, str]]:
        a = self.audit
        rows = self._select(sa.select(a.c.time_ns, a.c.actor, a.c.action, a.c.detail)
                            .order_by(a.c.entry_id.desc()).limit(limit))
        return [tuple(r) for r in rows]


def _token(row: Any) -> TokenRow:
    return TokenRow(row.token_id, row.user_name, row.secret_hash, row.created_ns, row.expires_ns, row.revoked_ns,
                    row.note)
