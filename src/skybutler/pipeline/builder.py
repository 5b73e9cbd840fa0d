"""Building a quantum graph with set-based SQL and whole columns.

For each task (in dependency order) one ``query_data_ids`` call over the union of the
quantum's and its connections' dimensions -- constrained by ``datasets=`` to the
overall inputs that exist in the input collections, and by the where-clause -- gives
rows as an Arrow table.  Existing inputs are resolved with one ``query_datasets`` per
dataset type, prerequisites with one read per collection and type
(:mod:`.prerequisites`), existing outputs with one query per output type.  A handful
of queries make the whole graph, never one per quantum.

The rows become quanta as columns (:mod:`.columns`), not per-row Python: each
connection's data ID is matched to its dataset rows by an Arrow hash join, rows whose
input neither exists nor is made by an earlier quantum are dropped, the distinct
quantum data IDs (sorted) number the quanta, and each connection's (quantum, dataset)
pairs, sorted, become offsets into one array of dataset rows.  Gathers (many rows per
quantum), one-to-many outputs and spatial joins (a query over visit, detector, tract
and patch joins by region) all follow from the same grouping.  Only prerequisites are
looked up per quantum (from tables read once), and only for tasks that have them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..batching import gc_paused
from ..dimensions import DimensionGroup
from ..models import DatasetType
from .columns import DatasetColumns, LazyQuanta, Link, TaskQuanta, column_array, group_rows, lookup
from .errors import QuantumGraphError
from .graph import QuantumGraph
from .pipeline import Pipeline, TaskDef
from .prerequisites import PrerequisiteFinder

if TYPE_CHECKING:
    from ..butler import Butler

Key = tuple


class QuantumGraphBuilder:
    """Turn a pipeline, input collections and a where-clause into a :class:`QuantumGraph`.

    ``skip_existing_in``: collections where a quantum whose outputs all exist is skipped
    (its outputs feed later quanta).  Outputs already in ``output_run`` that are not
    skipped are refused unless ``clobber`` (then they are replaced when the quantum runs).
    """

    def __init__(self, butler: Butler, pipeline: Pipeline, input_collections: Sequence[str], output_run: str, *,
                 output: str | None = None, where: str = "", bind: Mapping[str, Any] | None = None,
                 data_id: Mapping[str, Any] | None = None, skip_existing_in: Sequence[str] = (),
                 clobber: bool = False):
        if not input_collections:
            raise QuantumGraphError("a quantum graph needs input collections (-i)")
        self.butler = butler
        self.universe = butler.universe
        self.pipeline = pipeline
        self.inputs = list(input_collections)
        self.output_run = output_run
        self.output = output
        self.where = where
        self.bind = dict(bind or {})
        self.data_id = dict(data_id or {})
        self.skip_in = [c for c in skip_existing_in if butler.collections.exists(c)]
        self.clobber = clobber
        self.run_exists = butler.collections.exists(output_run)
        #: dataset type -> the datasets quanta may read: existing ones (with an ID) and outputs of earlier quanta
        self.available: dict[str, DatasetColumns] = {}
        #: every dataset the graph names, by key (a type's name; prerequisites under ``name#prerequisite``)
        self.datasets: dict[str, DatasetColumns] = {}
        self.tasks: list[TaskQuanta] = []
        self.n_quanta = 0
        self.dropped: list[dict[str, Any]] = []
        self.skipped: dict[str, int] = {}
        self.conflicts: list[str] = []
        self.query_count = 0

    # -- top level ------------------------------------------------------------

    def build(self) -> QuantumGraph:
        ordered = self.pipeline.validate(butler=self.butler)
        self.dtypes = self._dataset_types(ordered)
        self.groups = {n: self.universe.group(d.dimensions) for n, d in self.dtypes.items()}
        producers = self.pipeline.producers()
        self._prereqs = PrerequisiteFinder(self.butler, self.inputs)
        self._spans: dict[str, dict[Key, tuple[int, int]]] = {}
        with gc_paused():
            for tdef in ordered:
                for conn in tdef.inputs.values():
                    if conn.name not in producers and conn.name not in self.available:
                        self._load_existing(conn.name)
                self._build_task(tdef)
        if self.conflicts:
            shown = "; ".join(self.conflicts[:5]) + (f"; and {len(self.conflicts) - 5} more"
                                                      if len(self.conflicts) > 5 else "")
            raise QuantumGraphError(
                f"{len(self.conflicts)} quanta would overwrite outputs already in RUN {self.output_run!r} ({shown}); "
                "skip them (--skip-existing or --resume) or replace them (--clobber)")
        return QuantumGraph(self.pipeline, self.dtypes, LazyQuanta(self.tasks, self.datasets), self.inputs,
                            self.output_run, self.output, self.where, self.dropped, self.skipped)

    def _dataset_types(self, ordered: list[TaskDef]) -> dict[str, DatasetType]:
        registered = {d.name: d for d in self.butler.query_dataset_types()}
        out: dict[str, DatasetType] = {}
        for tdef in ordered:
            for conn in {**tdef.inputs, **tdef.prerequisites, **tdef.outputs}.values():
                out[conn.name] = registered.get(conn.name) or DatasetType(
                    name=conn.name, dimensions=tuple(conn.dimensions), storage_class=conn.storage_class,
                    is_calibration=getattr(conn, "is_calibration", False))
        return out

    def _load_existing(self, name: str) -> None:
        """Every dataset of an overall input type matching the query, by data ID (one query)."""
        self.query_count += 1
        table = self.butler.query_datasets(name, self.where, collections=self.inputs, bind=self.bind,
                                           data_id=self.data_id).to_arrow()
        self.available[name] = self.datasets[name] = DatasetColumns.from_arrow(
            name, self.groups[name], table, table.column("dataset_id"))

    # -- one task -------------------------------------------------------------

    def _build_task(self, tdef: TaskDef) -> None:
        qgroup = self.universe.group(tdef.dimensions)
        conns = {**tdef.inputs, **tdef.prerequisites, **tdef.outputs}
        cgroups = {k: self.groups[c.name] for k, c in conns.items()}
        single_prereqs = {k for k, c in tdef.prerequisites.items()
                          if set(cgroups[k].required) <= set(qgroup.names)}
        union_dims = set(qgroup.names)
        for k, g in cgroups.items():
            if k not in single_prereqs:
                union_dims |= set(g.names)
        union = self.universe.group(union_dims)
        needs_implied = any(d in union.implied for g in [qgroup, *cgroups.values()] for d in g.required)
        existing = [c.name for c in tdef.inputs.values() if c.name not in self.pipeline.producers()]
        self.query_count += 1
        table = self.butler.query_data_ids(
            sorted(union.required), self.where, bind=self.bind, datasets=existing or None,
            collections=self.inputs if existing else None, data_id=self.data_id,
            with_implied=needs_implied).to_arrow()
        table = table.select([c for c in table.column_names if c in union.names])
        # rows whose inputs neither exist nor are made by an earlier quantum go
        keep = np.ones(table.num_rows, dtype=bool)
        in_rows: dict[str, np.ndarray] = {}
        for k, conn in tdef.inputs.items():
            avail = self.available.get(conn.name)
            rows = (lookup(table, list(cgroups[k].required), avail.table()) if avail is not None
                    else np.full(table.num_rows, -1, dtype=np.int64))
            keep &= rows >= 0
            in_rows[k] = rows
        if not keep.all():
            where = np.nonzero(keep)[0]
            table = table.take(pa.array(where))
            in_rows = {k: v[where] for k, v in in_rows.items()}
        qcodes, qkeys = group_rows(table, list(qgroup.required))
        nq = qkeys.num_rows if qgroup.required else int(table.num_rows > 0)
        # (quantum, dataset row) pairs of every connection, sorted by quantum then data ID
        pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for k, conn in tdef.inputs.items():
            pairs[k] = _sorted_pairs(qcodes, in_rows[k], self.available[conn.name].rank())
        outs: dict[str, tuple[np.ndarray, pa.Table]] = {}
        for k in list(tdef.outputs) + [k for k in tdef.prerequisites if k not in single_prereqs]:
            cols = list(cgroups[k].required)
            sub = table.select(cols).append_column("__q", pa.array(qcodes))
            codes, distinct = group_rows(sub, ["__q", *cols])
            outs[k] = (distinct.column("__q").to_numpy().astype(np.int64), distinct.select(cols))
        # quanta left out: a missing prerequisite, or every output already where it is skipped
        drop = np.zeros(nq, dtype=bool)
        prereq_rows = self._find_prerequisites(tdef, qgroup, nq, qkeys, table, qcodes, outs, single_prereqs, drop)
        skip, clobber, hits = self._existing(tdef, nq, outs)
        self.skipped[tdef.label] = self.skipped.get(tdef.label, 0) + int((skip & ~drop).sum())
        if not self.skipped[tdef.label]:
            del self.skipped[tdef.label]
        kept = np.nonzero(~drop & ~skip)[0]
        renumber = np.full(nq + 1, -1, dtype=np.int64)
        renumber[kept] = np.arange(len(kept), dtype=np.int64)
        block = TaskQuanta(tdef.label, qgroup, self.n_quanta, len(kept),
                           [column_array(qkeys.column(d)).take(kept) for d in qgroup.required])
        for k, conn in tdef.inputs.items():
            q, rows = pairs[k]
            sel = renumber[q] >= 0
            block.links["inputs"][k] = Link.from_pairs(conn.name, len(kept), renumber[q[sel]], rows[sel])
        for k, (key, q, rows) in prereq_rows.items():
            sel = renumber[q] >= 0
            block.links["prerequisites"][k] = Link.from_pairs(key, len(kept), renumber[q[sel]], rows[sel])
        for k, conn in tdef.outputs.items():
            q, keys = outs[k]
            made = renumber[q] >= 0
            new = DatasetColumns.from_arrow(conn.name, self.groups[conn.name], keys.filter(pa.array(made)),
                                            producer=renumber[q[made]] + self.n_quanta)
            gone = skip[q] & ~drop[q]  # outputs of skipped quanta: existing datasets later quanta read
            old = DatasetColumns.from_arrow(conn.name, self.groups[conn.name], keys.filter(pa.array(gone)),
                                            hits[k][gone])
            before = self.available.get(conn.name)
            base = len(before) if before is not None else 0
            merged = new.concat(old) if before is None else before.concat(new).concat(old)
            _check_unique(merged, tdef.label)
            self.available[conn.name] = self.datasets[conn.name] = merged
            rows = np.arange(int(made.sum()), dtype=np.int64) + base
            block.links["outputs"][k] = Link.from_pairs(conn.name, len(kept), renumber[q[made]], rows)
        block.clobber = {int(renumber[i]): ids for i, ids in clobber.items() if renumber[i] >= 0}
        if block.clobber and not self.clobber:
            self.conflicts += [f"{tdef.label}@{dict(block.data_id(i).required)}" for i in sorted(block.clobber)]
        self.tasks.append(block)
        self.n_quanta += len(kept)

    def _existing(self, tdef: TaskDef, nq: int, outs: dict[str, tuple[np.ndarray, pa.Table]]
                  ) -> tuple[np.ndarray, dict[int, list[uuid.UUID]], dict[str, np.ndarray]]:
        """Which quanta have every output already where existing outputs are skipped; per
        quantum, the IDs of outputs already in the output RUN (clobbered if it runs); per
        output connection, the ID of each output found (``b""`` if none)."""
        skip = np.zeros(nq, dtype=bool)
        clobber: dict[int, list[uuid.UUID]] = {}
        hits = {k: np.zeros(len(outs[k][0]), dtype="S36") for k in tdef.outputs}
        search = self.skip_in + ([self.output_run] if self.run_exists and self.output_run not in self.skip_in
                                 else [])
        if not search or not tdef.outputs:
            return skip, clobber, hits
        registered = {d.name for d in self.butler.query_dataset_types()}
        skip_runs = set(self.butler.collections.flatten(self.skip_in)) if self.skip_in else set()
        n_outputs = np.zeros(nq, dtype=np.int64)
        n_skippable = np.zeros(nq, dtype=np.int64)
        for k, conn in tdef.outputs.items():
            q, keys = outs[k]
            n_outputs += np.bincount(q, minlength=nq)
            if conn.name not in registered:
                continue
            self.query_count += 1
            found = self.butler.query_datasets(conn.name, collections=search, data_id=self.data_id).to_arrow()
            if not found.num_rows:
                continue
            found = _last_per_key(found, list(self.groups[conn.name].required))
            rows = lookup(keys, list(self.groups[conn.name].required), found)
            hit = rows >= 0
            ids = DatasetColumns.from_arrow(conn.name, self.groups[conn.name], found, found.column("dataset_id")).ids
            hits[k][hit] = ids[rows[hit]]
            skippable = np.isin(np.array(found.column("run").to_pylist(), dtype=object), list(skip_runs))
            n_skippable += np.bincount(q[hit][skippable[rows[hit]]], minlength=nq)
            for i in np.nonzero(hit)[0][~skippable[rows[hit]]]:
                clobber.setdefault(int(q[i]), []).append(uuid.UUID(hits[k][i].decode()))
        skip = (n_outputs > 0) & (n_skippable == n_outputs)
        return skip, clobber, hits

    def _find_prerequisites(self, tdef: TaskDef, qgroup: DimensionGroup, nq: int, qkeys: pa.Table, table: pa.Table,
                            qcodes: np.ndarray, outs: dict[str, tuple[np.ndarray, pa.Table]],
                            single: set[str], drop: np.ndarray) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
        """The prerequisite datasets of every quantum (one lookup per quantum and key, from
        tables read once); a quantum missing one is marked in ``drop`` and reported."""
        if not tdef.prerequisites or not nq:
            return {}
        _, first = np.unique(qcodes, return_index=True)
        first_rows = table.take(pa.array(first)).to_pylist()
        per_key: dict[str, dict[int, list[tuple[Key, uuid.UUID]]]] = {k: {} for k in tdef.prerequisites}
        multi = {}
        for k, conn in tdef.prerequisites.items():
            if conn.multiple:
                q, keys = outs[k] if k in outs else (qcodes, table.select(list(self.groups[conn.name].required)))
                grouped: dict[int, list[Key]] = {}
                for qi, key in zip(q.tolist(), zip(*[keys.column(d).to_pylist()
                                                     for d in self.groups[conn.name].required])):
                    grouped.setdefault(qi, []).append(key)
                multi[k] = {qi: sorted(set(v)) for qi, v in grouped.items()}
        for qi, row in enumerate(first_rows):
            found = self._prerequisites_of(tdef, row, {k: m.get(qi, []) for k, m in multi.items()})
            if isinstance(found, str):
                drop[qi] = True
                self.dropped.append({"task": tdef.label, "data_id": {d: row[d] for d in qgroup.required},
                                     "reason": found})
                continue
            for k, nodes in found.items():
                per_key[k][qi] = nodes
        out = {}
        for k, conn in tdef.prerequisites.items():
            key = f"{conn.name}#{tdef.label}.{k}"
            q = np.array([qi for qi, nodes in per_key[k].items() for _ in nodes], dtype=np.int64)
            entries = [e for nodes in per_key[k].values() for e in nodes]
            group = self.groups[conn.name]
            values = [column_array([e[0][i] for e in entries]) for i in range(len(group.required))]
            ids = np.array([str(e[1]).encode() for e in entries], dtype="S36")
            self.datasets[key] = DatasetColumns(conn.name, group, values, ids, np.full(len(entries), -1, np.int64))
            out[k] = (key, q, np.arange(len(entries), dtype=np.int64))
        return out

    def _prerequisites_of(self, tdef: TaskDef, row: dict[str, Any], multi: dict[str, list[Key]]
                          ) -> dict[str, list[tuple[Key, uuid.UUID]]] | str:
        """The prerequisite datasets of one quantum, or why one is missing."""
        out: dict[str, list[tuple[Key, uuid.UUID]]] = {}
        for k, conn in tdef.prerequisites.items():
            dtype = self.dtypes[conn.name]
            group = self.groups[conn.name]
            span = self._span(row) if conn.lookup == "timespan" else None
            keys = multi[k] if conn.multiple else [tuple(row[d] for d in group.required)]
            nodes = []
            for key in keys:
                found = self._prereqs.find(dtype, key, span)
                if found is None:
                    when = "" if span is None else " valid at the observation time"
                    return (f"no {conn.name} (prerequisite {k!r}) for {dict(zip(group.required, key))}{when} in "
                            f"{', '.join(self.inputs)}")
                nodes.append((key, found))
            out[k] = nodes
        return out

    def _span(self, row: dict[str, Any]) -> tuple[int, int] | None:
        """The observation timespan (TAI ns) of a row's visit or exposure."""
        element = "visit" if "visit" in row else "exposure"
        spans = self._spans.get(element)
        if spans is None:
            self.query_count += 1
            spans = self._spans[element] = {}
            for record in self.butler.query_dimension_records(element, data_id={
                    k: v for k, v in self.data_id.items() if k == "instrument"}):
                if record["timespan"] is not None:
                    spans[record.identity] = record["timespan"].to_ns()
        return spans.get(tuple(row[d] for d in self.universe[element].identity))


