"""Building one SQL statement for a query: data IDs, datasets, or dimension records.

A :class:`QuerySpec` (pydantic, so it can travel to a server) says what is wanted;
:func:`build` turns it into a SELECT with the joins it needs, the compiled
where-clause, collection membership and (for find-first over several collections)
a window function that keeps the first collection's dataset per data ID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lsst.sphgeom as sphgeom
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from ..dimensions import DimensionGroup, normalize_value
from ..errors import DimensionError, QueryError
from ..models import CollectionType, DatasetType
from ..registry import Registry
from ..timespan import NS_MAX, NS_MIN
from . import calibrations
from . import expression as ex
from .binds import check_all_used, parse_with_binds
from .index_hints import governor_hints, seek_hints, without_hinted_bounds
from .joins import JoinBuilder
from .metadata import dataset_field_operand, user_field_operand
from .region_tests import RegionFilter
from .relations import spatial_join, stated_relations
from .search import CollectionSearch
from .where import Operand, WhereCompiler


class QuerySpec(BaseModel):
    """What a query asks for; the same model is what a remote client would send."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kind: str = "data_ids"  # data_ids | datasets | records
    dimensions: tuple[str, ...] = ()
    #: The dataset types of a datasets query: one, or several of the same dimensions.
    dataset_types: tuple[str, ...] = ()
    element: str | None = None
    where: str = ""
    bind: dict[str, Any] = Field(default_factory=dict)
    data_id: dict[str, Any] = Field(default_factory=dict)
    datasets: tuple[str, ...] = ()
    collections: tuple[str, ...] = ()
    find_first: bool = True
    with_implied: bool = False
    #: The time a calibration searched in CALIBRATION collections must be valid at, as
    #: integer TAI nanoseconds [begin, end) (begin == end: an instant).
    timespan: tuple[int, int] | None = None
    #: The where-clause already parsed (``expression.node_to_json``), as a remote client sends
    #: it; ``where`` is then kept for error messages.
    tree: str | None = None
    #: Keep only datasets in these retention states (a datasets query; None: every one).
    states: tuple[str, ...] | None = None


@dataclass
class BuiltQuery:
    """A SELECT plus what is needed to turn its rows into results."""

    statement: sa.Select
    group: DimensionGroup
    columns: list[str]
    region_filters: list[RegionFilter] = field(default_factory=list)
    #: The dataset types of a datasets query; with several, the ``dataset_type_index``
    #: column says which one each row is.
    dataset_types: list[DatasetType] = field(default_factory=list)
    #: Sentences explaining why the result is certainly empty, found before running SQL.
    doomed: list[str] = field(default_factory=list)
    tree: ex.Node | None = None
    where_terms: list[tuple[str, sa.ColumnElement]] = field(default_factory=list)
    base: sa.Select | None = None
    #: Labels identifying one result, when rows must be de-duplicated after the exact
    #: region filters (the joins multiply rows and region columns keep them apart in SQL).
    unique_by: list[str] | None = None
    #: Result columns whose value the query fixes (the RUN, when one RUN is searched; a
    #: dimension whose table holds one record): reading results as columns need not
    #: transfer them.
    constants: dict[str, Any] = field(default_factory=dict)
    #: The constants that hold only while a dimension's table holds no other key: the key
    #: column of that table, for the statement reading the columns to check.
    sole_keys: dict[str, sa.ColumnElement] = field(default_factory=dict)
    #: For several dataset types: each type's own statement, by its dataset_type_index
    #: (the types with no datasets in the collections left out); ``statement`` is their union.
    parts: list[tuple[int, BuiltQuery]] = field(default_factory=list)
    #: For a find-first search of CALIBRATION collections: (dataset type, a statement finding
    #: data IDs with two valid calibrations in their first collection, its partition labels).
    ambiguity: tuple[DatasetType, sa.Select, list[str]] | None = None
    #: This query's statements (reading columns or rows) as the SQL text and parameters
    #: SQLAlchemy sent at their first run, by (result kind, limit, offset[, "rows"]); None for
    #: one SQLAlchemy must run itself: a built query is reused while nothing is committed (the
    #: read cache), and so is its text (see ``columnar.keep_text``).
    compiled: dict[tuple, Any] = field(default_factory=dict, compare=False, repr=False)
    #: (dataset type ID, collection ID) whose maintained count (``dataset_count``) is this
    #: query's count: every dataset of one type in the one searched RUN or TAGGED collection
    #: that holds any, with nothing else asked (see :func:`_counted_pair`).
    counted: tuple[int, int] | None = None

    def certainly_empty(self) -> bool:
        """Whether something found before running SQL rules out every row (no datasets of
        the type in the collections); other ``doomed`` sentences only explain."""
        return any(d.startswith("no ") for d in self.doomed)


