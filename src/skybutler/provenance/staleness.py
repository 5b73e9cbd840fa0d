"""Staleness: which products differ from what their tasks would make from today's data.

A product is *current* when the quantum that made it (its recorded provenance) read
exactly the inputs the same task would read today, and *stale* otherwise: inputs added
or removed, an input replaced by another dataset of the same data ID, an input that is
itself being remade upstream, a calibration decertified or superseded, a changed config,
and -- where asked -- changed task code (content hashes, see :mod:`.software`).  This one
definition serves both :meth:`Provenance.stale` and incremental runs
(:mod:`..execution.incremental`): the products ``stale`` lists are those of the quanta an
incremental run with the same pipeline redoes.

It is decided set-based.  Today's inputs come from the graph builder (its handful of
queries over the whole pipeline), the products from one find-first query per output
type, and the recorded quanta with their inputs from two statements per 500 products
(:meth:`QuantumStore.lineage`); the comparison is then set arithmetic on dataset IDs per
quantum, in dependency order, so an upstream change reaches every product below it.  On a
columnar graph the current quanta -- most of them -- are found on arrays, a task at a time
(:mod:`.staleness_columns`), and only the others become quantum objects and are compared
one by one, which names their reasons.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import SkybutlerError
from ..pipeline.columns import LazyQuanta
from ..pipeline.graph import QuantumGraph, QuantumNode
from ..registry.quantum_store import QuantumLineage
from .software import code_hash, config_hash
from .staleness_columns import ColumnarDecider

if TYPE_CHECKING:
    from ..butler import Butler

Key = tuple
CalibrationChoice = Literal["refuse", "recorded", "today"]
CALIBRATION_CHOICES = ("refuse", "recorded", "today")
#: Items of one kind named in a reason before "and N more".
SHOWN = 5


@dataclass
class Decision:
    """Today's verdict on one quantum of a graph: ``current``, ``stale`` or ``new`` (never made)."""

    index: int
    task: str
    data_id: dict[str, Any]
    status: str
    recorded: QuantumLineage | None = None
    reasons: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: Calibrations whose recorded dataset is not today's: (dataset type, data-ID values, recorded, today).
    calibrations: list[tuple[str, Key, uuid.UUID, uuid.UUID]] = field(default_factory=list)
    #: Its products in the current view, by (dataset type, data-ID values).
    products: dict[tuple[str, Key], uuid.UUID] = field(default_factory=dict)


@dataclass
class StaleProduct:
    """A product whose task would not make it the same way today, and why."""

    dataset_type: str
    data_id: dict[str, Any]
    dataset_id: uuid.UUID
    run: str
    task: str
    reasons: list[str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_type": self.dataset_type, "data_id": self.data_id, "id": str(self.dataset_id),
                "run": self.run, "task": self.task, "reasons": self.reasons, "added": self.added,
                "removed": self.removed}


@dataclass
class Staleness:
    """The verdict on every quantum of a graph and on the products no quantum would make today."""

    graph: QuantumGraph
    decisions: list[Decision]
    #: Products in the current view that today's graph has no quantum for (inputs all gone,
    #: a calibration decertified), as stale products.
    orphans: list[StaleProduct] = field(default_factory=list)
    runs: dict[uuid.UUID, str] = field(default_factory=dict, repr=False)
    groups: dict[str, Any] = field(default_factory=dict, repr=False)
    #: Quanta pointed back at their recorded calibration (``calibrations='recorded'``).
    recalibrated: int = 0

    def counts(self) -> dict[str, int]:
        out = {"current": 0, "stale": 0, "new": 0}
        for d in self.decisions:
            out[d.status] += 1
        out["orphaned"] = len(self.orphans)
        return out

    def total(self, dataset_type: str) -> int:
        """How many ``dataset_type`` products were judged: those of today's quanta, and the orphans."""
        return sum(1 for d in self.decisions for k in d.products if k[0] == dataset_type) + \
            sum(1 for o in self.orphans if o.dataset_type == dataset_type)

    def products(self, dataset_type: str | None = None) -> list[StaleProduct]:
        """Stale products (of one type), those of stale quanta first, then the orphans."""
        out = []
        for d in self.decisions:
            if d.status != "stale":
                continue
            for (dtype, key), dataset_id in d.products.items():
                if dataset_type is not None and dtype != dataset_type:
                    continue
                out.append(StaleProduct(dtype, dict(zip(self.groups[dtype].required, key)), dataset_id,
                                        self.runs.get(dataset_id, ""), d.task, d.reasons, d.added, d.removed))
        out += [o for o in self.orphans if dataset_type is None or o.dataset_type == dataset_type]
        return out