def _sorted_pairs(quanta: np.ndarray, rows: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (quantum, dataset row) pairs, sorted by quantum and then the dataset's data ID."""
    if not len(rows):
        return quanta.astype(np.int64), rows
    order = np.lexsort((rank[rows], quanta))
    q, r = quanta[order], rows[order]
    first = np.ones(len(q), dtype=bool)
    first[1:] = (q[1:] != q[:-1]) | (r[1:] != r[:-1])
    return q[first], r[first]


def _last_per_key(table: pa.Table, columns: list[str]) -> pa.Table:
    """The last row of ``table`` for each distinct value of ``columns`` (a dataset found in
    several searched collections counts where the search met it last)."""
    if not columns:
        return table.slice(table.num_rows - 1)
    indexed = table.append_column("__i", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    last = indexed.group_by(columns, use_threads=False).aggregate([("__i", "max")]).column("__i_max")
    return table.take(pa.array(np.sort(last.to_numpy())))


def _check_unique(columns: DatasetColumns, label: str) -> None:
    """Refuse two rows for one data ID of a type (two quanta writing one dataset)."""
    if len(columns) < 2:
        return
    distinct = columns.table().group_by(list(columns.group.required), use_threads=False).aggregate([]).num_rows \
        if columns.group.required else 1
    if distinct != len(columns):
        raise QuantumGraphError(f"task {label!r}: two quanta would write the same {columns.name} dataset "
                                "(outputs of several quanta must have distinct data IDs)")
