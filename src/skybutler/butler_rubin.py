"""The Rubin butler's Butler-level calls (``getURI``, ``getDeferred``, ``stored``,
``pruneDatasets``, ``removeRuns``, ``clone``, ...) answered by skybutler's public Butler methods.

Notebooks and pipelines written for the Rubin butler use these names; each here translates its
arguments onto public methods of :class:`~skybutler.Butler` and nothing more, so it answers
the same on a local repository and through a server.  A Rubin call skybutler does not offer is
a method that raises :class:`~skybutler.errors.NotOfferedError` naming what to use instead (so
``hasattr`` still answers, and the call never fails with a bare ``AttributeError``).
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import ConfigError, DataIdError, DatasetNotFoundError, NotOfferedError, SkybutlerError
from .models import CollectionType, DatasetRef

if TYPE_CHECKING:
    from .butler import Butler
    from .dimensions import DimensionUniverse


class DatasetURI(str):
    """A dataset file's URI (``file://...``, ``s3://...``) as text, with the parts of the Rubin
    butler's ``ResourcePath`` that users read: ``geturl()``, ``scheme``, ``path``, ``ospath``
    (a local file's path) and ``basename()``."""

    def geturl(self) -> str:
        return str(self)

    @property
    def scheme(self) -> str:
        return urllib.parse.urlsplit(self).scheme

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self).path

    @property
    def ospath(self) -> str:
        """The local path of a ``file://`` URI; an error for any other scheme (as the Rubin butler's)."""
        if self.scheme not in ("", "file"):
            raise ValueError(f"{self} is not a local file: it has no ospath")
        return urllib.parse.unquote(self.path)

    def basename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class DatasetRefURIs(NamedTuple):
    """A dataset's URIs as the Rubin butler's ``getURIs`` gives them: skybutler keeps each
    dataset in one file, so ``componentURIs`` is always empty."""

    primaryURI: DatasetURI | None
    componentURIs: dict[str, DatasetURI]


class DeferredDatasetHandle:
    """A dataset found now and read when ``get`` is called (``butler.getDeferred``): its
    ``ref`` and ``dataId``; ``get(component=..., parameters=...)`` may be called many times."""

    def __init__(self, butler: Butler, ref: DatasetRef, parameters: Mapping[str, Any] | None):
        self.butler = butler
        self.ref = ref
        self.parameters = parameters

    @property
    def dataId(self) -> Any:
        return self.ref.data_id

    def get(self, *, component: str | None = None, parameters: Mapping[str, Any] | None = None,
            storageClass: Any = None) -> Any:
        if storageClass is not None:
            raise _refused("DeferredDatasetHandle.get(storageClass=...)", "get() and convert the object yourself")
        merged = {**(self.parameters or {}), **(parameters or {})}
        return self.butler.get(self.ref, component=component, parameters=merged or None)


def _refused(what: str, instead: str) -> NotOfferedError:
    return NotOfferedError(f"{what} is not offered by skybutler; use {instead}")


def _no_storage_class(call: str, storage_class: Any) -> None:
    if storage_class is not None:
        raise _refused(f"{call}(storageClass=...)", f"{call} without it and convert the object yourself")


#: Rubin Butler calls that are not offered, and what to call instead.
_INSTEAD = {
    "getDirect": "butler.get(ref), which takes a ref",
    "getDirectDeferred": "butler.getDeferred(ref)",
    "putDirect": "butler.put(obj, dataset_type, data_id, run=...)",
    "datasetExists": "butler.exists(...)",
    "pruneCollection": "butler.remove_runs([run]) or butler.collections.remove(name)",
    "transfer_from": "skybutler.repository_transfer.export_datasets(source, refs, directory) and then "
                     "import_datasets(target, directory); a Rubin repository comes in with import_datasets(target, path)",
    "transfer_dimension_records_from": "skybutler.repository_transfer.export_datasets and import_datasets, which "
                                       "carry the records of the datasets' data IDs",
    "export": "skybutler.repository_transfer.export_datasets(butler, refs, directory) (or "
              "skybutler.interchange.export_rubin for the Rubin butler's format)",
    "import_": "skybutler.repository_transfer.import_datasets(butler, directory), which reads skybutler's and "
               "the Rubin butler's exports",
    "ingest_zip": "skybutler.repository_transfer.import_datasets(butler, zip_path)",
    "retrieve_artifacts_zip": "butler.retrieve_artifacts(refs, directory, zip=True)",
    "markInputUnused": "nothing: skybutler's pipeline executor records the inputs a task read",
    "record_metrics": "the benchmarks of skybutler, or time the calls yourself",
    "get_datastore_names": "butler.get_uri(ref) for where a dataset's file is",
    "get_datastore_roots": "butler.get_uri(ref) for where a dataset's file is",
    "isWriteable": "a write: a read-only repository or token refuses it with a precise error",
    "get_known_repos": "a repository's path or server URL (skybutler keeps no repository index)",
    "get_repo_uri": "a repository's path or server URL (skybutler keeps no repository index)",
    "has_repo_config": "Butler(path), which says what is missing",
    "parse_dataset_uri": "butler.get_dataset(id) on the repository",
    "get_dataset_from_uri": "Butler(repository).get_dataset(id)",
    "create_from_config": "Butler(root) or Butler.create(root)",
}


