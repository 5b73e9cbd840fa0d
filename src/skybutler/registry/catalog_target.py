"""A user's SQL database as the target of a catalog load: SQLite, PostgreSQL or DuckDB.

It is here, in ``registry/``, because SQL lives in ``registry/`` and ``query/`` only, but it
never touches a repository's registry: the database is the user's own, named by a URL they
give (``sqlite:///file.db``, ``postgresql://user@host/db[?schema=ns]``,
``duckdb:///file.duckdb``), and ``catalogs/sql_load.py`` decides what goes into it.  Each target

- creates the catalog's table from the declared schema: Felis builds the SQLAlchemy
  table (column types and lengths per dialect, nullability, primary key, descriptions as
  column comments); we add what Felis leaves out -- our table name, single precision for
  ``float`` (Felis gives PostgreSQL double precision), no auto-increment on an integer
  key, the ``_healpix_29`` column and its index, index names unique to the table -- and
  DuckDB gets the PostgreSQL dialect's DDL, which it reads;
- keeps the bookkeeping table ``skybutler_loaded_datasets`` (table, dataset ID, type,
  schema version, rows, when), the record of which datasets a table holds;
- loads the rows of a group of datasets (one, or several small ones) with their
  bookkeeping rows in one transaction, by the fastest Arrow path the database has: ``executemany`` (SQLite), ``COPY ... FROM STDIN`` of
  CSV written by pyarrow (PostgreSQL), an ``INSERT ... SELECT`` from the registered
  Arrow table (DuckDB).  The bookkeeping rows go first, so a second loader of the same
  dataset waits on its key and then gives the group up (the caller retries its datasets
  one by one, skipping those now loaded) instead of loading them twice.
"""

from __future__ import annotations

import datetime
import io
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..catalogs.healpix import HEALPIX_COLUMN
from ..errors import CatalogLoadError
from ..extras import require

if TYPE_CHECKING:
    from ..catalogs.schemas import CatalogSchema

__all__ = ["BOOKKEEPING_TABLE", "Loaded", "Target", "open_target"]

BOOKKEEPING_TABLE = "skybutler_loaded_datasets"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


def open_target(url: str) -> Target:
    """The target database of ``url``; CatalogLoadError for a URL of another kind."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "duckdb":
        return DuckDBTarget(url)
    if scheme in ("sqlite", "postgresql", "postgres"):
        return SQLAlchemyTarget(url)
    raise CatalogLoadError(f"cannot load a catalog into {_shown(url)}: give a sqlite:///FILE, "
                           "postgresql://USER@HOST/DB or duckdb:///FILE URL")


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def _one_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err)
    return " ".join(text.split())[:400]


def check_table_name(name: str) -> str:
    if not _NAME.match(name):
        raise CatalogLoadError(f"invalid table name {name!r}: letters, digits and _, starting with a letter or _")
    return name


class Target:
    """One open target database."""

    url: str

    def prepare(self, schema: CatalogSchema, table: str) -> None:
        """Create ``table`` (and the bookkeeping table) unless there; an existing table must have our columns."""
        raise NotImplementedError

    def loaded(self, table: str) -> set[str]:
        """The dataset IDs (32 hex digits) already loaded into ``table``."""
        raise NotImplementedError

    def load(self, table: str, group: Sequence[Loaded], rows: pa.Table) -> bool:
        """Load the rows of a group of datasets with their bookkeeping rows, in one transaction;
        False (nothing loaded) if one of them was loaded meanwhile by a concurrent loader."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def refused(self, what: str, table: str, err: BaseException) -> CatalogLoadError:
        return CatalogLoadError(f"{_shown(self.url)} refused {what} of table {table!r}: {_one_line(err)}")


def _expected_columns(schema: CatalogSchema) -> list[str]:
    return [*schema.names, HEALPIX_COLUMN]


