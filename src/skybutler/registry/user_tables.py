"""User tables: tables of their own that a user or operator adds to the registry.

A user table (say ``quality``, one row per visit with a ``seeing`` column) is keyed by
the required dimensions of a dimension group and has typed value columns.  Queries
join it by name: ``quality.seeing < 0.8`` in a where-clause compares the ``seeing`` of
the row whose key is the query row's data ID (a data ID without a row matches no
comparison, like NULL).

Each table lives in the database as ``user_<name>``, with a primary key on its
dimensions and foreign keys to their records.  The list of tables is recorded in
``skybutler_meta`` as ``user_table:<name>`` entries (JSON: dimensions and column
types), so a reopened registry knows them without reflecting the database.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..dimensions import DataCoordinate, DimensionGroup
from ..errors import ConflictingDefinitionError, DimensionError, RegistryError
from .database import Database
from .schema import NAME_LENGTH, RegistrySchema, foreign_keys_to, key_type

META_PREFIX = "user_table:"
TABLE_PREFIX = "user_"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}\Z")
_KINDS = {"int": sa.BigInteger, "float": sa.Float, "str": lambda: sa.String(NAME_LENGTH), "bool": sa.Boolean}
_PY_KINDS = {int: "int", float: "float", str: "str", bool: "bool"}


@dataclass(frozen=True)
class UserTable:
    """One registered user table: its name, key dimensions, value columns and SQL table."""

    name: str
    group: DimensionGroup
    columns: dict[str, str]  # column name -> int | float | str | bool
    table: sa.Table

    @property
    def dimensions(self) -> tuple[str, ...]:
        return self.group.required

    def definition(self) -> dict[str, Any]:
        return {"dimensions": list(self.group.required), "columns": dict(self.columns)}


def column_kind(value: Any) -> str:
    """A column type given as a Python type (float) or its name ('float')."""
    kind = _PY_KINDS.get(value, value)
    if kind not in _KINDS:
        raise RegistryError(f"unsupported user-table column type {value!r}; use int, float, str or bool")
    return kind


class UserTableStore:
    """Registers user tables, inserts their rows, and finds them for queries."""

    def __init__(self, db: Database, schema: RegistrySchema):
        self.db = db
        self.schema = schema
        self.universe = schema.universe
        self._tables: dict[str, UserTable] | None = None

    # -- definitions ----------------------------------------------------------

    def _load(self) -> dict[str, UserTable]:
        if self._tables is None:
            meta = self.schema.meta
            with self.db.reading() as conn:
                rows = conn.execute(sa.select(meta.c.key, meta.c.value).where(
                    meta.c.key.startswith(META_PREFIX, autoescape=True))).all()
            tables = {}
            for key, value in rows:
                name = key[len(META_PREFIX):]
                spec = json.loads(value)
                tables[name] = self._declare(name, self.universe.group(spec["dimensions"]), spec["columns"])
            self._tables = tables
        return self._tables

    def _declare(self, name: str, group: DimensionGroup, columns: Mapping[str, str]) -> UserTable:
        dims = list(group.required)
        self.schema.declare_dimensions(dims)  # the tables its foreign keys point to
        table = sa.Table(
            f"{TABLE_PREFIX}{name}", self.schema.metadata,
            *[sa.Column(d, key_type(self.universe[d]), primary_key=True, autoincrement=False) for d in dims],
            *[sa.Column(c, _KINDS[kind](), nullable=True) for c, kind in columns.items()],
            *foreign_keys_to(self.universe, group.required),
            extend_existing=True)
        return UserTable(name, group, dict(columns), table)

    def refresh(self) -> None:
        self._tables = None

    def get(self, name: str) -> UserTable | None:
        """The user table called ``name``, or None (re-reads once in case another client added it)."""
        found = self._load().get(name)
        if found is None:
            self.refresh()
            found = self._load().get(name)
        return found

    def all(self) -> list[UserTable]:
        return sorted(self._load().values(), key=lambda t: t.name)

    def register(self, name: str, dimensions: Iterable[str], columns: Mapping[str, Any],
                 taken: Iterable[str] = ()) -> bool:
        """Create a user table; False if it exists with the same definition, an error if differently.

        ``taken`` are other names a where-clause resolves (dataset types), which a user
        table may not shadow.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise RegistryError(f"user table name {name!r} must be an identifier of at most 48 characters")
        if name in self.universe.elements or name in set(taken):
            raise RegistryError(f"user table name {name!r} is already a dimension element or dataset type name")
        try:
            group = self.universe.group(dimensions)
        except DimensionError as err:
            raise RegistryError(f"user table {name!r}: {err}") from None
        if not group.required:
            raise RegistryError(f"user table {name!r} needs at least one dimension")
        kinds = {}
        for column, kind in columns.items():
            if not isinstance(column, str) or not _NAME.match(column):
                raise RegistryError(f"user table {name!r}: column name {column!r} must be an identifier")
            if column in group.names:
                raise RegistryError(f"user table {name!r}: column {column!r} is one of its dimensions")
            kinds[column] = column_kind(kind)
        if not kinds:
            raise RegistryError(f"user table {name!r} needs at least one column")
        existing = self.get(name)
        wanted = {"dimensions": list(group.required), "columns": kinds}
        if existing is not None:
            if existing.definition() != wanted:
                raise ConflictingDefinitionError(
                    f"user table {name!r} exists as {existing.definition()}, not {wanted}")
            return False
        declared = self._declare(name, group, kinds)
        try:
            with self.db.transaction() as conn:
                declared.table.create(conn)
                conn.execute(self.schema.meta.insert(), [{"key": META_PREFIX + name, "value": json.dumps(wanted)}])
        except BaseException:
            self.schema.metadata.remove(declared.table)
            self.refresh()
            raise
        self._load()[name] = declared
        return True

    # -- rows -----------------------------------------------------------------

    def insert(self, name: str, rows: Iterable[Mapping[str, Any]], replace: bool = False) -> int:
        """Insert rows (data-ID values + column values) in one transaction; with ``replace``,
        a row whose key exists replaces the stored one.  Returns how many rows were written."""
        user = self.get(name)
        if user is None:
            raise RegistryError(f"no user table named {name!r}")
        dims = list(user.group.required)
        values = []
        for row in rows:
            unknown = set(row) - set(user.group.names) - set(user.columns)
            if unknown:
                raise RegistryError(f"user table {name!r} has no column(s) {', '.join(sorted(unknown))}; "
                                    f"columns: {', '.join(dims + list(user.columns))}")
            key = DataCoordinate.standardize(user.group, {k: v for k, v in row.items() if k in user.group.names})
            values.append({**key.required, **{c: row.get(c) for c in user.columns}})
        if not values:
            return 0
        table = user.table
        with self.db.transaction() as conn:
            if replace:
                keys = [tuple(v[d] for d in dims) for v in values]
                for start in range(0, len(keys), 500):
                    chunk = keys[start:start + 500]
                    cols = [table.c[d] for d in dims]
                    cond = sa.tuple_(*cols).in_(chunk) if len(cols) > 1 else cols[0].in_([k[0] for k in chunk])
                    conn.execute(table.delete().where(cond))
            guard = conn.begin_nested() if self.db.dialect != "sqlite" else contextlib.nullcontext()
            try:
                with guard:
                    conn.execute(table.insert(), values)
            except sa.exc.IntegrityError as err:
                if len({tuple(v[d] for d in dims) for v in values}) < len(values):
                    raise RegistryError(f"user table {name!r}: the same key is given twice") from err
                raise RegistryError(
                    f"user table {name!r}: a row's key already exists (pass replace=True to overwrite) or names "
                    f"a dimension record that does not exist") from err
        return len(values)