def _parse(spec: QuerySpec) -> tuple[ex.Node | None, dict[str, sphgeom.Region]]:
    if spec.tree is None:
        return parse_with_binds(spec.where, spec.bind)
    try:
        tree = ex.node_from_json(spec.tree)
    except ValueError as err:
        raise QueryError(f"malformed query tree: {' '.join(str(err).split())[:300]}") from None
    return parse_with_binds(spec.where, spec.bind, tree)


def _referenced_dimensions(registry: Registry, tree: ex.Node | None) -> set[str]:
    universe = registry.universe
    out: set[str] = set()
    for name in ex.identifiers(tree):
        head, _, rest = name.partition(".")
        if head in universe.elements:
            element = universe[head]
            field = rest.split(".", 1)[0]
            if field in element.requires + element.implies:  # visit.day_obs is day_obs, as Rubin reads it
                element = universe[field]
            out.update(element.identity if element.skypix is None else ())
        elif "." in name and (user := registry.user_tables.get(head)) is not None:
            out.update(user.dimensions)
    return out


class _Context:
    """What the parts of one statement's build share: the search, and what they find out."""

    def __init__(self, registry: Registry, spec: QuerySpec, search: CollectionSearch, dataset_type: str | None):
        self.registry = registry
        self.spec = spec
        self.search = search
        self.path, self.ids = search.path, search.ids
        #: The dataset type whose datasets this statement selects (query_datasets only).
        self.queried = dataset_type
        self.doomed: list[str] = []
        #: The dataset_id column of the queried dataset type's rows (query_datasets only).
        self.row_dataset_id: sa.ColumnElement | None = None
        #: And the collection each of those rows was found in.
        self.row_collection_id: sa.ColumnElement | None = None
        #: The validity range (begin, end) of each row of a calibration type searched in
        #: CALIBRATION collections (unbounded for a row found in a RUN or TAGGED one): ``<type>.timespan``.
        self.row_validity: tuple[sa.ColumnElement, sa.ColumnElement] | None = None
        #: Whether the where-clause constrains that validity (then a find-first search has a time).
        self.validity_used = False
        #: A find-first calibration search's check that it has a time, made once the where-clause is compiled.
        self.time_check: Any = None
        #: Result columns with one value in every row (see ``BuiltQuery.constants``).
        self.constants: dict[str, Any] = {}
        #: Of those, the ones that hold while a dimension table has one key (``BuiltQuery.sole_keys``).
        self.sole_keys: dict[str, sa.ColumnElement] = {}
        #: Dimensions outside the result that a find-first search ranks within (the exposure
        #: whose timespan chose a calibration), as (label, column).
        self.partition: list[tuple[str, sa.ColumnElement]] = []
        #: Whether one dataset may come back from two searched collections (a TAGGED one and
        #: its RUN) without find-first, so rows must be made distinct.
        self.repeats = False
        #: The seek hints on the membership table (``index_hints.seek_hints``).
        self.seeks: list[sa.ColumnElement] = []

    def member_ids(self, dtype: DatasetType) -> list[int]:
        return self.search.member_ids(dtype)

    def dataset_field(self, joins: JoinBuilder) -> Any:
        def resolve(type_name: str | None, field_name: str, column: int | None) -> Operand | None:
            if type_name is None:  # a bare dataset field: of the query's one dataset type
                types = [self.queried] if self.queried else list(self.spec.datasets)
                if len(types) != 1:
                    raise QueryError(f"{field_name!r} alone names a field of the query's dataset type, but the "
                                     f"query has {'none' if not types else 'several'}; write "
                                     f"<dataset_type>.{field_name}", self.spec.where, column)
                type_name = types[0]
            user = self.registry.user_tables.get(type_name)
            if user is not None:
                return user_field_operand(user, joins, field_name, self.spec.where, column)
            found = self.registry.dataset_types.get_optional(type_name)
            if found is None:
                return None
            if field_name == "timespan":
                return self.validity(type_name, column)
            # The queried type's own facts are those of each row's dataset, not of the first
            # one found for its data ID (they differ with find_first=False).
            own = type_name == self.queried
            return dataset_field_operand(self.registry, joins, found[1], field_name, self.member_ids(found[1]),
                                         self.spec.where, column, self.row_dataset_id if own else None,
                                         self.row_collection_id if own else None)

        return resolve

    def validity(self, type_name: str, column: int | None) -> Operand:
        """``<type>.timespan``: the validity range of each row of the queried calibration type,
        as the Rubin butler's query language has it; unbounded for a dataset found in a RUN or
        TAGGED collection (or a query that searches no CALIBRATION collection), which such a
        search finds whatever the time.  A find-first
        search judges every candidate by it before ranking, as a ``timespan`` given with the
        query does: ``bias.timespan OVERLAPS T'2024-01-11'`` finds the bias valid then."""
        if type_name != self.queried:
            raise QueryError(f"{type_name}.timespan is the validity range of each {type_name} the query "
                             f"returns: use it in query_datasets({type_name!r}, ...)", self.spec.where, column)
        if self.row_validity is None:
            return Operand("timespan", span=(sa.literal(NS_MIN, sa.BigInteger), sa.literal(NS_MAX, sa.BigInteger)))
        self.validity_used = True
        return Operand("timespan", span=self.row_validity)