def _check_existing(url: str, table: str, have: list[str], schema: CatalogSchema) -> None:
    want = _expected_columns(schema)
    if [c.lower() for c in have] != [c.lower() for c in want]:
        raise CatalogLoadError(f"{_shown(url)} already has a table {table!r} with columns {have}, not the "
                               f"declared {want}: load into another table (--table) or drop it")


def _sa_table(schema: CatalogSchema, table: str, metadata: Any) -> Any:
    """The SQLAlchemy table of ``schema`` named ``table``: Felis's columns with our additions."""
    import sqlalchemy as sa

    felis_metadata = require("felis.metadata", "creating a catalog's SQL table")
    felis_log = logging.getLogger("felis")
    level = felis_log.level
    felis_log.setLevel(logging.ERROR)  # it warns that it leaves out what we add ourselves
    try:
        built = felis_metadata.MetaDataBuilder(schema.felis_model(), apply_schema_to_metadata=False,
                                               ignore_constraints=True, skip_indexes=True).build()
    finally:
        felis_log.setLevel(level)
    source = built.tables[schema.table]
    columns = []
    for col in source.columns:
        kind = sa.REAL() if schema.column(col.name).datatype == "float" else col.type
        columns.append(sa.Column(col.name, kind, nullable=col.nullable, autoincrement=False, comment=col.comment))
    columns.append(sa.Column(HEALPIX_COLUMN, sa.BigInteger, nullable=True, autoincrement=False,
                             comment="HEALPix NESTED order-29 index of the position (the HATS convention)"))
    result = sa.Table(table, metadata, *columns)
    if schema.primary_key:
        result.append_constraint(sa.PrimaryKeyConstraint(*schema.primary_key, name=f"{table}_pkey"))
    for name, cols in schema.indexes:
        sa.Index(f"{table}_{name}", *[result.c[c] for c in cols])
    sa.Index(f"{table}_{HEALPIX_COLUMN}", result.c[HEALPIX_COLUMN])
    return result


def _bookkeeping(metadata: Any) -> Any:
    import sqlalchemy as sa

    return sa.Table(BOOKKEEPING_TABLE, metadata,
                    sa.Column("table_name", sa.String(64), primary_key=True),
                    sa.Column("dataset_id", sa.String(32), primary_key=True),
                    sa.Column("dataset_type", sa.String(255), nullable=False),
                    sa.Column("schema_version", sa.Integer, nullable=True),
                    sa.Column("n_rows", sa.BigInteger, nullable=False),
                    sa.Column("loaded_at", sa.String(32), nullable=False))


@dataclass(frozen=True)
class Loaded:
    """One dataset of a load: its ID (32 hex digits), type, schema version and row count."""

    dataset_id: str
    dataset_type: str
    version: int | None
    n_rows: int


