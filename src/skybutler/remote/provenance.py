"""``butler.provenance`` of a butler opened on a server URL: ``producer``, ``consumers``,
``tree``, ``quanta``, ``stale``/``staleness`` and ``recompute``, answered by the server under
the caller's rights."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..models import DatasetRef
from ..provenance.provenance import ProvenanceNode
from ..provenance.staleness import StaleProduct
from ..registry.quantum_store import DatasetLink, QuantumRecord
from . import wire

if TYPE_CHECKING:
    from .client import RemoteTransport


def _id(target: DatasetRef | uuid.UUID | str) -> str:
    return str(target.id if isinstance(target, DatasetRef) else target)


def _record(values: dict[str, Any]) -> QuantumRecord:
    values = wire.decode(values)
    for side in ("inputs", "outputs"):
        values[side] = [DatasetLink(**link) for link in values[side]]
    return QuantumRecord(**values)


def _by_ids_named(records: Sequence[QuantumRecord], limit: int) -> list[list[QuantumRecord]]:
    """The records in consecutive parts each naming at most ``limit`` dataset IDs (a record naming
    more is a part of its own, which the server refuses by name)."""
    parts: list[list[QuantumRecord]] = [[]]
    named = 0
    for record in records:
        count = sum(i is not None for i in (record.config_dataset_id,
                                            *(link.dataset_id for link in (*record.inputs, *record.outputs))))
        if parts[-1] and (named + count > limit or len(parts[-1]) >= limit):
            parts.append([])
            named = 0
        parts[-1].append(record)
        named += count
    return parts


@dataclass
class StaleAnswer:
    """What a server answers of ``staleness``: the stale products it may show, and the count judged."""

    stale: list[StaleProduct]
    totals: dict[str, int]

    def products(self, dataset_type: str | None = None) -> list[StaleProduct]:
        return [p for p in self.stale if dataset_type is None or p.dataset_type == dataset_type]

    def total(self, dataset_type: str) -> int:
        return self.totals.get(dataset_type, 0)


class RemoteQuantumStore:
    """Where a pipeline run on this machine records its quanta: the server, as the caller's writes
    to the output RUN (inside a transaction, one more write of its batch)."""

    def __init__(self, transport: RemoteTransport):
        self._t = transport

    def ensure(self) -> None:
        """Nothing to do: the server makes its provenance tables when first asked to record."""

    def add_environment(self, env_id: str, description: dict[str, Any]) -> None:
        self._t.post_json("provenance/environment", {"env_id": env_id, "description": description})

    def insert(self, records: Sequence[QuantumRecord]) -> None:
        from .batch import write_in_chunks

        if records:
            write_in_chunks(self._t, "provenance/record", [{"records": [wire.encode(dataclasses.asdict(r))
                                                                        for r in part]}
                                                           for part in _by_ids_named(records, self._t.max_ids)])


class RemoteProvenance:
    def __init__(self, transport: RemoteTransport):
        self._t = transport
        self._environments: dict[str, Any] = {}

    @functools.cached_property
    def store(self) -> RemoteQuantumStore:
        """The recording side of provenance, for pipelines run through this butler."""
        return RemoteQuantumStore(self._t)

    def producer(self, ref: DatasetRef | uuid.UUID | str) -> QuantumRecord | None:
        """The quantum that wrote a dataset, or None (ingested, or put by hand)."""
        found = self._t.post_json("provenance/producer", {"id": _id(ref)})
        return None if found is None else _record(found)

    def consumers(self, ref: DatasetRef | uuid.UUID | str) -> list[QuantumRecord]:
        """Every recorded quantum that read a dataset (those the caller may see)."""
        return [_record(r) for r in self._t.post_json("provenance/consumers", {"id": _id(ref)})]

    def recompute(self, ref: DatasetRef | uuid.UUID | str, store: bool = True) -> Any:
        """Have the server re-create a purged dataset (stored back under its ID), then read it."""
        if not store:
            from ..errors import SkybutlerError

            raise SkybutlerError("a server stores what it recomputes: store=False is not available remotely")
        found = self._t.ref_from_json(self._t.post_json("provenance/recompute", {"id": _id(ref)}))
        return self._t.get(found)

    def tree(self, ref: DatasetRef | uuid.UUID | str, max_depth: int = 50) -> ProvenanceNode:
        """What made a dataset, recursively, as far as the caller may see it (a quantum whose RUN
        they may not read, or an input they may not see, is left out)."""
        found = self._t.post_json("provenance/tree", {"id": _id(ref), "max_depth": max_depth})
        self._environments.update(wire.decode(found["environments"]))

        def node(item: dict[str, Any]) -> ProvenanceNode:
            return ProvenanceNode(uuid.UUID(item["dataset_id"]), item["dataset_type"], wire.decode(item["data_id"]),
                                  None if item["quantum"] is None else _record(item["quantum"]),
                                  [node(c) for c in item["inputs"]], item["exists"])

        return node(found["tree"])

    def quanta(self, run: str | None = None, task: str | None = None, status: str | None = None
               ) -> list[QuantumRecord]:
        """Recorded quanta of the RUNs the caller may read (without their logs)."""
        return [_record(r) for r in self._t.post_json("provenance/quanta", {"run": run, "task": task,
                                                                             "status": status})]

    def environment(self, record: QuantumRecord) -> dict[str, Any] | None:
        """The software versions a quantum of a ``tree`` answer ran with (None for others)."""
        return self._environments.get(record.env_id) if record.env_id else None

    def staleness(self, dataset_type: str, collections: str | Sequence[str], where: str = "", *,
                  pipeline: Any = None, bind: Mapping[str, Any] | None = None, config: bool = True,
                  software: bool = False) -> StaleAnswer:
        """The server's verdict on the ``dataset_type`` products (with the pipeline recorded with
        them: a pipeline of one's own names code to import, which a server does not take)."""
        if pipeline is not None:
            from ..errors import SkybutlerError

            raise SkybutlerError("through a server, stale judges products by the pipeline recorded with them: "
                                 "leave out the pipeline (--pipeline)")
        found = self._t.post_json("provenance/staleness", {
            "dataset_type": dataset_type, "collections": [collections] if isinstance(collections, str)
            else list(collections), "where": where, "bind": wire.encode(dict(bind or {})), "config": config,
            "software": software})
        return StaleAnswer([StaleProduct(p["dataset_type"], wire.decode(p["data_id"]), uuid.UUID(p["id"]), p["run"],
                                         p["task"], p["reasons"], p["added"], p["removed"])
                            for p in found["products"]], {dataset_type: found["total"]})

    def stale(self, dataset_type: str, collections: str | Sequence[str], where: str = "", **kwargs: Any
              ) -> list[StaleProduct]:
        return self.staleness(dataset_type, collections, where, **kwargs).products(dataset_type)

    def __getattr__(self, name: str) -> Any:
        from ..errors import SkybutlerError

        raise SkybutlerError(f"provenance.{name} is not available through a server ({self._t.url})")
