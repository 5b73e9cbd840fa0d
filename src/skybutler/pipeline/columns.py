"""The quantum graph held as columns: whole arrays per dataset type and per task, and
quantum objects made only when one is asked for.

A graph of a million quanta as Python objects (a node, three dicts, lists, data IDs and
UUIDs per quantum) needs gigabytes; as columns it needs a few hundred bytes a quantum.
:class:`DatasetColumns` holds the datasets of one type that a graph names -- their
data-ID values, the IDs of those that exist, the index of the quantum that makes those
that do not.  :class:`TaskQuanta` holds the quanta of one task: their data-ID values and,
per connection, which dataset rows each quantum reads or writes (offsets into one array
of rows, as in a sparse matrix).  :class:`LazyQuanta` is the ``graph.quanta`` sequence of
a columnar graph: each :class:`~skybutler.pipeline.graph.QuantumNode` is made when it is
indexed, so the executor turns into objects only the quanta it is about to run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..dimensions import DataCoordinate, DimensionGroup
from .nodes import DatasetNode, QuantumNode

KINDS = ("inputs", "prerequisites", "outputs")


def column_array(values: Any) -> np.ndarray:
    """A data-ID column as numpy: int64 for integers, an object array of shared str otherwise."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_integer(values.type):
            return values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        encoded = pc.dictionary_encode(values)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        names = np.array(encoded.dictionary.to_pylist() + [None], dtype=object)
        return names[encoded.indices.fill_null(len(names) - 1).to_numpy(zero_copy_only=False)]
    values = list(values)
    if values and all(isinstance(v, int) for v in values):
        return np.array(values, dtype=np.int64)
    return np.array(values, dtype=object) if values else np.empty(0, dtype=np.int64)


def id_array(ids: Any, n: int) -> np.ndarray:
    """Dataset IDs as 36-byte UUID texts (``b""`` where there is none)."""
    if ids is None:
        return np.zeros(n, dtype="S36")
    if isinstance(ids, np.ndarray) and ids.dtype == np.dtype("S36"):
        return ids
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if isinstance(ids, pa.Array) and pa.types.is_string(ids.type) and not ids.null_count and n:
        offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32, count=n + 1, offset=ids.offset * 4)
        if offsets[-1] - offsets[0] == 36 * n:
            data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
            return data.view("S36").copy()
        ids = ids.to_pylist()
    elif isinstance(ids, pa.Array):
        ids = ids.to_pylist()
    return np.array([b"" if i is None else str(i).encode() for i in ids], dtype="S36")


def _python_columns(values: list[np.ndarray]) -> list[list[Any]]:
    """Columns as lists of Python values, converted once (a value at a time from numpy cost
    most of the time of turning a big graph into nodes)."""
    out = []
    for col in values:
        items = col.tolist()
        if col.dtype == object:
            items = [v.item() if isinstance(v, np.generic) else v for v in items]
        out.append(items)
    return out


