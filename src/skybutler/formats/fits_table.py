"""The ``FitsTable`` storage class and its ``fits-table`` formatter: a catalog in a FITS binary table.

Any table skybutler accepts (Arrow, astropy, pandas) is written as a BINTABLE
extension; it reads back as an astropy Table (the natural type of FITS tables,
units kept), or as Arrow/pandas on request, whole or as a column subset.  FITS
rows hold every column side by side, so a column subset saves memory, not reading.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, BinaryIO

from ..errors import FormatterError
from .fits_io import FITS_SUFFIXES, normalise_hdu_key, open_fits, table_hdu
from .fits_validation import validate_fits
from .formatter import Formatter
from .storage_class import StorageClass
from .table_class import check_table, extract_table_metadata
from .tables import TABLE_KINDS, from_arrow, is_astropy_table, to_arrow


class FitsTableFormatter(Formatter):
    """Writes a table as a FITS BINTABLE; reads it (or its column names) as astropy, Arrow or pandas."""

    name = "fits-table"
    extension = ".fits"
    also_named = FITS_SUFFIXES
    components = frozenset({"header", "columns"})
    parameters = frozenset({"columns", "as", "hdu"})

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        from astropy.io import fits

        with self._refusing(TypeError):
            table = obj if is_astropy_table(obj) else from_arrow(to_arrow(obj), "astropy")
        fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)]).writeto(stream, checksum="remove")

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        from astropy.table import Table

        kind = parameters.get("as", "astropy")
        if kind not in TABLE_KINDS:
            raise FormatterError(f"Formatter {self.name!r}: read parameter 'as' is {kind!r}; "
                                 f"allowed: {list(TABLE_KINDS)}.")
        key = normalise_hdu_key(parameters["hdu"]) if "hdu" in parameters else None
        with open_fits(stream) as hdus:
            _, hdu = table_hdu(hdus, key)
            names = list(hdu.columns.names)
            columns = _columns(parameters.get("columns"), names)
            if component == "header":
                return hdu.header.copy()
            if component == "columns":
                return names if columns is None else columns
            table = Table.read(hdu)
        if columns is not None:
            table = table[columns]
        for name in table.colnames:  # FITS is big-endian; hand out native columns (Arrow needs them)
            column = table[name]
            if column.dtype.byteorder == ">":
                table[name] = column.astype(column.dtype.newbyteorder("="))
        return table if kind == "astropy" else from_arrow(to_arrow(table), kind)

    def _validate(self, stream: BinaryIO) -> None:
        validate_fits(stream, self.name, None)


def _columns(requested: Any, available: list[str]) -> list[str] | None:
    if requested is None:
        return None
    if isinstance(requested, (str, bytes)) or not isinstance(requested, Iterable):
        raise FormatterError(f"read parameter 'columns' must be a list of column names, not {requested!r}.")
    columns = list(requested)
    unknown = [name for name in columns if name not in available]
    if unknown:
        raise FormatterError(f"unknown column(s) {unknown}; the table has {available}.")
    return columns


def extract_fits_table_metadata(obj: Any) -> dict[str, Any]:
    """Row and column counts and column names, of a table or of its BINTABLE header alone."""
    fits = __import__("sys").modules.get("astropy.io.fits")
    if fits is not None and isinstance(obj, fits.Header):
        names = [str(obj.get(f"TTYPE{i}", f"col{i}")) for i in range(1, obj.get("TFIELDS", 0) + 1)]
        return {"n_rows": obj.get("NAXIS2", 0), "n_columns": len(names), "columns": ",".join(names)}
    return extract_table_metadata(obj)


FITS_TABLE = StorageClass(
    name="FitsTable",
    default_formatter="fits-table",
    formatters=("fits-table",),
    accepts="astropy.table.Table, pyarrow.Table or pandas.DataFrame",
    checker=check_table,
    extractor=extract_fits_table_metadata,
    components={"header": "the table HDU's header", "columns": "the column names, from the header only"},
    parameters=frozenset({"columns", "as", "hdu"}),
    metadata_fields={"n_rows": int, "n_columns": int, "columns": str},
    metadata_component="header",
)
