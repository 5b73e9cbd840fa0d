"""Parquet formatter for tables: column subsets are read without touching other columns.

Parquet keeps each column in its own chunks with offsets in the footer, so
``pyarrow.parquet.ParquetFile`` on a seekable stream reads the footer and then only
the requested columns' bytes — the same on a local file and an S3 object.  The
``rows`` parameter reads only the first rows (batch by batch, stopping there), so a
preview of a large catalog costs what it shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import FormatterError
from .formatter import Formatter
from .tables import TABLE_KINDS, from_arrow, to_arrow


class ParquetFormatter(Formatter):
    """Writes any accepted table type; reads back as Arrow (default), astropy or pandas."""

    name = "parquet"
    extension = ".parquet"
    components = frozenset({"schema"})
    parameters = frozenset({"columns", "as", "rows"})

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        with self._refusing(TypeError):
            table = to_arrow(obj)
        pq.write_table(table, stream)

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        kind = parameters.get("as", "arrow")
        if kind not in TABLE_KINDS:
            raise FormatterError(
                f"Formatter {self.name!r}: read parameter 'as' is {kind!r}; allowed: {list(TABLE_KINDS)}."
            )
        parquet_file = pq.ParquetFile(stream)
        schema = parquet_file.schema_arrow
        columns = self._columns(parameters.get("columns"), schema.names)
        if component == "schema":
            return schema if columns is None else _select(schema, columns)
        rows = self._rows(parameters.get("rows"))
        if rows is None:
            table = parquet_file.read(columns=columns, use_pandas_metadata=True)
        else:
            table = _first_rows(parquet_file, columns, rows)
        return from_arrow(table, kind)

    def _rows(self, requested: Any) -> int | None:
        """Validate the ``rows`` parameter: how many rows to read from the start (None: all)."""
        if requested is None:
            return None
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
            raise FormatterError(f"Formatter {self.name!r}: read parameter 'rows' must be a whole number >= 0, "
                                 f"got {requested!r}.")
        return requested

    def _validate(self, stream: BinaryIO) -> None:
        """The footer parses and its schema converts to Arrow (the data pages are not read)."""
        pq.ParquetFile(stream).schema_arrow

    def _columns(self, requested: Any, available: list[str]) -> list[str] | None:
        """Validate the ``columns`` parameter against the file's columns."""
        if requested is None:
            return None
        if isinstance(requested, (str, bytes)) or not isinstance(requested, Iterable):
            raise FormatterError(
                f"Formatter {self.name!r}: read parameter 'columns' must be a list of column names, "
                f"not {requested!r}."
            )
        columns = list(requested)
        bad = [name for name in columns if not isinstance(name, str)]
        if bad:
            raise FormatterError(f"Formatter {self.name!r}: column names must be strings, got {bad}.")
        unknown = [name for name in columns if name not in available]
        if unknown:
            raise FormatterError(
                f"Formatter {self.name!r}: unknown column(s) {unknown}; the table has {available}."
            )
        return columns


def _select(schema: pa.Schema, columns: list[str]) -> pa.Schema:
    """The sub-schema holding ``columns`` in the requested order (metadata kept)."""
    return pa.schema([schema.field(name) for name in columns], metadata=schema.metadata)


def _first_rows(parquet_file: pq.ParquetFile, columns: list[str] | None, rows: int) -> pa.Table:
    """The first ``rows`` rows, reading batches only until there are enough."""
    batches, have = [], 0
    for batch in parquet_file.iter_batches(batch_size=max(min(rows, 65536), 1), columns=columns,
                                           use_pandas_metadata=True):
        if have >= rows:
            break
        batch = batch.slice(0, rows - have)
        batches.append(batch)
        have += batch.num_rows
    if batches:
        return pa.Table.from_batches(batches).replace_schema_metadata(parquet_file.schema_arrow.metadata)
    return parquet_file.read(columns=columns, use_pandas_metadata=True).slice(0, 0)

