"""``butler.registry``: the Rubin butler's registry calls (``queryDatasets``, ``queryDataIds``,
``registerRun``, ``certify``, ...) answered by skybutler's public Butler methods; and the Rubin
spellings ``butler.collections.query_info`` / ``get_info``.

Notebooks and scripts written for the Rubin butler use these camelCase names; each here is a
translation of its arguments onto one public method of :class:`~skybutler.Butler`, nothing
more, so it answers the same on a local repository and through a server.  Its results keep the
parts of the Rubin butler's that users rely on (iteration, ``count``, ``any``, ``expanded``,
``subset``, ``order_by``, ``limit``); what is not offered is refused by name with the method
that does it.

A local butler's own code reaches the repository's SQL registry through this same attribute:
any name not defined here is that registry's (``butler.registry.datasets``), which a butler
opened on a server URL does not have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .dimensions.data_id import DataCoordinateWithRecords
from .errors import CollectionError, MissingCollectionError, MissingDatasetTypeError, NotOfferedError, QueryError
from .models import CollectionInfo, CollectionType, DatasetRef, DatasetType
from .timespan import Timespan, as_timespan

if TYPE_CHECKING:
    from .butler import Butler
    from .dimensions import DataCoordinate, DimensionRecord


#: Rubin registry calls that are not offered, and what to call instead.
_INSTEAD = {
    "getCollectionSummary": "butler.query_dataset_types and butler.query_datasets(..., collections=[name]).any()",
    "setCollectionDocumentation": "butler.collections.register(name, type, doc=...) when creating it",
    "insertDatasets": "butler.put or butler.ingest",
    "removeDatasets": "butler.remove",
    "getDatasetLocations": "butler.exists(ref)",
    "queryDatasetTypesWithSummaries": "butler.query_dataset_types",
    "supportsIdGenerationMode": "butler.put(..., id_mode=...)",
    "refresh": "nothing: every call reads the registry afresh",
    "resetConnectionPool": "nothing: connections are made as needed",
    "storageClasses": "the storage class names of butler.query_dataset_types",
    "obsCoreTableManager": "nothing (skybutler keeps no ObsCore table)",
    "dimensions": "butler.universe",
    "isWriteable": "a write: a read-only token is refused by the server",
    "refresh_collection_summaries": "nothing: skybutler keeps no collection summaries",
}

#: Of those, the ones the Rubin registry has as properties (read, not called).
_PROPERTIES = ("storageClasses", "obsCoreTableManager")


class DatasetAssociation(NamedTuple):
    """One dataset in one collection (with its validity range in a CALIBRATION collection), as
    ``queryDatasetAssociations`` gives them."""

    ref: DatasetRef
    collection: str
    timespan: Timespan | None


class RegistryDefaults(NamedTuple):
    """The butler's defaults as the Rubin registry's ``defaults`` shows them."""

    collections: tuple[str, ...]
    run: str | None
    dataId: dict[str, Any]


#: The characters that make a name a glob.
_GLOB = frozenset("*?[")


def _refuse(what: str, instead: str) -> NotOfferedError:
    return NotOfferedError(f"{what} is not offered by skybutler; use {instead}")


def _name_of(value: Any) -> str:
    """A dataset type, dimension element or collection type given as an object or its name."""
    return value if isinstance(value, str) else value.name


def _collection_types(types: Any) -> set[CollectionType]:
    """Collection types given as skybutler's or the Rubin butler's enum members or names."""
    if types is None:
        return set(CollectionType)
    if isinstance(types, str) or hasattr(types, "name"):
        types = [types]
    return {CollectionType.parse(_name_of(t)) for t in types}


def _patterns(expression: Any) -> list[str | re.Pattern[str]]:
    """A Rubin name expression (``...``, a name or glob, a regular expression, or a list of
    them) as a list of globs and patterns."""
    if expression is ... or expression is None:
        return ["*"]
    if isinstance(expression, (str, re.Pattern)) or hasattr(expression, "name"):
        expression = [expression]
    return [e if isinstance(e, (str, re.Pattern)) else _name_of(e) for e in expression]


def _matches(name: str, patterns: Sequence[str | re.Pattern[str]]) -> bool:
    return any(p.fullmatch(name) if isinstance(p, re.Pattern) else fnmatch.fnmatchcase(name, p) for p in patterns)


class RubinCollectionCalls:
    """The Rubin butler's ``butler.collections`` calls (``query_info``, ``get_info``,
    ``extend_chain``, ``prepend_chain``, ``redefine_chain``, ``remove_from_chain``,
    ``defaults``, and the sequence of default collections), over the ``query``, ``info``,
    ``set_chain`` and ``parents`` of skybutler's ``butler.collections`` (a base of its local
    and remote kinds)."""

    query: Callable[..., list[CollectionInfo]]
    info: Callable[[str], CollectionInfo]
    #: the butler whose default collections ``defaults`` gives (set by the butler that made this)
    owner: Any = None

    @property
    def defaults(self) -> tuple[str, ...]:
        """The butler's default collections, as the Rubin butler's ``collections.defaults``."""
        return () if self.owner is None else tuple(self.owner.default_collections)

    flatten: Callable[[Iterable[str]], list[str]]
    parents: Callable[[str], list[str]]

    def query_info(self, expression: Any = ..., collection_types: Any = None, flatten_chains: bool = False,
                   include_chains: bool | None = None, include_parents: bool = False,
                   include_summary: bool = False, include_doc: bool = False,
                   summary_datasets: Any = None) -> list[CollectionInfo]:
        """The collections matching ``expression`` (``...``, names, globs, regular expressions)
        of ``collection_types``; with ``flatten_chains`` the chains' children too, the chains
        themselves only with ``include_chains``; each with its documentation."""
        if include_summary or summary_datasets is not None:
            raise _refuse("collections.query_info(include_summary=True)",
                          "butler.query_datasets(dataset_type, collections=[name], find_first=False).any()")
        wanted = _collection_types(collection_types)
        keep_chains = (not flatten_chains) if include_chains is None else include_chains
        everything = {info.name: info for info in self.query("*")}
        patterns = _patterns(expression)
        found: dict[str, CollectionInfo] = {}
        for info in everything.values():
            if not _matches(info.name, patterns):
                continue
            if info.type is not CollectionType.CHAINED or keep_chains:
                found.setdefault(info.name, info)
            if info.type is CollectionType.CHAINED and flatten_chains:
                found.update((child, everything[child]) for child in self.flatten([info.name]) if child not in found)
        out = [info for info in found.values() if info.type in wanted]
        if include_parents:
            out = [dataclasses.replace(info, parents=frozenset(self.parents(info.name))) for info in out]
        return out

    set_chain: Callable[[str, Sequence[str]], None]
    get_chain: Callable[[str], tuple[str, ...]]
    exists: Callable[[str], bool]

    def __len__(self) -> int:
        return len(self.defaults)

    def __getitem__(self, index: int) -> str:
        """The default collections, as the Rubin butler's ``butler.collections`` is a sequence of them."""
        return self.defaults[index]

    def extend_chain(self, name: str, children: str | Sequence[str], *, prepend: bool = False) -> None:
        """Add children at the end of a chain (the Rubin butler's order), or in front with
        ``prepend`` (the new "current best"); a child already there moves.  A missing chain is made."""
        children = [children] if isinstance(children, str) else list(children)
        current = [c for c in (self.get_chain(name) if self.exists(name) else ()) if c not in children]
        self.set_chain(name, children + current if prepend else current + children)

    def prepend_chain(self, name: str, children: str | Sequence[str]) -> None:
        """Put children first in an existing CHAINED collection (a child already there moves)."""
        self._chained(name)
        self.extend_chain(name, children, prepend=True)

    def redefine_chain(self, name: str, children: str | Sequence[str]) -> None:
        """Make ``children`` the whole search path of an existing CHAINED collection."""
        self._chained(name)
        self.set_chain(name, [children] if isinstance(children, str) else list(children))

    def remove_from_chain(self, name: str, children: str | Sequence[str]) -> None:
        """Take existing collections out of an existing CHAINED collection's search path."""
        children = [children] if isinstance(children, str) else list(children)
        self._chained(name)
        for child in children:
            self.info(child)  # an unknown name: MissingCollectionError, as in the Rubin butler
        self.set_chain(name, [c for c in self.get_chain(name) if c not in children])

    def x_remove(self, name: str) -> None:
        """Not offered: the Rubin butler's experimental removal of any kind of collection."""
        raise _refuse("butler.collections.x_remove", "butler.collections.remove(name) for a TAGGED, CHAINED or "
                      "CALIBRATION collection, butler.remove_runs([name]) for a RUN and its datasets")

    def _chained(self, name: str) -> None:
        kind = self.info(name).type
        if kind is not CollectionType.CHAINED:
            raise CollectionError(f"collection {name!r} is a {kind.value} collection, not CHAINED")

    def get_info(self, name: str, include_parents: bool = False, include_summary: bool = False) -> CollectionInfo:
        """One collection's type, documentation, children (and, when asked, parents)."""
        if include_summary:
            raise _refuse("collections.get_info(include_summary=True)",
                          "butler.query_datasets(dataset_type, collections=[name], find_first=False).any()")
        info = self.info(name)
        return dataclasses.replace(info, parents=frozenset(self.parents(name))) if include_parents else info


