"""Whole result columns: the database's concatenated aggregates in, Arrow arrays out, and
Python objects built from those arrays a column at a time.

:meth:`QueryResults._columns_whole <skybutler.query.results.QueryResults._columns_whole>`
asks the database for one concatenation per result column (:func:`aggregates`:
``group_concat`` on SQLite, ``string_agg`` on PostgreSQL); the functions here run
that statement (:func:`aggregate_rows`), cut its values into Arrow arrays without a
Python object per row (:func:`whole_columns`), and build the data IDs and refs a
caller iterates over with C-level loops.
"""

from __future__ import annotations

import collections
import itertools
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from ..dimensions import DataCoordinate, DimensionGroup
from ..dimensions.data_id import FromRow, RowShape
from ..registry.database import Database

#: A shared type instance: SQLAlchemy memoizes a type's part of the statement cache key
#: on the instance, and works it out afresh (0.4 ms) for every new one.
_BLOB = sa.LargeBinary()
_TEXT = sa.Text()
_BIGINT = sa.BigInteger()
_EMPTY_BYTEA = sa.literal_column("''::bytea")
#: Joins a string column's values in ``group_concat``: the ASCII unit separator, which names
#: do not hold (a value holding it sends the query down the row path).
SEPARATOR = "\x1f"


def aggregates(stmt: sa.Select, columns: list[str], types: dict[str, pa.DataType], constants: dict[str, Any],
               sole_keys: dict[str, sa.ColumnElement], dialect: str = "sqlite") -> sa.Select:
    """``SELECT count(*), <one value per column>, <one count per sole key>`` over the rows
    of ``stmt``: a column's concatenation (:func:`_joined`), or its fixed value as a literal; then, for
    each constant that holds while a table has one key, how many other keys that table
    has (0, or the constant is wrong), read in the same snapshot as the rows.  Over the
    statement's own FROM and WHERE where nothing applies after them (no DISTINCT,
    grouping, order or limit), else over the statement as a subquery."""
    flat = is_flat(stmt)
    inner = None if flat else stmt.subquery("r")
    source = stmt.selected_columns if inner is None else inner.c
    parts: list[sa.ColumnElement] = [sa.func.count()]
    for name in columns:
        kind = "id" if name == "dataset_id" else "int" if pa.types.is_integer(types[name]) else "str"
        if name in constants:
            parts.append(_constant(constants[name], kind, dialect))
        else:
            parts.append(_joined(source[name], kind, dialect))
    for name, key in sole_keys.items():
        parts.append(sa.select(sa.func.count()).where(key != constants[name]).scalar_subquery())
    if inner is None:
        return stmt.with_only_columns(*parts, maintain_column_froms=True)
    return sa.select(*parts).select_from(inner)


def _joined(column: sa.ColumnElement, kind: str, dialect: str) -> sa.ColumnElement:
    """One column's values concatenated in row order: strings joined by ``SEPARATOR``,
    dataset IDs as 32 hex digits each (as SQLite stores them; PostgreSQL joins its 16-byte
    binary forms and writes the whole as hex once), integers as comma-separated decimal
    text on SQLite and on PostgreSQL as their 8-byte big-endian forms (``int8send``) joined
    into one bytea, read in binary: less work for the server than decimal text, and for
    the client a numpy view instead of parsing (3 us against 200 for 5,000).  Every
    aggregate of one SELECT without a GROUP BY sees the same rows in the same order, on
    both databases (PostgreSQL advances them all row by row in one node)."""
    if dialect == "postgresql":
        if kind == "id":
            return sa.func.encode(sa.func.string_agg(sa.func.uuid_send(column), _EMPTY_BYTEA), "hex")
        if kind == "int":
            return sa.func.string_agg(sa.func.int8send(sa.cast(column, _BIGINT)), _EMPTY_BYTEA)
        return sa.func.string_agg(column, SEPARATOR)
    if kind == "id":
        return sa.cast(sa.func.group_concat(column, ""), _BLOB)
    if kind == "int":
        return sa.func.group_concat(column)
    return sa.cast(sa.func.group_concat(column, SEPARATOR), _BLOB)


def _constant(value: Any, kind: str, dialect: str) -> sa.ColumnElement:
    """A fixed column's value, on PostgreSQL in the form and type its aggregate would have
    (another type's statement in a UNION may aggregate the column)."""
    if dialect != "postgresql":
        return sa.literal(value)
    if kind == "int":
        return sa.func.int8send(sa.cast(sa.literal(value), _BIGINT))
    return sa.cast(sa.literal(value), _TEXT)


