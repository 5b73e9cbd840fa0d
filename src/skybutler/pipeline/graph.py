"""The quantum graph: one node per quantum (a task run on one data ID), with the
datasets it reads and writes; edges run from a dataset's producing quantum to its
consumers.

A graph made by :class:`~skybutler.pipeline.builder.QuantumGraphBuilder` is held as
columns (:mod:`.columns`) and its quanta are made as objects only when asked for; a
graph may also be given a list of :class:`QuantumNode` objects.  Saved as compact JSON:
version 2 holds the columns (whole arrays per dataset type and task, each as base64 of its
int64s, or names and int32 codes; dataset IDs as one string of their texts), so a million
quanta save and load in seconds without a Python object per value; version 1 (still read)
holds a value list per quantum.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..dimensions import DataCoordinate, DimensionUniverse
from ..models import DatasetType
from .columns import KINDS, DatasetColumns, LazyQuanta, Link, TaskQuanta
from .errors import QuantumGraphError
from .nodes import DatasetNode, QuantumNode
from .pipeline import Pipeline

FORMAT = "skybutler-quantum-graph"
VERSION = 2
READABLE_VERSIONS = (1, 2)

__all__ = ["DatasetNode", "QuantumGraph", "QuantumNode"]


@dataclass
class QuantumGraph:
    """Quanta in dependency order, the pipeline that made them and where they write."""

    pipeline: Pipeline
    dataset_types: dict[str, DatasetType]
    #: A list of nodes, or a :class:`~.columns.LazyQuanta` making each when indexed.
    quanta: Sequence[QuantumNode]
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

    @property
    def columnar(self) -> bool:
        """Whether the quanta are held as columns (made as objects when asked for)."""
        return isinstance(self.quanta, LazyQuanta)

    def counts(self) -> dict[str, int]:
        """Quanta per task label, in pipeline order."""
        if isinstance(self.quanta, LazyQuanta):
            c: Counter[str] = Counter()
            for block in self.quanta.tasks:
                c[block.label] += len(block)
        else:
            c = Counter(q.task for q in self.quanta)
        return {label: c.get(label, 0) for label in self.pipeline.labels}

    def first_of_each_task(self, n: int) -> list[QuantumNode]:
        """The first ``n`` quanta of each task, in graph order (without making the others)."""
        if isinstance(self.quanta, LazyQuanta):
            return [b.node(i, self.quanta.datasets) for b in self.quanta.tasks for i in range(min(n, len(b)))]
        shown: Counter[str] = Counter()
        out = []
        for q in self.quanta:
            shown[q.task] += 1
            if shown[q.task] <= n:
                out.append(q)
        return out

    def dependency_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """How many quanta each quantum waits for, and who waits for whom as offsets and
        targets: quantum ``i``'s dependents are ``targets[offsets[i]:offsets[i + 1]]``."""
        n = len(self.quanta)
        if isinstance(self.quanta, LazyQuanta):
            pairs = [block.edges(self.quanta.datasets) for block in self.quanta.tasks]
            consumers = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int64)
            producers = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.int64)
        else:
            edges = [(q.index, dep) for q in self.quanta for dep in sorted(q.dependencies())]
            consumers = np.array([e[0] for e in edges], dtype=np.int64)
            producers = np.array([e[1] for e in edges], dtype=np.int64)
        waiting = np.bincount(consumers, minlength=n).astype(np.int64)
        order = np.lexsort((consumers, producers))
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(producers, minlength=n), out=offsets[1:])
        return waiting, offsets, consumers[order]

    def dependents(self) -> list[list[int]]:
        """For each quantum, the indices of the quanta that read its outputs."""
        _, offsets, targets = self.dependency_arrays()
        return [targets[offsets[i]:offsets[i + 1]].tolist() for i in range(len(self.quanta))]

    def summary(self) -> dict[str, Any]:
        if isinstance(self.quanta, LazyQuanta):
            n_in = sum(len(link.rows) for b in self.quanta.tasks for link in b.links["inputs"].values())
            n_out = sum(len(link.rows) for b in self.quanta.tasks for link in b.links["outputs"].values())
        else:
            n_in = sum(len(v) for q in self.quanta for v in q.inputs.values())
            n_out = sum(len(v) for q in self.quanta for v in q.outputs.values())
        return {"quanta": len(self.quanta), "per_task": self.counts(), "inputs": n_in, "outputs": n_out,
                "input_collections": self.input_collections, "output": self.output, "output_run": self.output_run,
                "where": self.where, "skipped_existing": dict(self.skipped), "unchanged": dict(self.unchanged),
                "stale": dict(self.stale), "notes": list(self.notes), "dropped": len(self.dropped)}

    def materialise(self) -> QuantumGraph:
        """Make every quantum an object now, with one node per dataset shared by the quanta
        naming it, for code that edits nodes in place; returns this graph."""
        if isinstance(self.quanta, LazyQuanta):
            self.quanta = self.quanta.materialise()
        return self

    def without(self, done: dict[int, dict[tuple[str, tuple], uuid.UUID]]) -> QuantumGraph:
        """This graph less the quanta in ``done`` (index -> their existing outputs' IDs by dataset
        type and data-ID values): their outputs become existing inputs of the quanta that stay,
        which are renumbered in the same order.  Nodes are shared, so this graph is used up."""
        kept: list[QuantumNode] = []
        unchanged = Counter()
        if isinstance(self.quanta, LazyQuanta):  # only the quanta that stay become objects
            return self._without_columns(done)
        for q in self.materialise().quanta:
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

    def _without_columns(self, done: dict[int, dict[tuple[str, tuple], uuid.UUID]]) -> QuantumGraph:
        """:meth:`without` for a columnar graph: the quanta that stay are made (sharing nodes),
        and their inputs made by a quantum that leaves take its existing output's ID."""
        assert isinstance(self.quanta, LazyQuanta)
        keep = np.ones(len(self.quanta), dtype=bool)
        keep[list(done)] = False
        unchanged = Counter({block.label: int((~keep[block.start:block.start + len(block)]).sum())
                             for block in self.quanta.tasks})
        kept = self.quanta.materialise(keep)
        for q in kept:  # first the inputs, while producers still have their old indices
            for nodes in q.inputs.values():
                for node in nodes:
                    if node.producer is not None and node.producer in done:
                        node.id = done[node.producer].get((node.dataset_type, node.data_id.required_values))
                        node.producer = None
        for new, q in enumerate(kept):
            q.index = new
            for nodes in q.outputs.values():
                for node in nodes:
                    node.producer = new
        return QuantumGraph(self.pipeline, self.dataset_types, kept, self.input_collections, self.output_run,
                            self.output, self.where, self.dropped, dict(self.skipped), self.created,
                            {label: n for label, n in unchanged.items() if n})

    # -- files ----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The graph as plain data: version 2 (columns) for a columnar graph, else version 1."""
        tasks = {t.label: list(t.task_class.dimensions) for t in self.pipeline.sorted_tasks()}
        out = {
            "format": FORMAT, "version": 1, "created": self.created,
            "pipeline": self.pipeline.to_dict(),
            "dataset_types": {n: d.to_dict() for n, d in self.dataset_types.items()},
            "task_dimensions": tasks,
            "input_collections": self.input_collections, "output": self.output, "output_run": self.output_run,
            "where": self.where, "dropped": self.dropped, "skipped": self.skipped,
        }
        if isinstance(self.quanta, LazyQuanta):
            out["version"] = 2
            out["datasets"] = {key: _encode_dataset_columns(d) for key, d in self.quanta.datasets.items()}
            out["tasks"] = [_encode_task(b) for b in self.quanta.tasks]
        else:
            out["quanta"] = [_encode_quantum(q) for q in self.quanta]
        return out

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
        if data.get("version") not in READABLE_VERSIONS:
            raise QuantumGraphError(f"{path} has quantum graph format version {data.get('version')}; "
                                    f"this skybutler reads versions {', '.join(map(str, READABLE_VERSIONS))}")
        return cls.from_json(data, universe or DimensionUniverse.default())

    @classmethod
    def from_json(cls, data: dict[str, Any], universe: DimensionUniverse) -> QuantumGraph:
        dtypes = {n: DatasetType(**d) for n, d in data["dataset_types"].items()}
        groups = {n: universe.group(d.dimensions) for n, d in dtypes.items()}
        task_groups = {label: universe.group(dims) for label, dims in data["task_dimensions"].items()}
        quanta: Sequence[QuantumNode]
        if data.get("version") == 2:
            quanta = _decode_columns(data, groups, task_groups)
        else:
            decoder = _Decoder(groups, task_groups)
            quanta = [decoder.quantum(i, q) for i, q in enumerate(data["quanta"])]
        return cls(Pipeline.from_dict(data["pipeline"]), dtypes, quanta, list(data["input_collections"]),
                   data["output_run"], data.get("output"), data.get("where", ""), list(data.get("dropped", [])),
                   dict(data.get("skipped", {})), data.get("created", ""))