def build(registry: Registry, spec: QuerySpec) -> BuiltQuery:
    """Compile a query spec into one SELECT statement.

    A built query is remembered in the registry's read cache (see
    :mod:`skybutler.registry.read_cache`): a query asked again while nothing was committed
    is the same statement, built from the same collections, dataset types and records,
    so it is not built again.  Building is a third of the time of a count or a small
    query (0.5 ms of SQLAlchemy constructs), and a reused statement also keeps the cache
    keys SQLAlchemy worked out for it.  Only specs whose values are all hashable (no
    regions, lists or times in ``bind``) are remembered.

    On PostgreSQL, whose mark of commits moves with every database of the server, a built
    query is reused while the lookups it was built from (a chain's children, which
    collections hold the queried types) answer as they did, asked again once the mark has
    moved (:meth:`~skybutler.registry.read_cache.ReadCache.checked`); only queries whose
    where-clause names nothing but dimensions and their fields, which the universe
    defines (not dataset facts or user tables, whose definitions live in the database).
    The lookups of one build answer for one moment: the mark is read once."""
    return _build_keyed(registry, spec, _cache_key(spec))


def _build_keyed(registry: Registry, spec: QuerySpec, key: tuple | None) -> BuiltQuery:
    with registry.db.read_cache.pinned():
        if key is None:
            return _build(registry, spec)
        return registry.db.read_cache.checked(key, lambda: _build(registry, spec), registry.name_tables(),
                                              keep=lambda built: _names_dimensions_only(registry, built.tree))


