"""Building a quantum graph with set-based SQL.

For each task (in dependency order) one ``query_data_ids`` call over the union of the
quantum's and its connections' dimensions -- constrained by ``datasets=`` to the
overall inputs that exist in the input collections, and by the where-clause -- gives
rows that are grouped in Python into quanta.  Existing inputs are resolved with one
``query_datasets`` per dataset type, prerequisites with one read per collection and
type (:mod:`.prerequisites`), existing outputs with one query per output type.  A
handful of queries make the whole graph, never one per quantum.  Gathers (many rows
per quantum), one-to-many outputs and spatial joins (a query over visit, detector,
tract and patch joins by region) all follow from the same grouping.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..dimensions import DataCoordinate, DimensionGroup
from ..models import DatasetType
from .errors import QuantumGraphError
from .graph import DatasetNode, QuantumGraph, QuantumNode
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
        #: dataset type -> data-ID values -> node template (with an ID, or a producer)
        self.available: dict[str, dict[Key, DatasetNode]] = {}
        self.quanta: list[QuantumNode] = []
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
        for tdef in ordered:
            for conn in tdef.inputs.values():
                if conn.name not in producers and conn.name not in self.available:
                    self._load_existing(conn.name)
            self._build_task(tdef, producers)
        if self.conflicts:
            shown = "; ".join(self.conflicts[:5]) + (f"; and {len(self.conflicts) - 5} more"
                                                      if len(self.conflicts) > 5 else "")
            raise QuantumGraphError(
                f"{len(self.conflicts)} quanta would overwrite outputs already in RUN {self.output_run!r} ({shown}); "
                "skip them (--skip-existing or --resume) or replace them (--clobber)")
        return QuantumGraph(self.pipeline, self.dtypes, self.quanta, self.inputs, self.output_run, self.output,
                            self.where, self.dropped, self.skipped)

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
        group = self.groups[name]
        ids = table.column("dataset_id").to_pylist() if table.num_rows else []
        keys = _tuples(table, group.required)
        self.available[name] = {key: DatasetNode(name, DataCoordinate.from_required(group, key), uuid.UUID(i))
                                for key, i in zip(keys, ids)}

    # -- one task -------------------------------------------------------------

    def _build_task(self, tdef: TaskDef, producers: dict[str, str]) -> None:
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
        existing = [c.name for c in tdef.inputs.values() if c.name not in producers]
        self.query_count += 1
        table = self.butler.query_data_ids(
            sorted(union.required), self.where, bind=self.bind, datasets=existing or None,
            collections=self.inputs if existing else None, data_id=self.data_id,
            with_implied=needs_implied).to_arrow()
        columns = [c for c in table.column_names if c in union.names]
        rows = list(zip(*[table.column(c).to_pylist() for c in columns])) if table.num_rows else []
        index = {c: i for i, c in enumerate(columns)}
        qget = _getter([index[d] for d in qgroup.required])
        getters = [(k, _getter([index[d] for d in g.required])) for k, g in cgroups.items()]
        checks = [(k, self.available.get(c.name, {})) for k, c in tdef.inputs.items()]
        grouped: dict[Key, dict[str, dict[Key, None]]] = {}
        first_row: dict[Key, dict[str, Any]] = {}
        for row in rows:
            keys = {k: get(row) for k, get in getters}
            if any(keys[k] not in avail for k, avail in checks):
                continue  # an input that neither exists nor is produced by an earlier quantum
            qkey = qget(row)
            acc = grouped.get(qkey)
            if acc is None:
                acc = grouped[qkey] = {k: {} for k, _ in getters}
                first_row[qkey] = dict(zip(columns, row))
            for k, key in keys.items():
                acc[k][key] = None
        self._make_quanta(tdef, qgroup, grouped, first_row)

    def _make_quanta(self, tdef: TaskDef, qgroup: DimensionGroup, grouped: dict[Key, dict[str, dict[Key, None]]],
                     first_row: dict[Key, dict[str, Any]]) -> None:
        existing_out = self._existing_outputs(tdef)
        skipped = 0
        for qkey in sorted(grouped):
            acc = grouped[qkey]
            prereqs = self._find_prerequisites(tdef, acc, first_row[qkey])
            if isinstance(prereqs, str):
                self.dropped.append({"task": tdef.label, "data_id": dict(zip(qgroup.required, qkey)),
                                     "reason": prereqs})
                continue
            outputs = {k: [(c.name, key) for key in sorted(acc[k])] for k, c in tdef.outputs.items()}
            found = [(name, key, existing_out.get((name, key))) for nodes in outputs.values() for name, key in nodes]
            if found and all(hit is not None and hit[1] for _, _, hit in found):
                skipped += 1  # every output exists where existing ones are skipped
                for name, key, hit in found:
                    self.available.setdefault(name, {})[key] = DatasetNode(
                        name, DataCoordinate.from_required(self.groups[name], key), hit[0])
                continue
            clobber = [hit[0] for _, _, hit in found if hit is not None and not hit[1]]
            data_id = DataCoordinate.from_required(qgroup, qkey)
            if clobber and not self.clobber:
                self.conflicts.append(f"{tdef.label}@{dict(data_id.required)}")
            index = len(self.quanta)
            inputs = {k: [self.available[c.name][key] for key in sorted(acc[k])] for k, c in tdef.inputs.items()}
            out_nodes: dict[str, list[DatasetNode]] = {}
            for k, nodes in outputs.items():
                made = out_nodes[k] = []
                for name, key in nodes:
                    node = DatasetNode(name, DataCoordinate.from_required(self.groups[name], key), None, index)
                    made.append(node)
                    self.available.setdefault(name, {})[key] = node
            self.quanta.append(QuantumNode(index, tdef.label, data_id, inputs, prereqs, out_nodes, clobber))
        if skipped:
            self.skipped[tdef.label] = skipped

    def _existing_outputs(self, tdef: TaskDef) -> dict[tuple[str, Key], tuple[uuid.UUID, bool]]:
        """Outputs already stored: (dataset type, data-ID values) -> (ID, whether skipping applies)."""
        out: dict[tuple[str, Key], tuple[uuid.UUID, bool]] = {}
        search = self.skip_in + ([self.output_run] if self.run_exists and self.output_run not in self.skip_in
                                 else [])
        if not search:
            return out
        registered = {d.name for d in self.butler.query_dataset_types()}
        skip_runs = set(self.butler.collections.flatten(self.skip_in)) if self.skip_in else set()
        for conn in tdef.outputs.values():
            if conn.name not in registered:
                continue
            self.query_count += 1
            table = self.butler.query_datasets(conn.name, collections=search, data_id=self.data_id).to_arrow()
            if not table.num_rows:
                continue
            keys = _tuples(table, self.groups[conn.name].required)
            for key, i, run in zip(keys, table.column("dataset_id").to_pylist(), table.column("run").to_pylist()):
                out[(conn.name, key)] = (uuid.UUID(i), run in skip_runs)
        return out

    def _find_prerequisites(self, tdef: TaskDef, acc: dict[str, dict[Key, None]],
                            row: dict[str, Any]) -> dict[str, list[DatasetNode]] | str:
        """The prerequisite datasets of one quantum, or why one is missing."""
        out: dict[str, list[DatasetNode]] = {}
        for k, conn in tdef.prerequisites.items():
            dtype = self.dtypes[conn.name]
            group = self.groups[conn.name]
            span = self._span(row) if conn.lookup == "timespan" else None
            keys = sorted(acc[k]) if conn.multiple else [tuple(row[d] for d in group.required)]
            nodes = []
            for key in keys:
                found = self._prereqs.find(dtype, key, span)
                if found is None:
                    when = "" if span is None else " valid at the observation time"
                    return (f"no {conn.name} (prerequisite {k!r}) for {dict(zip(group.required, key))}{when} in "
                            f"{', '.join(self.inputs)}")
                nodes.append(DatasetNode(conn.name, DataCoordinate.from_required(group, key), found))
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


def _getter(positions: list[int]) -> Callable[[tuple], Key]:
    """A fast function picking values at ``positions`` of a row as a tuple."""
    if len(positions) == 1:
        pos = positions[0]
        return lambda row: (row[pos],)
    return operator.itemgetter(*positions)


def _tuples(table: Any, dims: Sequence[str]) -> list[Key]:
    """Rows of an Arrow table's dimension columns as tuples."""
    if not table.num_rows:
        return []
    return list(zip(*[table.column(d).to_pylist() for d in dims]))