def _encode_dataset_columns(d: DatasetColumns) -> dict[str, Any]:
    return {"name": d.name, "values": [_encode_array(c) for c in d.values], "ids": _ids_text(d.ids),
            "producer": _encode_array(d.producer)}


def _encode_array(a: np.ndarray) -> dict[str, Any]:
    """A column as base64 of its little-endian int64s, or (names) as distinct names and int32 codes."""
    if a.dtype == object:
        encoded = pc.dictionary_encode(pa.array(a, pa.string()))
        return {"names": encoded.dictionary.to_pylist(),
                "codes": base64.b64encode(encoded.indices.to_numpy().astype("<i4").tobytes()).decode("ascii")}
    return {"int64": base64.b64encode(a.astype("<i8").tobytes()).decode("ascii")}


def _decode_array(d: dict[str, Any]) -> np.ndarray:
    if "names" in d:
        names = list(d["names"])
        if not all(isinstance(x, str) for x in names):
            raise ValueError("a column's names are not all strings")
        codes = np.frombuffer(base64.b64decode(d["codes"], validate=True), dtype="<i4")
        if len(codes) and (codes.min() < 0 or codes.max() >= len(names)):
            raise ValueError("a column's codes name no value")
        return np.array(names, dtype=object)[codes]
    return np.frombuffer(base64.b64decode(d["int64"], validate=True), dtype="<i8").astype(np.int64)


