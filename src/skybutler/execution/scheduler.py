"""Running a quantum graph in dependency order on a backend, in parallel where the graph allows.

A quantum is submitted when every quantum it reads from has succeeded.  A failed
quantum does not stop the others: the quanta that (transitively) need its outputs are
marked blocked and recorded so, and everything independent goes on.  A quantum whose
worker process died is retried alone; if its worker dies again it is failed.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..pipeline.graph import QuantumGraph
from ..provenance.software import hostname
from ..registry.quantum_store import QuantumRecord, QuantumStore
from .backends import Backend, WorkerDied
from .job import JobSpec, quantum_payload
from .progress import ProgressReporter


@dataclass
class ExecutionReport:
    """What happened to every quantum of a run."""

    run: str
    output: str | None
    total: int
    succeeded: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    blocked: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Quanta an incremental run kept (recorded inputs equal today's), per task label.
    unchanged: dict[str, int] = field(default_factory=dict)
    #: What an incremental run decided, in sentences.
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked

    def summary(self) -> dict[str, Any]:
        return {"run": self.run, "output": self.output, "quanta": self.total, "succeeded": self.succeeded,
                "failed": len(self.failed), "blocked": len(self.blocked), "skipped_existing": self.skipped,
                "unchanged": self.unchanged, "notes": self.notes, "seconds": round(self.seconds, 3)}

    def describe(self) -> str:
        """One sentence: what ran, or that an incremental run found nothing to do."""
        if not self.total and self.unchanged:
            return (f"nothing to do: all {sum(self.unchanged.values())} quanta are current in {self.output!r} "
                    "(their recorded inputs equal today's); no RUN written")
        kept = f"; {sum(self.unchanged.values())} unchanged quanta kept" if self.unchanged else ""
        return (f"RUN {self.run}: {self.succeeded} succeeded, {len(self.failed)} failed, {len(self.blocked)} "
                f"blocked of {self.total} quanta in {self.seconds:.1f} s{kept}")


class Scheduler:
    """Feeds ready quanta of ``graph`` to ``backend`` and records what cannot be recorded by workers."""

    def __init__(self, graph: QuantumGraph, job: JobSpec, backend: Backend, store: QuantumStore,
                 progress: ProgressReporter | None = None):
        self.graph = graph
        self.job = job
        self.backend = backend
        self.store = store
        self.progress = progress or ProgressReporter(len(graph), enabled=False)

    def run(self) -> ExecutionReport:
        graph = self.graph
        report = ExecutionReport(self.job.run, graph.output, len(graph), skipped=dict(graph.skipped),
                                 unchanged=dict(graph.unchanged), notes=list(graph.notes))
        start = time.perf_counter()
        # whole arrays, not an object per quantum: a columnar graph makes a quantum's object
        # only when it is submitted, so running starts without the graph materialised
        counts, offsets, targets = graph.dependency_arrays()
        waiting = counts.tolist()
        dependents = _Dependents(offsets, targets)
        ready = deque(np.nonzero(counts == 0)[0].tolist())
        suspects: deque[int] = deque()  # quanta whose worker died once: retried one at a time
        deaths: dict[int, int] = {}
        in_flight = 0
        dead: set[int] = set()
        self.backend.start(self.job)
        try:
            with self.progress:
                while ready or suspects or in_flight:
                    if suspects and in_flight == 0:
                        self.backend.submit(suspects[0], quantum_payload(graph.quanta[suspects.popleft()]))
                        in_flight += 1
                    while ready and not suspects and in_flight < self.backend.capacity:
                        index = ready.popleft()
                        self.backend.submit(index, quantum_payload(graph.quanta[index]))
                        in_flight += 1
                    for index, result in self.backend.wait():
                        in_flight -= 1
                        if isinstance(result, WorkerDied):
                            deaths[index] = deaths.get(index, 0) + 1
                            if deaths[index] < 2:
                                suspects.append(index)
                                continue
                            retried = " (also when retried alone)" if deaths[index] > 1 else ""
                            result = self._record_crash(index, f"{result}{retried}")
                        if result["status"] == "succeeded":
                            report.succeeded += 1
                            self.progress.advance("succeeded")
                            for child in dependents[index]:
                                waiting[child] -= 1
                                if waiting[child] == 0:
                                    ready.append(child)
                        else:
                            q = graph.quanta[index]
                            report.failed.append({"task": q.task, "data_id": dict(q.data_id.required),
                                                  "error": result["error"], "quantum_id": result["quantum_id"]})
                            self.progress.advance("failed")
                            report.blocked += self._block(index, dependents, dead, result)
        finally:
            self.backend.close()
        report.seconds = time.perf_counter() - start
        return report

    def _record_crash(self, index: int, why: str) -> dict[str, Any]:
        q = self.graph.quanta[index]
        error = f"task {q.task!r} quantum {dict(q.data_id.required)}: {why}"
        record = QuantumRecord(uuid.uuid4(), self.job.run, q.task, self.graph.pipeline[q.task].class_path,
                               dict(q.data_id.required), "failed", _uuid(self.job.config_ids.get(q.task)),
                               hostname(), 0, time.time_ns(), time.time_ns(), error=error)
        self.store.insert([record])
        return {"status": "failed", "error": error, "quantum_id": str(record.quantum_id)}

    def _block(self, index: int, dependents: _Dependents, dead: set[int],
               cause: dict[str, Any]) -> list[dict[str, Any]]:
        """Mark every quantum downstream of a failed one as blocked (recorded in one transaction)."""
        failed = self.graph.quanta[index]
        todo = deque(dependents[index])
        records, out = [], []
        now = time.time_ns()
        while todo:
            child = todo.popleft()
            if child in dead:
                continue
            dead.add(child)
            todo.extend(dependents[child])
            q = self.graph.quanta[child]
            error = f"blocked: upstream quantum {failed.describe()} failed"
            records.append(QuantumRecord(uuid.uuid4(), self.job.run, q.task, self.graph.pipeline[q.task].class_path,
                                         dict(q.data_id.required), "blocked", _uuid(self.job.config_ids.get(q.task)),
                                         hostname(), 0, now, now, error=error))
            out.append({"task": q.task, "data_id": dict(q.data_id.required), "error": error,
                        "quantum_id": str(records[-1].quantum_id)})
            self.progress.advance("blocked")
        self.store.insert(records)
        return out


class _Dependents:
    """``dependents[i]``: the quanta reading quantum ``i``'s outputs, from offsets and targets."""

    def __init__(self, offsets: np.ndarray, targets: np.ndarray):
        self.offsets = offsets
        self.targets = targets

    def __getitem__(self, index: int) -> list[int]:
        return self.targets[self.offsets[index]:self.offsets[index + 1]].tolist()


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None