def build_checked_later(registry: Registry, spec: QuerySpec) -> tuple[BuiltQuery, Callable[[], BuiltQuery] | None]:
    """The query as :func:`build` would give it, and how to check it when it is run: a query
    remembered in the read cache is handed out unchecked, with :func:`build` to call (which
    checks it, or builds it anew) before the database is read for it (see
    ``QueryResults._built``); None when it was built or checked here.  So a query asked and
    counted at once (a maintained count, remembered too) reads the watcher's mark once, when
    it is counted, rather than once when asked and again when counted: on PostgreSQL each
    read is a round trip.  A query is then checked against the database as it is when run."""
    key = _cache_key(spec)
    found = None if key is None else registry.db.read_cache.remembered(key, registry.name_tables())
    if found is None:
        return _build_keyed(registry, spec, key), None
    built, to_check = found
    return built, (lambda: _build_keyed(registry, spec, key)) if to_check else None


def _names_dimensions_only(registry: Registry, tree: ex.Node | None) -> bool:
    elements = registry.universe.elements
    return all(name.split(".", 1)[0] in elements for name in ex.identifiers(tree))


def _cache_key(spec: QuerySpec) -> tuple | None:
    """The spec as a hashable key; bind and data-ID values with their types (``1``, ``1.0`` and
    ``True`` are equal keys in Python, but not the same query); None if a value is unhashable."""
    key = ("built-query", *(tuple(sorted((k, type(x), x) for k, x in v.items())) if isinstance(v, dict) else v
                            for v in (getattr(spec, name) for name in QuerySpec.model_fields)))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _build(registry: Registry, spec: QuerySpec) -> BuiltQuery:
    search = CollectionSearch(registry, spec)
    if spec.kind == "datasets" and len(set(spec.dataset_types)) > 1:
        return _union_of_types(registry, spec, search)
    return _build_one(registry, spec, search, spec.dataset_types[0] if spec.dataset_types else None)


