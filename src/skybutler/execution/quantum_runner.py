"""Running one quantum inside a worker: read the inputs, call the task, write the outputs
and the provenance record in one registry transaction.

The repository may be a server's URL: the worker's Butler is then a remote one, the inputs
are read and the outputs written through its public API (the writes of one quantum sent as
one batch, applied in one transaction on the server, as the caller's writes to the RUN).

A worker process opens its own Butler once and keeps it (and the task instances) for
every later quantum of the same job.  A failure is never raised to the scheduler: it is
recorded (error, traceback, log excerpt) and reported back as a failed result, and no
output of the quantum stays registered or stored.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any

from ..dimensions import DataCoordinate
from ..errors import ArtifactExistsError, DatasetConflictError
from ..models import DatasetRef
from ..pipeline.pipeline import Pipeline
from ..provenance import environment, environment_id
from ..provenance.software import hostname
from ..registry.quantum_store import DatasetLink, QuantumRecord
from .job import JobSpec

_STATE: dict[tuple[str, str], WorkerState] = {}


class QuantumFailure(Exception):
    """A quantum failed for a reason the message fully explains (no traceback needed)."""


class WorkerState:
    """One worker's Butler, task instances and software environment for one job."""

    def __init__(self, job: JobSpec):
        self.job = job
        self.butler = job.opener(job.repo, collections=[job.run, *job.input_collections], token=job.token)
        self.universe = self.butler.universe
        self.pipeline = Pipeline.from_dict(job.pipeline)
        self.tasks = {label: self.pipeline[label].make_task() for label in self.pipeline.labels}
        self.groups = {n: self.universe.group(d) for n, d in job.dataset_types.items()}
        self.task_groups = {k: self.universe.group(d) for k, d in job.task_dimensions.items()}
        self.store = self.butler.provenance.store
        env = environment(tuple(self.pipeline[label].task_class.__module__ for label in self.pipeline.labels),
                          {label: self.pipeline[label] for label in self.pipeline.labels})
        self.env_id = environment_id(env)
        self.store.add_environment(self.env_id, env)


def state_for(job: JobSpec) -> WorkerState:
    key = (job.repo, job.run)
    state = _STATE.get(key)
    if state is None or state.job != job:
        state = _STATE[key] = WorkerState(job)
    return state


def close_states() -> None:
    """Close every Butler this process opened for quanta (end of an in-process run)."""
    for state in _STATE.values():
        state.butler.close()
    _STATE.clear()


class _LogCapture(logging.Handler):
    """Keeps the last lines logged by one thread's task."""

    def __init__(self, lines: int):
        super().__init__(logging.DEBUG)
        self.lines: deque[str] = deque(maxlen=lines)
        self.thread = threading.get_ident()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(self.format(record))


def run_quantum(job: JobSpec, payload: dict[str, Any]) -> dict[str, Any]:
    """Execute one quantum; returns ``{index, status, quantum_id, error, seconds}``."""
    state = state_for(job)
    label = payload["task"]
    task = state.tasks[label]
    data_id = DataCoordinate.from_required(state.task_groups[label], tuple(payload["data_id"]))
    record = QuantumRecord(uuid.uuid4(), job.run, label, state.pipeline[label].class_path, dict(data_id.required),
                           "failed", _config_id(job, label), hostname(), os.getpid(), time.time_ns(),
                           env_id=state.env_id)
    capture = _LogCapture(job.log_lines)
    task.log.addHandler(capture)
    if task.log.level == logging.NOTSET:
        task.log.setLevel(logging.INFO)
    try:
        refs = _resolve_inputs(state, payload, record)
        inputs = _read_inputs(state, payload, refs, record)
        if task.takes_data_id():
            inputs["data_id"] = data_id
        outputs = task.run(**inputs)
        items = _check_outputs(state, payload, data_id, outputs)
        try:
            _write(state, payload, items, record, capture)
        except QuantumFailure as err:
            if not isinstance(err.__cause__, ArtifactExistsError):
                raise
            # A file at an output's path: an earlier attempt killed between publishing and
            # committing (a broken pool kills the dead worker's siblings mid-write).  Settle dead
            # writers' journals, then write again, taking as ours a leftover with these very bytes.
            state.butler.recover()
            record.outputs = []
            _write(state, payload, items, record, capture, adopt_leftovers=True)
        return {"index": payload["index"], "status": "succeeded", "quantum_id": str(record.quantum_id),
                "error": None, "seconds": record.seconds}
    except Exception as err:  # noqa: BLE001 - every failure of a quantum is recorded, not raised
        if _written_before(state, payload, err):
            return {"index": payload["index"], "status": "succeeded", "quantum_id": None, "error": None,
                    "seconds": None}
        where = f"task {label!r} quantum {dict(data_id.required)}"
        record.error = f"{where}: {err}" if isinstance(err, QuantumFailure) else \
            f"{where}: {type(err).__name__}: {err}"
        trace = "" if isinstance(err, QuantumFailure) else traceback.format_exc(limit=20)
        record.log = _log_text(capture, trace)
        record.status, record.end_ns, record.outputs = "failed", time.time_ns(), []
        try:
            state.store.insert([record])
        except Exception as store_err:  # noqa: BLE001
            record.error += f" (and recording the failure failed: {store_err})"
        return {"index": payload["index"], "status": "failed", "quantum_id": str(record.quantum_id),
                "error": record.error, "seconds": record.seconds}
    finally:
        task.log.removeHandler(capture)


