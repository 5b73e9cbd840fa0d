"""Declared catalog schemas: a Felis YAML file read and validated by ``lsst-felis``.

A catalog dataset type may declare the columns its tables hold in the Rubin schema
format (Felis: tables, columns with datatype, length, nullable, units, UCDs and
descriptions, primary keys and indexes).  Felis itself parses and validates the file
(``felis.datamodel.Schema``); this module picks the one table a dataset type uses and
keeps what skybutler needs of it as a :class:`CatalogSchema`: the columns with the
Arrow type each Felis datatype is stored as.  The registry keeps the schema as the
canonical JSON of Felis's model (:meth:`CatalogSchema.to_json`), so two spellings of
one schema compare equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CatalogSchemaError
from ..extras import require

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["CatalogColumn", "CatalogSchema", "load_schema", "schema_from_json", "ARROW_TYPES"]

#: Felis datatype -> the Arrow type a column of it is stored as in Parquet.
ARROW_TYPES: dict[str, str] = {
    "boolean": "bool", "byte": "int8", "short": "int16", "int": "int32", "long": "int64",
    "float": "float32", "double": "float64", "char": "string", "string": "string", "unicode": "string",
    "text": "string", "binary": "binary", "timestamp": "timestamp[us]",
}

#: UCDs that mark a table's main position (the HEALPix index column is computed from it).
RA_UCDS = ("pos.eq.ra;meta.main", "pos.eq.ra")
DEC_UCDS = ("pos.eq.dec;meta.main", "pos.eq.dec")


@dataclass(frozen=True)
class CatalogColumn:
    """One declared column: its Felis datatype, length, nullability, unit, UCD and description."""

    name: str
    datatype: str
    nullable: bool = True
    length: int | None = None
    unit: str | None = None
    ucd: str | None = None
    description: str | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type values of this column are stored as."""
        import pyarrow as pa

        return pa.type_for_alias(ARROW_TYPES[self.datatype])

    def field_metadata(self) -> dict[bytes, bytes]:
        """Unit, UCD and description as Parquet field metadata (keys ``unit``, ``ucd``, ``description``)."""
        values = {"unit": self.unit, "ucd": self.ucd, "description": self.description}
        return {k.encode(): v.encode() for k, v in values.items() if v}

    def describe(self) -> dict[str, Any]:
        """A flat, JSON-friendly description for tables and ``--json`` output."""
        return {"name": self.name, "datatype": self.datatype, "length": self.length, "nullable": self.nullable,
                "unit": self.unit or "", "ucd": self.ucd or "", "description": self.description or ""}


@dataclass(frozen=True)
class CatalogSchema:
    """The declared schema of a catalog dataset type: one table of a Felis schema.

    ``version`` is the number the registry gave it (None until it is declared);
    ``felis`` is the canonical JSON of the whole Felis schema, the form that is stored.
    """

    schema_name: str
    table: str
    columns: tuple[CatalogColumn, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, tuple[str, ...]], ...]
    felis: str
    description: str | None = None
    version: int | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> CatalogColumn:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema a conforming table has: declared types, nullability and field metadata."""
        import pyarrow as pa

        return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable, metadata=c.field_metadata() or None)
                          for c in self.columns])

    def position_columns(self) -> tuple[str, str] | None:
        """(ra, dec) column names of the table's main position, found by UCD (else named ra/dec)."""
        def find(ucds: tuple[str, ...], names: tuple[str, ...]) -> str | None:
            for ucd in ucds:
                for col in self.columns:
                    if (col.ucd or "").lower() == ucd.lower():
                        return col.name
            return next((c.name for c in self.columns if c.name in names), None)

        ra, dec = find(RA_UCDS, ("ra", "coord_ra")), find(DEC_UCDS, ("dec", "coord_dec"))
        return (ra, dec) if ra and dec else None

    def with_version(self, version: int) -> CatalogSchema:
        from dataclasses import replace

        return replace(self, version=version)

    def same_definition(self, other: CatalogSchema) -> bool:
        """Whether both declare the same table of the same Felis schema (versions aside)."""
        return (self.table, self.felis) == (other.table, other.felis)

    def felis_model(self) -> Any:
        """The ``felis.datamodel.Schema`` this was made from (for Felis's own DDL generation)."""
        datamodel = require("felis.datamodel", "a declared catalog schema")
        return datamodel.Schema.model_validate(json.loads(self.felis))


def load_schema(source: str | Path | Any, table: str | None = None) -> CatalogSchema:
    """Read and validate a Felis schema (a YAML file's path, YAML text of several lines, a
    ``felis.datamodel.Schema`` or a :class:`CatalogSchema`)
    and take its table ``table`` (needed only when it holds several).  CatalogSchemaError names
    the file and each place Felis found wrong."""
    if isinstance(source, CatalogSchema) and table in (None, source.table):
        return source
    datamodel = require("felis.datamodel", "a declared catalog schema")
    if isinstance(source, CatalogSchema):
        return _from_model(source.felis_model(), table, "the schema given")
    if isinstance(source, datamodel.Schema):
        return _from_model(source, table, "the Felis schema given")
    where, text = _read(source)
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CatalogSchemaError(f"{where} is not YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise CatalogSchemaError(f"{where} is not a Felis schema: a Felis schema is a YAML mapping with "
                                 f"'name' and 'tables', not a {type(data).__name__}")
    return _from_model(_validated(datamodel, data, where), table, where)