def _build_one(registry: Registry, spec: QuerySpec, search: CollectionSearch, dataset_type: str | None) -> BuiltQuery:
    """The statement of a data-ID or records query, or of one dataset type's datasets."""
    universe = registry.universe
    tree, region_binds = _parse(spec)
    ctx = _Context(registry, spec, search, dataset_type)
    joins = JoinBuilder(registry.schema)
    dtype = registry.dataset_types.get(dataset_type)[1] if dataset_type else None
    if spec.kind == "records":
        element = universe[spec.element]
        wanted = set(element.identity)
    elif dtype is not None:
        wanted = set(dtype.dimensions) | set(spec.dimensions)
    else:
        wanted = set(spec.dimensions)
    extra_datasets = [registry.dataset_types.get(n)[1] for n in spec.datasets]
    needed = wanted | _referenced_dimensions(registry, tree) | set(spec.data_id)
    for d in extra_datasets:
        needed |= set(d.dimensions)
    try:
        group = universe.group(needed)
        output_group = universe.group(wanted)
    except DimensionError as err:
        raise QueryError(str(err)) from None
    available = set(group.names)

    select_cols: list[tuple[str, sa.ColumnElement]] = []
    window_rank = None
    if dtype is not None:
        window_rank = _join_dataset(registry, ctx, joins, dtype, spec, select_cols, tree, group)
    if spec.kind == "records":
        table = joins.join_element(spec.element)
        select_cols += [(c.name, c) for c in table.c]
    if dtype is None and spec.kind != "records":
        for name in _covering_elements(registry, tree, output_group):
            joins.join_element(name)
    # Most specific first: detector's and visit's tables source the instrument themselves,
    # so it needs no table of its own.
    for d in reversed(output_group.required):
        joins.ensure(d, available)
    # Then every other dimension the query names, before the where-clause: an implied one it
    # names (band) is then taken from the element that implies it (the visit), not joined free.
    for d in reversed(group.required):
        if universe[d].skypix is None:
            joins.ensure(d, available)
    for d in extra_datasets:
        _require_dataset(registry, ctx, joins, d, group)
    where_sql = WhereCompiler(joins, spec.where, region_binds, ctx.dataset_field(joins))
    compiled = where_sql.compile(tree)
    if ctx.time_check is not None and not ctx.validity_used:
        ctx.time_check()
    check_all_used(spec.where, spec.bind)
    for name, value in spec.data_id.items():
        try:
            joins.where.append(joins.ensure(name, available) == normalize_value(universe, name, value))
        except DimensionError as err:
            raise QueryError(str(err)) from None
    if spec.with_implied:
        for d in output_group.implied:
            joins.ensure(d, available)
    spatial = spatial_join(joins, where_sql, group)
    # The join rule, after everything that may bring in a dimension (the where-clause, the
    # data ID, dataset types and their facts): each one is related to the others.
    joins.join_relationships()
    joins.check_related(lambda: spatial + stated_relations(universe, tree))
    if spec.kind != "records":
        _fix_sole_values(registry, ctx, output_group)
    condition = without_hinted_bounds(registry, tree, compiled.terms, ctx.seeks)
    conditions = [compiled.condition if condition is None else condition, *joins.where]
    dim_cols = list(output_group.required) + (list(output_group.implied) if spec.with_implied else [])
    if spec.kind != "records":
        select_cols += [(d, joins.sources[d]) for d in dim_cols]
    select_cols += list(compiled.region_columns.items())
    seen: set[str] = set()
    select_cols = [(k, c) for k, c in select_cols if not (k in seen or seen.add(k))]
    stmt = sa.select(*[c.label(k) for k, c in select_cols]).select_from(joins.select_from()).where(*conditions)
    multiplies = set(joins.sources) - set(universe.group(wanted).names)
    labels = [k for k, _ in select_cols]
    # Region columns tell apart rows that the exact region filters judge differently, so
    # find-first ranks within them and the survivors are de-duplicated afterwards.
    region_labels = [k for k in labels if k.startswith("region_")]
    ambiguity = None
    if window_rank is not None:
        partition = list(output_group.required) + [k for k, _ in ctx.partition] + region_labels
        stmt = stmt.add_columns(*[c.label(k) for k, c in ctx.partition])
        if dtype is not None and calibrations.calibration_ids(dtype, ctx.ids):
            ambiguity = (dtype, calibrations.ambiguity_check(stmt, partition), partition)
        stmt = _first_per_data_id(stmt, window_rank, partition, labels)
        if ctx.partition:  # one row per exposure found the same calibration
            stmt = stmt.distinct()
    elif multiplies or ctx.repeats:
        stmt = stmt.distinct()
    unique_by = None
    if compiled.region_filters and (multiplies or window_rank is not None):
        unique_by = [k for k in labels if k not in region_labels and k not in ("collection_rank", "dataset_id",
                                                                                "run_id")]
        if window_rank is None and dtype is not None:
            unique_by.append("dataset_id")
    base = sa.select(sa.literal(1)).select_from(joins.select_from()).where(*joins.where)
    counted = (_counted_pair(registry, ctx, spec, dtype, tree)
               if dtype is not None and not compiled.region_filters and not multiplies else None)
    return BuiltQuery(stmt, output_group, labels, compiled.region_filters, [dtype] if dtype else [], ctx.doomed,
                      tree, compiled.terms, base, unique_by, ctx.constants, sole_keys=ctx.sole_keys,
                      ambiguity=ambiguity, counted=counted)