def _written_before(state: WorkerState, payload: dict[str, Any], err: Exception) -> bool:
    """Whether a write conflicted because an earlier attempt of this quantum (whose worker
    died or lost contact after committing) already wrote every output: outputs and their
    provenance are committed together, so they being there means that attempt succeeded."""
    if not isinstance(err.__cause__ or err, DatasetConflictError) or payload["clobber"]:
        return False
    planned = _planned_outputs(state, payload)
    return all(len(_find_in_run(state, dtype, data_ids)) == len(data_ids) for dtype, data_ids in planned.items())


def _planned_outputs(state: WorkerState, payload: dict[str, Any]) -> dict[str, list[DataCoordinate]]:
    by_type: dict[str, list[DataCoordinate]] = {}
    for entries in payload["outputs"].values():
        for dtype, values, _ in entries:
            by_type.setdefault(dtype, []).append(DataCoordinate.from_required(state.groups[dtype], tuple(values)))
    return by_type


def _find_in_run(state: WorkerState, dtype: str, data_ids: list[DataCoordinate]) -> dict[DataCoordinate, DatasetRef]:
    """The datasets of these data IDs in the output RUN: one statement locally, one request
    through a server (only a quantum's own outputs and in-run inputs are looked up so)."""
    return state.butler._find_many(dtype, data_ids, [state.job.run])


def _config_id(job: JobSpec, label: str) -> uuid.UUID | None:
    value = job.config_ids.get(label)
    return uuid.UUID(value) if value else None


def _log_text(capture: _LogCapture, trace: str = "") -> str | None:
    text = "\n".join(capture.lines) + (("\n" if capture.lines else "") + trace if trace else "")
    return text[-20000:] or None


def _resolve_inputs(state: WorkerState, payload: dict[str, Any], record: QuantumRecord
                    ) -> dict[str, list[DatasetRef]]:
    """Refs (with artifacts) of every input and prerequisite; a missing one fails the quantum."""
    wanted: dict[str, list[tuple[str, DataCoordinate, str | None, bool]]] = {}
    by_type: dict[str, list[DataCoordinate]] = {}
    for kind in ("inputs", "prerequisites"):
        for conn, entries in payload[kind].items():
            for dtype, values, ident in entries:
                data_id = DataCoordinate.from_required(state.groups[dtype], tuple(values))
                wanted.setdefault(conn, []).append((dtype, data_id, ident, kind == "prerequisites"))
                if ident is None:
                    by_type.setdefault(dtype, []).append(data_id)
    found: dict[tuple[str, tuple], uuid.UUID] = {}
    for dtype, data_ids in by_type.items():
        for coord, ref in _find_in_run(state, dtype, data_ids).items():
            found[(dtype, coord.required_values)] = ref.id
    ids = [uuid.UUID(i) if i else found.get((t, d.required_values)) for e in wanted.values() for t, d, i, _ in e]
    artifacts = _artifacts(state, [i for i in ids if i is not None])
    out: dict[str, list[DatasetRef]] = {}
    missing = []
    it = iter(ids)
    for conn, entries in wanted.items():
        refs = out.setdefault(conn, [])
        for (dtype, data_id, _, prereq), ident in zip(entries, it):
            record.inputs.append(DatasetLink(ident, dtype, conn, dict(data_id.required), prereq))
            artifact = artifacts.get(ident) if ident is not None else None
            if ident is None or (artifact is None and state.butler.served_by is None):
                missing.append(f"{conn!r} ({dtype}@{dict(data_id.required)})")
                continue
            refs.append(DatasetRef(ident, state.butler.get_dataset_type(dtype), data_id, state.job.run,
                                        artifact))
    if missing:
        raise QuantumFailure(f"input {', '.join(missing[:5])}{' and more' if len(missing) > 5 else ''} "
                             f"is missing from {state.job.run!r} and the input collections (not produced, "
                             "removed, or its file is gone)")
    return out


