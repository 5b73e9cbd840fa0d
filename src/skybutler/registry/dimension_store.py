"""Storing and reading dimension records, and expanding data IDs from them.

Records are written in bulk (one executemany per element); spatial records also
get their sky-pixel overlap rows.  Lookups that every put needs (does this visit
exist, what filter does it imply) are cached, so a long run of puts asks the
database once per new visit, not once per dataset.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..dimensions import DataCoordinate, DataIdValue, DimensionGroup, DimensionRecord, DimensionUniverse
from ..dimensions import regions as sky
from ..dimensions.data_id import DataCoordinateWithRecords
from ..errors import DataIdError, DimensionRecordError
from ..timespan import NS_MAX, NS_MIN, Timespan
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
#: Identities looked up by one statement.
_IDENTITY_CHUNK = 500

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

    def _row_tuples(self, element_name: str, records: Sequence[DimensionRecord]) -> list[tuple]:
        """Records as positional rows in the order of the element table's columns: the region
        encoded, the timespan split into its nanosecond bounds (an import writes a record for
        every dataset, so the column plan is made once, not a dictionary per record)."""
        element = self.universe[element_name]
        columns = [c.name for c in self.schema.elements[element_name].columns]
        key_of = {element.column_of(d): d for d in element.identity + element.implies}
        keys = [key_of.get(c, c) for c in columns]
        region_at = columns.index("region") if element.region else None
        span_at = columns.index("timespan_begin") if element.timespan else None
        out = []
        if span_at is not None:  # the record's timespan, at the place of its begin column
            keys[span_at] = "timespan"
        for record in records:
            row = record.values_of(keys)
            if region_at is not None and row[region_at] is not None:
                row[region_at] = sky.encode(row[region_at])
            if span_at is not None:
                span = row[span_at]
                row[span_at], row[span_at + 1] = (None, None) if span is None else span.to_ns()
            out.append(tuple(row))
        return out

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

    def _overlap_rows(self, records: Sequence[DimensionRecord]) -> list[tuple]:
        """The records' skypix overlap rows: each one's identity, then system, level and pixel
        index (the column order of :meth:`_overlap_columns`)."""
        index = self.universe.spatial_index
        if index is None or not records:
            return []
        system, level = self.universe[index].skypix
        envelope = sky.pixelization(system, level).envelope
        out: list[tuple] = []
        for record in records:
            region = record["region"]
            if region is None:
                continue
            prefix = (*record.identity, system, level)
            # ranges(): a list at once, where iterating the RangeSet cost half as much as the envelope
            out += [(*prefix, pix) for begin, end in envelope(region).ranges() for pix in range(begin, end)]
        return out

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
        rows = list(rows)
        if all(type(r) is not DimensionRecord for r in rows):  # a user's rows: validated together
            records = DimensionRecord.validate_many(self.universe, element_name, rows)
        else:
            records = [r if isinstance(r, DimensionRecord) else DimensionRecord.validate(self.universe, element_name, r)
                       for r in rows]
        if not records:
            return 0
        table = self.schema.elements[element_name]
        with self.db.transaction() as conn:
            for attempt in range(_SKIP_EXISTING_ATTEMPTS if skip_existing else 1):
                if skip_existing:
                    existing = self.existing_identities(element_name, [r.identity for r in records])
                    records = [r for r in records if r.identity not in existing]
                    if not records:
                        return 0
                try:
                    with self.db.savepoint(conn):  # positional rows through the driver: no per-row SQLAlchemy work
                        bulk.insert_rows(conn, table, [c.name for c in table.columns],
                                         self._row_tuples(element_name, records))
                    self.db.note_inserted(table, len(records))
                    break
                except sa.exc.IntegrityError as err:
                    if not skip_existing or attempt == _SKIP_EXISTING_ATTEMPTS - 1:
                        raise self._explain_integrity(element_name, records, err) from err
            overlap = self.schema.skypix_overlaps.get(element_name)
            if overlap is not None:
                rows = self._overlap_rows(records)
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
        existing = self.existing_identities(element_name, [r.identity for r in records])
        if existing:
            shown = ", ".join(str(dict(zip(element.identity, i))) for i in sorted(existing)[:5])
            return DimensionRecordError(f"{element_name} record(s) already exist: {shown}")
        missing = []
        for dep in element.requires + element.implies:
            dep_ident = self.universe[dep].identity
            keys = {tuple(r[d] for d in dep_ident) for r in records}
            found = self.existing_identities(dep, list(keys))
            missing += [f"{dep} {dict(zip(dep_ident, k))}" for k in sorted(keys - found)]
        if missing:
            return DimensionRecordError(
                f"cannot insert {element_name} records: no record for {', '.join(missing[:5])}")
        return DimensionRecordError(f"cannot insert {element_name} records: {getattr(err, 'orig', err)}")

    # -- reads ----------------------------------------------------------------

    def existing_identities(self, element_name: str, identities: list[tuple]) -> set[tuple]:
        """Those of ``identities`` that the element's table holds (its key columns alone read,
        no records built)."""
        element = self.universe[element_name]
        table = self.schema.elements[element_name]
        cols = [table.c[element.column_of(d)] for d in element.identity]
        with self.db.reading() as conn:
            return set(self._rows_by_identity(conn, element_name, cols, identities))

    def _rows_by_identity(self, conn: sa.Connection, element_name: str, columns: Sequence[sa.Column],
                          identities: Sequence[tuple]) -> Iterator[tuple]:
        """``columns`` of the element's rows whose identity is one of ``identities``, as tuples, a
        chunk of :data:`_IDENTITY_CHUNK` identities per statement sent straight to the driver (its
        text made once per chunk size): SQLAlchemy's expansion of an IN list of a few hundred
        values, compiled anew for each statement, cost more than the database's work.  Boolean
        columns come back as booleans, as SQLAlchemy would give them."""
        identities = list(dict.fromkeys(identities))  # a join yields a row once per identity given
        if not identities:
            return
        element = self.universe[element_name]
        table = self.schema.elements[element_name]
        keys = [table.c[element.column_of(d)] for d in element.identity]
        booleans = [i for i, c in enumerate(columns) if isinstance(c.type, sa.Boolean)]
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            for start in range(0, len(identities), _IDENTITY_CHUNK):
                chunk = identities[start:start + _IDENTITY_CHUNK]
                cursor.execute(_select_in_sql(conn.dialect, table, tuple(c.name for c in columns),
                                              tuple(k.name for k in keys), len(chunk)),
                               [v for identity in chunk for v in identity])
                rows = cursor.fetchall()
                if booleans:
                    rows = [_with_booleans(row, booleans) for row in rows]
                yield from map(tuple, rows)
        finally:
            cursor.close()

    def fetch_one(self, element_name: str, identity: tuple) -> DimensionRecord | None:
        element = self.universe[element_name]
        table = self.schema.elements[element_name]
        cond = [table.c[element.column_of(d)] == v for d, v in zip(element.identity, identity)]
        with self.db.reading() as conn:
            row = conn.execute(sa.select(table).where(*cond)).mappings().first()
        return None if row is None else self.from_row(element_name, row)

    def fetch_many(self, element_name: str, identities: list[tuple]) -> list[DimensionRecord]:
        """Records of one element by identity (in chunks; missing ones are left out)."""
        table = self.schema.elements[element_name]
        names = [c.name for c in table.columns]
        with self.db.reading() as conn:
            rows = list(self._rows_by_identity(conn, element_name, list(table.columns), identities))
        return [self.from_row(element_name, dict(zip(names, row))) for row in rows]

    def with_records(self, data_ids: Sequence[DataCoordinate]) -> list[DataCoordinate]:
        """Data IDs of one group holding every value and the record of each element of the
        group (as the Rubin butler's ``with_dimension_records=True``): one query per element
        for the whole batch."""
        if not data_ids:
            return []
        group = data_ids[0].group
        full = self.expand_many(list(data_ids))
        found: dict[str, dict[tuple, DimensionRecord]] = {}
        for name in group.elements:
            identity = self.universe[name].identity
            wanted = list({tuple(d[k] for k in identity) for d in full})
            found[name] = {r.identity: r for r in self.fetch_many(name, wanted)}
        return [DataCoordinateWithRecords(group, d.as_dict(), {
            name: found[name].get(tuple(d[k] for k in self.universe[name].identity)) for name in group.elements})
            for d in full]

    def export_rows(self, element_name: str, identities: list[tuple]) -> list[dict[str, Any]]:
        """Records of one element by identity as plain values in a record's key order (what
        :meth:`fetch_many` gives), except the region, left as its encoded bytes, and the timespan,
        as its stored (begin, end) nanoseconds with the unbounded sentinels, or None: what an
        export writes, without building records (a timespan's astropy times cost more than
        the rest of its row)."""
        element = self.universe[element_name]
        table = self.schema.elements[element_name]
        names = [c.name for c in table.columns]
        at = {name: i for i, name in enumerate(names)}
        plain = [(dim, at[element.column_of(dim)]) for dim in element.identity + element.implies]
        plain += [(name, at[name]) for name in element.fields]
        if element.region:
            plain.append(("region", at["region"]))
        span = (at["timespan_begin"], at["timespan_end"]) if element.timespan else None
        with self.db.reading() as conn:
            rows = list(self._rows_by_identity(conn, element_name, list(table.columns), identities))
        out = []
        for row in rows:
            values = {name: row[i] for name, i in plain}
            if span is not None:
                begin, end = row[span[0]], row[span[1]]
                values["timespan"] = None if begin is None and end is None else (
                    NS_MIN if begin is None or begin <= NS_MIN else begin,
                    NS_MAX if end is None or end >= NS_MAX else end)
            out.append(values)
        return out

    def sole_key(self, element_name: str) -> DataIdValue | None:
        """The key of the only record of a dimension that requires no other (the repository's
        one instrument), or None: several records or none, or no cheap way to know (the
        read cache is inactive: an in-memory database, a transaction; or its mark moves with
        other databases' commits, on PostgreSQL, where asking would make every query of data
        IDs depend on a lookup, asked again whenever the server's mark moved).  Queries make
        such a dimension a constant of their results."""
        element = self.universe[element_name]
        if (element.requires or element.key is None or element.skypix is not None
                or element_name not in self.schema.elements or not self.db.read_cache.private()):
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
            for row in self._rows_by_identity(conn, element_name, keys + implied, missing):
                cache[row[:width]] = dict(zip(element.implies, row[width:]))

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


@functools.lru_cache(maxsize=256)
def _select_in_sql(dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...], keys: tuple[str, ...],
                   count: int) -> str:
    """``SELECT columns FROM table WHERE keys IN (count positional identities)`` in the driver's
    style.  A key of several columns is a list of rows on PostgreSQL, which looks each up in the
    primary key; SQLite scans the whole table for a row value ``IN (VALUES ...)`` (a chunk of a
    200,000-record element cost 0.1 s), so there the identities are a VALUES table that leads a
    join, each probing the primary key."""
    quote = dialect.identifier_preparer
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    selected = ", ".join(f"t.{quote.quote(c)}" for c in columns)
    table_name = quote.format_table(table)
    if len(keys) == 1:
        return f"SELECT {selected} FROM {table_name} AS t WHERE t.{quote.quote(keys[0])} IN ({', '.join([marker] * count)})"
    one = f"({', '.join([marker] * len(keys))})"
    if not dialect.tuple_in_values:
        return (f"SELECT {selected} FROM {table_name} AS t WHERE ({', '.join(f't.{quote.quote(k)}' for k in keys)}) "
                f"IN ({', '.join([one] * count)})")
    names = [f"k{i}" for i in range(len(keys))]
    joined = " AND ".join(f"t.{quote.quote(k)} = k.{n}" for k, n in zip(keys, names))
    return (f"WITH k({', '.join(names)}) AS (VALUES {', '.join([one] * count)}) "
            f"SELECT {selected} FROM k CROSS JOIN {table_name} AS t WHERE {joined}")


def _with_booleans(row: Sequence[Any], at: list[int]) -> list[Any]:
    """A driver's row with the values at ``at`` as booleans (SQLite gives 0 and 1)."""
    out = list(row)
    for i in at:
        if out[i] is not None:
            out[i] = bool(out[i])
    return out


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
