"""The registry's SQL schema, built from the dimension universe.

Static tables hold collections, dataset types, datasets and their artifacts; one
table per dimension element holds its records; spatial elements get a sky-pixel
overlap table for coarse spatial joins.  Dataset membership lives in one "tags"
table (RUN and TAGGED membership) and one "calibs" table (CALIBRATION membership
with validity ranges) per dimension group, with a real column per dimension, so
queries join datasets to dimension tables directly.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping

import sqlalchemy as sa

from ..dimensions import DimensionElement, DimensionGroup, DimensionUniverse

#: Bumped whenever the static schema changes; see registry/migrations.py.
SCHEMA_VERSION = 6

NAME_LENGTH = 255


def key_type(element: DimensionElement) -> sa.types.TypeEngine:
    assert element.key is not None
    return sa.BigInteger() if element.key.type == "int" else sa.String(element.key.length)


_FIELD_TYPES = {"int": sa.BigInteger, "float": sa.Float, "str": lambda: sa.String(NAME_LENGTH), "bool": sa.Boolean}


def element_columns(universe: DimensionUniverse, element: DimensionElement) -> list[sa.Column]:
    """Identity columns (named by dimension, the element's own key by its key name),
    implied-dimension columns, typed field columns, region and timespan columns."""
    columns: list[sa.Column] = []
    for dim in element.identity:
        columns.append(sa.Column(element.column_of(dim), key_type(universe[dim]), primary_key=True,
                                 autoincrement=False))
    for dim in element.implies:
        columns.append(sa.Column(dim, key_type(universe[dim]), nullable=False))
    for name, kind in element.fields.items():
        columns.append(sa.Column(name, _FIELD_TYPES[kind](), nullable=True))
    if element.region:
        columns.append(sa.Column("region", sa.LargeBinary, nullable=True))
    if element.timespan:
        columns.append(sa.Column("timespan_begin", sa.BigInteger, nullable=True))
        columns.append(sa.Column("timespan_end", sa.BigInteger, nullable=True))
    return columns


def foreign_keys_to(universe: DimensionUniverse, dims: tuple[str, ...], column_of=lambda d: d, *,
                    implied_out: bool = False) -> list[sa.ForeignKeyConstraint]:
    """Foreign keys from columns holding ``dims`` to each dimension's own table.

    ``implied_out``: leave out the key to a dimension that identifies another of ``dims`` (the
    ``instrument`` of a ``visit``): the key to that other dimension's table takes its columns,
    and that table's own key vouches for them.  On the hot insert paths each key left out is one
    check less per row for the server."""
    out = []
    for dim in dims:
        target = universe[dim]
        if target.skypix is not None:
            continue
        if implied_out and any(dim in universe[other].requires for other in dims
                               if other != dim and universe[other].skypix is None):
            continue
        local = [column_of(d) for d in target.identity]
        remote = [f"{dim}.{target.column_of(d)}" for d in target.identity]
        out.append(sa.ForeignKeyConstraint(local, remote))
    return out


def group_table_name(prefix: str, group: DimensionGroup) -> str:
    """A readable, length-safe table name for a dimension group's tags/calibs table."""
    name = f"{prefix}_{'_'.join(group.required)}" if group.required else f"{prefix}_empty"
    if len(name) > 55:
        name = f"{prefix}_{hashlib.sha1(name.encode()).hexdigest()[:12]}"
    return name


class TablesOnDemand(Mapping[str, sa.Table]):
    """Tables by name, each declared by ``make`` the first time it is asked for: a command
    pays only for the tables it touches (a dimension element's table takes about a
    millisecond to declare, and a universe has dozens)."""

    def __init__(self, names: Iterable[str], make: Callable[[str], sa.Table], lock: threading.RLock):
        self._names = tuple(names)
        self._make = make
        self._lock = lock
        self._made: dict[str, sa.Table] = {}

    def __getitem__(self, name: str) -> sa.Table:
        table = self._made.get(name)
        if table is None:
            if name not in self._names:
                raise KeyError(name)
            with self._lock:  # declared once, even when two threads ask at once
                table = self._made.get(name)
                if table is None:
                    table = self._made[name] = self._make(name)
        return table

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def meta_table(schema: str | None, metadata: sa.MetaData | None = None) -> sa.Table:
    """Key/value facts about the repository: schema version, universe name and version."""
    return sa.Table("skybutler_meta", metadata or sa.MetaData(schema=schema),
                    sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))


