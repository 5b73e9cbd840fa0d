"""Re-creating purged datasets from their recorded provenance (walkthrough step 8).

A purged output is remade by replaying the quantum that wrote it -- the same task
class, the config stored in its RUN, the same input datasets by ID -- after first
replaying, recursively, the quanta of any of those inputs that were purged too.  The
plan says which quanta will run and how long they took when they were recorded (the
expected wait); :func:`recompute` stores the remade datasets back into their RUN under
their recorded dataset IDs, so every existing provenance link stays valid.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..dimensions import DataCoordinate
from ..errors import DatasetNotFoundError
from ..pipeline.errors import ExecutionError
from ..pipeline.pipeline import make_config
from ..pipeline.task import import_task
from ..registry.quantum_store import QuantumRecord

if TYPE_CHECKING:
    from ..butler import Butler
    from .provenance import Provenance


@dataclass
class RecomputePlan:
    """The quanta to replay, inputs first, and the time they took when first run."""

    target: uuid.UUID
    quanta: list[QuantumRecord] = field(default_factory=list)

    @property
    def expected_seconds(self) -> float:
        return sum(q.seconds or 0.0 for q in self.quanta)

    def describe(self) -> str:
        return (f"{len(self.quanta)} quanta to replay ({', '.join(q.task_label for q in self.quanta)}); "
                f"expected wait about {self.expected_seconds:.1f} s")


def _present(butler: Butler, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """IDs of datasets that are registered and have their artifact."""
    return set(butler.registry.datasets.artifacts(ids))


def plan_recompute(provenance: Provenance, dataset_id: uuid.UUID) -> RecomputePlan:
    """The quanta whose replay re-creates ``dataset_id`` (empty if it is present)."""
    butler = provenance.butler
    plan = RecomputePlan(dataset_id)
    if dataset_id in _present(butler, [dataset_id]):
        return plan
    done: set[uuid.UUID] = set()

    def visit(target: uuid.UUID, path: tuple[uuid.UUID, ...]) -> None:
        quantum = provenance.store.producers([target]).get(target)
        if quantum is None:
            raise ExecutionError(f"dataset {target} is gone and no recorded quantum made it: it cannot be recomputed")
        if quantum.quantum_id in done:
            return
        if quantum.status != "succeeded":
            raise ExecutionError(f"dataset {target}: its recorded quantum {quantum.quantum_id} has status "
                                 f"{quantum.status}")
        inputs = [i.dataset_id for i in quantum.inputs if i.dataset_id is not None]
        present = _present(butler, inputs)
        for link in quantum.inputs:
            if link.dataset_id is not None and link.dataset_id not in present:
                if link.dataset_id in path:
                    raise ExecutionError(f"recorded provenance of {target} is circular")
                visit(link.dataset_id, path + (link.dataset_id,))
        done.add(quantum.quantum_id)
        plan.quanta.append(quantum)

    visit(dataset_id, (dataset_id,))
    return plan


def _inputs(butler: Butler, quantum: QuantumRecord, task_class: Any,
            objects: Mapping[uuid.UUID, Any] | None = None) -> dict[str, Any]:
    """The task's inputs by connection, read from the repository or taken from ``objects``
    (already in hand, by dataset ID); a multiple connection's are sorted by data ID, as when run."""
    objects = objects or {}
    refs = {r.id: r for r in butler.registry.refs_by_id([i.dataset_id for i in quantum.inputs if i.dataset_id])}
    connections = task_class.connections()
    out: dict[str, Any] = {}
    for link in quantum.inputs:
        ref = refs.get(link.dataset_id) if link.dataset_id is not None else None
        if link.dataset_id in objects:
            obj = objects[link.dataset_id]
            key = ref.data_id if ref is not None else DataCoordinate.standardize(
                butler.get_dataset_type(link.dataset_type).group(butler.universe), link.data_id)
        elif ref is None or ref.artifact is None:
            raise DatasetNotFoundError(f"input {link.connection!r} ({link.dataset_type}@{link.data_id}) of "
                                       f"task {quantum.task_label!r} is missing")
        else:
            obj, key = butler.get(ref), ref.data_id
        if connections[link.connection].multiple:
            out.setdefault(link.connection, {})[key] = obj
        else:
            out[link.connection] = obj
    for name, conn in connections.items():
        if conn.multiple and name in {**task_class.inputs, **task_class.prerequisites}:
            out[name] = dict(sorted(out.get(name, {}).items(), key=lambda item: item[0].required_values))
    return out


def replay(butler: Butler, quantum: QuantumRecord, objects: Mapping[uuid.UUID, Any] | None = None
           ) -> dict[uuid.UUID, Any]:
    """Run a recorded quantum again; its outputs by their recorded dataset IDs.  Inputs found in
    ``objects`` (by dataset ID: products of earlier replays, not stored yet) are not read."""
    task_class = import_task(quantum.task_class, quantum.task_label)
    config_refs = butler.registry.refs_by_id([quantum.config_dataset_id] if quantum.config_dataset_id else [])
    if not config_refs:
        raise ExecutionError(f"task {quantum.task_label!r}: the config it ran with ({quantum.config_dataset_id}) "
                             "is gone from the repository")
    config = make_config(quantum.task_label, task_class, butler.get(config_refs[0]))
    task = task_class(config=config, label=quantum.task_label)
    inputs = _inputs(butler, quantum, task_class, objects)
    if task.takes_data_id():
        inputs["data_id"] = DataCoordinate.standardize(butler.universe.group(task_class.dimensions), quantum.data_id)
    results = task.run(**inputs)
    out: dict[uuid.UUID, Any] = {}
    for link in quantum.outputs:
        value = results.get(link.connection)
        if task_class.outputs[link.connection].multiple:
            group = butler.universe.group(butler.get_dataset_type(link.dataset_type).dimensions)
            wanted = DataCoordinate.standardize(group, link.data_id)
            pairs = value.items() if hasattr(value, "items") else value or []
            value = next((obj for key, obj in pairs if DataCoordinate.standardize(
                group, {k: v for k, v in {**quantum.data_id, **dict(key)}.items() if k in group.names}) == wanted),
                None)
        if value is None:
            raise ExecutionError(f"task {quantum.task_label!r} did not produce {link.dataset_type}@{link.data_id} "
                                 "when replayed")
        out[link.dataset_id] = value
    return out


def recompute(provenance: Provenance, dataset_id: uuid.UUID, store: bool = True) -> Any:
    """Re-create a purged dataset (and any purged inputs) by replaying recorded quanta; returns
    the object, stored back under its recorded ID and RUN unless ``store`` is False (purged
    inputs it needed are stored in any case: the replays read them from the repository)."""
    butler = provenance.butler
    plan = plan_recompute(provenance, dataset_id)
    if not plan.quanta:
        return butler.get(butler.registry.refs_by_id([dataset_id])[0])
    target = None
    for quantum in plan.quanta:
        made = replay(butler, quantum)
        gone = set(made) - _present(butler, list(made))
        if store or quantum is not plan.quanta[-1]:
            for link in quantum.outputs:
                if link.dataset_id in gone:
                    butler.put_many(link.dataset_type, [(made[link.dataset_id], link.data_id)], run=quantum.run,
                                    ids=[link.dataset_id])
        target = made.get(dataset_id, target)
    return target
