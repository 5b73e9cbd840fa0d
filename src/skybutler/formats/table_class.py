"""The ``Table`` storage class: a catalog as a pyarrow, astropy or pandas table."""

from __future__ import annotations

from typing import Any

from .storage_class import StorageClass
from .tables import column_names, is_table


def check_table(obj: Any) -> Any:
    """Accept a pyarrow.Table, astropy.table.Table or pandas.DataFrame unchanged."""
    if not is_table(obj):
        raise TypeError("expected a table")
    return obj


def extract_table_metadata(obj: Any) -> dict[str, Any]:
    """Row and column counts plus the comma-joined column names."""
    names = column_names(obj)
    return {"n_rows": len(obj), "n_columns": len(names), "columns": ",".join(names)}


TABLE = StorageClass(
    name="Table",
    default_formatter="parquet",
    formatters=("parquet",),
    accepts="pyarrow.Table, astropy.table.Table or pandas.DataFrame",
    checker=check_table,
    extractor=extract_table_metadata,
    components={"schema": "the Arrow schema (column names and types), read from the file footer only"},
    parameters=frozenset({"columns", "as", "rows"}),
    metadata_fields={"n_rows": int, "n_columns": int, "columns": str},
)