def _artifacts(state: WorkerState, ids: list[uuid.UUID]) -> Mapping[uuid.UUID, Any]:
    """Each input's stored artifact; through a server, which looks a dataset up itself when it
    is read, none (a missing input fails the read, and so the quantum, all the same)."""
    if state.butler.served_by is not None:
        return dict.fromkeys(ids)
    return state.butler.registry.datasets.artifacts(ids)


def _read_inputs(state: WorkerState, payload: dict[str, Any], refs: dict[str, list[DatasetRef]],
                 record: QuantumRecord) -> dict[str, Any]:
    """Input objects by connection: one object, or ``{data ID: object}`` for a multiple connection."""
    tdef = state.pipeline[payload["task"]]
    conns = {**tdef.inputs, **tdef.prerequisites}
    out: dict[str, Any] = {}
    for name, conn in conns.items():
        got = refs.get(name, [])
        if conn.multiple:
            out[name] = {ref.data_id: state.butler.get(ref)
                         for ref in sorted(got, key=lambda r: r.data_id.required_values)}
        elif len(got) != 1:
            raise QuantumFailure(f"input {name!r} has {len(got)} datasets in the graph; the task takes exactly one")
        else:
            out[name] = state.butler.get(got[0])
    return out


def _check_outputs(state: WorkerState, payload: dict[str, Any], data_id: DataCoordinate,
                   outputs: Any) -> dict[str, list[tuple[Any, DataCoordinate, str]]]:
    """The task's return value as (object, data ID, connection) per dataset type, checked
    against the outputs the graph planned."""
    tdef = state.pipeline[payload["task"]]
    if not isinstance(outputs, Mapping):
        raise QuantumFailure(f"run() returned {type(outputs).__name__}, not a dict of output name to object")
    unknown = set(outputs) - set(tdef.outputs)
    if unknown:
        raise QuantumFailure(f"run() returned unknown output(s) {', '.join(sorted(unknown))}; "
                             f"outputs: {', '.join(tdef.outputs)}")
    items: dict[str, list[tuple[Any, DataCoordinate, str]]] = {}
    for name, conn in tdef.outputs.items():
        planned = {tuple(v): tuple(v) for _, v, _ in payload["outputs"].get(name, [])}
        group = state.groups[conn.name]
        if name not in outputs:
            if conn.multiple:
                continue
            raise QuantumFailure(f"run() returned no {name!r} output")
        value = outputs[name]
        pairs = (value.items() if isinstance(value, Mapping) else value) if conn.multiple else [(data_id, value)]
        got = items.setdefault(conn.name, [])
        for key, obj in pairs:
            merged = {**{k: data_id[k] for k in data_id if k in group.names}, **dict(key)}
            coord = DataCoordinate.standardize(group, {k: v for k, v in merged.items() if k in group.names})
            if coord.required_values not in planned:
                raise QuantumFailure(f"output {name!r} for {dict(coord.required)} is not one the graph planned")
            got.append((obj, coord, name))
    return items


def _write(state: WorkerState, payload: dict[str, Any], items: dict[str, list[tuple[Any, DataCoordinate, str]]],
           record: QuantumRecord, capture: _LogCapture, adopt_leftovers: bool = False) -> None:
    """Remove clobbered outputs, then put each output type with one put_many and record the
    quantum, all in one butler transaction: rows and files appear together or not at all."""
    butler = state.butler
    if payload["clobber"]:  # first, as the new files take the old ones' paths
        clobbered = {uuid.UUID(i) for i in payload["clobber"]}
        butler.remove([ref for dtype, data_ids in _planned_outputs(state, payload).items()
                       for ref in _find_in_run(state, dtype, data_ids).values() if ref.id in clobbered])
    with butler.transaction():
        for dtype, entries in items.items():
            try:
                refs = butler.put_many(dtype, [(obj, coord) for obj, coord, _ in entries], run=state.job.run,
                                       adopt_leftovers=adopt_leftovers)
            except Exception as err:
                raise QuantumFailure(f"writing output {entries[0][2]!r} ({dtype}) failed: "
                                     f"{type(err).__name__}: {err}") from err
            record.outputs += [DatasetLink(r.id, dtype, conn, dict(coord.required))
                               for r, (_, coord, conn) in zip(refs, entries)]
        record.status, record.end_ns = "succeeded", time.time_ns()
        record.log = _log_text(capture)
        state.store.insert([record])