def is_flat(stmt: sa.Select) -> bool:
    """Whether an aggregate may replace the statement's columns over its own FROM and WHERE
    (a plain SELECT: no DISTINCT, grouping, order, limit or offset), which spares SQLAlchemy
    building the columns of a subquery (more time than SQLite spends on a small query)."""
    return isinstance(stmt, sa.Select) and not (
        stmt._distinct or stmt._group_by_clauses or stmt._order_by_clauses
        or stmt._limit_clause is not None or stmt._offset_clause is not None)


#: One column-reading source: a statement, the result columns it fixes, and its sole-key checks
#: (``BuiltQuery.statement``, ``constants``, ``sole_keys``).
Source = tuple[sa.Select, dict[str, Any], dict[str, sa.ColumnElement]]


def aggregate_rows(db: Database, sources: list[Source], columns: list[str], types: dict[str, pa.DataType],
                   compiled: dict[tuple, Any], key: tuple) -> list[Sequence[Any]]:
    """The rows of the column-reading statement over ``sources`` (:func:`aggregates` of each,
    joined by UNION ALL), run by SQLAlchemy the first time and its text kept in ``compiled``
    (the built query's, under ``key``: :func:`keep_text`), then sent to the driver when the
    same query is asked again (:func:`kept_text`): building the aggregate and SQLAlchemy's
    execution of it (its cache key, a compiled-statement look-up, result processing) are
    0.3-0.4 ms, a tenth of reading 5,000 data IDs."""
    text = kept_text(compiled, key)
    if text is None:
        selects = [aggregates(stmt, columns, types, constants, sole_keys, db.dialect)
                   for stmt, constants, sole_keys in sources]
        with db.reading() as conn:
            result = conn.execute(selects[0] if len(selects) == 1 else sa.union_all(*selects))
            keep_text(compiled, key, result, plain_results=False)
            return result.all()
    with db.driver_read(*text, binary=True) as result:  # (bytea not written as hex text)
        return result.fetchall()


def kept_text(compiled: dict[tuple, Any], key: tuple) -> tuple[str, Any] | None:
    """The SQL text and parameters kept in ``compiled`` (a built query's) by ``key``
    (:func:`keep_text`), for :meth:`Database.driver_read` to send now that the same query is
    asked again (a built query is reused while nothing is committed: the read cache); None
    if the statement has not run yet or SQLAlchemy must run it (see :func:`keep_text`)."""
    return compiled.get(key)


def keep_text(compiled: dict[tuple, Any], key: tuple, result: sa.CursorResult, plain_results: bool = True) -> None:
    """Keep in ``compiled``, by ``key``, the SQL text and parameters SQLAlchemy has just sent
    for ``result`` (its execution context's: the statement it compiled or found in its cache,
    its expanding IN-lists written out), or None for a statement whose parameters, or
    (``plain_results``) result columns, SQLAlchemy must convert: it runs those itself.
    Result columns of integer, text and bytes types come from the driver as SQLAlchemy gives
    them.  Taken from the first run, not compiled again at the second (0.7-1.3 ms for Q4 of
    ``bench_queries.py``, more than the whole query): a query asked again runs as it will
    from then on (on PostgreSQL prepared at that run: ``registry/driver_reads.py``)."""
    if key in compiled:
        return
    context = result.context
    done = context.compiled
    statement = getattr(done, "statement", None)
    plain = not plain_results or (statement is not None and all(
        type(c.type) in _PLAIN_TYPES for c in statement.selected_columns))
    if done is None or done._bind_processors or not plain or len(context.parameters) != 1:
        compiled[key] = None
    else:
        # positional parameters (SQLite's qmark) as a tuple, named ones (psycopg's pyformat) as a dict
        compiled[key] = (context.statement, context.parameters[0])


#: Column types whose values the driver returns as SQLAlchemy would (no result processing).
_PLAIN_TYPES = frozenset({sa.Integer, sa.BigInteger, sa.SmallInteger, sa.String, sa.Text, sa.LargeBinary})


def whole_columns(rows: list[Sequence[Any]], sources: list[Source], columns: list[str],
                  types: dict[str, pa.DataType], dialect: str = "sqlite") -> tuple[dict[str, pa.Array], int] | None:
    """The Arrow columns and row count of the :func:`aggregate_rows` of ``sources``; None
    where a value is not as expected (a NULL the aggregates skipped, a string holding the
    separator, malformed text) or a sole key has company, so that the caller reads rows."""
    if len(sources) > 1:  # SQL promises no order of UNION ALL rows: each says whose it is
        position = 1 + columns.index("dataset_type_index")
        by_index = {source[1]["dataset_type_index"]: source for source in sources}
        sources = [by_index[int.from_bytes(row[position], "big", signed=True) if dialect == "postgresql"
                            else int(row[position])] for row in rows]
    pieces: dict[str, list[pa.Array]] = {name: [] for name in columns}
    binary = dialect == "postgresql"  # integers in their binary forms (see _joined)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns of text it cannot parse
            for row, (_, constants, _) in zip(rows, sources):
                n, values = row[0], iter(row[1:])
                if any(other_keys for other_keys in row[1 + len(columns):]):
                    return None  # a sole key has company now: the rows say which row has which
                for name in columns:
                    value = next(values)
                    if name in constants:  # its value, not the column's (text on PostgreSQL)
                        pieces[name].append(pa.repeat(pa.scalar(constants[name], types[name]), n))
                    elif name == "dataset_id":
                        pieces[name].append(fixed_width_strings(value, n, 32))
                    elif pa.types.is_integer(types[name]):
                        pieces[name].append(binary_int_column(value, n) if binary else int_column(value, n))
                    else:
                        pieces[name].append(string_column(value, n))
    except (ValueError, DeprecationWarning):
        return None
    out = {name: arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays) for name, arrays in pieces.items()}
    return out, sum(row[0] for row in rows)