def _bookkeeping_row(table: str, item: Loaded) -> dict[str, Any]:
    return {"table_name": table, "dataset_id": item.dataset_id, "dataset_type": item.dataset_type,
            "schema_version": item.version, "n_rows": item.n_rows,
            "loaded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _named(group: Sequence[Loaded]) -> str:
    ids = [item.dataset_id for item in group]
    return f"dataset {ids[0]}" if len(ids) == 1 else f"datasets {ids[0]} ... ({len(ids)})"


def _pylist(column: pa.ChunkedArray) -> list:
    """A column's values as Python objects: through numpy when it has no nulls and numbers
    (several times faster than Arrow's own conversion), else Arrow's."""
    kind = column.type
    if not column.null_count and (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                                  or pa.types.is_boolean(kind)):
        return column.to_numpy().tolist()
    return column.to_pylist()


def _sqlite_autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    # A page cache of 256 MiB for this connection only (the database file keeps its settings):
    # the table's indexes take rows in random order, and with SQLite's default 2 MiB cache every
    # insert into a large table goes to the disk.
    dbapi_connection.execute("PRAGMA cache_size = -262144")


class SQLAlchemyTarget(Target):
    """SQLite (executemany) and PostgreSQL (COPY) through SQLAlchemy."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self.url = url
        made = sa.engine.make_url(url)
        self.namespace = made.query.get("schema")
        made = made.difference_update_query(["schema"])
        if made.get_backend_name() in ("postgresql", "postgres"):
            require("psycopg", "loading a catalog into PostgreSQL")
            made = made.set(drivername="postgresql+psycopg")
        self.dialect = made.get_backend_name()
        if self.dialect == "sqlite" and self.namespace:
            raise CatalogLoadError(f"{_shown(url)}: a SQLite database has no schemas (drop ?schema=)")
        try:
            self.engine = sa.create_engine(made, poolclass=sa.pool.NullPool)
        except (sa.exc.ArgumentError, ImportError, ValueError) as err:
            raise CatalogLoadError(f"cannot open {_shown(url)}: {_one_line(err)}") from None
        if self.dialect == "sqlite":  # our own BEGIN, so that DDL is transactional too (pysqlite commits before it)
            sa.event.listen(self.engine, "connect", _sqlite_autocommit_driver)
            sa.event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        self.metadata = sa.MetaData(schema=self.namespace)
        self.bookkeeping = _bookkeeping(self.metadata)
        self.tables: dict[str, Any] = {}

    @contextmanager
    def _begin(self, what: str, table: str) -> Iterator[Any]:
        import sqlalchemy as sa

        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as err:
            raise self.refused(what, table, err) from None

    def prepare(self, schema: CatalogSchema, table: str) -> None:
        import sqlalchemy as sa

        check_table_name(table)
        with self._begin("the DDL", table) as conn:
            if self.namespace:
                conn.execute(sa.schema.CreateSchema(self.namespace, if_not_exists=True))
            inspector = sa.inspect(conn)
            if inspector.has_table(table, schema=self.namespace):
                have = [c["name"] for c in inspector.get_columns(table, schema=self.namespace)]
                _check_existing(self.url, table, have, schema)
                self.tables[table] = sa.Table(table, sa.MetaData(schema=self.namespace), autoload_with=conn)
            else:
                self.tables[table] = _sa_table(schema, table, self.metadata)
                self.tables[table].create(conn)
            self.bookkeeping.create(conn, checkfirst=True)

    def loaded(self, table: str) -> set[str]:
        import sqlalchemy as sa

        b = self.bookkeeping
        with self._begin("reading the loaded datasets", table) as conn:
            return set(conn.execute(sa.select(b.c.dataset_id).where(b.c.table_name == table)).scalars())

    def load(self, table: str, group: Sequence[Loaded], rows: pa.Table) -> bool:
        import sqlalchemy as sa

        from ..faults import crash_point

        target = self.tables[table]
        try:
            with self.engine.begin() as conn:
                try:
                    conn.execute(self.bookkeeping.insert(), [_bookkeeping_row(table, item) for item in group])
                except sa.exc.IntegrityError:
                    return False  # another loader committed one of them meanwhile
                if self.dialect == "sqlite":
                    self._executemany(conn, target, rows)
                else:
                    self._copy(conn, target, rows)
                crash_point("catalog-rows-loaded")
        except sa.exc.SQLAlchemyError as err:
            raise CatalogLoadError(f"{_shown(self.url)} refused the rows of {_named(group)} for table "
                                   f"{table!r}: {_one_line(err)}") from None
        return True

    @staticmethod
    def _executemany(conn: Any, target: Any, rows: pa.Table) -> None:
        names = ", ".join(f'"{c}"' for c in rows.column_names)
        marks = ", ".join("?" * rows.num_columns)
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.executemany(f'INSERT INTO "{target.name}" ({names}) VALUES ({marks})',
                               zip(*(_pylist(column) for column in rows.columns)))
        finally:
            cursor.close()

    @staticmethod
    def _copy(conn: Any, target: Any, rows: pa.Table) -> None:
        import pyarrow.csv as pacsv

        for i, field in enumerate(rows.schema):  # bytea as PostgreSQL's hex text
            if pa.types.is_binary(field.type):
                rows = rows.set_column(i, field.name, pa.array(
                    [None if v is None else "\\x" + v.hex() for v in rows.column(i).to_pylist()], pa.string()))
        buffer = io.BytesIO()
        pacsv.write_csv(rows, buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        quote = conn.dialect.identifier_preparer
        names = ", ".join(quote.quote(c) for c in rows.column_names)
        with conn.connection.dbapi_connection.cursor() as cursor:
            with cursor.copy(f"COPY {quote.format_table(target)} ({names}) FROM STDIN (FORMAT csv)") as copy:
                copy.write(buffer.getbuffer())

    def close(self) -> None:
        self.engine.dispose()


class DuckDBTarget(Target):
    """DuckDB: the DDL of the PostgreSQL dialect, rows inserted from the Arrow table itself."""

    def __init__(self, url: str):
        duckdb = require("duckdb", "loading a catalog into DuckDB")
        self.url = url
        path = url.split(":///", 1)[1] if ":///" in url else url.split("://", 1)[-1]
        try:
            self.conn = duckdb.connect(path or ":memory:")
        except duckdb.Error as err:
            raise CatalogLoadError(f"cannot open {url}: {_one_line(err)}") from None
        self.error = duckdb.Error

    def _execute(self, what: str, table: str, sql: str, *args: Any) -> Any:
        try:
            return self.conn.execute(sql, *args)
        except self.error as err:
            raise self.refused(what, table, err) from None

    def prepare(self, schema: CatalogSchema, table: str) -> None:
        import sqlalchemy as sa
        from sqlalchemy.dialects import postgresql

        check_table_name(table)
        have = [r[0] for r in self._execute("reading the columns", table,
                                           "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                                           "AND table_schema = current_schema() ORDER BY ordinal_position",
                                           [table]).fetchall()]
        dialect = postgresql.dialect()
        statements = []
        if have:
            _check_existing(self.url, table, have, schema)
        else:
            created = _sa_table(schema, table, sa.MetaData())
            statements.append(str(sa.schema.CreateTable(created).compile(dialect=dialect)))
            statements += [str(sa.schema.CreateIndex(ix).compile(dialect=dialect)) for ix in created.indexes]
        book = sa.schema.CreateTable(_bookkeeping(sa.MetaData()), if_not_exists=True)
        statements.append(str(book.compile(dialect=dialect)))
        self._execute("the DDL", table, "BEGIN TRANSACTION")
        try:
            for statement in statements:
                self._execute("the DDL", table, statement)
            self._execute("the DDL", table, "COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def loaded(self, table: str) -> set[str]:
        rows = self._execute("reading the loaded datasets", table,
                             f"SELECT dataset_id FROM {BOOKKEEPING_TABLE} WHERE table_name = ?", [table]).fetchall()
        return {r[0] for r in rows}

    def load(self, table: str, group: Sequence[Loaded], rows: pa.Table) -> bool:
        from ..faults import crash_point

        names = ", ".join(f'"{c}"' for c in rows.column_names)
        book = [_bookkeeping_row(table, item) for item in group]
        self.conn.execute("BEGIN TRANSACTION")
        try:
            try:
                self.conn.executemany(f"INSERT INTO {BOOKKEEPING_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                                      [list(r.values()) for r in book])
            except self.error as err:
                if "constraint" in str(err).lower():
                    self.conn.execute("ROLLBACK")
                    return False
                raise
            self.conn.register("skybutler_rows", rows)
            try:
                self.conn.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM skybutler_rows')
            finally:
                self.conn.unregister("skybutler_rows")
            crash_point("catalog-rows-loaded")
            self.conn.execute("COMMIT")
        except self.error as err:
            self.conn.execute("ROLLBACK")
            raise CatalogLoadError(f"{self.url} refused the rows of {_named(group)} for table {table!r}: "
                                   f"{_one_line(err)}") from None
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return True

    def close(self) -> None:
        self.conn.close()
