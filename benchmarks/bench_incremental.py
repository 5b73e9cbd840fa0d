"""Incremental-processing benchmark: deciding staleness for 20,000 quanta, and the overhead of
an incremental run that finds nothing to do.

    python benchmarks/bench_incremental.py [--json FILE] [--quick] [--keep]

The W1 records and 20,000 ``metrics`` datasets (registry rows, no files), the step-9
pipeline (TaskA per (visit, detector), TaskB gathers per visit: 20,400 quanta), and its
provenance as if it had run: every output's registry row in RUN ``bench/run`` and a
succeeded quantum record with its input and output links (inserted in bulk, not run).
Then:

- **staleness**: given today's graph, deciding every quantum (``provenance.staleness.assess``:
  the find-first product queries, the lineage read, the comparison), in ms -- once with
  nothing changed and once after one visit gained a detector's metrics (its two quanta
  stale or new, everything else current);
- **no-op incremental run**: ``run_pipeline(..., incremental=True)`` end to end (graph build,
  decision, nothing executed, nothing written), in s.

``--quick`` runs the 10x smaller workload.  Exit status 1 if a decision is wrong.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console

import workload as w
from bench_qgraph import pipeline, prepared_repo
from skybutler.dimensions import DataCoordinate
from skybutler.execution import run_pipeline
from skybutler.models import CollectionType, uuid7
from skybutler.pipeline import QuantumGraphBuilder
from skybutler.provenance.staleness import assess
from skybutler.registry.quantum_store import DatasetLink, QuantumRecord

console = Console(stderr=True, highlight=False)
RUN, CHAIN = "bench/run", "bench"


def record_provenance(butler: Any, graph: Any) -> None:
    """Register every output of ``graph`` in RUN and a succeeded quantum per node, in bulk."""
    registry = butler.registry
    outputs: dict[str, list[tuple[Any, uuid.UUID]]] = {}
    ids: dict[tuple[str, tuple], uuid.UUID] = {}
    for q in graph.quanta:
        for nodes in q.outputs.values():
            for n in nodes:
                ident = ids[(n.dataset_type, n.data_id.required_values)] = uuid7()
                outputs.setdefault(n.dataset_type, []).append((n.data_id, ident))
    butler.collections.register(RUN, CollectionType.RUN)
    config_ids = {}
    for tdef in graph.pipeline.sorted_tasks():
        butler.register_dataset_type(tdef.config_dataset_type, [], "Dict")
        config_ids[tdef.label] = butler.put(tdef.config.model_dump(mode="json"), tdef.config_dataset_type, {},
                                            run=RUN).id
    now = time.time_ns()
    records = []
    for q in graph.quanta:
        ins = [DatasetLink(n.id if n.id is not None else ids[(n.dataset_type, n.data_id.required_values)],
                           n.dataset_type, conn, dict(n.data_id.required)) for conn, nodes in q.inputs.items()
               for n in nodes]
        outs = [DatasetLink(ids[(n.dataset_type, n.data_id.required_values)], n.dataset_type, conn,
                            dict(n.data_id.required)) for conn, nodes in q.outputs.items() for n in nodes]
        records.append(QuantumRecord(uuid.uuid4(), RUN, q.task, graph.pipeline[q.task].class_path,
                                     dict(q.data_id.required), "succeeded", config_ids[q.task], "bench", 0, now, now,
                                     inputs=ins, outputs=outs))
    butler.register_dataset_type("metricsA", ["instrument", "visit", "detector"], "Dict")
    butler.register_dataset_type("visitSummary", ["instrument", "visit"], "Dict")
    butler.provenance.store.ensure()
    with registry.transaction():
        for name, pairs in outputs.items():
            dtype = butler.get_dataset_type(name)
            group = dtype.group(butler.universe)
            registry.datasets.insert(dtype, RUN, [DataCoordinate.standardize(group, dict(d.required))
                                                  for d, _ in pairs], [i for _, i in pairs], artifacts=None)
        butler.provenance.store.insert(records)
    butler.collections.register(CHAIN, CollectionType.CHAINED)
    butler.collections.set_chain(CHAIN, [RUN, w.METRICS_RUN])


CPU: dict[str, float] = {}


def timed(func: Any, name: str = "") -> tuple[Any, float]:
    """The result of ``func()`` and its wall time; its CPU time (this process) goes to CPU[name]."""
    start, cpu = time.perf_counter(), time.process_time()
    out = func()
    if name:
        CPU[name] = round(time.process_time() - cpu, 3)
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="Write the results here as JSON.")
    parser.add_argument("--quick", action="store_true", help="The 10x smaller workload (40 visits).")
    parser.add_argument("--keep", action="store_true", help="Keep the repository.")
    args = parser.parse_args()
    scale = w.Scale.quick() if args.quick else w.Scale()
    workdir = Path(tempfile.mkdtemp(prefix="skybutler-bench-incremental-"))
    ok = True
    try:
        butler = prepared_repo(workdir / "repo", scale)
        build = lambda: QuantumGraphBuilder(butler, pipeline(), [w.METRICS_RUN], "bench/new", output=CHAIN  # noqa: E731
                                            ).build()
        graph, build_seconds = timed(build, "graph_build")
        console.print(f"{len(graph)} quanta built in {build_seconds:.2f} s; recording them as run ...")
        _, record_seconds = timed(lambda: record_provenance(butler, graph))
        graph = build()
        result, assess_seconds = timed(lambda: assess(butler, graph, [CHAIN]), "staleness")
        counts = result.counts()
        ok &= counts == {"current": len(graph), "stale": 0, "new": 0, "orphaned": 0}
        console.print(f"staleness of {len(graph)} quanta decided in {assess_seconds * 1000:.0f} ms: {counts}")
        report, noop_seconds = timed(lambda: run_pipeline(butler, pipeline(), [w.METRICS_RUN], CHAIN,
                                                          incremental=True), "noop_incremental_run")
        ok &= report.total == 0 and sum(report.unchanged.values()) == len(graph)
        console.print(f"no-op incremental run: {report.describe()} in {noop_seconds:.2f} s")
        # One more detector's metrics for visit 1: one new quantum, its visit's summary stale.
        dtype = butler.get_dataset_type(w.METRICS_TYPE)
        butler.insert_records("detector", [{"instrument": w.INSTRUMENT, "id": scale.n_detectors,
                                            "full_name": "extra", "purpose": "SCIENCE"}])
        extra = DataCoordinate.standardize(dtype.group(butler.universe), {
            "instrument": w.INSTRUMENT, "visit": 1, "detector": scale.n_detectors})
        butler.registry.datasets.insert(dtype, w.METRICS_RUN, [extra], [uuid7()], artifacts=None)
        graph = build()
        changed, changed_seconds = timed(lambda: assess(butler, graph, [CHAIN]), "staleness_one_change")
        counts2 = changed.counts()
        ok &= counts2 == {"current": len(graph) - 2, "stale": 1, "new": 1, "orphaned": 0}
        console.print(f"after one new input: {counts2} in {changed_seconds * 1000:.0f} ms")
        butler.close()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out = {
        **w.stamp("incremental"), "scale": scale.as_dict(), "quick": args.quick, **w.environment(),
        "quanta": len(graph), "graph_build_seconds": round(build_seconds, 3),
        "record_provenance_seconds": round(record_seconds, 3),
        "staleness_ms": round(assess_seconds * 1000, 1), "staleness_one_change_ms": round(changed_seconds * 1000, 1),
        "noop_incremental_run_seconds": round(noop_seconds, 3), "counts": counts, "counts_one_change": counts2,
        "cpu_seconds": CPU, "peak_rss_bytes": w.peak_rss_bytes(), "ok": ok,
    }
    w.save_json(out, args.json, echo=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