class RubinResults:
    """Query results as the Rubin registry's query methods give them: iterate, ``count``,
    ``any``, ``order_by``, ``limit``, ``expanded`` (each data ID with its records); for data
    IDs also ``subset``.  ``parts`` are skybutler results (one per dataset type)."""

    def __init__(self, parts: Sequence[Any], what: str, doomed: Sequence[str] = ()):
        self._parts = list(parts)
        self._what = what
        self._doomed = list(doomed)

    def __iter__(self) -> Iterator[Any]:
        for part in self._parts:
            yield from part

    def count(self, *, exact: bool = True, discard: bool = False) -> int:
        return sum(part.count() for part in self._parts)

    def any(self, *, execute: bool = True, exact: bool = True) -> bool:
        return any(part.any() for part in self._parts)

    def explain_no_results(self, execute: bool = True) -> list[str]:
        return self._doomed + [line for part in self._parts for line in part.explain()]

    def _each(self, method: str, *args: Any) -> RubinResults:
        return RubinResults([getattr(part, method)(*args) for part in self._parts], self._what)

    def expanded(self) -> RubinResults:
        """The same results, each data ID holding its records (``data_id.records["visit"]``)."""
        return self._each("with_dimension_records")

    def order_by(self, *names: str) -> RubinResults:
        return self._each("order_by", *names)

    def limit(self, limit: int, offset: int = 0) -> RubinResults:
        if len(self._parts) > 1:
            raise _refuse("limit() of a query of several dataset types", "one queryDatasets per type")
        return self._each("limit", limit, offset)

    @contextlib.contextmanager
    def materialize(self) -> Iterator[RubinResults]:
        """These results (a skybutler query runs again when iterated again)."""
        yield self

    def byParentDatasetType(self) -> Iterator[RubinResults]:
        """The results of each dataset type in turn."""
        return (RubinResults([part], self._what) for part in self._parts)

    def subset(self, dimensions: Iterable[str] | str | None = None, *, unique: bool = False) -> RubinDataIdSubset:
        """The data IDs cut to fewer ``dimensions`` (each once with ``unique``)."""
        if self._what != "data IDs":
            raise _refuse(f"subset() of {self._what}", "queryDataIds(...).subset()")
        return RubinDataIdSubset(self, dimensions, unique)

    def findDatasets(self, *args: Any, **kwargs: Any) -> None:
        raise _refuse("queryDataIds(...).findDatasets()",
                      "butler.query_datasets(dataset_type, collections, where=..., data_id=...) with the same "
                      "where-clause")

    def findRelatedDatasets(self, *args: Any, **kwargs: Any) -> None:
        raise _refuse("queryDataIds(...).findRelatedDatasets()",
                      "butler.query_datasets with the where-clause naming the data IDs")


