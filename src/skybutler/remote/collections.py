"""``butler.collections`` of a butler opened on a server URL: the methods of
:class:`~skybutler.collections_manager.CollectionsManager`, each one request."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..models import CollectionInfo, CollectionType, DatasetRef
from ..rubin_registry import RubinCollectionCalls
from ..timespan import Timespan
from . import wire
from .batch import chunks, write_in_chunks

if TYPE_CHECKING:
    from .client import RemoteTransport


class RemoteCollections(RubinCollectionCalls):
    """Collection operations through a server, under the caller's rights there."""

    def __init__(self, transport: RemoteTransport):
        self._t = transport

    def register(self, name: str, type: CollectionType | str = CollectionType.RUN, doc: str | None = "") -> bool:
        return self._t.post_json("collections", {"name": name, "type": CollectionType.parse(type).value,
                                                 "doc": doc or ""})

    def info(self, name: str) -> CollectionInfo:
        return CollectionInfo(**self._t.get_json("collections/info", name=name))

    def exists(self, name: str) -> bool:
        from ..errors import MissingCollectionError

        try:
            self.info(name)
        except MissingCollectionError:
            return False
        return True

    def dataset_types(self, names: str | Iterable[str]) -> dict[str, list[str]]:
        """Not offered through a server (a type could reveal embargoed datasets)."""
        from ..errors import SkybutlerError

        raise SkybutlerError("the dataset types of a collection are not listed through a server: open the "
                             "repository by its path, or query the datasets of each type")

    def set_chain(self, name: str, children: Sequence[str]) -> None:
        self._t._send("PUT", "collections/chain", json={"name": name, "children": list(children)})

    def get_chain(self, name: str) -> tuple[str, ...]:
        return self.info(name).children


    def parents(self, name: str) -> list[str]:
        return self._t.get_json("collections/parents", name=name)

    def flatten(self, names: str | Iterable[str]) -> list[str]:
        return self._t.get_json("collections/flatten", name=[names] if isinstance(names, str) else list(names))

    def query(self, pattern: str = "*", types: Iterable[CollectionType | str] | None = None,
              flatten_chains: bool = False) -> list[CollectionInfo]:
        body = {"pattern": pattern, "flatten_chains": flatten_chains,
                "types": None if types is None else [CollectionType.parse(t).value for t in types]}
        return [CollectionInfo(**c) for c in self._t.post_json("collections/query", body)]

    def _write(self, path: str, refs: Iterable[DatasetRef], body: dict[str, Any]) -> None:
        """A write naming datasets, in one transaction however many (``batch.write_in_chunks``)."""
        write_in_chunks(self._t, path, [{**body, "ids": part}
                                        for part in chunks([str(r.id) for r in refs], self._t.max_ids)])

    def associate(self, name: str, refs: Iterable[DatasetRef]) -> None:
        self._write("collections/associate", refs, {"name": name})

    def disassociate(self, name: str, refs: Iterable[DatasetRef]) -> None:
        self._write("collections/disassociate", refs, {"name": name})

    def certify(self, name: str, refs: Iterable[DatasetRef], begin: Any = None, end: Any = None, *,
                timespan: Timespan | None = None) -> None:
        span = timespan if timespan is not None else Timespan(begin, end)
        self._write("collections/certify", refs, {"name": name, "begin": wire.encode(span.begin),
                                                  "end": wire.encode(span.end)})

    def decertify(self, name: str, dataset_type: str, begin: Any = None, end: Any = None, *,
                  timespan: Timespan | None = None, data_ids: Iterable[Any] | None = None) -> int:
        span = timespan if timespan is not None else Timespan(begin, end)
        return self._t.post_json("collections/decertify", {
            "name": name, "ids": [], "dataset_type": dataset_type, "begin": wire.encode(span.begin),
            "end": wire.encode(span.end), "data_ids": None if data_ids is None else [wire.encode(dict(d.items()))
                                                                                     for d in data_ids]})

    def validity(self, name: str, dataset_type: str) -> list[tuple[DatasetRef, Timespan]]:
        return [(self._t.ref_from_json(ref), wire.decode(span))
                for ref, span in self._t.get_json("collections/validity", name=name, dataset_type=dataset_type)]

    def remove(self, name: str) -> None:
        self._t._send("DELETE", "collections", params={"name": name})