def _covering_elements(registry: Registry, tree: ex.Node | None, group: DimensionGroup) -> list[str]:
    """Elements whose own table the where-clause reads (a field, region or timespan of it)
    and whose identity holds every required dimension of the result: the visit-detector
    regions of a query for visits and detectors.  Joined first, such a table sources those
    dimensions itself, so their own tables are not joined (their records exist: foreign
    keys) unless the query reads them too.  Each joined table costs PostgreSQL planning
    time: Q4 of bench_queries planned in 0.6 ms with the visit and detector tables, 0.13
    ms without."""
    universe, required = registry.universe, set(group.required)
    out = []
    for name in sorted(ex.identifiers(tree)):
        head, _, rest = name.partition(".")
        element = universe.elements.get(head)
        if element is None or element.skypix is not None or not required or not required <= set(element.identity):
            continue
        part = rest.split(".", 1)[0]
        if (part in element.fields or (part == "region" and element.region)
                or (part == "timespan" and element.timespan)) and head not in out:
            out.append(head)
    return out


def _counted_pair(registry: Registry, ctx: _Context, spec: QuerySpec, dtype: DatasetType,
                  tree: ex.Node | None) -> tuple[int, int] | None:
    """The (dataset type ID, collection ID) whose maintained count is the count of this
    datasets query, or None.  Only a plain total qualifies: no where-clause, data ID, other
    dataset types, retention states or time; no CALIBRATION collection searched; and one
    searched collection holding the type, so find-first or not, each of its membership rows
    is one result (a membership's dimension records exist: its foreign keys say so)."""
    if (tree is not None or spec.data_id or spec.datasets or spec.states is not None or spec.timespan is not None
            or not set(spec.dimensions) <= set(dtype.dimensions) or calibrations.calibration_ids(dtype, ctx.ids)):
        return None
    cids = ctx.member_ids(dtype)
    if len(cids) != 1:
        return None
    return registry.dataset_types.get(dtype.name)[0], cids[0]


def _union_of_types(registry: Registry, spec: QuerySpec, search: CollectionSearch) -> BuiltQuery:
    """One statement for the datasets of several types with the same dimensions: each
    type's own statement (its collections, find-first, where-clause) with its index in
    a ``dataset_type_index`` column, combined by UNION ALL."""
    names = list(dict.fromkeys(spec.dataset_types))
    dtypes = [registry.dataset_types.get(n)[1] for n in names]
    search.member_ids(*dtypes)  # one lookup for all of them
    parts = [_build_one(registry, spec, search, name) for name in names]
    groups = {str(p.group) for p in parts}
    if len(groups) > 1:
        raise QueryError("the dataset types of one query must have the same dimensions; "
                         + "; ".join(f"{d.name}: {p.group}" for d, p in zip(dtypes, parts))
                         + ". Query them one at a time")
    timed = [d.name for d, p in zip(dtypes, parts) if "validity_begin" in p.columns]
    if timed and len(timed) < len(parts):
        raise QueryError(f"{', '.join(timed)} found in CALIBRATION collections (with validity ranges) and "
                         f"{', '.join(d.name for d in dtypes if d.name not in timed)} (without) cannot share "
                         "one query. Query them one at a time")
    live = [(i, p) for i, p in enumerate(parts) if not p.certainly_empty()]
    first = parts[0]
    labels = [c for c in first.columns if c != "collection_rank"]
    selects = [p.statement.with_only_columns(sa.literal(i).label("dataset_type_index"),
                                             *[p.statement.selected_columns[c] for c in labels],
                                             maintain_column_froms=True)
               for i, p in (live or [(0, first)])]
    union = sa.union_all(*selects).subquery("by_type") if len(selects) > 1 else selects[0].subquery("by_type")
    # A type with no datasets in the collections is left out of the union (and its reason
    # too, which would mark the whole query empty) unless every type is in that case.
    doomed = [d for p in parts for d in p.doomed] if not live else [d for _, p in live for d in p.doomed]
    unique_by = None if first.unique_by is None else ["dataset_type_index", *first.unique_by]
    base = live[0][1] if live else first
    return BuiltQuery(sa.select(*union.c), first.group, ["dataset_type_index", *labels], first.region_filters,
                      dtypes, doomed, first.tree, base.where_terms, base.base, unique_by, parts=live)


