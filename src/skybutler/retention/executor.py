"""Recomputing many datasets as a graph of recorded quanta, on any executor.

``inline`` replays everything in this process, in memory, and stores the results in
one transaction (all or nothing, like ``butler.get(..., recompute=True)``).  ``pool``
(local processes) and ``dask`` (a ``distributed`` cluster) replay each quantum in a
worker once the quanta it reads from are done; each worker re-reads its inputs from
the repository and stores what its quantum re-creates in one transaction of its own,
so a failed quantum leaves nothing of itself behind and only blocks the quanta that
need it.  The planning, drift check, staging and config checks happen once, before
any quantum runs (see :mod:`.ondemand`).
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import SkybutlerError
from ..pipeline.task import import_task
from ..process_pools import process_pool
from .cold_tier import WaitCallback, locks
from .ondemand import (
    RecomputeEstimate,
    RecomputeOptions,
    RecomputeResult,
    prepare,
    recompute,
    recompute_note,
    replay_and_verify,
    store_back,
)

if TYPE_CHECKING:
    from ..butler import Butler

EXECUTORS = ("inline", "pool", "dask")


@dataclass
class RecomputeReport:
    """What a bulk recompute did."""

    estimate: RecomputeEstimate
    executor: str
    succeeded: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    blocked: list[dict[str, Any]] = field(default_factory=list)
    verified: dict[uuid.UUID, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked

    def to_dict(self) -> dict[str, Any]:
        return {"executor": self.executor, "estimate": self.estimate.to_dict(), "succeeded": self.succeeded,
                "failed": self.failed, "blocked": self.blocked,
                "verified": {self.estimate.labels.get(i, str(i)): v for i, v in self.verified.items()},
                "notes": self.notes, "seconds": round(self.seconds, 3)}


_BUTLERS: dict[str, Butler] = {}


def replay_one(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker side: replay one recorded quantum, verify and store what it re-creates."""
    try:
        butler = _BUTLERS.get(payload["repo"])
        if butler is None:  # opened with the class of the butler that asked (see ``recompute_many``)
            butler = _BUTLERS[payload["repo"]] = payload["opener"](payload["repo"])
        quantum = butler.provenance.store.get([uuid.UUID(payload["quantum_id"])])[0]
        swaps = {uuid.UUID(k): uuid.UUID(v) for k, v in payload.get("swaps", {}).items()}
        if swaps:  # replayed with today's calibration (on_calibration='today')
            quantum = replace(quantum, inputs=[replace(
                link, dataset_id=swaps.get(link.dataset_id, link.dataset_id)) for link in quantum.inputs])
        needed = [uuid.UUID(i) for i in payload["needed"]]
        with locks(butler).hold(needed):  # another process recomputing them: wait, then find them stored
            stored = set(butler.registry.datasets.artifacts(needed))
            needed = [i for i in needed if i not in stored]
            if not needed:
                return {"status": "succeeded", "verified": {}}
            est = RecomputeEstimate(needed, [quantum], {i: quantum for i in needed},
                                    labels={uuid.UUID(k): v for k, v in payload["labels"].items()})
            est.states = butler.registry.states.get(needed)
            est.swaps = {quantum.quantum_id: swaps} if swaps else {}
            est.unverified = {uuid.UUID(i) for i in payload.get("unverified", [])}
            result = RecomputeResult(est)
            replay_and_verify(butler, est, [quantum], {quantum.quantum_id: import_task(quantum.task_class,
                                                                                       quantum.task_label)}, result)
            store_back(butler, est, result, needed, payload["note"])
        return {"status": "succeeded", "verified": {str(k): v for k, v in result.verified.items()}}
    except Exception as err:  # noqa: BLE001 - reported back, the scheduler blocks what depends on it
        return {"status": "failed", "error": str(err) if isinstance(err, SkybutlerError)
                else f"{type(err).__name__}: {err}"}


class _Pool:
    def __init__(self, jobs: int):
        self.pool = process_pool(max(1, jobs), "forkserver")

    def submit(self, payload: dict[str, Any]) -> Any:
        return self.pool.submit(replay_one, payload)

    def wait(self, futures: Iterable[Any]) -> set[Any]:
        return cf.wait(list(futures), return_when=cf.FIRST_COMPLETED)[0]

    def result(self, future: Any) -> dict[str, Any]:
        try:
            return future.result()
        except Exception as err:  # noqa: BLE001 - a dead worker process
            return {"status": "failed", "error": f"the worker died: {type(err).__name__}: {err}"}

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Dask(_Pool):
    def __init__(self, jobs: int, scheduler: str | None):
        try:
            import distributed
        except ImportError:
            raise SkybutlerError("the dask executor needs 'dask' and 'distributed' (pip install 'skybutler[dask]')"
                                 ) from None
        self.d = distributed
        self.own: list[Any] = []
        if scheduler:
            self.client = distributed.Client(scheduler)
        else:
            cluster = distributed.LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True,
                                               dashboard_address=None)
            self.own.append(cluster)
            self.client = distributed.Client(cluster)
        self.own.insert(0, self.client)

    def submit(self, payload: dict[str, Any]) -> Any:
        return self.client.submit(replay_one, payload, pure=False)

    def wait(self, futures: Iterable[Any]) -> set[Any]:
        return set(self.d.wait(list(futures), return_when="FIRST_COMPLETED").done)

    def close(self) -> None:
        for obj in self.own:
            obj.close()


