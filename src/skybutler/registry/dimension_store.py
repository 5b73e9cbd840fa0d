"""Storing and reading dimension records, and expanding data IDs from them.

Records are written in bulk (one executemany per element); spatial records also
get their sky-pixel overlap rows.  Lookups that every put needs (does this visit
exist, what filter does it imply) are cached, so a long run of puts asks the
database once per new visit, not once per dataset.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..dimensions import DataCoordinate, DataIdValue, DimensionGroup, DimensionRecord, DimensionUniverse
from ..dimensions import regions as sky
from ..errors import DataIdError, DimensionRecordError
from ..timespan import Timespan
from . import bulk
from .database import Database
from .schema import RegistrySchema

#: Times an insert with ``skip_existing`` looks again after another client inserted some of its records.
_SKIP_EXISTING_ATTEMPTS = 3
#: Records whose implied values are kept (all elements together): a long-running server
#: reads records of ever more visits and patches, so the cache is emptied past this size
#: (a few hundred bytes an entry: ~100 MB at most), and refilled a batch at a time.
_IMPLIED_LIMIT = 200_000
#: Expanded data IDs kept for put and ingest, emptied past this size likewise.
_EXPANDED_LIMIT = 200_000

class DimensionRecordStore:
    """Reads and writes the element tables of one registry."""

    def __init__(self, db: Database, schema: RegistrySchema):
        self.db = db
        self.schema = schema
        self.universe: DimensionUniverse = schema.universe
        #: element -> identity tuple -> implied values (a dict), for known records.
        self._implied_cache: dict[str, dict[tuple, dict[str, Any]]] = {}
        #: (group's required names, required values) -> expanded values, for put and ingest.
        self._expanded_cache: dict[tuple, dict[str, Any]] = {}

    # -- conversion between records and rows ----------------------------------

    def _to_row(self, record: DimensionRecord) -> dict[str, Any]:
        element = record.element
        row: dict[str, Any] = {}
        for name, value in record.items():
            if name == "region":
                row["region"] = sky.encode(value)
            elif name == "timespan":
                row["timespan_begin"], row["timespan_end"] = (None, None) if value is None else value.to_ns()
            else:
                row[element.column_of(name)] = value
        return row

    def from_row(self, element_name: str, row: Mapping[str, Any]) -> DimensionRecord:
        element = self.universe[element_name]
        values: dict[str, Any] = {}
        for dim in element.identity + element.implies:
            values[dim] = row[element.column_of(dim)]
        for name in element.fields:
            values[name] = row[name]
        if element.region:
            values["region"] = sky.decode(row["region"])
        if element.timespan:
            b, e = row["timespan_begin"], row["timespan_end"]
            values["timespan"] = None if b is None and e is None else Timespan.from_ns(b, e)
        return DimensionRecord(element, values)

    def _overlap_rows(self, record: DimensionRecord) -> list[tuple]:
        """The record's skypix overlap rows: its identity, then system, level and pixel index
        (the column order of :meth:`_overlap_columns`)."""
        region = record.get("region")
        index = self.universe.spatial_index
        if region is None or index is None:
            return []
        system, level = self.universe[index].skypix
        ident = tuple(record[d] for d in record.element.identity)
        return [(*ident, system, level, pix) for pix in sky.envelope(region, system, level)]

    def _overlap_columns(self, element_name: str) -> list[str]:
        element = self.universe[element_name]
        return [element.column_of(d) for d in element.identity] + ["skypix_system", "skypix_level", "skypix_index"]

    # -- writes ---------------------------------------------------------------

    def insert(self, element_name: str, rows: Iterable[Mapping[str, Any] | DimensionRecord],
               skip_existing: bool = False) -> int:
        """Insert records in one statement; a duplicate raises unless ``skip_existing``.

        With ``skip_existing`` the records already there are looked up inside the writing
        transaction, and looked up again if another client inserts some of them meanwhile
        (PostgreSQL lets two transactions both find a record missing), so two identical
        inserts at once both succeed."""
        records = [r if isinstance(r, DimensionRecord) else DimensionRecord.validate(self.universe, element_name, r)
                   for r in rows]
        if not records:
            return 0
        table = self.schema.elements[element_name]
        with self.db.transaction() as conn:
            for attempt in range(_SKIP_EXISTING_ATTEMPTS if skip_existing else 1):
                if skip_existing:
                    existing = self._existing_identities(element_name, [r.identity for r in records])
                    records = [r for r in records if r.identity not in existing]
                    if not records:
                        return 0
                try:
                    with self.db.savepoint(conn):  # positional rows through the driver: no per-row SQLAlchemy work
                        columns = [c.name for c in table.columns]
                        bulk.insert_rows(conn, table, columns,
                                         [tuple(map(self._to_row(r).get, columns)) for r in records])
                    self.db.note_inserted(table, len(records))
                    break
                except sa.exc.IntegrityError as err:
                    if not skip_existing or attempt == _SKIP_EXISTING_ATTEMPTS - 1:
                        raise self._explain_integrity(element_name, records, err) from err
            overlap = self.schema.skypix_overlaps.get(element_name)
            if overlap is not None:
                rows = [o for r in records for o in self._overlap_rows(r)]
                if rows:
                    bulk.insert_rows(conn, overlap, self._overlap_columns(element_name), rows)
                    self.db.note_inserted(overlap, len(rows))
        return len(records)

    def sync(self, element_name: str, row: Mapping[str, Any], update: bool = False) -> bool:
        """Insert a record unless an identical one exists; returns whether it was inserted.

        A stored record that differs raises :class:`DimensionRecordError` naming the
        differing fields (or is replaced when ``update`` is true).
        """
        record = DimensionRecord.validate(self.universe, element_name, row)
        with self.db.transaction():
            existing = self.fetch_one(element_name, record.identity)
            if existing is None:
                if self.insert(element_name, [record], skip_existing=True):
                    return True
                existing = self.fetch_one(element_name, record.identity)  # another client was first
            if existing == record:
                return False
            diffs = [k for k in record if _differs(record[k], existing.get(k))]
            if not update:
                raise DimensionRecordError(
                    f"{element_name} record {dict(zip(record.element.identity, record.identity))} exists with "
                    f"different {', '.join(diffs)}: stored {[existing.get(k) for k in diffs]}, "
                    f"given {[record[k] for k in diffs]}")
            self.delete(element_name, [record.identity])
            self.insert(element_name, [record])
            return True

    def delete(self, element_name: str, identities: Iterable[tuple]) -> None:
        element = self.universe[element_name]
        table = self.schema.elements[element_name]
        cols = [table.c[element.column_of(d)] for d in element.identity]
        with self.db.transaction() as conn:
            for ident in identities:
                conn.execute(table.delete().where(*[c == v for c, v in zip(cols, ident)]))
        self.clear_caches()

    def clear_caches(self) -> None:
        """Forget cached lookups (after a delete, or a rolled-back transaction)."""
        self._implied_cache.clear()
        self._expanded_cache.clear()

    def _explain_integrity(self, element_name: str, records: list[DimensionRecord], err: Exception) -> Exception:
        element = self.universe[element_name]
        existing = self._existing_identities(element_name, [r.identity for r in records])
        if existing:
            shown = ", ".join(str(dict(zip(element.identity, i))) for i in sorted(existing)[:5])
            return DimensionRecordError(f"{element_name} record(s) already exist: {shown}")
        missing = []
        for dep in element.requires + element.implies:
            dep_ident = self.universe[dep].identity
            keys = {tuple(r[d] for d in dep_ident) for r in records}
            found = self._existing_identities(dep, list(keys))
            missing += [f"{dep} {dict(zip(dep_ident, k))}" for k in sorted(keys - found)]
        if missing:
            return DimensionRecordError(
                f"cannot insert {element_name} records: no record for {', '.join(missing[:5])}")
        return DimensionRecordError(f"cannot insert {element_name} records: {getattr(err, 'orig', err)}")

    # -- reads ----------------------------------------------------------------

    def _existing_identities(self, element_name: str, identities: list[tuple]) -> set[tuple]:
        element = self.universe[element_name]
        table = self.schema.elements[element_name]
        cols = [table.c[element.column_of(d)] for d in element.identity]
        found: set[tuple] = set()
        with self.db.reading() as conn:
            for start in range(0, len(identities), 500):
                chunk = identities[start:start + 500]
                if len(cols) == 1:
                    cond = cols[0].in_([i[0] for i in chunk])
                else:
                    cond = sa.tuple_(*cols).in_(chunk)
                found.update(tuple(r) for r in conn.execute(sa.select(*cols).where(cond)))
        return found

    def fetch_one(self, element_name: str, identity: tuple) -> DimensionRecord | None:
        element = self.universe[element_name]
        table = self.schema.elements[element_name]
        cond = [table.c[element.column_of(d)] == v for d, v in zip(element.identity, identity)]
        with self.db.reading() as conn:
            row = conn.execute(sa.select(table).where(*cond)).mappings().first()
        return None if row is None else self.from_row(element_name, row)

    def fetch_many(self, element_name: str, identities: list[tuple]) -> list[DimensionRecord]:
        """Records of one element by identity (in chunks; missing ones are left out)."""
        element = self.universe[element_name]
        table = self.schema.elements[element_name]
        cols = [table.c[element.column_of(d)] for d in element.identity]
        out: list[DimensionRecord] = []
        with self.db.reading() as conn:
            for start in range(0, len(identities), 500):
                chunk = identities[start:start + 500]
                cond = cols[0].in_([i[0] for i in chunk]) if len(cols) == 1 else sa.tuple_(*cols).in_(chunk)
                out += [self.from_row(element_name, r) for r in conn.execute(sa.select(table).where(cond)).mappings()]
        return out

    def sole_key(self, element_name: str) -> DataIdValue | None:
        """The key of the only record of a dimension that requires no other (the repository's
        one instrument), or None: several records or none, or no cheap way to know (the
        read cache is inactive: PostgreSQL, a transaction).  Queries make such a dimension a
        constant of their results."""
        element = self.universe[element_name]
        if (element.requires or element.key is None or element.skypix is not None
                or element_name not in self.schema.elements or not self.db.read_cache.active()):
            return None
        column = self.schema.elements[element_name].c[element.column_of(element_name)]

        def lookup() -> tuple[DataIdValue, ...]:
            with self.db.reading() as conn:
                return tuple(conn.execute(sa.select(column).limit(2)).scalars())

        found = self.db.read_cache.get(("keys", element_name), lookup)
        return found[0] if len(found) == 1 else None

    def fetch_all(self, element_name: str) -> list[DimensionRecord]:
        table = self.schema.elements[element_name]
        with self.db.reading() as conn:
            return [self.from_row(element_name, r) for r in conn.execute(sa.select(table)).mappings()]

    def implied_values(self, element_name: str, identity: tuple) -> dict[str, Any] | None:
        """The implied dimension values of one record (cached), or None if it does not exist."""
        cache = self._implied_cache.setdefault(element_name, {})
        found = cache.get(identity)
        if found is None:
            self._trim_implied()
            element = self.universe[element_name]
            table = self.schema.elements[element_name]
            cond = [table.c[element.column_of(d)] == v for d, v in zip(element.identity, identity)]
            cols = [table.c[d] for d in element.implies] or [table.c[element.column_of(element.name)]]
            with self.db.reading() as conn:
                row = conn.execute(sa.select(*cols).where(*cond)).first()
            if row is None:
                return None
            found = cache[identity] = {d: row[i] for i, d in enumerate(element.implies)}
        return found

    def expand(self, data_id: DataCoordinate) -> DataCoordinate:
        """Check every dimension's record exists and fill in (or check) implied values."""
        group = data_id.group
        if len(data_id) == len(group.required):  # only identity given: the common, cacheable case
            key = (group.required, data_id.required_values)
            values = self._expanded_cache.get(key)
            if values is None:
                values = self._expand(data_id)._values
                if len(self._expanded_cache) > _EXPANDED_LIMIT:
                    self._expanded_cache.clear()
                self._expanded_cache[key] = values
            return DataCoordinate(group, values)
        return self._expand(data_id)

    def expand_many(self, data_ids: Sequence[DataCoordinate]) -> list[DataCoordinate]:
        """:meth:`expand` for a batch of one group (a put_many or an ingest).

        The records the batch names are fetched with one query per element first; each
        data ID is then a few dictionary look-ups.  Anything unusual (a record not found,
        a value contradicting a record) goes through :meth:`expand`, which explains it.
        """
        if not data_ids:
            return []
        group = data_ids[0].group
        self._trim_implied()  # before the batch's records are fetched: they stay until it is done
        plan = self._expansion_plan(group)
        for name, dims, _ in plan:
            if all(d in group.required for d in dims):
                key_of = _key_function(dims)
                self._prefetch_implied(name, {key_of(d) for d in data_ids})
        steps = [(_key_function(dims), cache) for _, dims, cache in plan]
        names = group.names
        out = []
        for data_id in data_ids:
            values = data_id.as_dict()
            try:
                for key_of, cache in steps:
                    for dim, value in cache[key_of(values)].items():
                        if values.setdefault(dim, value) != value:
                            raise KeyError(dim)
            except KeyError:  # a record not fetched or not there, a contradiction: explained there
                out.append(self.expand(data_id))
                continue
            out.append(DataCoordinate(group, {n: values[n] for n in names if n in values}))
        return out

    def _trim_implied(self) -> None:
        """Empty the implied-values cache once it holds more than ``_IMPLIED_LIMIT`` records
        (each element's dict is emptied in place: an expansion plan holds them)."""
        if sum(map(len, self._implied_cache.values())) > _IMPLIED_LIMIT:
            for cache in self._implied_cache.values():
                cache.clear()

    def _expansion_plan(self, group: DimensionGroup) -> list[tuple[str, tuple[str, ...], dict]]:
        """(element, identity dimensions, its implied-values cache) for each record an expansion
        of ``group`` looks up, each after the elements that imply its identity: the required
        ones, and the implied ones that imply more (an implied record's existence is already
        guaranteed by the record implying it)."""
        pending = [n for n in group.names if self.universe[n].skypix is None
                   and (n in group.required or self.universe[n].implies)]
        known, plan = set(group.required), []
        while pending:
            ready = [n for n in pending if set(self.universe[n].identity) <= known]
            if not ready:  # cannot happen in a consistent universe; expand() handles the rest
                break
            for name in ready:
                element = self.universe[name]
                plan.append((name, tuple(element.identity), self._implied_cache.setdefault(name, {})))
                known.update(element.implies)
                pending.remove(name)
        return plan

    def _prefetch_implied(self, element_name: str, identities: set[tuple]) -> None:
        """Fill the implied-values cache for ``identities`` of one element (missing records stay out)."""
        cache = self._implied_cache.setdefault(element_name, {})
        missing = [i for i in identities if i not in cache]
        if not missing:
            return
        element = self.universe[element_name]
        table = self.schema.elements[element_name]
        keys = [table.c[element.column_of(d)] for d in element.identity]
        implied = [table.c[d] for d in element.implies]
        width = len(keys)
        with self.db.reading() as conn:
            for start in range(0, len(missing), 500):
                chunk = missing[start:start + 500]
                cond = keys[0].in_([i[0] for i in chunk]) if width == 1 else sa.tuple_(*keys).in_(chunk)
                for row in conn.execute(sa.select(*keys, *implied).where(cond)):
                    cache[tuple(row[:width])] = dict(zip(element.implies, row[width:]))

    def _expand(self, data_id: DataCoordinate) -> DataCoordinate:
        values = dict(data_id)
        group = data_id.group
        for name in group.names:
            element = self.universe[name]
            if element.skypix is not None:
                continue
            if name not in values:
                continue  # filled in below, once the implying element is processed
            identity = tuple(values[d] for d in element.identity)
            implied = self.implied_values(name, identity)
            if implied is None:
                raise DataIdError(f"no {name} record for {dict(zip(element.identity, identity))} "
                                  f"(data ID {data_id.required})")
            for dim, value in implied.items():
                given = values.get(dim)
                if given is not None and given != value:
                    raise DataIdError(f"data ID {data_id.required}: {name} {identity[-1]!r} implies "
                                      f"{dim}={value!r}, but {dim}={given!r} was given")
                values[dim] = value
        # Implied dimensions filled late (e.g. band from physical_filter) are checked in order.
        for name in group.implied:
            element = self.universe[name]
            if element.implies and all(d in values for d in element.identity):
                implied = self.implied_values(name, tuple(values[d] for d in element.identity)) or {}
                for dim, value in implied.items():
                    if values.get(dim, value) != value:
                        raise DataIdError(f"data ID {data_id.required}: {name} implies {dim}={value!r}, "
                                          f"but {dim}={values[dim]!r} was given")
                    values[dim] = value
        return DataCoordinate(group, {n: values[n] for n in group.names if n in values})


def _key_function(dims: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple]:
    """A function taking a data ID's values to the identity tuple of ``dims`` (KeyError if one is missing)."""
    if len(dims) == 1:
        (only,) = dims
        return lambda values: (values[only],)
    return operator.itemgetter(*dims)


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, sky.Region) and isinstance(b, sky.Region):
        return bytes(a.encode()) != bytes(b.encode())
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) > 1e-12 * max(1.0, abs(a))
    return a != b
