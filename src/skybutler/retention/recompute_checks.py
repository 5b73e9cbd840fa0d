"""What may have changed since a recorded quantum ran, checked before it is replayed.

Its task class must still import, its installed code may differ from the recorded version
(drift), a calibration it read may since have been decertified or superseded, and its recorded
config must still validate against the task.  :mod:`.ondemand` plans a recompute with these
answers and decides, by the caller's policies, whether to refuse or go on and note them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import RecomputeError, SkybutlerError
from ..pipeline.errors import PipelineError
from ..pipeline.pipeline import make_config
from ..pipeline.task import import_task
from ..provenance.software import code_hash, environment
from ..registry.quantum_store import QuantumRecord

if TYPE_CHECKING:
    from ..butler import Butler
    from .ondemand import RecomputeEstimate


def dataset_label(dataset_type: str, data_id: Mapping[str, Any], dataset_id: uuid.UUID | None) -> str:
    return f"{dataset_type}@{dict(data_id)} ({dataset_id})"


def task_classes(estimate: RecomputeEstimate) -> dict[uuid.UUID, type]:
    out = {}
    for q in estimate.quanta:
        try:
            out[q.quantum_id] = import_task(q.task_class, q.task_label)
        except PipelineError as err:
            made = ", ".join(estimate.labels.get(o.dataset_id, o.dataset_type) for o in q.outputs
                             if o.dataset_id in estimate.needed)
            raise RecomputeError(f"cannot recompute {made}: the task that made it, {q.task_label!r} "
                                 f"({q.task_class}), can no longer be imported: {err}") from None
    return out


def drift(butler: Butler, quantum: QuantumRecord, task_class: type) -> str | None:
    """How the installed code of a task differs from what a quantum recorded, or None.

    A quantum recorded with its task's code hash is compared by that hash (an edit to the
    task's source is drift, with or without git; a pipeline YAML is not code).  An older
    record, without one, falls back to the task package's version and git SHA."""
    recorded = butler.provenance.store.environment_of(quantum.env_id) if quantum.env_id else None
    if not recorded:
        return None
    identity = (recorded.get("tasks") or {}).get(quantum.task_label)
    if identity and identity.get("code"):
        now_hash = code_hash(task_class)
        if identity["code"] == now_hash:
            return None
        return (f"task {quantum.task_label!r} ({quantum.task_class}) code changed: content hash "
                f"{identity['code'][:12]} recorded, {now_hash[:12]} installed")
    module = task_class.__module__
    top = module.split(".", 1)[0]
    now = environment((module,))

    def version(env: Mapping[str, Any]) -> tuple[Any, Any]:
        return env.get("packages", {}).get(top), env.get("git", {}).get(top)

    (old_v, old_git), (new_v, new_git) = version(recorded), version(now)
    if (old_v, old_git) == (new_v, new_git):
        return None

    def shown(v: Any, git: Any) -> str:
        return f"{top} {v}" + (f" (git {git})" if git else "")

    return (f"task {quantum.task_label!r} ({quantum.task_class}) ran with {shown(old_v, old_git)}; "
            f"installed is {shown(new_v, new_git)}")


def calibration_changes(butler: Butler, quanta: Sequence[QuantumRecord]
                         ) -> list[tuple[str, tuple[uuid.UUID, uuid.UUID, dict[uuid.UUID, str]]]]:
    """Each calibration a quantum read that no CALIBRATION collection certifies any more for the
    quantum's observation time: decertified, or superseded by what is certified there now; as a
    sentence and as (quantum ID, recorded dataset ID, {dataset certified today: collection})."""
    calib_collections = [c.name for c in butler.collections.query(types=["calibration"])]
    out = []
    for q in quanta:
        when = {k: v for k, v in q.data_id.items() if k in ("instrument", "visit", "exposure")}
        for link in q.inputs:
            if not link.prerequisite or link.dataset_id is None:
                continue
            if not butler.get_dataset_type(link.dataset_type).is_calibration:
                continue
            today = {}
            for name in calib_collections:
                try:
                    ref = butler.find_dataset(link.dataset_type, {**when, **link.data_id}, collections=[name])
                except SkybutlerError:
                    continue  # this collection does not hold the type
                if ref is not None:
                    today[ref.id] = name
            if link.dataset_id in today:
                continue
            what = f"{dataset_label(link.dataset_type, link.data_id, link.dataset_id)} read by task {q.task_label!r} " \
                   f"quantum {q.data_id}"
            out.append((f"{what} was superseded by {', '.join(f'{i} in {n!r}' for i, n in today.items())}" if today
                        else f"{what} was decertified (nothing is certified for its observation time now)",
                        (q.quantum_id, link.dataset_id, today)))
    return out


def check_configs(butler: Butler, estimate: RecomputeEstimate, classes: Mapping[uuid.UUID, type]) -> None:
    for q in estimate.quanta:
        ref = butler.registry.refs_by_id([q.config_dataset_id])[0]
        try:
            make_config(q.task_label, classes[q.quantum_id], butler.get(ref))
        except PipelineError as err:
            raise RecomputeError(f"cannot recompute the outputs of task {q.task_label!r} quantum {q.data_id}: its "
                                 f"recorded config ({q.config_dataset_id}) no longer validates against "
                                 f"{q.task_class}: {err}") from None
