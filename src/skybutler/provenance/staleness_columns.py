"""The bulk of a staleness decision on columns: which quanta of a columnar graph are current.

Most quanta of a survey's graph are current, and deciding them one :class:`QuantumNode` at a
time (node objects for every dataset, per-quantum sets of UUIDs) cost seconds per 20,000
quanta.  Here every dataset ID the decision meets -- today's inputs, the products of the
output chain, the recorded inputs -- gets an integer code, and a task's quanta are judged
together with numpy: a quantum is *current* when all its outputs were made by one recorded
quantum of the same task, class, config (and code, if asked) and the sets of
(quantum, input code) and (quantum, prerequisite code) pairs equal the recorded ones
(:func:`numpy.setxor1d` of the two finds every quantum where they differ).

Only that verdict is made here.  Every other quantum -- stale, new, or anything this test
cannot vouch for -- is decided by :mod:`.staleness`'s per-quantum code, which names the
reasons, so the decisions (statuses, reasons, products) are those of the per-quantum code
for every quantum: a quantum this module calls current has no reason there either.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..pipeline.columns import lookup

if TYPE_CHECKING:
    from ..pipeline.columns import DatasetColumns, LazyQuanta, TaskQuanta
    from .staleness import _Assessor


class _Codes:
    """Integer codes of dataset IDs (one per distinct ID)."""

    def __init__(self) -> None:
        self.of: dict[uuid.UUID, int] = {}

    def code(self, ident: uuid.UUID) -> int:
        found = self.of.get(ident)
        if found is None:
            found = self.of[ident] = len(self.of)
        return found


def _pairs(block: TaskQuanta, kind: str, codes_of: Callable[[str, np.ndarray], np.ndarray]
           ) -> tuple[np.ndarray, np.ndarray]:
    """(local quantum, code) for every dataset the block's quanta name through ``kind``."""
    quanta, codes = [], []
    for link in block.links[kind].values():
        quanta.append(np.repeat(np.arange(len(block), dtype=np.int64), np.diff(link.offsets)))
        codes.append(codes_of(link.dataset, link.rows))
    if not quanta:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(quanta), np.concatenate(codes)