#: The static tables, lent to every RegistrySchema by these attribute names.
_STATIC = ("meta", "collection", "collection_chain", "dataset_type", "dataset", "location", "dataset_count")


@functools.lru_cache(maxsize=8)  # a handful of (universe, database schema) pairs per process at a time
def shared_tables(universe: DimensionUniverse, schema: str | None) -> SharedTables:
    """The tables of ``universe`` in database schema ``schema``, declared once per process."""
    return SharedTables(universe, schema)


class SharedTables:
    """The tables every registry of one universe in one database schema declares alike: the
    static ones, the dimension element tables and their sky-pixel overlap tables, and the
    dynamic per-group tags and calibs tables.  Element and overlap tables are declared on first
    use, each after the tables its foreign keys point to; nothing here is changed once declared."""

    def __init__(self, universe: DimensionUniverse, schema: str | None = None):
        self.universe = universe
        self.metadata = sa.MetaData(schema=schema)
        md = self.metadata
        self._lock = threading.RLock()
        self.meta = meta_table(schema, md)
        self.elements = TablesOnDemand((e.name for e in universe.elements.values() if e.skypix is None),
                                       self._element_table, self._lock)
        self.skypix_overlaps = TablesOnDemand(
            (name for name in self.elements if universe[name].region and universe.spatial_index),
            self._overlap_table, self._lock)
        self.collection = sa.Table(
            "collection", md,
            sa.Column("collection_id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(NAME_LENGTH), nullable=False, unique=True),
            sa.Column("type", sa.String(16), nullable=False),
            sa.Column("doc", sa.Text, nullable=False, default=""))
        self.collection_chain = sa.Table(
            "collection_chain", md,
            sa.Column("parent_id", sa.Integer, sa.ForeignKey("collection.collection_id", ondelete="CASCADE"),
                      primary_key=True),
            sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("child_id", sa.Integer, sa.ForeignKey("collection.collection_id"), nullable=False, index=True))
        self.dataset_type = sa.Table(
            "dataset_type", md,
            sa.Column("dataset_type_id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(NAME_LENGTH), nullable=False, unique=True),
            sa.Column("dimensions", sa.Text, nullable=False),
            sa.Column("storage_class", sa.String(64), nullable=False),
            sa.Column("is_calibration", sa.Boolean, nullable=False))
        self.dataset = sa.Table(
            "dataset", md,
            sa.Column("id", sa.Uuid, primary_key=True),
            sa.Column("dataset_type_id", sa.Integer, sa.ForeignKey("dataset_type.dataset_type_id"), nullable=False),
            sa.Column("run_id", sa.Integer, sa.ForeignKey("collection.collection_id"), nullable=False, index=True),
            sa.Column("ingest_time", sa.BigInteger, nullable=False),
            # What a membership row's one foreign key to its dataset refers to (see _membership_keys).
            sa.Index("dataset_id_type", "id", "dataset_type_id", unique=True),
            sqlite_with_rowid=False)  # rows kept in their ID's B-tree: one B-tree fewer per dataset
        self.location = sa.Table(
            "dataset_location", md,
            sa.Column("dataset_id", sa.Uuid, sa.ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("path", sa.Text, nullable=False),
            sa.Column("formatter", sa.String(32), nullable=False),
            sa.Column("size", sa.BigInteger, nullable=False),
            sa.Column("checksum", sa.String(64), nullable=True))
        # How many datasets of a type each RUN or TAGGED collection holds, as rows to be summed:
        # each write adds a row of its change (no row is updated, so concurrent writers never
        # wait for each other's), and rows of one pair are now and then folded into one.
        self.dataset_count = sa.Table(
            "dataset_count", md,
            sa.Column("count_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                      autoincrement=True),
            sa.Column("dataset_type_id", sa.Integer, sa.ForeignKey("dataset_type.dataset_type_id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("collection_id", sa.Integer, sa.ForeignKey("collection.collection_id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("n", sa.BigInteger, nullable=False),
            sa.Index("dataset_count_pair", "dataset_type_id", "collection_id", "n"))
        self._tags: dict[DimensionGroup, sa.Table] = {}
        self._calibs: dict[DimensionGroup, sa.Table] = {}
        self._aliases: dict[tuple[sa.Table, str], sa.Alias] = {}

    def _element_table(self, name: str) -> sa.Table:
        element = self.universe[name]
        dims = element.requires + element.implies
        self.declare_dimensions(dims)
        fks = foreign_keys_to(self.universe, dims, element.column_of)
        return sa.Table(element.name, self.metadata, *element_columns(self.universe, element), *fks)

    def declare_dimensions(self, dims: Iterable[str]) -> None:
        """Declare the tables of ``dims`` (those that have one), which foreign keys point to."""
        for dim in dims:
            self.elements.get(dim)  # None for a sky-pixel dimension, which has no table

    def alias(self, table: sa.Table, name: str) -> sa.Alias:
        """The alias ``name`` of ``table``, made once and shared by every query that uses it:
        an alias builds its column collection on first use, which costs about as much as
        compiling the query."""
        found = self._aliases.get((table, name))
        if found is None:
            with self._lock:
                found = self._aliases.setdefault((table, name), table.alias(name))
        return found

    def _overlap_table(self, name: str) -> sa.Table:
        element = self.universe[name]
        self.declare_dimensions([name])  # the table its foreign key points to
        cols = [sa.Column(element.column_of(d), key_type(self.universe[d]), primary_key=True, autoincrement=False)
                for d in element.identity]
        return sa.Table(
            f"{element.name}_skypix_overlap", self.metadata, *cols,
            sa.Column("skypix_system", sa.String(16), primary_key=True),
            sa.Column("skypix_level", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("skypix_index", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.ForeignKeyConstraint([element.column_of(d) for d in element.identity],
                                    [f"{element.name}.{element.column_of(d)}" for d in element.identity],
                                    ondelete="CASCADE"),
            sa.Index(f"{element.name}_skypix_lookup", "skypix_system", "skypix_level", "skypix_index"))

    def _membership_keys(self, group: DimensionGroup) -> list[sa.ForeignKeyConstraint]:
        """The foreign keys of a tags or calibs table, no two checking the same fact (each is a
        check per inserted row, the bulk of the server's work in a ``put_many``):

        - one key to ``dataset (id, dataset_type_id)``, which also vouches for the dataset type
          (the dataset's own key to ``dataset_type``) and keeps a membership's type its dataset's;
        - one to ``collection``;
        - one to each dimension's table, but none to a dimension that identifies another of the
          group (the key to ``visit`` covers its ``instrument``).
        """
        return [sa.ForeignKeyConstraint(["dataset_id", "dataset_type_id"], ["dataset.id", "dataset.dataset_type_id"],
                                        ondelete="CASCADE"),
                *foreign_keys_to(self.universe, group.required, implied_out=True)]

    def _group_columns(self, group: DimensionGroup) -> list[sa.Column]:
        return [sa.Column(d, key_type(self.universe[d]), nullable=False) for d in group.required]

    def tags_table(self, group: DimensionGroup) -> sa.Table:
        """RUN/TAGGED membership of datasets whose type has these dimensions."""
        table = self._tags.get(group)
        return table if table is not None else self._declared_once(self._tags, group, self._declare_tags)

    def _declared_once(self, tables: dict[DimensionGroup, sa.Table], group: DimensionGroup,
                       declare: Callable[[DimensionGroup], sa.Table]) -> sa.Table:
        """``group``'s table in ``tables``, or, if it is not there yet, ``declare``-d under the lock
        (once, even when two threads ask at once)."""
        with self._lock:
            table = tables.get(group)
            return declare(group) if table is None else table

    def _declare_tags(self, group: DimensionGroup) -> sa.Table:
        name = group_table_name("dataset_tags", group)
        dims = list(group.required)
        self.declare_dimensions(dims)
        table = sa.Table(
            name, self.metadata,
            sa.Column("dataset_type_id", sa.Integer, nullable=False),
            sa.Column("collection_id", sa.Integer, sa.ForeignKey("collection.collection_id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("dataset_id", sa.Uuid, nullable=False),
            *self._group_columns(group),
            *self._membership_keys(group),
            # The primary key is a query's dataset lookup (type, collections, data-ID ranges
            # -> dataset IDs) and covers it: SQLite keeps the rows in it (WITHOUT ROWID),
            # PostgreSQL carries the dataset ID in it (INCLUDE).  The member constraint,
            # dataset ID first, serves look-ups and deletions by dataset ID.  Two B-trees per
            # row instead of five: a bulk insert writes less than half as much.
            sa.PrimaryKeyConstraint("dataset_type_id", "collection_id", *dims, name=f"{name}_pkey",
                                    postgresql_include=["dataset_id"]),
            sa.UniqueConstraint("dataset_id", "collection_id", name=f"{name}_member"),
            sqlite_with_rowid=False,
            extend_existing=True)
        self._tags[group] = table
        return table

    def calibs_table(self, group: DimensionGroup) -> sa.Table:
        """CALIBRATION membership, with a validity range per (dataset, collection)."""
        table = self._calibs.get(group)
        return table if table is not None else self._declared_once(self._calibs, group, self._declare_calibs)

    def _declare_calibs(self, group: DimensionGroup) -> sa.Table:
        name = group_table_name("dataset_calibs", group)
        self.declare_dimensions(group.required)
        table = sa.Table(
            name, self.metadata,
            sa.Column("calib_id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("dataset_type_id", sa.Integer, nullable=False),
            sa.Column("collection_id", sa.Integer, sa.ForeignKey("collection.collection_id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("dataset_id", sa.Uuid, nullable=False, index=True),
            *self._group_columns(group),
            sa.Column("validity_begin", sa.BigInteger, nullable=False),
            sa.Column("validity_end", sa.BigInteger, nullable=False),
            *self._membership_keys(group),
            sa.Index(f"{name}_lookup", "collection_id", "dataset_type_id", *group.required),
            extend_existing=True)
        self._calibs[group] = table
        return table


class _Lent(Mapping[str, sa.Table]):
    """A :class:`TablesOnDemand` of shared tables, each lent by ``lend`` as it is handed out."""

    def __init__(self, tables: TablesOnDemand, lend: Callable[[sa.Table], sa.Table]):
        self._tables = tables
        self._lend = lend

    def __getitem__(self, name: str) -> sa.Table:
        return self._lend(self._tables[name])

    def __contains__(self, name: object) -> bool:
        return name in self._tables

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)


class RegistrySchema:
    """All table objects of one registry.  Its own MetaData holds the tables its stores declare
    (and may reflect again or drop: extracted facts, user tables...), and is lent the tables of
    :class:`SharedTables`, declared once per process for the universe and database schema: an
    open of a repository no longer declares them again (three quarters of an open's CPU).  A
    lent table is the shared object itself, so nothing may change one (add a column, an index)."""

    meta: sa.Table
    collection: sa.Table
    collection_chain: sa.Table
    dataset_type: sa.Table
    dataset: sa.Table
    location: sa.Table
    dataset_count: sa.Table

    meta_table = staticmethod(meta_table)

    def __init__(self, universe: DimensionUniverse, schema: str | None = None):
        self.universe = universe
        self.metadata = sa.MetaData(schema=schema)
        self._shared = shared = shared_tables(universe, schema)
        for name in _STATIC:
            setattr(self, name, self._lend(getattr(shared, name)))
        self.elements = _Lent(shared.elements, self._lend)
        self.skypix_overlaps = _Lent(shared.skypix_overlaps, self._lend)
        #: the calibs tables this registry asked for (others of the process may not exist in its database)
        self._calibs: dict[DimensionGroup, sa.Table] = {}

    def _lend(self, table: sa.Table) -> sa.Table:
        """``table`` put in this registry's MetaData, with the tables its foreign keys point to:
        a store's table declared there finds them by name, and ``create_all`` makes them all."""
        if table.key not in self.metadata.tables:
            # MetaData has no public call to hold a table made in another MetaData.
            self.metadata._add_table(table.name, table.schema, table)
            for key in table.foreign_keys:
                self._lend(key.column.table)
        return table

    def declare_all(self) -> None:
        """Declare every element and overlap table (to create them all)."""
        for tables in (self.elements, self.skypix_overlaps):
            list(tables.values())

    def declare_dimensions(self, dims: Iterable[str]) -> None:
        """Declare the tables of ``dims`` (those that have one), which foreign keys point to."""
        for dim in dims:
            self.elements.get(dim)  # None for a sky-pixel dimension, which has no table

    def alias(self, table: sa.Table, name: str) -> sa.Alias:
        """The alias ``name`` of ``table``, made once per process and shared (see SharedTables.alias)."""
        return self._shared.alias(table, name)

    def tags_table(self, group: DimensionGroup) -> sa.Table:
        """RUN/TAGGED membership of datasets whose type has these dimensions."""
        return self._lend(self._shared.tags_table(group))

    def calibs_table(self, group: DimensionGroup) -> sa.Table:
        """CALIBRATION membership, with a validity range per (dataset, collection)."""
        table = self._calibs.get(group)
        if table is None:
            table = self._calibs[group] = self._lend(self._shared.calibs_table(group))
        return table