class _Inline(_Pool):
    def __init__(self) -> None:
        pass

    def submit(self, payload: dict[str, Any]) -> Any:
        future: cf.Future = cf.Future()
        future.set_result(replay_one(payload))
        return future

    def close(self) -> None:
        pass


def recompute_many(butler: Butler, ids: Iterable[uuid.UUID], options: RecomputeOptions | None = None,
                   executor: str = "inline", jobs: int = 2, on_wait: WaitCallback | None = None,
                   dask_scheduler: str | None = None,
                   progress: Callable[[int, int], None] | None = None) -> RecomputeReport:
    """Recompute datasets (and the purged inputs they need) on ``executor``; see the module docstring.
    ``progress(done, total)`` is told the quanta replayed (or failed or blocked) so far."""
    options = options or RecomputeOptions()
    if executor not in EXECUTORS:
        raise SkybutlerError(f"unknown executor {executor!r}; use {', '.join(EXECUTORS)}")
    start = time.perf_counter()
    if executor == "inline":
        result = recompute(butler, ids, options, on_wait, progress)
        est = result.estimate
        report = RecomputeReport(est, executor, verified=result.verified, notes=result.notes)
        report.succeeded = [{"task": q.task_label, "data_id": q.data_id} for q in est.quanta]
        report.seconds = time.perf_counter() - start
        return report
    if not options.store:
        raise SkybutlerError(f"the {executor} executor stores what it recomputes (each worker reads its inputs "
                             "from the repository); use the inline executor to recompute without storing")
    est, _, notes = prepare(butler, ids, options, on_wait)
    report = RecomputeReport(est, executor, notes=notes)
    quanta = est.quanta
    made_by = {i: n for n, q in enumerate(quanta) for i in (o.dataset_id for o in q.outputs) if i in est.needed}
    deps = [{made_by[i.dataset_id] for i in q.inputs if i.dataset_id in made_by} for q in quanta]
    dependents: list[list[int]] = [[] for _ in quanta]
    for n, d in enumerate(deps):
        for m in d:
            dependents[m].append(n)
    waiting = [len(d) for d in deps]
    note = recompute_note(notes)

    def payload(n: int) -> dict[str, Any]:
        q = quanta[n]
        needed = [o.dataset_id for o in q.outputs if o.dataset_id in est.needed]
        return {"repo": str(butler.root), "opener": type(butler), "quantum_id": str(q.quantum_id), "needed": [str(i) for i in needed],
                "labels": {str(i): est.labels.get(i, "") for i in needed}, "note": note,
                "swaps": {str(k): str(v) for k, v in est.swaps.get(q.quantum_id, {}).items()},
                "unverified": [str(i) for i in needed if i in est.unverified]}

    runner = _Inline() if not quanta else (_Pool(jobs) if executor == "pool" else _Dask(jobs, dask_scheduler))
    tell = progress or (lambda done, total: None)
    tell(0, len(quanta))
    try:
        futures = {runner.submit(payload(n)): n for n in range(len(quanta)) if waiting[n] == 0}
        while futures:
            for future in runner.wait(futures):
                n = futures.pop(future)
                outcome = runner.result(future)
                q = quanta[n]
                entry = {"task": q.task_label, "data_id": q.data_id}
                if outcome["status"] == "succeeded":
                    report.succeeded.append(entry)
                    report.verified.update({uuid.UUID(k): v for k, v in outcome["verified"].items()})
                    for child in dependents[n]:
                        waiting[child] -= 1
                        if waiting[child] == 0:
                            futures[runner.submit(payload(child))] = child
                else:
                    report.failed.append({**entry, "error": outcome["error"]})
                    todo, seen = list(dependents[n]), set()
                    while todo:
                        child = todo.pop()
                        if child not in seen:
                            seen.add(child)
                            todo += dependents[child]
                            report.blocked.append({"task": quanta[child].task_label,
                                                   "data_id": quanta[child].data_id,
                                                   "error": f"blocked: task {q.task_label!r} {q.data_id} failed"})
                tell(len(report.succeeded) + len(report.failed) + len(report.blocked), len(quanta))
    finally:
        runner.close()
    report.seconds = time.perf_counter() - start
    return report
