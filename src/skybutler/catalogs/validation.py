"""Checking a table against its declared schema, and making it the table that is stored.

:func:`conform` takes any table the ``Table`` storage class accepts (Arrow, astropy,
pandas) and returns the Arrow table to write: the declared columns in the declared
order, each cast to its declared type, with the schema's unit, UCD and description as
field metadata.  A table that violates the schema -- a missing or extra column, a type
of another kind, values that do not fit the declared type or length, nulls in a
non-nullable column, a unit other than the declared one -- raises
:class:`~skybutler.errors.CatalogValidationError` naming the column, before anything
is written.

Casting stays within a kind: an int64 column may hold a declared ``int`` if its values
fit, a float64 column a declared ``float`` (rounded to single precision, as declared),
but a float column is never a declared integer, nor a number a string.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CatalogValidationError
from ..formats.tables import ASTROPY_METADATA_KEY, to_arrow
from .schemas import CatalogColumn, CatalogSchema

__all__ = ["conform", "SCHEMA_METADATA_KEY"]

#: Schema-metadata key of a stored catalog: the declared table and schema version it conforms to.
SCHEMA_METADATA_KEY = b"skybutler.catalog_schema"


def _kind(kind: pa.DataType) -> str:
    """The family a type belongs to; casts happen only within one."""
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "floating-point"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return "binary"
    if pa.types.is_timestamp(kind):
        return "timestamp"
    if pa.types.is_null(kind):
        return "null"
    return str(kind)


def conform(obj: Any, schema: CatalogSchema, what: str = "the table", *, missing_as_null: bool = False) -> pa.Table:
    """The Arrow table to store for ``obj`` under ``schema``; CatalogValidationError names
    the offending column otherwise.  ``what`` names the table in messages (a dataset, a file).
    With ``missing_as_null`` a missing nullable column is all nulls (a table stored under an
    earlier schema version, read under the current one)."""
    try:
        table = to_arrow(obj)
    except TypeError as err:
        raise CatalogValidationError(f"{what} cannot be checked against schema {schema.table!r}: {err}") from None
    names = table.column_names
    where = f"{what} (declared table {schema.table!r}" + (f", schema version {schema.version})"
                                                          if schema.version else ")")
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise CatalogValidationError(f"{where}: column {doubled[0]!r} appears more than once", doubled[0])
    if missing_as_null:
        for col in schema.columns:
            if col.nullable and col.name not in names:
                table = table.append_column(col.name, pa.nulls(table.num_rows, col.arrow_type))
        names = table.column_names
    missing = [n for n in schema.names if n not in names]
    if missing:
        raise CatalogValidationError(f"{where}: missing column(s) {missing}; the schema declares "
                                     f"{schema.names}", missing[0])
    extra = [n for n in names if n not in schema.names]
    if extra:
        raise CatalogValidationError(f"{where}: column(s) {extra} are not in the schema, which declares "
                                     f"{schema.names}", extra[0])
    units = _units(table)
    arrays = [_column(table.column(col.name), col, units.get(col.name), where) for col in schema.columns]
    metadata = _schema_metadata(table.schema, schema)
    return pa.Table.from_arrays(arrays, schema=schema.arrow_schema().with_metadata(metadata))


def _column(values: pa.ChunkedArray, col: CatalogColumn, unit: str | None, where: str) -> pa.ChunkedArray:
    """One column checked and cast to its declared type."""
    declared = col.arrow_type
    have, want = _kind(values.type), _kind(declared)
    if have != want and have != "null":
        raise CatalogValidationError(
            f"{where}: column {col.name!r} has type {values.type} ({have}), but is declared {col.datatype} "
            f"({declared})", col.name)
    if values.type != declared:
        try:
            values = values.cast(declared, safe=not pa.types.is_floating(declared))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise CatalogValidationError(
                f"{where}: values of column {col.name!r} ({values.type}) do not fit its declared type "
                f"{col.datatype} ({declared}): {' '.join(str(err).split())}", col.name) from None
    if not col.nullable and values.null_count:
        first = pc.index(pc.is_null(values), True).as_py()
        raise CatalogValidationError(
            f"{where}: column {col.name!r} is declared not nullable but holds {values.null_count} null(s) "
            f"(first at row {first})", col.name)
    if col.length is not None and want == "string" and len(values):
        longest = pc.max(pc.utf8_length(values)).as_py()
        if longest is not None and longest > col.length:
            raise CatalogValidationError(
                f"{where}: column {col.name!r} holds a value of {longest} characters; its declared length is "
                f"{col.length}", col.name)
    _check_unit(col, unit, where)
    return values


def _check_unit(col: CatalogColumn, unit: str | None, where: str) -> None:
    """A unit the table carries must be the declared one (astropy decides equality: ``deg`` is ``degree``)."""
    if not unit:
        return
    from astropy import units as u

    try:
        given = u.Unit(unit, parse_strict="raise")
    except ValueError:
        raise CatalogValidationError(f"{where}: column {col.name!r} has unit {unit!r}, which astropy cannot "
                                     "parse", col.name) from None
    if col.unit is None:
        if given == u.dimensionless_unscaled:
            return
        raise CatalogValidationError(f"{where}: column {col.name!r} has unit {unit!r}, but the schema declares "
                                     "it without a unit", col.name)
    if given != u.Unit(col.unit):
        raise CatalogValidationError(f"{where}: column {col.name!r} has unit {unit!r}, but is declared in "
                                     f"{col.unit!r}", col.name)


def _units(table: pa.Table) -> dict[str, str]:
    """Units a table carries: Parquet field metadata (``unit``), or an astropy table's recorded units."""
    found = {}
    document = _astropy_document(table.schema)
    for name, info in document.get("columns", {}).items():
        if isinstance(info, dict) and info.get("unit"):
            found[name] = str(info["unit"])
    for field in table.schema:
        unit = (field.metadata or {}).get(b"unit")
        if unit:
            found[field.name] = unit.decode()
    return found


def _astropy_document(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(ASTROPY_METADATA_KEY)
    try:
        document = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _schema_metadata(given: pa.Schema, schema: CatalogSchema) -> dict[bytes, bytes]:
    """The stored table's schema metadata: which declared schema it conforms to, and an astropy
    table's own ``meta`` (units and descriptions now come from the field metadata)."""
    metadata = {SCHEMA_METADATA_KEY: json.dumps({"schema": schema.schema_name, "table": schema.table,
                                                 "version": schema.version}).encode()}
    meta = _astropy_document(given).get("meta")
    if meta:
        metadata[ASTROPY_METADATA_KEY] = json.dumps({"columns": {}, "meta": meta}).encode()
    return metadata