class DatasetColumns:
    """The datasets of one type that a graph names, a row each."""

    def __init__(self, name: str, group: DimensionGroup, values: list[np.ndarray], ids: np.ndarray,
                 producer: np.ndarray):
        self.name = name
        self.group = group
        self.values = values
        self.ids = ids
        self.producer = producer
        self._table: pa.Table | None = None
        self._rank: np.ndarray | None = None
        self._lists: list[list[Any]] | None = None

    @classmethod
    def empty(cls, name: str, group: DimensionGroup) -> DatasetColumns:
        return cls(name, group, [np.empty(0, dtype=np.int64) for _ in group.required], np.zeros(0, dtype="S36"),
                   np.zeros(0, dtype=np.int64))

    @classmethod
    def from_arrow(cls, name: str, group: DimensionGroup, table: pa.Table, ids: Any = None,
                   producer: np.ndarray | None = None) -> DatasetColumns:
        n = table.num_rows
        return cls(name, group, [column_array(table.column(d)) for d in group.required], id_array(ids, n),
                   np.full(n, -1, dtype=np.int64) if producer is None else producer)

    def __len__(self) -> int:
        return len(self.producer)

    def concat(self, other: DatasetColumns) -> DatasetColumns:
        """These rows and then ``other``'s."""
        values = [np.concatenate([a, b]) if a.dtype == b.dtype else np.concatenate([a.astype(object), b.astype(object)])
                  for a, b in zip(self.values, other.values)]
        return DatasetColumns(self.name, self.group, values, np.concatenate([self.ids, other.ids]),
                              np.concatenate([self.producer, other.producer]))

    def key(self, row: int) -> tuple:
        if self._lists is None:
            self._lists = _python_columns(self.values)
        return tuple(c[row] for c in self._lists)

    def node(self, row: int) -> DatasetNode:
        ident = self.ids[row]
        producer = int(self.producer[row])
        return DatasetNode(self.name, DataCoordinate.from_required(self.group, self.key(row)),
                           uuid.UUID(ident.decode()) if ident else None, producer if producer >= 0 else None)

    def table(self) -> pa.Table:
        """The data-ID columns as Arrow, for joins."""
        if self._table is None:
            self._table = pa.table({d: pa.array(c) for d, c in zip(self.group.required, self.values)})
        return self._table

    def rank(self) -> np.ndarray:
        """Each row's place when the rows are sorted by data ID (the order quanta list datasets in)."""
        if self._rank is None:
            order = sort_order(self.table(), list(self.group.required))
            self._rank = np.empty(len(order), dtype=np.int64)
            self._rank[order] = np.arange(len(order), dtype=np.int64)
        return self._rank


def sort_order(table: pa.Table, columns: list[str]) -> np.ndarray:
    """Row indices that sort ``table`` by ``columns``, ascending (Python's tuple order)."""
    if not table.num_rows or not columns:
        return np.arange(table.num_rows, dtype=np.int64)
    indices = pc.sort_indices(table.select(columns), sort_keys=[(c, "ascending") for c in columns])
    return indices.to_numpy().astype(np.int64, copy=False)


def lookup(left: pa.Table, columns: list[str], right: pa.Table) -> np.ndarray:
    """For each row of ``left``, the row of ``right`` with the same values of ``columns``
    (``right``'s columns, whose rows are distinct), or -1."""
    out = np.full(left.num_rows, -1, dtype=np.int64)
    if not left.num_rows or not right.num_rows:
        return out
    if not columns:  # a type without dimensions: its one dataset matches every row
        out[:] = right.num_rows - 1
        return out
    rtable = right.select(columns).append_column("__r", pa.array(np.arange(right.num_rows, dtype=np.int64)))
    ltable = left.select(columns).append_column("__l", pa.array(np.arange(left.num_rows, dtype=np.int64)))
    for c in columns:  # join keys must have one type on both sides (int32 vs int64, say)
        want = ltable.schema.field(c).type
        if rtable.schema.field(c).type != want:
            rtable = rtable.set_column(rtable.schema.get_field_index(c), c, rtable.column(c).cast(want))
    joined = ltable.join(rtable, keys=columns, join_type="inner", use_threads=False)
    out[joined.column("__l").to_numpy()] = joined.column("__r").to_numpy()
    return out


def group_rows(table: pa.Table, columns: list[str]) -> tuple[np.ndarray, pa.Table]:
    """The distinct values of ``columns`` sorted, and each row's index among them."""
    if not columns:
        return np.zeros(table.num_rows, dtype=np.int64), pa.table({})
    keys = table.select(columns).group_by(columns, use_threads=False).aggregate([])
    keys = keys.select(columns).take(pa.array(sort_order(keys, columns)))
    return lookup(table, columns, keys), keys


@dataclass
class Link:
    """Which dataset rows each quantum of a task reads or writes through one connection:
    quantum ``i``'s are ``rows[offsets[i]:offsets[i + 1]]`` of :attr:`dataset`'s columns."""

    dataset: str
    offsets: np.ndarray
    rows: np.ndarray

    @classmethod
    def from_pairs(cls, dataset: str, n_quanta: int, quanta: np.ndarray, rows: np.ndarray) -> Link:
        """From (quantum, row) pairs already sorted by quantum."""
        offsets = np.zeros(n_quanta + 1, dtype=np.int64)
        np.cumsum(np.bincount(quanta, minlength=n_quanta), out=offsets[1:])
        return cls(dataset, offsets, rows.astype(np.int64, copy=False))

    def of(self, i: int) -> np.ndarray:
        return self.rows[self.offsets[i]:self.offsets[i + 1]]