def _join_dataset(registry: Registry, ctx: _Context, joins: JoinBuilder, dtype: DatasetType, spec: QuerySpec,
                  select_cols: list[tuple[str, sa.ColumnElement]], tree: ex.Node | None,
                  query_group: DimensionGroup) -> sa.ColumnElement | None:
    """Join the dataset type's membership table for the searched collections; returns a
    collection-rank expression when find-first needs a window over several collections."""
    type_id, _ = registry.dataset_types.get(dtype.name)
    group = registry.dataset_types.group(dtype)
    if not ctx.path:
        raise QueryError(f"query_datasets({dtype.name!r}) needs collections to search")
    cids = ctx.member_ids(dtype)
    calib_ids = calibrations.calibration_ids(dtype, ctx.ids)
    if calib_ids:
        return _join_calibrations(registry, ctx, joins, dtype, spec, select_cols, query_group, cids, calib_ids)
    if not cids:
        ctx.doomed.append(f"no {dtype.name} datasets in collections {ctx.path}")
    tags = registry.schema.alias(registry.schema.tags_table(group), "ds_tags")
    joins.add(tags, {d: tags.c[d] for d in group.required})
    ctx.seeks = seek_hints(registry, tags, group, tree)
    joins.where += [tags.c.dataset_type_id == type_id,
                    tags.c.collection_id.in_(cids) if len(cids) != 1 else tags.c.collection_id == cids[0],
                    *governor_hints(registry, tags, group, tree), *ctx.seeks]
    kinds = {cid: kind for cid, kind in ctx.ids}
    if all(kinds[c] is CollectionType.RUN for c in cids):
        run_col = tags.c.collection_id
        if len(cids) == 1:
            ctx.constants["run_id"] = cids[0]
    else:
        ds = registry.schema.alias(registry.schema.dataset, "ds")
        joins.from_clause = joins.from_clause.join(ds, ds.c.id == tags.c.dataset_id)
        run_col = ds.c.run_id
    select_cols += [("dataset_id", tags.c.dataset_id), ("run_id", run_col)]
    if spec.find_first and len(cids) > 1:
        rank = sa.case({cid: i for i, cid in enumerate(cids)}, value=tags.c.collection_id)
        select_cols.append(("collection_rank", rank))
        return rank
    # Without a find-first window each row is its own dataset: its facts are its own.  With
    # the window, a where-term must judge the first-found dataset (not let a later one win).
    ctx.row_dataset_id, ctx.row_collection_id = tags.c.dataset_id, tags.c.collection_id
    ctx.repeats = len(cids) > 1 and any(kinds[c] is CollectionType.TAGGED for c in cids)
    return None


