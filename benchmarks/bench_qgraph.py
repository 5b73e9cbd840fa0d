"""Quantum-graph and executor benchmark: WORKLOAD.md step 9, and executor overhead.

    python benchmarks/bench_qgraph.py [--json FILE] [--quick] [--keep] [--quanta N [--repo DIR]]

Step 9: a repository with the W1 records and 20,000 ``metrics`` datasets (registry
rows bulk-inserted, no files), a two-task pipeline -- TaskA maps metrics to metricsA
per (visit, detector), TaskB gathers metricsA per visit into visitSummary -- and the
time to build its quantum graph (expect 20,400 quanta), plus the time to save and load
it.  Executor overhead: trivial tasks over real (tiny) files run on the process pool
with 2 workers; milliseconds per quantum including pool start-up, and in steady state
(the marginal cost between a smaller and a larger run).  ``--quick`` runs the 10x
smaller workload.  Exit status 1 if the quanta count is wrong.

``--quanta N`` builds a campaign-sized graph instead: the same two-task pipeline over
N / 50 visits x 50 detectors (``--quanta 1000000``: 20,000 visits, 1,020,000 quanta),
timing the build (wall and CPU), its peak memory, a save and load, and how long the
executor waits before its first quantum could be submitted (the dependency arrays and
the first quantum's object: a columnar graph makes no object per quantum up front).
Its repository holds the records the graph reads (no visit-detector regions) and the
metrics rows through the registry's bulk path, made by a child process so that the peak
memory reported is the graph's (``--repo DIR`` makes it there once and reuses it); the
executor benchmark is not run.
Under ``TMPDIR`` (``TMPDIR=/dev/shm`` keeps the disk out of the figures).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

import workload as w
from skybutler import Butler
from skybutler.dimensions import DataCoordinate
from skybutler.execution import execute_graph
from skybutler.models import CollectionType, uuid7
from skybutler.pipeline import Pipeline, QuantumGraph, QuantumGraphBuilder
from skybutler.pipeline.testing import ScaleTask, VisitSummaryTask

TARGETS = {"qgraph_seconds": 3.0, "pool_ms_per_quantum": 20.0}
#: ``--quanta``: a million quanta in at most a minute and 2 GiB.
LARGE_TARGETS = {"qgraph_seconds": 60.0, "peak_rss_bytes": 2 * 2**30}
console = Console(stderr=True, highlight=False)


def pipeline() -> Pipeline:
    p = Pipeline("W1 step 9: TaskA per (visit, detector), TaskB gathers per visit")
    p.add_task("taskA", ScaleTask)
    p.add_task("taskB", VisitSummaryTask)
    return p


def prepared_repo(root: Path, scale: w.Scale) -> Butler:
    """W1 records and the metrics registry rows (no files: the graph needs only the registry)."""
    butler = Butler.create(root)
    w.register_dimensions(butler, scale)
    w.register_metrics(butler)
    dtype = butler.get_dataset_type(w.METRICS_TYPE)
    group = dtype.group(butler.universe)
    data_ids = [DataCoordinate.standardize(group, d) for d in w.metrics_data_ids(scale)]
    with butler.registry.transaction():
        butler.registry.collections.register(w.METRICS_RUN, CollectionType.RUN)
        butler.registry.datasets.insert(dtype, w.METRICS_RUN, data_ids, [uuid7() for _ in data_ids], artifacts=None)
    return butler


def large_repo(root: Path, scale: w.Scale) -> Butler:
    """The records a graph over many visits reads, and the metrics rows by the bulk path."""
    butler = Butler.create(root)
    records = {e: w.RECORD_BUILDERS[e](scale) for e in w.ELEMENT_ORDER if e != "visit_detector_region"}
    for element, rows in records.items():
        butler.insert_records(element, rows)
    w.register_metrics(butler)
    butler.collections.register(w.METRICS_RUN, CollectionType.RUN)
    values = ((w.INSTRUMENT, v, d) for v in range(1, scale.n_visits + 1) for d in range(scale.n_detectors))
    butler.registry.datasets.insert_bulk(butler.get_dataset_type(w.METRICS_TYPE), w.METRICS_RUN, values)
    return butler


def bench_large(workdir: Path, repo: Path, scale: w.Scale) -> dict[str, Any]:
    """Build, save and load a campaign-sized graph; the wait before the first quantum runs."""
    start = time.perf_counter()
    if not (repo / "butler.yaml").exists():
        subprocess.run([sys.executable, __file__, "--prepare", str(repo), "--quanta", str(scale.n_datasets)],
                       check=True)
    prepare = time.perf_counter() - start
    butler = Butler(repo)
    rss_before = w.peak_rss_bytes()
    start, cpu = time.perf_counter(), time.process_time()
    builder = QuantumGraphBuilder(butler, pipeline(), [w.METRICS_RUN], "bench/run", output="bench")
    graph = builder.build()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rss_built = w.peak_rss_bytes()
    start = time.perf_counter()
    waiting, _, _ = graph.dependency_arrays()
    first = graph.quanta[int(waiting.argmin())]
    first_quantum = time.perf_counter() - start
    start = time.perf_counter()
    graph.save(workdir / "g.qg")
    save = time.perf_counter() - start
    size = (workdir / "g.qg").stat().st_size
    del graph
    start = time.perf_counter()
    again = QuantumGraph.load(workdir / "g.qg")
    load = time.perf_counter() - start
    butler.close()
    expected = scale.n_datasets + scale.n_visits
    return {"qgraph": {**w.summarize([seconds]), "cpu_seconds": cpu, "quanta": len(again),
                       "expected_quanta": expected, "per_task": again.counts(), "sql_queries": builder.query_count,
                       "prepare_seconds": prepare, "peak_rss_bytes_before_build": rss_before,
                       "peak_rss_bytes_after_build": rss_built,
                       "seconds_to_first_quantum": first_quantum, "first_quantum": first.describe()},
            "qgraph_save": {**w.summarize([save]), "bytes": size},
            "qgraph_load": {**w.summarize([load]), "quanta": len(again)},
            "ok": len(again) == expected}


def bench_graph(workdir: Path, scale: w.Scale) -> dict[str, Any]:
    butler = prepared_repo(workdir / "graph", scale)
    start, cpu = time.perf_counter(), time.process_time()
    builder = QuantumGraphBuilder(butler, pipeline(), [w.METRICS_RUN], "bench/run", output="bench")
    graph = builder.build()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    graph.save(workdir / "g.qg")
    save = time.perf_counter() - start
    start = time.perf_counter()
    again = QuantumGraph.load(workdir / "g.qg")
    load = time.perf_counter() - start
    butler.close()
    expected = scale.n_datasets + scale.n_visits
    return {"qgraph": {**w.summarize([seconds]), "cpu_seconds": cpu, "quanta": len(graph),
                       "expected_quanta": expected, "per_task": graph.counts(), "sql_queries": builder.query_count},
            "qgraph_save": {**w.summarize([save]), "bytes": (workdir / "g.qg").stat().st_size},
            "qgraph_load": {**w.summarize([load]), "quanta": len(again)},
            "ok": len(graph) == expected == len(again)}


def bench_pool(workdir: Path, n_visits: int, n_detectors: int = 10, jobs: int = 2) -> dict[str, Any]:
    scale = w.Scale(n_visits=n_visits, n_detectors=n_detectors)
    butler = Butler.create(workdir / "pool")
    w.register_dimensions(butler, scale)
    w.register_metrics(butler)
    w.put_metrics(butler, scale)

    def timed(where: str, output: str) -> tuple[float, int, bool]:
        graph = QuantumGraphBuilder(butler, pipeline(), [w.METRICS_RUN], f"{output}/run", output=output,
                                    where=where).build()
        start = time.perf_counter()
        report = execute_graph(butler, graph, "pool", jobs)
        return time.perf_counter() - start, len(graph), report.ok

    _, _, ok0 = timed("visit = 1 AND detector = 0", "warm")  # starts the fork server: not counted
    small, n_small, ok1 = timed(f"visit <= {n_visits // 4}", "small")
    total, n, ok2 = timed(f"visit > {n_visits // 4}", "bench")
    butler.close()
    steady = (total - small) / (n - n_small) if n > n_small else total / n
    return {"pool": {**w.summarize([total]), "quanta": n, "jobs": jobs, "small_run_seconds": small,
                     "small_run_quanta": n_small, "ms_per_quantum_total": 1000 * total / n,
                     "ms_per_quantum_steady": 1000 * steady,
                     "note": "total: wall time / quanta, pool start-up included; steady: marginal cost per quantum "
                             "between a run of 1/4 and one of 3/4 of the visits"},
            "ok": ok0 and ok1 and ok2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="Write the results here as JSON.")
    parser.add_argument("--quick", action="store_true", help="The 10x smaller workload (40 visits).")
    parser.add_argument("--keep", action="store_true", help="Keep the repositories.")
    parser.add_argument("--quanta", type=int, help="Build a graph of about N quanta (N / 50 visits x 50 detectors).")
    parser.add_argument("--repo", type=Path, help="With --quanta: make the repository here once and reuse it.")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)  # the child that makes the repository
    args = parser.parse_args()
    if args.prepare:
        large_repo(args.prepare, w.Scale(n_visits=max(1, args.quanta // 50), n_detectors=50)).close()
        return 0
    if args.quanta:
        return main_large(args)
    scale = w.Scale.quick() if args.quick else w.Scale()
    workdir = Path(tempfile.mkdtemp(prefix="skybutler-bench-qgraph-"))
    try:
        console.print(f"building the step 9 graph over {scale.n_datasets} metrics ...")
        graph = bench_graph(workdir, scale)
        console.print(f"qgraph: {graph['qgraph']['quanta']} quanta in {graph['qgraph']['seconds']:.2f} s "
                      f"({graph['qgraph']['cpu_seconds']:.2f} s CPU: the build and SQLite are single-threaded, so "
                      "this is the time on an idle machine)")
        console.print("running trivial quanta on the process pool ...")
        pool = bench_pool(workdir, 10 if args.quick else 40)
        console.print(f"pool: {pool['pool']['quanta']} quanta, {pool['pool']['ms_per_quantum_total']:.1f} ms/quantum "
                      f"({pool['pool']['ms_per_quantum_steady']:.1f} ms in steady state)")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {
        **w.stamp("qgraph"), "scale": scale.as_dict(), "quick": args.quick, **w.environment(),
        "timings": {k: v for k, v in {**graph, **pool}.items() if k != "ok"},
        "qgraph_seconds": graph["qgraph"]["seconds"], "qgraph_cpu_seconds": graph["qgraph"]["cpu_seconds"],
        "quanta": graph["qgraph"]["quanta"],
        "pool_ms_per_quantum": pool["pool"]["ms_per_quantum_total"],
        "pool_ms_per_quantum_steady": pool["pool"]["ms_per_quantum_steady"],
        "targets": TARGETS, "peak_rss_bytes": w.peak_rss_bytes(),
    }
    w.save_json(result, args.json, echo=True)
    ok = graph["ok"] and pool["ok"]
    if not ok:
        console.print("[red]wrong quanta count or failed quanta[/red]")
    return 0 if ok else 1


def main_large(args: argparse.Namespace) -> int:
    scale = w.Scale(n_visits=max(1, args.quanta // 50), n_detectors=50)
    workdir = Path(tempfile.mkdtemp(prefix="skybutler-bench-qgraph-"))
    try:
        console.print(f"preparing {scale.n_visits:,} visits and {scale.n_datasets:,} metrics rows ...")
        graph = bench_large(workdir, args.repo or workdir / "large", scale)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    q = graph["qgraph"]
    peak = w.peak_rss_bytes()
    console.print(f"qgraph: {q['quanta']:,} quanta in {q['seconds']:.1f} s ({q['cpu_seconds']:.1f} s CPU); peak RSS "
                  f"{peak / 2**20:.0f} MiB ({q['peak_rss_bytes_before_build'] / 2**20:.0f} MiB before the build); "
                  f"first quantum ready {q['seconds_to_first_quantum'] * 1000:.0f} ms after; save "
                  f"{graph['qgraph_save']['seconds']:.1f} s ({graph['qgraph_save']['bytes'] / 2**20:.0f} MiB), load "
                  f"{graph['qgraph_load']['seconds']:.1f} s")
    result = {
        **w.stamp("qgraph-large"), "scale": scale.as_dict(), **w.environment(), "tmpdir": tempfile.gettempdir(),
        "timings": {k: v for k, v in graph.items() if k != "ok"},
        "qgraph_seconds": q["seconds"], "qgraph_cpu_seconds": q["cpu_seconds"], "quanta": q["quanta"],
        "targets": LARGE_TARGETS, "peak_rss_bytes": peak,
    }
    w.save_json(result, args.json, echo=True)
    if not graph["ok"]:
        console.print("[red]wrong quanta count[/red]")
    return 0 if graph["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