#: The characters of a dataset ID's text, and the blank that stands for "no ID" in a saved graph.
_HEX = np.frombuffer(b"0123456789abcdef-", dtype=np.uint8)
_NO_ID = b" " * 36


def _ids_text(ids: np.ndarray) -> str:
    """36-character UUID texts back to back, 36 blanks where there is no ID: one string."""
    return np.where(ids == b"", _NO_ID, ids).astype("S36").tobytes().decode("ascii")


def _ids_from_text(text: str, n: int) -> np.ndarray:
    """The inverse of :func:`_ids_text`, checking every ID's characters and dashes."""
    data = text.encode("ascii")
    if len(data) != 36 * n:
        raise ValueError(f"{len(data)} characters of dataset IDs for {n} rows")
    chars = np.frombuffer(data, dtype=np.uint8).reshape(n, 36)
    ids = np.frombuffer(data, dtype="S36").copy()
    blank = (chars == ord(" ")).all(axis=1)
    dashes = np.zeros(36, dtype=bool)
    dashes[[8, 13, 18, 23]] = True
    given = chars[~blank]
    if not (np.isin(given, _HEX).all() and (given[:, dashes] == ord("-")).all()
            and (given[:, ~dashes] != ord("-")).all()):
        raise ValueError("a dataset ID is not a UUID's text")
    ids[blank] = b""
    return ids


def _encode_task(b: TaskQuanta) -> dict[str, Any]:
    return {"label": b.label, "start": b.start, "size": b.size, "values": [_encode_array(c) for c in b.values],
            "links": {kind: {k: {"dataset": link.dataset, "offsets": _encode_array(link.offsets),
                                 "rows": _encode_array(link.rows)}
                             for k, link in links.items()} for kind, links in b.links.items()},
            "clobber": {str(i): [str(x) for x in ids] for i, ids in b.clobber.items()}}


def _decode_columns(data: dict[str, Any], groups: dict, task_groups: dict) -> LazyQuanta:
    """A version-2 graph's columns, checked for shape so a damaged file fails here, not mid-run."""
    try:
        datasets: dict[str, DatasetColumns] = {}
        for key, d in data["datasets"].items():
            group = groups[d["name"]]
            producer = _decode_array(d["producer"])
            n = len(producer)
            values = [_decode_array(c) for c in d["values"]]
            if len(values) != len(group.required) or any(len(c) != n for c in values):
                raise ValueError(f"dataset columns {key!r} have mismatched lengths")
            ids = _ids_from_text(d["ids"], n)
            if len(producer) and producer.max() >= int(sum(t["size"] for t in data["tasks"])):
                raise ValueError(f"dataset columns {key!r} name a producer that is not a quantum")
            datasets[key] = DatasetColumns(d["name"], group, values, ids, producer)
        tasks: list[TaskQuanta] = []
        total = 0
        for t in data["tasks"]:
            group = task_groups[t["label"]]
            values = [_decode_array(c) for c in t["values"]]
            n = int(t["size"])
            if int(t["start"]) != total or len(values) != len(group.required) or any(len(c) != n for c in values):
                raise ValueError(f"task block {t['label']!r} is out of place or has mismatched lengths")
            block = TaskQuanta(t["label"], group, total, n, values)
            for kind in KINDS:
                for k, link in t["links"].get(kind, {}).items():
                    offsets = _decode_array(link["offsets"])
                    rows = _decode_array(link["rows"])
                    size = len(datasets[link["dataset"]])
                    if (len(offsets) != n + 1 or offsets[0] != 0 or offsets[-1] != len(rows)
                            or (np.diff(offsets) < 0).any() or (len(rows) and (rows.min() < 0 or rows.max() >= size))):
                        raise ValueError(f"connection {k!r} of task {t['label']!r} is malformed")
                    block.links[kind][k] = Link(link["dataset"], offsets, rows)
            block.clobber = {int(i): [uuid.UUID(x) for x in ids] for i, ids in t.get("clobber", {}).items()}
            tasks.append(block)
            total += n
        return LazyQuanta(tasks, datasets)
    except (KeyError, TypeError, ValueError, AttributeError, UnicodeError, binascii.Error) as err:
        raise QuantumGraphError(f"the graph's quanta are malformed: {err!r}") from None


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