def _join_calibrations(registry: Registry, ctx: _Context, joins: JoinBuilder, dtype: DatasetType, spec: QuerySpec,
                       select_cols: list[tuple[str, sa.ColumnElement]], query_group: DimensionGroup,
                       run_ids: list[int], calib_ids: list[int]) -> sa.ColumnElement | None:
    """A calibration type searched in CALIBRATION collections: its memberships and
    certifications with their validity (see :mod:`.calibrations`), valid at the query's time."""
    type_id, _ = registry.dataset_types.get(dtype.name)
    group = registry.dataset_types.group(dtype)
    member = calibrations.membership(registry, dtype, type_id, run_ids, calib_ids)
    joins.add(member, {d: member.c[d] for d in group.required})
    conditions, element = calibrations.validity_conditions(joins, member, query_group.names, spec.timespan)
    joins.where += conditions
    ds = registry.schema.alias(registry.schema.dataset, "ds")
    joins.from_clause = joins.from_clause.join(ds, ds.c.id == member.c.dataset_id)
    select_cols += [("dataset_id", member.c.dataset_id), ("run_id", ds.c.run_id),
                    ("validity_begin", member.c.validity_begin), ("validity_end", member.c.validity_end)]
    ctx.row_validity = (member.c.validity_begin, member.c.validity_end)  # unbounded for a RUN/TAGGED row
    if not spec.find_first:
        ctx.row_dataset_id, ctx.row_collection_id = member.c.dataset_id, member.c.collection_id
        # One certification may sit in two collections (or a dataset in its RUN and a TAGGED one).
        ctx.repeats = len(run_ids) + len(calib_ids) > 1
        return None
    names = [registry.collections.name_of(c) for c in calib_ids]
    ctx.time_check = lambda: calibrations.require_time(dtype, names, element, spec.timespan)
    searched = set(run_ids) | set(calib_ids)
    order = [cid for cid, _ in ctx.ids if cid in searched]
    rank = sa.case({cid: i for i, cid in enumerate(order)}, value=member.c.collection_id)
    select_cols.append(("collection_rank", rank))
    if element is not None:
        outside = [d for d in registry.universe[element].identity if d not in dtype.dimensions
                   and d not in spec.dimensions]
        ctx.partition = [(f"partition_{d}", joins.ensure(d)) for d in outside]
    return rank


def _fix_sole_values(registry: Registry, ctx: _Context, group: DimensionGroup) -> None:
    """Make a result dimension whose table holds one record (the repository's one
    instrument) a constant of the query, so that reading results as columns need not read
    it back per row (an aggregate fewer per row on SQLite).  It stays a constant only as
    long as the table holds no other key, which the statement that reads the columns
    checks in the same snapshot (``BuiltQuery.sole_keys``): a record added after the
    query was built is found, never mislabelled.  No condition is added to the query
    itself: an equality on a leading index column made SQLite choose nested loops over
    a spatial join's patches (5.7 s instead of 2.2 s)."""
    for d in group.required:
        value = registry.dimensions.sole_key(d)
        if value is not None:
            ctx.constants[d] = value
            table = registry.schema.elements[d]
            ctx.sole_keys[d] = table.c[registry.universe[d].column_of(d)]


def _first_per_data_id(stmt: sa.Select, rank: sa.ColumnElement, dims: list[str], labels: list[str]) -> sa.Select:
    inner = stmt.add_columns(sa.func.row_number().over(
        partition_by=[stmt.selected_columns[d] for d in dims], order_by=stmt.selected_columns["collection_rank"])
        .label("first_rank")).subquery("found")
    return sa.select(*[inner.c[k] for k in labels]).where(inner.c.first_rank == 1)


def _require_dataset(registry: Registry, ctx: _Context, joins: JoinBuilder, dtype: DatasetType,
                     query_group: DimensionGroup) -> None:
    """Constrain the data IDs to those with a ``dtype`` dataset in the collections (an EXISTS);
    a calibration in a CALIBRATION collection counts when it is valid at the query's time."""
    if not ctx.path:
        raise QueryError(f"datasets=[{dtype.name!r}] needs collections to search")
    type_id, _ = registry.dataset_types.get(dtype.name)
    group = registry.dataset_types.group(dtype)
    cids = ctx.member_ids(dtype)
    calib_ids = calibrations.calibration_ids(dtype, ctx.ids)
    if calib_ids:
        joins.where.append(calibrations.exists_valid(registry, joins, dtype, type_id, cids, calib_ids,
                                                     query_group.names, ctx.spec.timespan))
        return
    if not cids:
        ctx.doomed.append(f"no {dtype.name} datasets in collections {ctx.path}")
    tags = registry.schema.alias(registry.schema.tags_table(group), f"req_{dtype.name}")
    cond = [tags.c.dataset_type_id == type_id, tags.c.collection_id.in_(cids)]
    cond += [tags.c[d] == joins.ensure(d) for d in group.required]
    joins.where.append(sa.exists(sa.select(sa.literal(1)).select_from(tags).where(*cond)))