class RubinDataIdSubset:
    """Data IDs of a query cut to fewer dimensions (``subset``): read when iterated."""

    def __init__(self, source: RubinResults, dimensions: Iterable[str] | str | None, unique: bool):
        self._source = source
        self._dimensions = [dimensions] if isinstance(dimensions, str) else dimensions
        self._unique = unique

    def __iter__(self) -> Iterator[DataCoordinate]:
        seen: set[DataCoordinate] = set()
        group = None
        for data_id in self._source:
            if group is None:
                group = data_id.group if self._dimensions is None else data_id.universe.group(self._dimensions)
            cut = data_id.subset(group)
            if self._unique and cut in seen:
                continue
            seen.add(cut)
            yield cut

    def count(self, *, exact: bool = True, discard: bool = False) -> int:
        return sum(1 for _ in self)

    def any(self, *, execute: bool = True, exact: bool = True) -> bool:
        return self._source.any()

    def expanded(self) -> None:
        raise _refuse("subset(...).expanded()", "expanded() before subset(), or queryDataIds of those dimensions")


class RubinRegistry:
    """The Rubin registry's calls on one butler (``butler.registry``).  ``parts`` is the
    repository's SQL registry of a local butler (None through a server), which answers the
    names not defined here for skybutler's own code."""

    def __init__(self, butler: Butler, parts: Any = None):
        self._butler = butler
        self._parts = parts

    # The SQL registry's stores that skybutler's code reaches most, read without the failed
    # look-up that precedes ``__getattr__`` (0.7 us an access, several to a ``find_dataset``).
    db, universe, schema, dimensions, collections, dataset_types, datasets, calibrations = (
        property(operator.attrgetter(f"_parts.{name}")) for name in (
            "db", "universe", "schema", "dimensions", "collections", "dataset_types", "datasets", "calibrations"))

    def __getattr__(self, name: str) -> Any:
        parts = self.__dict__.get("_parts")
        if name.startswith("__") or parts is None or not hasattr(parts, name):
            if name in _INSTEAD:  # ``dimensions`` through a server (a local one is the SQL registry's)
                raise _refuse(f"butler.registry.{name}", _INSTEAD[name])
            raise AttributeError(f"butler.registry has no {name!r}")
        return getattr(parts, name)

    @contextlib.contextmanager
    def caching_context(self) -> Iterator[None]:
        """The block itself: skybutler reads the registry afresh on every call, so there is no cache to hold."""
        yield

    @property
    def defaults(self) -> RegistryDefaults:
        b = self._butler
        return RegistryDefaults(tuple(b.default_collections), b.run, dict(b.default_data_id))

    # -- queries ----------------------------------------------------------------

    def _dataset_type_names(self, expression: Any) -> list[str]:
        """The names a dataset type expression gives: the names in the order given, then the
        types each glob matches (``...``: every type), each once."""
        patterns = _patterns(expression)
        if any(isinstance(p, re.Pattern) for p in patterns):
            raise QueryError("regular expressions are not taken for dataset types, as in the Rubin butler; "
                             "use a glob ('calexp*') or a list of names")
        names: dict[str, None] = {}
        for pattern in patterns:
            if _GLOB.isdisjoint(pattern):
                names[self._butler.get_dataset_type(pattern).name] = None  # an unknown name is refused
            else:
                names.update(dict.fromkeys(sorted(d.name for d in self._butler.query_dataset_types(pattern))))
        return list(names)

    def queryDatasets(self, datasetType: Any, *, collections: Any = None, dimensions: Any = None,
                      dataId: Mapping[str, Any] | None = None, where: str = "", findFirst: bool = False,
                      bind: Mapping[str, Any] | None = None, check: bool = True, components: Any = None,
                      **kwargs: Any) -> RubinResults:
        """``butler.query_datasets`` of each matching dataset type (``...``, a glob or a list;
        an unknown name: no datasets, ``explain_no_results`` says why); ``findFirst`` is False
        by default, as in the Rubin registry."""
        if dimensions is not None:
            raise _refuse("queryDatasets(dimensions=...)", "a where-clause naming those dimensions")
        if components:
            raise _refuse("queryDatasets(components=True)", "butler.get(ref, component=...)")
        try:
            names = self._dataset_type_names(datasetType)
        except MissingDatasetTypeError as missing:  # no datasets, as the Rubin registry answers
            return RubinResults([], "datasets", [str(missing)])
        parts = [self._butler.query_datasets(name, collections=collections, where=where, find_first=findFirst,
                                             bind=bind, data_id=dataId, **kwargs) for name in names]
        return RubinResults(parts, "datasets")

    def queryDataIds(self, dimensions: Any, *, dataId: Mapping[str, Any] | None = None, datasets: Any = None,
                     collections: Any = None, where: str = "", bind: Mapping[str, Any] | None = None,
                     check: bool = True, **kwargs: Any) -> RubinResults:
        """``butler.query_data_ids``; ``dimensions`` a name, names or a dimension group."""
        dims = [dimensions] if isinstance(dimensions, str) else list(getattr(dimensions, "names", dimensions))
        if datasets is not None:
            datasets = self._dataset_type_names(datasets)
        return RubinResults([self._butler.query_data_ids(dims, where, bind=bind, datasets=datasets,
                                                         collections=collections, data_id=dataId, **kwargs)],
                            "data IDs")

    def queryDimensionRecords(self, element: Any, *, dataId: Mapping[str, Any] | None = None, datasets: Any = None,
                              collections: Any = None, where: str = "", bind: Mapping[str, Any] | None = None,
                              check: bool = True, **kwargs: Any) -> RubinResults:
        """``butler.query_dimension_records`` of one element."""
        if datasets is not None or collections is not None:
            raise _refuse("queryDimensionRecords(datasets=..., collections=...)",
                          "butler.query_data_ids(dimensions, datasets=..., collections=..., "
                          "with_dimension_records=True) and each data ID's .records")
        return RubinResults([self._butler.query_dimension_records(_name_of(element), where, bind=bind,
                                                                  data_id=dataId, **kwargs)], "records")

    def queryCollections(self, expression: Any = ..., datasetType: Any = None, collectionTypes: Any = None,
                         flattenChains: bool = False, includeChains: bool | None = None) -> list[str]:
        """Names of the collections matching ``expression`` of ``collectionTypes``; with
        ``flattenChains`` the chains' children too, the chains themselves only with ``includeChains``."""
        if datasetType is not None:
            raise _refuse("queryCollections(datasetType=...)",
                          "butler.query_datasets(dataset_type, collections=[name], find_first=False).any()")
        return [info.name for info in self._butler.collections.query_info(expression, collectionTypes, flattenChains,
                                                                          includeChains)]

    def queryDatasetTypes(self, expression: Any = ..., *, missing: list[str] | None = None) -> list[DatasetType]:
        patterns = _patterns(expression)
        out = [d for d in self._butler.query_dataset_types() if _matches(d.name, patterns)]
        if missing is not None:
            missing += [p for p in patterns if isinstance(p, str) and not any(_matches(d.name, [p]) for d in out)]
        return sorted(out, key=lambda d: d.name)

    def queryDatasetAssociations(self, datasetType: Any, collections: Any = ..., *, collectionTypes: Any = None,
                                 flattenChains: bool = False) -> Iterator[DatasetAssociation]:
        """Each dataset of the type in each collection holding it (CALIBRATION collections:
        once per validity range)."""
        name = _name_of(datasetType)
        for collection in self.queryCollections(collections, collectionTypes=collectionTypes,
                                                flattenChains=flattenChains, includeChains=False):
            kind = self._butler.collections.info(collection).type
            if kind is CollectionType.CHAINED:
                continue
            if kind is CollectionType.CALIBRATION:
                if not self._butler.get_dataset_type(name).is_calibration:
                    continue
                for ref, span in self._butler.collections.validity(collection, name):
                    yield DatasetAssociation(ref, collection, span)
            else:
                for ref in self._butler.query_datasets(name, collections=[collection], find_first=False):
                    yield DatasetAssociation(ref, collection, None)

    # -- datasets ---------------------------------------------------------------

    def getDataset(self, id: Any) -> DatasetRef | None:
        return self._butler.get_dataset(id)

    def findDataset(self, datasetType: Any, dataId: Mapping[str, Any] | None = None, *, collections: Any = None,
                    timespan: Any = None, datastore_records: bool = False, **kwargs: Any) -> DatasetRef | None:
        return self._butler.find_dataset(_name_of(datasetType), dataId, collections=collections,
                                         timespan=timespan, **kwargs)

    def getDatasetType(self, name: str) -> DatasetType:
        return self._butler.get_dataset_type(name)

    def registerDatasetType(self, datasetType: Any) -> bool:
        """Register a skybutler ``DatasetType`` or a Rubin one (its name, dimensions, storage class)."""
        if isinstance(datasetType, DatasetType):
            return self._butler.register_dataset_type(datasetType.name, datasetType.dimensions,
                                                      datasetType.storage_class,
                                                      is_calibration=datasetType.is_calibration)
        return self._butler.register_dataset_type(datasetType.name, list(datasetType.dimensions.names),
                                                  datasetType.storageClass_name,
                                                  is_calibration=datasetType.isCalibration())

    def removeDatasetType(self, name: str | tuple[str, ...]) -> None:
        """Remove dataset types (names or globs) that hold no datasets."""
        names = [name] if isinstance(name, str) else list(name)
        for dtype in self.queryDatasetTypes(names):
            self._butler.remove_dataset_type(dtype.name)

    # -- collections ------------------------------------------------------------

    def getCollectionType(self, name: str) -> CollectionType:
        return self._butler.collections.info(name).type

    def getCollectionChain(self, parent: str) -> tuple[str, ...]:
        info = self._butler.collections.info(parent)
        if info.type is not CollectionType.CHAINED:
            raise QueryError(f"collection {parent!r} is a {info.type.value} collection, not CHAINED")
        return info.children

    def getCollectionParentChains(self, collection: str) -> set[str]:
        return set(self._butler.collections.parents(collection))

    def getCollectionDocumentation(self, collection: str) -> str | None:
        return self._butler.collections.get_info(collection).doc or None

    def registerRun(self, name: str, doc: str | None = None) -> bool:
        return self._butler.collections.register(name, CollectionType.RUN, doc or "")

    def registerCollection(self, name: str, type: Any = CollectionType.TAGGED, doc: str | None = None) -> bool:
        return self._butler.collections.register(name, CollectionType.parse(_name_of(type)), doc or "")

    def setCollectionChain(self, parent: str, children: Any, *, flatten: bool = False) -> None:
        """Set a registered CHAINED collection's children (with ``flatten``, their own children instead)."""
        self._existing(parent)
        names = [children] if isinstance(children, str) else list(children)
        self._butler.collections.set_chain(parent, self._butler.collections.flatten(names) if flatten else names)

    def removeCollection(self, name: str) -> None:
        self._butler.collections.remove(name)

    def _existing(self, name: str) -> None:
        if not self._butler.collections.exists(name):
            raise MissingCollectionError(f"collection {name!r} does not exist")

    def associate(self, collection: str, refs: Iterable[DatasetRef]) -> None:
        self._existing(collection)
        self._butler.collections.associate(collection, refs)

    def disassociate(self, collection: str, refs: Iterable[DatasetRef]) -> None:
        self._butler.collections.disassociate(collection, refs)

    def certify(self, collection: str, refs: Iterable[DatasetRef], timespan: Any) -> None:
        self._existing(collection)
        self._butler.collections.certify(collection, refs, timespan=as_timespan(timespan))

    def decertify(self, collection: str, datasetType: Any, timespan: Any, *,
                  dataIds: Iterable[Mapping[str, Any]] | None = None) -> None:
        self._butler.collections.decertify(collection, _name_of(datasetType), timespan=as_timespan(timespan),
                                           data_ids=dataIds)

    # -- dimension records --------------------------------------------------------

    def expandDataId(self, dataId: Mapping[str, Any] | None = None, *, dimensions: Any = None,
                     records: Any = None, withDefaults: bool = True, **kwargs: Any) -> DataCoordinate:
        """``butler.expand_data_id`` with the record of each element of the data ID's group
        (``.records["visit"]``); without ``dimensions``, those the data ID's keys name."""
        if records is not None:
            raise _refuse("expandDataId(records=...)", "butler.expand_data_id (the records are read)")
        given = {**(dataId or {}), **kwargs}
        universe = self._butler.universe
        if dimensions is None:
            dimensions = [k for k in given if k in universe.elements and universe[k].key is not None]
        dims = [dimensions] if isinstance(dimensions, str) else list(getattr(dimensions, "names", dimensions))
        full = self._butler.expand_data_id(dims, given)
        records = {name: self._butler.get_record(name, **{k: full[k] for k in universe[name].identity})
                   for name in full.group.elements}
        return DataCoordinateWithRecords(full.group, full.as_dict(), records)

    def insertDimensionData(self, element: Any, *data: Any, conform: bool = True, replace: bool = False,
                            skip_existing: bool = False) -> None:
        if replace:
            raise _refuse("insertDimensionData(replace=True)", "syncDimensionData(element, row, update=True)")
        self._butler.insert_records(_name_of(element), [_record_dict(r) for r in data], skip_existing=skip_existing)

    def syncDimensionData(self, element: Any, row: Any, conform: bool = True, update: bool = False) -> bool:
        return self._butler.sync_record(_name_of(element), _record_dict(row), update=update)


def _refusal(name: str, instead: str) -> Any:
    """A Rubin registry call skybutler does not offer: there by name (``hasattr`` answers), and
    calling it (or, for a property, reading it) raises NotOfferedError naming what to use."""
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise _refuse(f"butler.registry.{name}", instead)

    refused.__name__ = refused.__qualname__ = name
    refused.__doc__ = f"Not offered by skybutler: use {instead}."
    return property(refused) if name in _PROPERTIES else staticmethod(refused)


for _name, _instead in _INSTEAD.items():
    if _name != "dimensions":  # a local butler's ``registry.dimensions`` is its SQL registry's store
        setattr(RubinRegistry, _name, _refusal(_name, _instead))


def _record_dict(record: Mapping[str, Any] | DimensionRecord | Any) -> dict[str, Any]:
    """A record as a mapping: a mapping (skybutler's records are), or a Rubin record object."""
    return dict(record) if isinstance(record, Mapping) else record.toDict()