def _differ(n: int, today: tuple[np.ndarray, np.ndarray], recorded: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per local quantum: whether its set of codes today differs from the recorded set."""
    width = int(max(today[1].max(initial=0), recorded[1].max(initial=0))) + 1
    diff = np.setxor1d(today[0] * width + today[1], recorded[0] * width + recorded[1])
    out = np.zeros(n, dtype=bool)
    out[diff // width] = True
    return out


class ColumnarDecider:
    """Finds the current quanta of a columnar graph, task by task in dependency order."""

    def __init__(self, assessor: _Assessor, quanta: LazyQuanta):
        self.a = assessor
        self.quanta = quanta
        self.datasets: dict[str, DatasetColumns] = quanta.datasets
        self.codes = _Codes()
        # The recorded quanta, numbered, with their inputs and prerequisites as code arrays (CSR).
        self.recorded = list(assessor.quanta.values())
        self.number = {q.quantum_id: n for n, q in enumerate(self.recorded)}
        self.rec_inputs = self._recorded_links(prerequisite=False)
        self.rec_prereqs = self._recorded_links(prerequisite=True)
        self._existing: dict[str, np.ndarray] = {}
        self._product_rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _recorded_links(self, prerequisite: bool) -> tuple[np.ndarray, np.ndarray]:
        counts, codes = [], []
        for q in self.recorded:
            mine = {self.codes.code(i) for i, _, _, pre in q.inputs if pre == prerequisite and i is not None}
            counts.append(len(mine))
            codes.extend(mine)
        offsets = np.zeros(len(self.recorded) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return offsets, np.array(codes, dtype=np.int64)

    def _identity_ok(self, label: str, class_path: str) -> np.ndarray:
        """Per recorded quantum: whether its task, class, config (and code) are today's."""
        a = self.a
        out = np.zeros(len(self.recorded), dtype=bool)
        for n, r in enumerate(self.recorded):
            if r.task_label != label or r.task_class != class_path:
                continue
            if a.check_config and a.recorded_config.get(r.config_dataset_id) != a.today_config[label]:
                continue
            if a.check_code and a.recorded_code.get((r.env_id, r.task_label)) != a.today_code[label]:
                continue
            out[n] = True
        return out

    def _existing_codes(self, name: str) -> np.ndarray:
        """The code of each row's existing dataset ID (-1 for rows a quantum makes)."""
        found = self._existing.get(name)
        if found is None:
            ids = self.datasets[name].ids
            distinct, inverse = np.unique(ids, return_inverse=True)
            table = np.array([self.codes.code(uuid.UUID(i.decode())) if i else -1 for i in distinct.tolist()],
                             dtype=np.int64)
            found = self._existing[name] = table[inverse] if len(ids) else np.zeros(0, np.int64)
        return found

    def _products(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Per row of ``name``'s columns: the code of its current product in the output chain and
        the number of the recorded quantum that made it (-1 where there is none), by an Arrow join
        of the data IDs."""
        found = self._product_rows.get(name)
        if found is None:
            columns = self.datasets[name]
            codes = np.full(len(columns), -1, dtype=np.int64)
            made = np.full(len(columns), -1, dtype=np.int64)
            if name in self.a.product_tables and len(columns):
                table, ids = self.a.product_tables[name]
                row = lookup(columns.table(), list(columns.group.required), table)
                hit = row >= 0
                product_codes = np.array([self.codes.code(i) for i in ids], dtype=np.int64)
                product_made = np.array([self.number.get(self.a.made.get(i), -1) for i in ids], dtype=np.int64)
                codes[hit] = product_codes[row[hit]]
                made[hit] = product_made[row[hit]]
            found = self._product_rows[name] = (codes, made)
        return found

    def _today_codes(self, name: str, rows: np.ndarray, status: np.ndarray) -> np.ndarray:
        """Today's dataset ID codes of ``rows``: the existing dataset's, or the current product of
        a current producer; -1 where it is not known yet (the producer is not current)."""
        columns = self.datasets[name]
        out = self._existing_codes(name)[rows].copy()
        producer = columns.producer[rows]
        made_today = (out < 0) & (producer >= 0)
        current = np.zeros(len(rows), dtype=bool)
        current[made_today] = status[producer[made_today]]
        out[current] = self._products(name)[0][rows[current]]
        return out

    def current(self, block: TaskQuanta, status: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The local indices of the block's current quanta and, for each, its recorded quantum's
        number; ``status`` says which quanta of the blocks before are current."""
        n = len(block)
        if not self.recorded or not n:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        q_out, made = _pairs(block, "outputs", lambda name, rows: self._products(name)[1][rows])
        n_outs = np.bincount(q_out, minlength=n)
        low = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        high = np.full(n, -1, dtype=np.int64)
        np.minimum.at(low, q_out, made)
        np.maximum.at(high, q_out, made)
        ok = (n_outs > 0) & (low == high) & (low >= 0)
        rec = np.where(ok, low, 0)
        ok &= self._identity_ok(block.label, self.a.graph.pipeline[block.label].class_path)[rec]
        q_in, today_in = _pairs(block, "inputs", lambda name, rows: self._today_codes(name, rows, status))
        pending = np.zeros(n, dtype=bool)
        pending[q_in[today_in < 0]] = True
        ok &= ~pending
        for kind, (offsets, codes) in (("inputs", self.rec_inputs), ("prerequisites", self.rec_prereqs)):
            if kind == "inputs":
                today = (q_in[today_in >= 0], today_in[today_in >= 0])
            else:
                today = _pairs(block, kind, lambda name, rows: self._existing_codes(name)[rows])
                today = (today[0][today[1] >= 0], today[1][today[1] >= 0])
            chosen = np.flatnonzero(ok)
            sizes = offsets[rec[chosen] + 1] - offsets[rec[chosen]]
            owner = np.repeat(chosen, sizes)
            starts = np.repeat(offsets[rec[chosen]] - np.cumsum(sizes) + sizes, sizes)
            recorded = (owner, codes[starts + np.arange(len(owner))] if len(owner) else np.zeros(0, np.int64))
            keep = ok[today[0]]
            ok &= ~_differ(n, (today[0][keep], today[1][keep]), recorded)
        local = np.flatnonzero(ok)
        return local, rec[local]

    def products_of(self, block: TaskQuanta, local: int) -> Mapping[tuple[str, tuple], uuid.UUID]:
        """A current quantum's products in the output chain, by (dataset type, data-ID values),
        made when first read (a run that keeps every quantum never reads them)."""
        return _Products(self, block, local)


class _Products(Mapping):
    """:meth:`ColumnarDecider.products_of`, a dict made on first use."""

    def __init__(self, decider: ColumnarDecider, block: TaskQuanta, local: int):
        self._source: tuple[ColumnarDecider, TaskQuanta, int] | None = (decider, block, local)
        self._made: dict[tuple[str, tuple], uuid.UUID] = {}

    def _dict(self) -> dict[tuple[str, tuple], uuid.UUID]:
        if self._source is not None:
            decider, block, local = self._source
            for link in block.links["outputs"].values():
                columns = decider.datasets[link.dataset]
                for row in link.of(local).tolist():
                    key = (link.dataset, columns.key(row))
                    self._made[key] = decider.a.products[key]
            self._source = None
        return self._made

    def __getitem__(self, key: tuple[str, tuple]) -> uuid.UUID:
        return self._dict()[key]

    def __iter__(self) -> Iterator[tuple[str, tuple]]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __eq__(self, other: object) -> bool:
        return self._dict() == other

    def __repr__(self) -> str:
        return repr(self._dict())