def _refusal(name: str, instead: str) -> Any:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise _refused(f"Butler.{name}", instead)

    refused.__name__ = refused.__qualname__ = name
    refused.__doc__ = f"Not offered by skybutler: use {instead}."
    return staticmethod(refused)


class RubinButlerCalls:
    """The Rubin Butler's own names for skybutler's calls (a base of :class:`~skybutler.Butler`)."""

    universe: DimensionUniverse
    default_collections: list[str]
    _collections_given: bool
    default_data_id: dict[str, Any]
    run: str | None
    root: Any
    token: str | None
    recompute: Any
    on_wait: Any

    @classmethod
    def from_config(cls, config: Any = None, *, collections: Any = None, run: str | None = None,
                    writeable: bool | None = None, **kwargs: Any) -> Butler:
        """``Butler(config, collections, run)``: ``config`` is the repository's path or server URL
        (``writeable`` is taken and has no effect: rights are the repository's or the token's)."""
        if config is None:
            raise _refused("Butler.from_config() without a repository", "Butler.from_config(path_or_url)")
        data_id = kwargs.pop("dataId", None) or {}
        return cls(config, collections, run, {**data_id, **kwargs})  # type: ignore[return-value]

    @classmethod
    def makeRepo(cls, root: Any, config: Any = None, dimensionConfig: Any = None, **kwargs: Any) -> None:
        """Create an empty repository at ``root`` (``Butler.create``; open it with ``Butler(root)``)."""
        if config is not None or dimensionConfig is not None or kwargs:
            raise _refused("Butler.makeRepo(config=..., dimensionConfig=..., ...)",
                           "Butler.create(root, registry=..., datastore=..., universe=..., templates=...)")
        cls.create(root).close()  # type: ignore[attr-defined]

    def clone(self, *, collections: Any = ..., run: Any = ..., inferDefaults: Any = ...,
              dataId: Any = ...) -> Butler:
        """A new butler on the same repository with other defaults (``...``: this one's)."""
        cls = type(self)
        if collections is ...:  # none given: a new RUN is the default collection, as in the Rubin butler
            collections = self.default_collections if self._collections_given else None
        return cls(self.root,  # type: ignore[call-arg]
                   collections,
                   self.run if run is ... else run,
                   self.default_data_id if dataId is ... else dataId,
                   recompute=self.recompute, on_wait=self.on_wait, token=self.token)

    @property
    def dimensions(self) -> DimensionUniverse:
        """The dimension universe (``butler.universe``), by the Rubin butler's name."""
        return self.universe

    # -- reading ---------------------------------------------------------------

    def getDeferred(self: Any, datasetRefOrType: Any, /, dataId: Mapping[str, Any] | None = None, *,
                    parameters: Mapping[str, Any] | None = None, collections: Any = None, storageClass: Any = None,
                    timespan: Any = None, **kwargs: Any) -> DeferredDatasetHandle:
        """The dataset found now (an error if there is none), read by the handle's ``get()``."""
        _no_storage_class("getDeferred", storageClass)
        ref = datasetRefOrType
        if not isinstance(ref, DatasetRef):
            ref = self.find_dataset(_name_of(ref), dataId, collections=collections, timespan=timespan, **kwargs)
            if ref is None:
                raise DatasetNotFoundError(f"no {_name_of(datasetRefOrType)} dataset with data ID "
                                           f"{ {**(dataId or {}), **kwargs} } in collections "
                                           f"{self._search_path(collections)}")
        return DeferredDatasetHandle(self, ref, parameters)

    def getURI(self: Any, datasetRefOrType: Any, /, dataId: Mapping[str, Any] | None = None, *,
               predict: bool = False, collections: Any = None, run: str | None = None, **kwargs: Any) -> DatasetURI:
        """The URI of the dataset's file (``get_uri``)."""
        if predict:
            raise _refused("getURI(predict=True)", "butler.get_uri once the dataset is written "
                           "(skybutler names a file when it writes it)")
        target = datasetRefOrType if isinstance(datasetRefOrType, DatasetRef) else _name_of(datasetRefOrType)
        return DatasetURI(self.get_uri(target, dataId, collections=collections, **kwargs))

    def getURIs(self, datasetRefOrType: Any, /, dataId: Mapping[str, Any] | None = None, *,
                predict: bool = False, collections: Any = None, run: str | None = None,
                **kwargs: Any) -> DatasetRefURIs:
        """The dataset's URIs: its one file, and no components (each dataset is one file)."""
        return DatasetRefURIs(self.getURI(datasetRefOrType, dataId, predict=predict, collections=collections,
                                          run=run, **kwargs), {})

    def get_many_uris(self: Any, refs: Iterable[DatasetRef], predict: bool = False,
                      allow_missing: bool = False) -> dict[DatasetRef, DatasetRefURIs]:
        """Each ref's URIs; a dataset without a stored file is an error, or left out with ``allow_missing``."""
        if predict:
            raise _refused("get_many_uris(predict=True)", "butler.get_uri once the datasets are written")
        out = {}
        for ref in refs:
            try:
                out[ref] = DatasetRefURIs(DatasetURI(self.get_uri(ref)), {})
            except DatasetNotFoundError:
                if not allow_missing:
                    raise
        return out

    def stored(self: Any, ref: DatasetRef) -> bool:
        """Whether the dataset's file is stored (``exists(ref)``)."""
        return self.exists(ref)

    def stored_many(self: Any, refs: Iterable[DatasetRef]) -> dict[DatasetRef, bool]:
        return {ref: self.exists(ref) for ref in refs}

    def get_many_datasets(self: Any, ids: Iterable[Any]) -> list[DatasetRef]:
        """The datasets of these IDs that the repository has, each once (the others are left out)."""
        found = (self.get_dataset(i) for i in dict.fromkeys(ids))
        return [ref for ref in found if ref is not None]

    def query_all_datasets(self: Any, collections: Any = None, *, name: str | Iterable[str] = "*",
                           find_first: bool = True, data_id: Mapping[str, Any] | None = None, where: str = "",
                           bind: Mapping[str, Any] | None = None, limit: int | None = -20_000,
                           order_by: Any = None, with_dimension_records: bool = False,
                           **kwargs: Any) -> list[DatasetRef]:
        """The datasets of every dataset type whose name matches ``name`` (globs), type by type
        in name order; ``limit`` as in the query methods (negative: warn when there are more)."""
        if order_by is not None:
            raise _refused("query_all_datasets(order_by=...)", "butler.query_datasets(dataset_type, order_by=...)")
        patterns = [name] if isinstance(name, str) else list(name)
        types = sorted(d.name for d in self.query_dataset_types()
                       if any(fnmatch.fnmatchcase(d.name, p) for p in patterns))
        cap = None if limit is None else abs(limit) + 1  # one more than asked tells whether there are more
        out: list[DatasetRef] = []
        for dtype in types:
            if cap is not None and len(out) >= cap:
                break
            out += self.query_datasets(dtype, collections, find_first=find_first, data_id=data_id, where=where,
                                       bind=bind, limit=None if cap is None else cap - len(out),
                                       with_dimension_records=with_dimension_records, **kwargs)
        if limit is None:
            return out
        if limit < 0 and len(out) > -limit:
            logging.getLogger("skybutler.query").warning("More datasets are available than the requested limit "
                                                         "of %d.", -limit)
        return out[:abs(limit)]

    def retrieveArtifacts(self: Any, refs: Iterable[DatasetRef], destination: Any, transfer: str = "auto",
                          preserve_path: bool = True, overwrite: bool = False) -> list[DatasetURI]:
        """Copy the datasets' files into the directory ``destination`` (``retrieve_artifacts``);
        their new URIs.  The files are copied whatever ``transfer`` says."""
        paths = self.retrieve_artifacts(refs, str(destination).removeprefix("file://"), preserve_path=preserve_path,
                                        overwrite=overwrite)
        return [DatasetURI(p.absolute().as_uri()) for p in paths]

    def _put_of_ref(self: Any, obj: Any, ref: DatasetRef, data_id: Any, run: str | None,
                    kwargs: Mapping[str, Any]) -> DatasetRef:
        """``put(obj, ref)``: the dataset stored under the ref's ID, data ID and RUN."""
        if data_id or kwargs or run not in (None, ref.run):
            raise SkybutlerError(f"put of the ref {ref}: its data ID and RUN are the ref's; give no data ID, "
                                 "keywords or other run=")
        if self._remote is not None:  # a server makes the IDs of what its clients write
            raise _refused("put(obj, ref) through a server", "butler.put(obj, ref.dataset_type, ref.data_id, "
                           "run=ref.run), which gives a new dataset ID")
        return self.put_many(ref.dataset_type.name, [(obj, dict(ref.data_id.required))], run=ref.run,
                             ids=[ref.id])[0]

    # -- removing ----------------------------------------------------------------

    def pruneDatasets(self: Any, refs: Iterable[DatasetRef], *, disassociate: bool = True, unstore: bool = False,
                      tags: Iterable[str] = (), purge: bool = False) -> None:
        """``purge=True`` (with ``disassociate`` and ``unstore``, as the Rubin butler asks): remove
        the datasets (``remove``); otherwise take them out of the TAGGED collections ``tags``."""
        refs = list(refs)
        tags = [tags] if isinstance(tags, str) else list(tags)
        if purge:
            if not (disassociate and unstore):
                raise TypeError("pruneDatasets(purge=True) needs disassociate=True and unstore=True, "
                                "as in the Rubin butler")
            self.remove(refs)
            return
        if unstore:
            raise _refused("pruneDatasets(unstore=True) without purge",
                           "butler.retention.purge(refs), which keeps the registry entry and provenance, or "
                           "pruneDatasets(refs, unstore=True, purge=True) to remove the datasets")
        if not disassociate or not tags:
            raise TypeError("pruneDatasets without purge needs disassociate=True and the TAGGED collections "
                            "in tags=, as in the Rubin butler")
        for tag in tags:
            kind = self.collections.info(tag).type
            if kind is not CollectionType.TAGGED:
                raise TypeError(f"cannot disassociate from collection {tag!r}, a {kind.value} collection: only "
                                "from TAGGED ones")
        for tag in tags:
            self.collections.disassociate(tag, refs)

    def removeRuns(self: Any, names: Iterable[str], unstore: Any = None, *, unlink_from_chains: bool = False) -> None:
        """Remove RUN collections with their datasets and files (``remove_runs``); with
        ``unlink_from_chains`` they are first taken out of the chains holding them."""
        names = [names] if isinstance(names, str) else list(names)
        for name in names:
            kind = self.collections.info(name).type
            if kind is not CollectionType.RUN:
                raise TypeError(f"the collection type of {name!r} is {kind.name}, not RUN")
        if unlink_from_chains:
            for parent in sorted({p for name in names for p in self.collections.parents(name)}):
                self.collections.set_chain(parent, [c for c in self.collections.get_chain(parent) if c not in names])
        self.remove_runs(names)

    def validateConfiguration(self: Any, logFailures: bool = False, datasetTypeNames: Iterable[str] | None = None,
                              ignore: Iterable[str] | None = None) -> None:
        """An error listing the problems ``validate_config`` finds (of the dataset types named,
        less those ignored); nothing when there are none."""
        named = None if datasetTypeNames is None else set(datasetTypeNames)
        ignored = set(ignore or ())
        problems = [p for p in self.validate_config()
                    if (named is None or any(_about(p, n) for n in named)) and not any(_about(p, n) for n in ignored)]
        if problems:
            if logFailures:
                for problem in problems:
                    logging.getLogger("skybutler").fatal("%s", problem)
            raise ConfigError("the repository's configuration is not valid: " + "; ".join(problems))


