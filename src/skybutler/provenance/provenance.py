"""Questions about lineage: what made a dataset, what used it, and the whole tree above it.

``butler.provenance`` (created on first use) answers them from the quantum rows the
executors record::

    q = butler.provenance.producer(ref)        # QuantumRecord or None
    users = butler.provenance.consumers(ref)   # every quantum that read it
    tree = butler.provenance.tree(ref)         # ProvenanceNode, recursively up to raw inputs
    plan = butler.provenance.plan_recompute(ref)  # a purged dataset: quanta to replay, expected wait
    obj = butler.provenance.recompute(ref)     # ... replayed and stored back under its recorded ID
    stale = butler.provenance.stale("deepCoadd", "demo/best", where="band = 'r'")  # StaleProduct list
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import SkybutlerError
from ..models import DatasetRef, dataset_id_of
from ..registry.quantum_store import DatasetLink, QuantumRecord, QuantumStore
from .recompute import RecomputePlan, plan_recompute
from .staleness import Staleness, StaleProduct, assess

if TYPE_CHECKING:
    from ..butler import Butler
    from ..pipeline.pipeline import Pipeline


@dataclass
class ProvenanceNode:
    """A dataset and, if a recorded quantum made it, that quantum and the trees of its inputs."""

    dataset_id: uuid.UUID | None
    dataset_type: str
    data_id: dict[str, Any]
    quantum: QuantumRecord | None = None
    inputs: list[ProvenanceNode] = field(default_factory=list)
    #: The dataset is still registered in the repository (False once purged).
    exists: bool = True

    def walk(self) -> Iterator[ProvenanceNode]:
        yield self
        for child in self.inputs:
            yield from child.walk()


class Provenance:
    """Lineage queries over one repository's recorded quanta."""

    def __init__(self, butler: Butler):
        self.butler = butler
        registry = butler.registry
        self.store = QuantumStore(registry.db, registry.schema, registry.collections)

    def producer(self, ref: DatasetRef | uuid.UUID | str) -> QuantumRecord | None:
        """The quantum that wrote a dataset, or None (ingested, or put by hand)."""
        dataset_id = dataset_id_of(ref)
        return self.store.producers([dataset_id]).get(dataset_id)

    def consumers(self, ref: DatasetRef | uuid.UUID | str) -> list[QuantumRecord]:
        """Every recorded quantum that read a dataset, failed attempts included."""
        return self.store.consumers(dataset_id_of(ref))

    def quanta(self, run: str | None = None, task: str | None = None, status: str | None = None
               ) -> list[QuantumRecord]:
        """Recorded quanta, filtered by RUN, task label and status."""
        return self.store.query(run=run, task=task, status=status)

    def environment(self, record: QuantumRecord) -> dict[str, Any] | None:
        """The software versions a quantum ran with."""
        return None if record.env_id is None else self.store.environment_of(record.env_id)

    def plan_recompute(self, ref: DatasetRef | uuid.UUID | str) -> RecomputePlan:
        """What replaying would take to re-create a purged dataset: quanta and expected wait."""
        return plan_recompute(self, dataset_id_of(ref))

    def recompute(self, ref: DatasetRef | uuid.UUID | str, store: bool = True) -> Any:
        """Re-create a purged dataset from its recorded quantum (recursively for purged inputs),
        stored back under its recorded ID unless ``store`` is False; returns the object.
        The work is :func:`skybutler.retention.ondemand.recompute`'s: it also handles datasets a
        retention policy purged (still registered) and cold inputs, checks software drift
        (refused) and verifies the result."""
        from ..retention.ondemand import RecomputeOptions
        from ..retention.ondemand import recompute as recompute_on_demand

        dataset_id = dataset_id_of(ref)
        result = recompute_on_demand(self.butler, [dataset_id], RecomputeOptions(store=store), self.butler.on_wait)
        if dataset_id in result.objects:
            return result.objects[dataset_id]
        return self.butler.get(self.butler.registry.refs_by_id([dataset_id])[0])

    def stale(self, dataset_type: str, collections: str | Sequence[str], where: str = "", *,
              pipeline: Pipeline | None = None, bind: Mapping[str, Any] | None = None, config: bool = True,
              software: bool = False) -> list[StaleProduct]:
        """The ``dataset_type`` products in ``collections`` (find-first; ``where`` selects data IDs)
        that their task would not make the same way today, each with the reasons: inputs added,
        removed, replaced or remade upstream, a calibration superseded or decertified, a changed
        config (unless ``config=False``) and with ``software`` changed task code -- the products of
        exactly the quanta an incremental run with the same pipeline redoes.  See :meth:`staleness`."""
        return self.staleness(dataset_type, collections, where, pipeline=pipeline, bind=bind, config=config,
                              software=software).products(dataset_type)

    def staleness(self, dataset_type: str, collections: str | Sequence[str], where: str = "", *,
                  pipeline: Pipeline | None = None, bind: Mapping[str, Any] | None = None, config: bool = True,
                  software: bool = False) -> Staleness:
        """The verdict on every quantum that makes ``dataset_type`` and those upstream of it.

        Today's inputs come from building the graph of ``pipeline`` -- by default the pipeline the
        products were made with, as recorded with their quanta -- over ``collections`` (which hold
        the inputs too, as an output chain does) with ``where``; see :mod:`.staleness`."""
        from ..pipeline.builder import QuantumGraphBuilder

        search = [collections] if isinstance(collections, str) else list(collections)
        if pipeline is None:
            pipeline = self.recorded_pipeline(dataset_type, search)
        producers = pipeline.producers()
        if dataset_type not in producers:
            raise SkybutlerError(f"no task of the pipeline makes {dataset_type!r}")
        pipeline = pipeline.subset(_upstream(pipeline, producers[dataset_type]))
        graph = QuantumGraphBuilder(self.butler, pipeline, search, "(staleness)", where=where, bind=bind).build()
        return assess(self.butler, graph, search, config=config, software=software, orphans_of=[dataset_type],
                      where=where)

    def recorded_pipeline(self, dataset_type: str, collections: Sequence[str], sample: int = 1000) -> Pipeline:
        """The pipeline that made the ``dataset_type`` products of ``collections``, as recorded:
        task classes and dataset-type renames with the quanta's software record, configs from
        the ``<label>_config`` datasets of their RUN (the most common one among the products,
        of at most ``sample`` of them; ``where`` is not applied: it may name dimensions the
        products' own query cannot relate)."""
        from collections import Counter
        from itertools import islice

        from ..pipeline.pipeline import Pipeline

        ids = [ref.id for ref in islice(self.butler.query_datasets(dataset_type, collections=list(collections)),
                                        sample)]
        _, quanta = self.store.lineage(ids)
        if not quanta:
            raise SkybutlerError(f"no recorded quantum made a {dataset_type!r} dataset in {', '.join(collections)}")
        (env_id, run), _ = Counter((q.env_id, q.run) for q in quanta.values()).most_common(1)[0]
        env = self.store.environment_of(env_id) if env_id else None
        tasks = (env or {}).get("tasks")
        if not tasks:
            raise SkybutlerError(f"the quanta of RUN {run!r} were recorded by an older skybutler, without their "
                                 "pipeline: give the pipeline explicitly")
        pipeline = Pipeline(f"as recorded in RUN {run}")
        for label, ident in tasks.items():
            ref = self.butler.find_dataset(f"{label}_config", {}, collections=[run])
            config = self.butler.get(ref) if ref is not None else None
            pipeline.add_task(label, ident["class"], config, ident.get("connections") or None)
        return pipeline

    def tree(self, ref: DatasetRef | uuid.UUID | str, max_depth: int = 50) -> ProvenanceNode:
        """The dataset with its producing quantum and, recursively, the trees of that quantum's
        inputs; one producer query per level of the tree, and one look-up of which inputs still
        exist (their type and RUN, not whole refs: the coadd graph page's tree went from about
        110-170 ms to 80 ms on the demo repository)."""
        dataset_id = dataset_id_of(ref)
        found = self.butler.registry.refs_by_id([dataset_id])
        if found:
            root = ProvenanceNode(dataset_id, found[0].dataset_type.name, dict(found[0].data_id.required))
        else:
            made = self.producer(dataset_id)
            link = next((o for o in made.outputs if o.dataset_id == dataset_id), None) if made else None
            root = ProvenanceNode(dataset_id, link.dataset_type if link else "?", link.data_id if link else {},
                                  exists=False)
        level = [root]
        seen: set[uuid.UUID] = {dataset_id}
        for _ in range(max_depth):
            ids = [n.dataset_id for n in level if n.dataset_id is not None]
            producers = self.store.producers(ids)
            present = self.butler.registry.owners_by_id(
                i.dataset_id for q in producers.values() for i in q.inputs if i.dataset_id is not None)
            next_level = []
            for node in level:
                quantum = producers.get(node.dataset_id) if node.dataset_id is not None else None
                node.quantum = quantum
                for link in quantum.inputs if quantum else ():
                    child = _node(link, link.dataset_id in present)
                    node.inputs.append(child)
                    if link.dataset_id is not None and link.dataset_id not in seen:
                        seen.add(link.dataset_id)
                        next_level.append(child)
            if not next_level:
                break
            level = next_level
        return root


def _upstream(pipeline: Pipeline, label: str) -> list[str]:
    """``label`` and every task whose outputs it needs, directly or not."""
    producers = pipeline.producers()
    todo, seen = [label], {label}
    while todo:
        for conn in pipeline[todo.pop()].inputs.values():
            up = producers.get(conn.name)
            if up is not None and up not in seen:
                seen.add(up)
                todo.append(up)
    return [x for x in pipeline.labels if x in seen]


def _node(link: DatasetLink, exists: bool) -> ProvenanceNode:
    return ProvenanceNode(link.dataset_id, link.dataset_type, link.data_id, exists=exists)