def schema_from_json(felis: str, table: str, version: int | None = None, *,
                     where: str = "the registry's stored schema") -> CatalogSchema:
    """The schema the registry stored, or ``where`` else (canonical Felis JSON and the table's name)."""
    datamodel = require("felis.datamodel", "a declared catalog schema")
    try:
        data = json.loads(felis)
    except ValueError as err:
        raise CatalogSchemaError(f"{where} is not Felis JSON: {err}") from None
    if not isinstance(data, dict):
        raise CatalogSchemaError(f"{where} is not a Felis schema: a JSON object with 'name' and 'tables'")
    model = _validated(datamodel, data, where)
    schema = _from_model(model, table, where)
    return schema if version is None else schema.with_version(version)


def _read(source: str | Path) -> tuple[str, str]:
    """(how to name it in errors, its YAML text): a path to a file, or YAML text itself."""
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.strip()):
        path = Path(source)
        try:
            return f"schema file {str(path)!r}", path.read_text(encoding="utf-8")
        except OSError as err:
            raise CatalogSchemaError(f"cannot read schema file {str(path)!r}: {err.strerror or err}") from None
        except UnicodeDecodeError:
            raise CatalogSchemaError(f"schema file {str(path)!r} is not UTF-8 text") from None
    if isinstance(source, str):
        return "the schema text given", source
    raise CatalogSchemaError(f"a catalog schema is a Felis YAML file's path, YAML text or a felis Schema, "
                             f"not {type(source).__name__}")


def _validated(datamodel: Any, data: dict[str, Any], where: str) -> Any:
    import pydantic

    for table in data.get("tables") or []:  # Felis reports an unknown datatype without saying where
        for col in (table.get("columns") or []) if isinstance(table, dict) else []:
            kind = col.get("datatype") if isinstance(col, dict) else None
            if isinstance(kind, str) and kind not in ARROW_TYPES:
                raise CatalogSchemaError(f"{where} is not valid Felis: tables[{table.get('name')}].columns"
                                         f"[{col.get('name')}].datatype: unknown datatype {kind!r}; Felis has "
                                         f"{', '.join(ARROW_TYPES)}")
    try:
        return datamodel.Schema.model_validate(data)
    except pydantic.ValidationError as err:
        problems = []
        for e in err.errors()[:5]:
            loc = _location(data, e.get("loc", ()))
            problems.append(f"{loc}: {e.get('msg', '')}" if loc else e.get("msg", ""))
        more = f" (and {err.error_count() - 5} more)" if err.error_count() > 5 else ""
        raise CatalogSchemaError(f"{where} is not valid Felis: {'; '.join(problems)}{more}") from None
    except (TypeError, ValueError, KeyError) as err:  # raised by some of Felis's own checks
        raise CatalogSchemaError(f"{where} is not valid Felis: {' '.join(str(err).split())}") from None


def _location(data: Any, loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a readable path, naming tables and columns (``tables[src].columns[ra].datatype``)."""
    parts, node = [], data
    for key in loc:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            node = node[key]
            name = node.get("name") if isinstance(node, dict) else None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{name if name else key}]"]
        elif isinstance(key, str):
            node = node.get(key) if isinstance(node, dict) else None
            if key[0].isupper() or " " in key:  # a pydantic union tag, not a field of the file
                continue
            parts.append(key)
    return ".".join(parts)


def _from_model(model: Any, table: str | None, where: str) -> CatalogSchema:
    tables = list(model.tables)
    if not tables:
        raise CatalogSchemaError(f"{where} declares no tables")
    if table is None:
        if len(tables) > 1:
            raise CatalogSchemaError(f"{where} declares {len(tables)} tables ({', '.join(t.name for t in tables)}): "
                                     "say which one the dataset type holds")
        chosen = tables[0]
    else:
        chosen = next((t for t in tables if t.name == table), None)
        if chosen is None:
            raise CatalogSchemaError(f"{where} has no table {table!r}; it declares "
                                     f"{', '.join(t.name for t in tables)}")
    by_id = {c.id: c.name for c in chosen.columns}
    columns = tuple(CatalogColumn(name=c.name, datatype=str(c.datatype.value if hasattr(c.datatype, "value") else
                                                               c.datatype),
                                  nullable=bool(c.nullable), length=c.length, unit=c.ivoa_unit or c.fits_tunit,
                                  ucd=c.ivoa_ucd, description=c.description) for c in chosen.columns)
    unknown = [c.name for c in columns if c.datatype not in ARROW_TYPES]
    if unknown:
        raise CatalogSchemaError(f"{where}: table {chosen.name!r} column(s) {unknown} have a datatype skybutler "
                                 "cannot store")
    key = chosen.primary_key
    keys = tuple(by_id.get(k, k) for k in ([key] if isinstance(key, str) else (key or [])))
    indexes = tuple((ix.name, tuple(by_id.get(k, k) for k in (ix.columns or []))) for ix in chosen.indexes)
    felis = json.dumps(model.model_dump(mode="json", by_alias=True, exclude_defaults=True), sort_keys=True)
    return CatalogSchema(schema_name=model.name, table=chosen.name, columns=columns, primary_key=keys,
                         indexes=indexes, felis=felis, description=chosen.description)