for _name, _instead in _INSTEAD.items():
    setattr(RubinButlerCalls, _name, _refusal(_name, _instead))


def check_default_data_id(butler: Butler) -> None:
    """A default data-ID key that is no dimension (a typo, or a keyword ``Butler`` does not take) is refused."""
    unknown = sorted(k for k in butler.default_data_id if k not in butler.universe.elements)
    if unknown:
        raise DataIdError(f"Butler({str(butler.root)!r}, ...): {', '.join(map(repr, unknown))} "
                          f"{'is not a dimension' if len(unknown) == 1 else 'are not dimensions'}: a default "
                          "data-ID value is given as a dimension's name (instrument='Cam')")


def no_file_datasets(method: Callable[..., Any]) -> Callable[..., Any]:
    """``ingest`` refusing the Rubin butler's ``ingest(*FileDataset)`` by name, before its arguments are read."""
    @functools.wraps(method)
    def call(self: Any, dataset_type: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(dataset_type, str):
            raise _refused("ingest(FileDataset, ...)", "butler.ingest(dataset_type_name, [(path, data_id), ...], "
                           "run=..., transfer=..., ids=[...]) (ids= keeps the refs' dataset IDs)")
        return method(self, dataset_type, *args, **kwargs)

    return call


def _about(problem: str, dataset_type: str) -> bool:
    """Whether a ``validate_config`` problem names ``dataset_type`` (as a whole name)."""
    return re.search(rf"(?<![\w.]){re.escape(dataset_type)}(?![\w.])", problem) is not None


def _name_of(value: Any) -> str:
    """A dataset type given as its name or as a skybutler or Rubin dataset type."""
    return value if isinstance(value, str) else value.name