#: 32 hex digits as the five groups of a UUID, and the 36 characters of its text with
#: the groups at their places between four dashes: numpy copies a field per row at once.
_HEX_GROUPS = np.dtype({"names": ["g1", "g2", "g3", "g4", "g5"], "formats": ["V8", "V4", "V4", "V4", "V12"],
                        "offsets": [0, 8, 12, 16, 20], "itemsize": 32})
_UUID_TEXT = np.dtype({"names": ["g1", "g2", "g3", "g4", "g5", "d1", "d2", "d3", "d4"],
                       "formats": ["V8", "V4", "V4", "V4", "V12", "u1", "u1", "u1", "u1"],
                       "offsets": [0, 9, 14, 19, 24, 8, 13, 18, 23], "itemsize": 36})


def uuid_text(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Dataset IDs as 32 hex digits (how SQLite stores them) turned into standard UUID text
    (8-4-4-4-12), by copying the digits as a fixed-width numpy array of bytes: a tenth of
    the time of Arrow's string kernels (slices and a join: 2 ms for 5,000 IDs)."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if ids.null_count or not pa.types.is_string(ids.type):
        return _uuid_text_slow(ids)
    n = len(ids)
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32, count=n + 1, offset=ids.offset * 4)
    if n == 0 or not np.all(np.diff(offsets) == 32):
        return _uuid_text_slow(ids)
    digits = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]].view(_HEX_GROUPS)
    text = np.empty(n, _UUID_TEXT)
    for group in _HEX_GROUPS.names:  # one copy per group of digits, each a whole field
        text[group] = digits[group]
    for dash in ("d1", "d2", "d3", "d4"):
        text[dash] = ord("-")
    new_offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(new_offsets), pa.py_buffer(text)])


def _uuid_text_slow(ids: pa.Array) -> pa.Array:
    parts = [pc.utf8_slice_codeunits(ids, a, b) for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))]
    return pc.binary_join_element_wise(*parts, "-")


def int_column(text: str | None, n: int) -> pa.Array:
    """Integers from comma-separated decimal text (``group_concat``, ``string_agg``)."""
    values = np.fromstring(text or "", dtype=np.int64, sep=",")  # noqa: NPY201 - text mode is not deprecated
    if len(values) != n:
        raise ValueError(f"{len(values)} integers for {n} rows")
    return pa.array(values, pa.int64())


def binary_int_column(data: bytes | None, n: int) -> pa.Array:
    """Integers from their 8-byte big-endian forms joined into one value (``int8send``)."""
    data = data or b""
    if len(data) != 8 * n:
        raise ValueError(f"{len(data)} bytes for {n} integers")
    return pa.array(np.frombuffer(data, dtype=">i8").astype(np.int64), pa.int64())


def string_column(data: bytes | str | None, n: int) -> pa.Array:
    """Strings from one blob of their UTF-8 bytes (or one text) joined by ``SEPARATOR``.

    Dimension names are mostly of one width in a result (one instrument, bands of one
    letter): then the blob is an ``n x (width + 1)`` matrix whose last column is the
    separators, dropped by one strided copy.  Otherwise numpy finds the separators and
    compacts the bytes around them (several times slower).
    """
    if n == 0:
        if data:
            raise ValueError("text for no rows")
        return pa.array([], pa.string())
    if data is None:  # group_concat skips NULLs: every value was NULL
        raise ValueError(f"no text for {n} rows")
    if isinstance(data, str):
        data = data.encode()
    raw = np.frombuffer(data, dtype=np.uint8)
    separators = raw == ord(SEPARATOR)
    if np.count_nonzero(separators) != n - 1 or len(raw) - (n - 1) >= 2**31:
        raise ValueError(f"{np.count_nonzero(separators) + 1} strings for {n} rows")
    step, rest = divmod(len(raw) + 1, n)
    rows = np.frombuffer(data + SEPARATOR.encode(), dtype=np.uint8).reshape(n, step) if rest == 0 else None
    if rows is not None and np.all(rows[:, -1] == ord(SEPARATOR)):  # n - 1 separators, all at row ends
        kept = np.ascontiguousarray(rows[:, :-1])
        offsets = np.arange(n + 1, dtype=np.int32) * (step - 1)
    else:
        cuts = np.flatnonzero(separators)
        offsets = np.empty(n + 1, dtype=np.int32)
        offsets[0] = 0
        offsets[1:-1] = cuts - np.arange(n - 1)  # each value's start, less the separators before it
        offsets[-1] = len(raw) - (n - 1)
        kept = np.delete(raw, cuts)
    array = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(kept)])
    if kept.size and kept.max() >= 0x80:  # ASCII is UTF-8; anything else must be cut at character boundaries
        array.validate(full=True)
    return array


