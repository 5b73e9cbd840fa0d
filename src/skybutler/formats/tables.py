"""Conversions between the three table types the ``Table`` storage class accepts.

Arrow is the pivot: pandas and astropy tables are converted to a ``pyarrow.Table``
for writing, and an Arrow table read from disk is converted to whichever type the
reader asked for.  Astropy column units, descriptions and per-row shapes travel in
the Arrow schema metadata so an astropy table survives the round trip; a catalog with
a declared schema carries units and descriptions as field metadata, read back too.

pandas and astropy are imported only when an object of theirs is involved, so
importing skybutler stays fast.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import pyarrow as pa

ASTROPY_METADATA_KEY = b"skybutler.astropy"
"""Schema-metadata key holding astropy column info (unit, description, shape) as JSON."""

TABLE_KINDS = ("arrow", "astropy", "pandas")
"""Values of the ``as`` read parameter."""


def is_pandas_frame(obj: Any) -> bool:
    """True for a pandas DataFrame (without importing pandas if nobody has)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(obj, pandas.DataFrame)


def is_astropy_table(obj: Any) -> bool:
    """True for an astropy Table or QTable (without importing astropy.table if nobody has)."""
    table = sys.modules.get("astropy.table")
    return table is not None and isinstance(obj, table.Table)


def is_table(obj: Any) -> bool:
    """True for any of the accepted table types."""
    return isinstance(obj, pa.Table) or is_pandas_frame(obj) or is_astropy_table(obj)


def column_names(obj: Any) -> list[str]:
    """Column names of any accepted table type, as strings."""
    if isinstance(obj, pa.Table):
        return list(obj.column_names)
    if is_astropy_table(obj):
        return list(obj.colnames)
    return [str(name) for name in obj.columns]


def to_arrow(obj: Any) -> pa.Table:
    """Convert an accepted table to Arrow; raises TypeError for anything else."""
    if isinstance(obj, pa.Table):
        return obj
    if is_pandas_frame(obj):
        return pa.Table.from_pandas(obj)
    if is_astropy_table(obj):
        return _astropy_to_arrow(obj)
    raise TypeError(f"not a table: {type(obj).__module__}.{type(obj).__qualname__}")


def from_arrow(table: pa.Table, kind: str) -> Any:
    """Convert an Arrow table read from disk to ``kind`` ("arrow", "astropy" or "pandas")."""
    if kind == "arrow":
        return table
    if kind == "pandas":
        return table.to_pandas()
    if kind == "astropy":
        return _arrow_to_astropy(table)
    raise ValueError(f"unknown table kind {kind!r}; allowed: {list(TABLE_KINDS)}")


# -- astropy -> arrow ---------------------------------------------------------


def _astropy_to_arrow(table: Any) -> pa.Table:
    """Build an Arrow table from an astropy Table, keeping units, descriptions and cell shapes."""
    from astropy.table import Column
    from astropy.units import Quantity

    arrays: list[pa.Array] = []
    info: dict[str, dict[str, Any]] = {}
    for name in table.colnames:
        col = table[name]
        if not isinstance(col, (Column, Quantity)):
            raise TypeError(
                f"column {name!r} is a {type(col).__name__} mixin, which Parquet storage does not support"
            )
        values = np.asarray(col.value if isinstance(col, Quantity) else col)
        mask = getattr(col, "mask", None)
        mask_array = np.asarray(mask) if mask is not None and np.any(mask) else None
        arrays.append(_numpy_to_arrow(values, mask_array))
        col_info = {}
        if getattr(col, "unit", None) is not None:
            col_info["unit"] = col.unit.to_string()
        description = getattr(col.info, "description", None)
        if description:
            col_info["description"] = str(description)
        if values.ndim > 1:
            col_info["shape"] = list(values.shape[1:])
        if col_info:
            info[name] = col_info
    document: dict[str, Any] = {"columns": info}
    try:  # table-level meta is kept only when it is JSON-compatible
        document["meta"] = json.loads(json.dumps(dict(table.meta)))
    except (TypeError, ValueError):
        pass
    result = pa.Table.from_arrays(arrays, names=list(table.colnames))
    return result.replace_schema_metadata({ASTROPY_METADATA_KEY: json.dumps(document).encode()})


def _numpy_to_arrow(values: np.ndarray, mask: np.ndarray | None) -> pa.Array:
    """One column; cells with more than one element become fixed-size lists."""
    if values.ndim <= 1:
        return pa.array(values, mask=mask)
    cell_size = int(np.prod(values.shape[1:]))
    flat_mask = None if mask is None else np.broadcast_to(mask, values.shape).ravel()
    inner = pa.array(np.ascontiguousarray(values).ravel(), mask=flat_mask)
    return pa.FixedSizeListArray.from_arrays(inner, cell_size)


# -- arrow -> astropy ---------------------------------------------------------


def _arrow_to_astropy(table: pa.Table) -> Any:
    """Build an astropy Table, restoring units, descriptions and cell shapes when recorded (in
    skybutler's astropy metadata, or as a field's ``unit``/``description`` metadata)."""
    from astropy.table import Column, MaskedColumn, Table

    document = _astropy_document(table.schema)
    info = document.get("columns", {})
    columns = []
    for name, chunked in zip(table.column_names, table.columns):
        col_info = info.get(name, {})
        array = pa.concat_arrays(chunked.chunks) if chunked.num_chunks else pa.array([], chunked.type)
        values, mask = _arrow_to_numpy(array)
        shape = col_info.get("shape")
        if shape:
            values = values.reshape((len(array), *shape))
            mask = None if mask is None else mask.reshape(values.shape)
        field_meta = table.schema.field(name).metadata or {}  # a declared catalog schema's unit and description
        unit = col_info.get("unit") or (field_meta.get(b"unit") or b"").decode() or None
        description = col_info.get("description") or (field_meta.get(b"description") or b"").decode() or None
        kwargs = {"name": name, "unit": unit, "description": description}
        if mask is not None:
            columns.append(MaskedColumn(values, mask=mask, **kwargs))
        else:
            columns.append(Column(values, **kwargs))
    return Table(columns, meta=document.get("meta") or {}, copy=False)


def _astropy_document(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(ASTROPY_METADATA_KEY)
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return {}


def _arrow_to_numpy(array: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Values and null mask (None when nothing is null) of one Arrow array."""
    if pa.types.is_fixed_size_list(array.type):
        return _arrow_to_numpy(array.flatten())
    mask = None
    if array.null_count:
        mask = array.is_null().to_numpy(zero_copy_only=False)
        filler = _fill_value(array.type)
        if filler is not None:
            array = array.fill_null(pa.scalar(filler, array.type))
    values = array.to_numpy(zero_copy_only=False)
    if values.dtype == object and len(values):
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            values = values.astype(str)
        elif pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
            values = values.astype(bytes)
    return values, mask


def _fill_value(kind: pa.DataType) -> Any:
    """A neutral value to put under masked cells so numpy keeps the column's dtype."""
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return 0
    if pa.types.is_boolean(kind):
        return False
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return ""
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return b""
    return None