@dataclass
class TaskQuanta:
    """The quanta of one task: global indices ``start``..``start + len - 1``, in data-ID order."""

    label: str
    group: DimensionGroup
    start: int
    size: int
    values: list[np.ndarray]
    links: dict[str, dict[str, Link]] = field(default_factory=lambda: {k: {} for k in KINDS})
    #: local index -> IDs of outputs already in the output RUN, removed before the quantum writes.
    clobber: dict[int, list[uuid.UUID]] = field(default_factory=dict)
    _lists: list[list[Any]] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return self.size

    def data_id(self, i: int) -> DataCoordinate:
        if self._lists is None:
            self._lists = _python_columns(self.values)
        return DataCoordinate.from_required(self.group, tuple(c[i] for c in self._lists))

    def node(self, i: int, datasets: dict[str, DatasetColumns]) -> QuantumNode:
        parts = {kind: {k: [datasets[link.dataset].node(int(r)) for r in link.of(i)] for k, link in links.items()}
                 for kind, links in self.links.items()}
        return QuantumNode(self.start + i, self.label, self.data_id(i), parts["inputs"], parts["prerequisites"],
                           parts["outputs"], list(self.clobber.get(i, [])))

    def edges(self, datasets: dict[str, DatasetColumns]) -> tuple[np.ndarray, np.ndarray]:
        """(consumer, producer) global index pairs, each pair once."""
        consumers, producers = [], []
        for link in self.links["inputs"].values():
            prod = datasets[link.dataset].producer[link.rows]
            local = np.repeat(np.arange(len(link.offsets) - 1, dtype=np.int64), np.diff(link.offsets))
            keep = prod >= 0
            consumers.append(local[keep] + self.start)
            producers.append(prod[keep])
        if not consumers:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        c, p = np.concatenate(consumers), np.concatenate(producers)
        if not len(c):
            return c, p
        base = int(p.max()) + 1  # one int64 per pair: a consumer's index times base plus its producer's
        pairs = np.unique(c * base + p)
        return pairs // base, pairs % base


class LazyQuanta(Sequence[QuantumNode]):
    """``graph.quanta`` of a columnar graph: a quantum object is made when indexed."""

    def __init__(self, tasks: list[TaskQuanta], datasets: dict[str, DatasetColumns]):
        self.tasks = tasks
        self.datasets = datasets
        self._starts = np.array([t.start for t in tasks], dtype=np.int64)
        self._len = sum(len(t) for t in tasks)

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> QuantumNode: ...

    @overload
    def __getitem__(self, index: slice) -> list[QuantumNode]: ...

    def __getitem__(self, index: int | slice) -> QuantumNode | list[QuantumNode]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(f"quantum index {index} out of range")
        block = self.tasks[int(np.searchsorted(self._starts, index, side="right")) - 1]
        return block.node(index - block.start, self.datasets)

    def __iter__(self) -> Iterator[QuantumNode]:
        for block in self.tasks:
            for i in range(len(block)):
                yield block.node(i, self.datasets)

    def materialise(self, keep: np.ndarray | None = None) -> list[QuantumNode]:
        """Every quantum (or those ``keep`` marks) as an object, one node per dataset shared by
        the quanta naming it (an output and the inputs that read it are the same object), for
        code that edits nodes in place."""
        shared: dict[tuple[str, int], DatasetNode] = {}

        def node(key: str, row: int) -> DatasetNode:
            made = shared.get((key, row))
            if made is None:
                made = shared[(key, row)] = self.datasets[key].node(row)
            return made

        out = []
        for block in self.tasks:
            for i in range(len(block)):
                if keep is not None and not keep[block.start + i]:
                    continue
                parts = {kind: {k: [node(link.dataset, int(r)) for r in link.of(i)] for k, link in links.items()}
                         for kind, links in block.links.items()}
                out.append(QuantumNode(block.start + i, block.label, block.data_id(i), parts["inputs"],
                                       parts["prerequisites"], parts["outputs"], list(block.clobber.get(i, []))))
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(other) != len(self):
            return NotImplemented if not isinstance(other, Sequence) else False
        return all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"<{self._len} quanta, made when asked for>"