def _label(dataset_type: str, data_id: Mapping[str, Any]) -> str:
    return f"{dataset_type}@{{{', '.join(f'{k}: {v}' for k, v in data_id.items() if k != 'instrument')}}}"


def _listed(what: str, items: Sequence[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return f"{what}: {', '.join(items[:SHOWN])}{more}"


class _Assessor:
    def __init__(self, butler: Butler, graph: QuantumGraph, current: Sequence[str], config: bool, software: bool):
        self.butler = butler
        self.graph = graph
        self.current = list(current)
        self.check_config = config
        self.check_code = software
        self.universe = butler.universe
        self.groups = {n: self.universe.group(d.dimensions) for n, d in graph.dataset_types.items()}
        self.products: dict[tuple[str, Key], uuid.UUID] = {}
        #: Per output type, its products' data IDs as Arrow and their IDs, row for row.
        self.product_tables: dict[str, tuple[Any, list[uuid.UUID]]] = {}
        self.runs: dict[uuid.UUID, str] = {}

    def load(self) -> None:
        """The current products of every output type, and the quanta that made them."""
        registered = {d.name for d in self.butler.query_dataset_types()}
        for tdef in self.graph.pipeline.sorted_tasks():
            for conn in tdef.outputs.values():
                if conn.name not in registered:
                    continue
                table = self.butler.query_datasets(conn.name, collections=self.current).to_arrow()
                if not table.num_rows:
                    continue
                dims = self.groups[conn.name].required
                keys = zip(*[table.column(d).to_pylist() for d in dims])
                ids = []
                for key, ident, run in zip(keys, table.column("dataset_id").to_pylist(),
                                           table.column("run").to_pylist()):
                    dataset_id = uuid.UUID(ident)
                    self.products[(conn.name, key)] = dataset_id
                    self.runs[dataset_id] = run
                    ids.append(dataset_id)
                self.product_tables[conn.name] = (table.select(list(dims)), ids)
        self.made, self.quanta = self.butler.provenance.store.lineage(list(self.products.values()))
        self.today_code = {t.label: code_hash(t.task_class) for t in self.graph.pipeline.sorted_tasks()}
        self.today_config = {t.label: config_hash(t.config) for t in self.graph.pipeline.sorted_tasks()}
        self.recorded_code: dict[tuple[str | None, str], str | None] = {}
        if self.check_code:
            for env_id in {q.env_id for q in self.quanta.values()}:
                env = self.butler.provenance.store.environment_of(env_id) if env_id else None
                for label, ident in ((env or {}).get("tasks") or {}).items():
                    self.recorded_code[(env_id, label)] = ident.get("code")
        self.recorded_config: dict[uuid.UUID | None, str | None] = {}
        if self.check_config:
            ids = [i for i in {q.config_dataset_id for q in self.quanta.values()} if i is not None]
            for ref in self.butler.registry.refs_by_id(ids):
                self.recorded_config[ref.id] = config_hash(self.butler.get(ref))

    def decide(self) -> list[Decision]:
        quanta = self.graph.quanta
        if isinstance(quanta, LazyQuanta):
            return self._decide_columns(quanta)
        decisions: list[Decision] = []
        for q in quanta:
            decisions.append(self._decide(q, decisions))
        return decisions

    def _decide_columns(self, quanta: LazyQuanta) -> list[Decision]:
        """The current quanta found on columns (:mod:`.staleness_columns`); the others, one by one."""
        decider = ColumnarDecider(self, quanta)
        decisions: list[Decision | None] = [None] * len(quanta)
        current = np.zeros(len(quanta), dtype=bool)
        for block in quanta.tasks:
            local, recorded = decider.current(block, current)
            for i, r in zip(local.tolist(), recorded.tolist()):
                decisions[block.start + i] = Decision(block.start + i, block.label, dict(block.data_id(i).required),
                                                      "current", decider.recorded[r],
                                                      products=decider.products_of(block, i))  # type: ignore[arg-type]
            for index in range(block.start, block.start + len(block)):
                if decisions[index] is None:
                    decisions[index] = self._decide(quanta[index], decisions)  # type: ignore[arg-type]
                current[index] = decisions[index].status == "current"  # type: ignore[union-attr]
        return decisions  # type: ignore[return-value]

    def _key_of(self, dataset_type: str, data_id_json: str) -> Key:
        values = json.loads(data_id_json)
        return tuple(values[d] for d in self.groups[dataset_type].required) if dataset_type in self.groups \
            else tuple(values.values())

    def _decide(self, q: QuantumNode, decisions: list[Decision]) -> Decision:
        decision = Decision(q.index, q.task, dict(q.data_id.required), "new")
        outs = [(n.dataset_type, n.data_id.required_values) for nodes in q.outputs.values() for n in nodes]
        found = {k: self.products[k] for k in outs if k in self.products}
        decision.products = found
        if not found:
            return decision
        producers = {self.made.get(i) for i in found.values()}
        if None in producers or len(producers) > 1:
            decision.reasons.append("its products were not all made by one recorded quantum")
            decision.status = "stale"
            return decision
        recorded = decision.recorded = self.quanta[producers.pop()]
        reasons = decision.reasons
        if len(found) < len(outs):
            missing = [_label(t, dict(zip(self.groups[t].required, k))) for t, k in outs if (t, k) not in found]
            reasons.append(_listed("would also write", missing))
        tdef = self.graph.pipeline[q.task]
        if recorded.task_label != q.task or recorded.task_class != tdef.class_path:
            reasons.append(f"made by task {recorded.task_label!r} ({recorded.task_class}), today "
                           f"{q.task!r} ({tdef.class_path})")
        if self.check_config and self.recorded_config.get(recorded.config_dataset_id) != self.today_config[q.task]:
            reasons.append("config changed")
        if self.check_code:
            code = self.recorded_code.get((recorded.env_id, recorded.task_label))
            if code is not None and code != self.today_code[q.task]:
                reasons.append("task code changed")
            elif code is None:
                reasons.append("no recorded code hash (made by an older skybutler)")
        self._compare_inputs(q, recorded, decisions, decision)
        decision.status = "stale" if reasons else "current"
        return decision

    def _compare_inputs(self, q: QuantumNode, recorded: QuantumLineage, decisions: list[Decision],
                        decision: Decision) -> None:
        rec_in = {i: (t, j) for i, t, j, pre in recorded.inputs if not pre and i is not None}
        rec_pre = {i: (t, j) for i, t, j, pre in recorded.inputs if pre and i is not None}
        today: dict[uuid.UUID, tuple[str, Key]] = {}
        pending: list[tuple[str, Key]] = []
        for nodes in q.inputs.values():
            for n in nodes:
                key = (n.dataset_type, n.data_id.required_values)
                if n.id is not None:
                    today[n.id] = key
                elif n.producer is not None and decisions[n.producer].status == "current":
                    today[decisions[n.producer].products[key]] = key
                else:
                    pending.append(key)
        added = [k for i, k in today.items() if i not in rec_in]
        removed = [(t, self._key_of(t, j)) for i, (t, j) in rec_in.items() if i not in today]
        labels = lambda keys: [_label(t, dict(zip(self.groups[t].required, k))) for t, k in keys]  # noqa: E731
        removed_keys = set(removed)
        replaced = set(added) & removed_keys
        really_added = [k for k in added if k not in replaced]
        pending_keys = set(pending)
        really_removed = [k for k in removed if k not in replaced and k not in pending_keys]
        new_upstream = [k for k in pending if k not in removed_keys]
        decision.added = labels(really_added + new_upstream)
        decision.removed = labels(really_removed)
        if really_added or new_upstream:
            decision.reasons.append(_listed("inputs added", decision.added))
        if really_removed:
            decision.reasons.append(_listed("inputs removed", decision.removed))
        if replaced:
            decision.reasons.append(_listed("inputs replaced by other datasets", labels(sorted(replaced))))
        being_remade = [k for k in pending if k in removed_keys]
        if being_remade:
            decision.reasons.append(_listed("inputs remade upstream", labels(being_remade)))
        today_pre = {n.id: (n.dataset_type, n.data_id.required_values)
                     for nodes in q.prerequisites.values() for n in nodes if n.id is not None}
        if set(today_pre) != set(rec_pre):
            by_key = {(t, self._key_of(t, j)): i for i, (t, j) in rec_pre.items()}
            for i, key in today_pre.items():
                old = by_key.get(key)
                if old is not None and old != i:
                    decision.calibrations.append((key[0], key[1], old, i))
                    decision.reasons.append(
                        f"calibration {labels([key])[0]} superseded: recorded {old}, today {i}")
                elif old is None:
                    decision.reasons.append(f"prerequisite {labels([key])[0]} added")


def assess(butler: Butler, graph: QuantumGraph, current: Sequence[str], *, config: bool = True,
           software: bool = False, calibrations: CalibrationChoice = "today",
           orphans_of: Sequence[str] | None = None, where: str = "") -> Staleness:
    """Decide, for every quantum of ``graph`` (today's), whether the product it would make is
    current in the collections ``current`` (find-first), stale (with reasons) or new.

    ``config``: a changed config hash counts as stale (``False``: ignored); ``software``: a
    changed task code hash counts too.
    ``calibrations='recorded'`` makes quanta whose calibration changed read the recorded
    calibration instead (so they stay current if nothing else changed).  Products of the
    types ``orphans_of`` (default: every output type) matching ``where`` that no quantum of
    the graph would make today are reported as orphans."""
    if calibrations not in CALIBRATION_CHOICES:
        raise SkybutlerError(f"calibrations must be one of {', '.join(CALIBRATION_CHOICES)}, not {calibrations!r}")
    if calibrations == "recorded":
        graph.materialise()  # pointing quanta at their recorded calibrations edits the nodes in place
    assessor = _Assessor(butler, graph, current, config, software)
    assessor.load()
    recalibrated = _use_recorded_calibrations(assessor) if calibrations == "recorded" else 0
    result = Staleness(graph, assessor.decide(), runs=assessor.runs, groups=assessor.groups,
                       recalibrated=recalibrated)
    result.orphans = _orphans(assessor, result, orphans_of, where)
    return result


def _use_recorded_calibrations(assessor: _Assessor) -> int:
    """Point each quantum's prerequisites at the recorded ones where today's lookup differs;
    returns how many quanta changed."""
    changed = 0
    for q in assessor.graph.quanta:
        outs = [(n.dataset_type, n.data_id.required_values) for nodes in q.outputs.values() for n in nodes]
        made = {assessor.made.get(assessor.products[k]) for k in outs if k in assessor.products}
        if len(made) != 1 or None in made:
            continue
        recorded = assessor.quanta[made.pop()]
        by_key = {(t, assessor._key_of(t, j)): i for i, t, j, pre in recorded.inputs if pre and i is not None}
        hit = False
        for nodes in q.prerequisites.values():
            for n in nodes:
                old = by_key.get((n.dataset_type, n.data_id.required_values))
                if old is not None and old != n.id:
                    n.id, hit = old, True
        changed += hit
    return changed


def _orphans(assessor: _Assessor, result: Staleness, types: Sequence[str] | None, where: str) -> list[StaleProduct]:
    graph = assessor.graph
    if isinstance(graph.quanta, LazyQuanta):  # the rows some quantum makes, without making the quanta
        datasets = graph.quanta.datasets
        planned = {(link.dataset, datasets[link.dataset].key(row)) for block in graph.quanta.tasks
                   for link in block.links["outputs"].values() for row in link.rows.tolist()}
    else:
        planned = {(n.dataset_type, n.data_id.required_values) for q in graph.quanta for nodes in q.outputs.values()
                   for n in nodes}
    producers = {c.name: t for t in graph.pipeline.sorted_tasks() for c in t.outputs.values()}
    wanted = list(types) if types is not None else list(producers)
    out = []
    for name in wanted:
        if name not in producers:
            continue
        try:
            refs = list(assessor.butler.query_datasets(name, where, collections=assessor.current))
        except SkybutlerError:
            continue  # a where-clause this type's query cannot take: orphans are not listed
        tdef = producers[name]
        task_dims = set(assessor.universe.group(tdef.dimensions).required)
        for ref in refs:
            key = (name, ref.data_id.required_values)
            if key in planned or assessor.made.get(ref.id) is None:
                continue
            data_id = dict(ref.data_id.required)
            reason = next((d["reason"] for d in graph.dropped if d["task"] == tdef.label and all(
                data_id.get(k) == v for k, v in d["data_id"].items() if k in task_dims)), None)
            if reason is not None and reason.startswith("no "):
                reason = f"calibration decertified or missing: {reason}"
            out.append(StaleProduct(name, data_id, ref.id, ref.run, tdef.label,
                                    [reason or "its task would have no inputs today (all removed)"]))
    return out