def fixed_width_strings(data: bytes | str | None, n: int, width: int) -> pa.Array:
    """``n`` strings of ``width`` ASCII characters each, from one blob (or one text)."""
    data = data or b""
    if isinstance(data, str):
        data = data.encode()
    if len(data) != n * width:
        raise ValueError(f"{len(data)} bytes for {n} values of {width}")
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    array = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    array.validate(full=True)
    return array


def pylist(array: pa.Array | pa.ChunkedArray) -> list[Any]:
    """An Arrow column's values as a Python list (integers through numpy, much faster)."""
    if pa.types.is_integer(array.type) and array.null_count == 0:
        return array.to_numpy().tolist()
    return array.to_pylist()


# -- building objects from columns ----------------------------------------------------


def _uuid_slots() -> tuple[Callable[..., None], Callable[..., None]] | None:
    """The setters of :class:`uuid.UUID`'s two slots (``int`` and ``is_safe``), if filling
    them on a bare instance makes the same UUID as the public constructor; else None."""
    cls = uuid.UUID
    try:
        set_int, set_safe = cls.__dict__["int"].__set__, cls.__dict__["is_safe"].__set__
        probe = uuid.uuid4()
        made = object.__new__(cls)
        set_int(made, probe.int)
        set_safe(made, uuid.SafeUUID.unknown)
        same = (made == probe and hash(made) == hash(probe) and str(made) == str(probe)
                and made.is_safe == probe.is_safe and repr(made) == repr(probe))
    except Exception:  # noqa: BLE001 - any difference means the fast path is not safe here
        return None
    return (set_int, set_safe) if same else None


_UUID_SLOTS = _uuid_slots()


def uuids(ids: Sequence[Any]) -> list[uuid.UUID]:
    """Dataset IDs as :class:`uuid.UUID`, from the database's values (32 hex digits on SQLite).

    ``uuid.UUID(hex)`` checks and normalises its text in Python (1 us an ID).  Text the
    registry wrote needs only its integer, set into the two slots as ``__setstate__``
    does, and a column of them is made by C-level ``map`` loops with no Python frame per
    ID (0.25 us an ID).
    """
    if not ids or ids[0].__class__ is uuid.UUID:
        return list(ids)
    if _UUID_SLOTS is None or set(map(len, ids)) != {32}:
        return list(map(uuid.UUID, ids))
    set_int, set_safe = _UUID_SLOTS
    out = list(map(object.__new__, itertools.repeat(uuid.UUID, len(ids))))
    collections.deque(map(set_int, out, map(int, ids, itertools.repeat(16))), maxlen=0)
    collections.deque(map(set_safe, out, itertools.repeat(uuid.SafeUUID.unknown)), maxlen=0)
    return out


def data_ids(group: DimensionGroup, names: tuple[str, ...], columns: Sequence[Sequence[Any]], n: int,
             expand: Callable[[DataCoordinate], Any] | None = None) -> list[DataCoordinate]:
    """One data ID of ``group`` per row of ``columns`` (the values of ``names``, in order).

    Each is a :class:`FromRow` holding its row's tuple (what ``zip`` makes anyway) and a
    shape shared by the batch, made by a C-level ``map`` loop; its dict of values is made
    only if it is read.  Building 30,000 data IDs so costs about a third less than a dict
    each.  ``expand`` (given a data ID, all its values) finds implied values not in ``names``.
    """
    rows = zip(*columns) if names else itertools.repeat((), n)
    return list(map(FromRow, itertools.repeat(group), rows, itertools.repeat(RowShape(names, expand))))


def names_of(codes: pa.ChunkedArray | pa.Array, name: Callable[[int], str]) -> pa.Array:
    """A string column naming each integer code (a RUN's collection ID, a dataset type's index)."""
    encoded = pc.dictionary_encode(codes)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    names = pa.array([name(c) for c in encoded.dictionary.to_pylist()], pa.string())
    return names.take(encoded.indices)
