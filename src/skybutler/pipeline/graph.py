"""The quantum graph: one node per quantum (a task run on one data ID), with the
datasets it reads and writes; edges run from a dataset's producing quantum to its
consumers.  Saved as compact JSON: data IDs as value lists in the dimension order
declared once per dataset type and task.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dimensions import DataCoordinate, DimensionUniverse
from ..models import DatasetType
from .errors import QuantumGraphError
from .pipeline import Pipeline

FORMAT = "skybutler-quantum-graph"
VERSION = 1


@dataclass(slots=True)
class DatasetNode:
    """One dataset of a quantum: known by ID if it exists, else by its producing quantum."""

    dataset_type: str
    data_id: DataCoordinate
    id: uuid.UUID | None = None
    producer: int | None = None


@dataclass(slots=True)
class QuantumNode:
    """One execution of one task on one data ID."""

    index: int
    task: str
    data_id: DataCoordinate
    inputs: dict[str, list[DatasetNode]] = field(default_factory=dict)
    prerequisites: dict[str, list[DatasetNode]] = field(default_factory=dict)
    outputs: dict[str, list[DatasetNode]] = field(default_factory=dict)
    #: IDs of outputs already in the output RUN, removed before the quantum writes (clobber).
    clobber: list[uuid.UUID] = field(default_factory=list)

    def dependencies(self) -> set[int]:
        """Indices of the quanta whose outputs this one reads."""
        return {n.producer for nodes in self.inputs.values() for n in nodes if n.producer is not None}

    def describe(self) -> str:
        return f"{self.task}@{dict(self.data_id.required)}"


@dataclass
class QuantumGraph:
    """Quanta in dependency order, the pipeline that made them and where they write."""

    pipeline: Pipeline
    dataset_types: dict[str, DatasetType]
    quanta: list[QuantumNode]
    input_collections: list[str]
    output_run: str
    output: str | None = None
    where: str = ""
    #: Quanta left out while building, with the reason (e.g. a missing calibration).
    dropped: list[dict[str, Any]] = field(default_factory=list)
    #: Quanta left out because their outputs exist, per task label.
    skipped: dict[str, int] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    #: Quanta an incremental run kept because their recorded inputs equal today's, per task label.
    unchanged: dict[str, int] = field(default_factory=dict)
    #: Quanta an incremental run redoes because they are stale (the rest of the graph is new), per task.
    stale: dict[str, int] = field(default_factory=dict)
    #: What an incremental run decided, in sentences.
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.quanta)

    def __iter__(self) -> Iterator[QuantumNode]:
        return iter(self.quanta)

    def counts(self) -> dict[str, int]:
        """Quanta per task label, in pipeline order."""
        c = Counter(q.task for q in self.quanta)
        return {label: c.get(label, 0) for label in self.pipeline.labels}

    def dependents(self) -> list[list[int]]:
        """For each quantum, the indices of the quanta that read its outputs."""
        out: list[list[int]] = [[] for _ in self.quanta]
        for q in self.quanta:
            for dep in q.dependencies():
                out[dep].append(q.index)
        return out

    def summary(self) -> dict[str, Any]:
        n_in = sum(len(v) for q in self.quanta for v in q.inputs.values())
        n_out = sum(len(v) for q in self.quanta for v in q.outputs.values())
        return {"quanta": len(self.quanta), "per_task": self.counts(), "inputs": n_in, "outputs": n_out,
                "input_collections": self.input_collections, "output": self.output, "output_run": self.output_run,
                "where": self.where, "skipped_existing": dict(self.skipped), "unchanged": dict(self.unchanged),
                "stale": dict(self.stale), "notes": list(self.notes), "dropped": len(self.dropped)}

    def without(self, done: dict[int, dict[tuple[str, tuple], uuid.UUID]]) -> QuantumGraph:
        """This graph less the quanta in ``done`` (index -> their existing outputs' IDs by dataset
        type and data-ID values): their outputs become existing inputs of the quanta that stay,
        which are renumbered in the same order.  Nodes are shared, so this graph is used up."""
        kept: list[QuantumNode] = []
        unchanged = Counter()
        for q in self.quanta:
            existing = done.get(q.index)
            if existing is not None:
                unchanged[q.task] += 1
                for nodes in q.outputs.values():
                    for node in nodes:
                        node.id = existing.get((node.dataset_type, node.data_id.required_values))
                        node.producer = None
                continue
            q.index = len(kept)
            for nodes in q.outputs.values():
                for node in nodes:
                    node.producer = q.index
            kept.append(q)
        return QuantumGraph(self.pipeline, self.dataset_types, kept, self.input_collections, self.output_run,
                            self.output, self.where, self.dropped, dict(self.skipped), self.created,
                            dict(unchanged))

    # -- files ----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        tasks = {t.label: list(t.task_class.dimensions) for t in self.pipeline.sorted_tasks()}
        return {
            "format": FORMAT, "version": VERSION, "created": self.created,
            "pipeline": self.pipeline.to_dict(),
            "dataset_types": {n: d.model_dump() for n, d in self.dataset_types.items()},
            "task_dimensions": tasks,
            "input_collections": self.input_collections, "output": self.output, "output_run": self.output_run,
            "where": self.where, "dropped": self.dropped, "skipped": self.skipped,
            "quanta": [_encode_quantum(q) for q in self.quanta],
        }

    def save(self, path: str | Path) -> None:
        """Write the graph as JSON (atomically: a temporary file renamed into place)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        text = json.dumps(self.to_json(), separators=(",", ":"))  # one shot: the C encoder
        try:
            with open(tmp, "w") as stream:
                stream.write(text)
            tmp.replace(path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise QuantumGraphError(f"cannot write quantum graph {path}: {err.strerror}") from None

    @classmethod
    def load(cls, path: str | Path, universe: DimensionUniverse | None = None) -> QuantumGraph:
        """Read a graph written by :meth:`save`."""
        try:
            with open(path) as stream:
                data = json.load(stream)
        except (OSError, ValueError) as err:
            raise QuantumGraphError(f"cannot read quantum graph {path}: {err}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise QuantumGraphError(f"{path} is not a skybutler quantum graph")
        if data.get("version") != VERSION:
            raise QuantumGraphError(f"{path} has quantum graph format version {data.get('version')}; "
                                    f"this skybutler reads version {VERSION}")
        return cls.from_json(data, universe or DimensionUniverse.default())

    @classmethod
    def from_json(cls, data: dict[str, Any], universe: DimensionUniverse) -> QuantumGraph:
        dtypes = {n: DatasetType(**d) for n, d in data["dataset_types"].items()}
        groups = {n: universe.group(d.dimensions) for n, d in dtypes.items()}
        task_groups = {label: universe.group(dims) for label, dims in data["task_dimensions"].items()}
        decoder = _Decoder(groups, task_groups)
        quanta = [decoder.quantum(i, q) for i, q in enumerate(data["quanta"])]
        return cls(Pipeline.from_dict(data["pipeline"]), dtypes, quanta, list(data["input_collections"]),
                   data["output_run"], data.get("output"), data.get("where", ""), list(data.get("dropped", [])),
                   dict(data.get("skipped", {})), data.get("created", ""))


def _encode_nodes(nodes: dict[str, list[DatasetNode]]) -> dict[str, list[list[Any]]]:
    return {k: [[list(n.data_id.required_values), None if n.id is None else str(n.id), n.producer] for n in v]
            for k, v in nodes.items()}


def _encode_types(nodes: dict[str, list[DatasetNode]]) -> dict[str, str]:
    return {k: v[0].dataset_type if v else "" for k, v in nodes.items()}


def _encode_quantum(q: QuantumNode) -> dict[str, Any]:
    out: dict[str, Any] = {"task": q.task, "data_id": list(q.data_id.required_values)}
    for key, nodes in (("inputs", q.inputs), ("prerequisites", q.prerequisites)):
        out[key + "_types"] = _encode_types(nodes)
        out[key + "_nodes"] = _encode_nodes(nodes)
    out["outputs_types"] = _encode_types(q.outputs)
    out["outputs_nodes"] = {k: [list(n.data_id.required_values) for n in v] for k, v in q.outputs.items()}
    if q.clobber:
        out["clobber"] = [str(i) for i in q.clobber]
    return out


class _Decoder:
    """Turns saved quanta back into nodes, sharing one node per dataset (an output and
    the inputs that read it are the same object, as when the graph was built)."""

    def __init__(self, groups: dict, task_groups: dict):
        self.groups = groups
        self.task_groups = task_groups
        self.made: dict[tuple[str, tuple], DatasetNode] = {}
        self.existing: dict[str, DatasetNode] = {}

    def _node(self, dtype: str, entry: list[Any]) -> DatasetNode:
        values, ident, producer = tuple(entry[0]), entry[1], entry[2]
        if producer is not None:
            node = self.made.get((dtype, values))
            if node is not None:
                return node
        elif ident is not None:
            node = self.existing.get(ident)
            if node is None:
                node = self.existing[ident] = DatasetNode(
                    dtype, DataCoordinate.from_required(self.groups[dtype], values), uuid.UUID(ident))
            return node
        return DatasetNode(dtype, DataCoordinate.from_required(self.groups[dtype], values),
                           None if ident is None else uuid.UUID(ident), producer)

    def quantum(self, index: int, q: dict[str, Any]) -> QuantumNode:
        try:
            ins = {k: [self._node(q["inputs_types"][k], e) for e in v] for k, v in q["inputs_nodes"].items()}
            pre = {k: [self._node(q["prerequisites_types"][k], e) for e in v]
                   for k, v in q["prerequisites_nodes"].items()}
            outs: dict[str, list[DatasetNode]] = {}
            for k, entries in q["outputs_nodes"].items():
                dtype = q["outputs_types"][k]
                group = self.groups[dtype]
                made = outs[k] = []
                for e in entries:
                    values = tuple(e)
                    node = self.made[(dtype, values)] = DatasetNode(
                        dtype, DataCoordinate.from_required(group, values), None, index)
                    made.append(node)
            data_id = DataCoordinate.from_required(self.task_groups[q["task"]], tuple(q["data_id"]))
            return QuantumNode(index, q["task"], data_id, ins, pre, outs, [uuid.UUID(i) for i in q.get("clobber", [])])
        except (KeyError, TypeError, ValueError) as err:
            raise QuantumGraphError(f"quantum {index} of the graph is malformed: {err!r}") from None
