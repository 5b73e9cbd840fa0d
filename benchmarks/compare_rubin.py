"""The standard workload's queries (WORKLOAD.md steps 4-6) on skybutler and on the Rubin
butler, side by side in one process tree, with the ratios.

    python benchmarks/compare_rubin.py [--json FILE] [--tmpfs] [--rounds N] [--reps N] [--quick] [--keep DIR]

Both repositories hold the W1 data: the same dimension records (the Rubin one gets them
by importing a Rubin export that skybutler writes of the same records) and the 20,000
``metrics`` datasets in RUN ``w1/metrics``; skybutler's are stored with ``put_many``,
the Rubin butler's are registered with ``insertDatasets`` (its query figures need no
files).  Each butler then answers in its own child process, the two alternating for
``--rounds`` rounds of ``--reps`` timed runs of every query after one warm-up, so a
burst of load on a shared machine hits both; each figure is the minimum over all runs
(the least disturbed), with the median beside it, as wall and as CPU time of the child:

- ``q1_refs`` / ``q2_refs``: list the refs of Q1 (``visit > 100 AND visit <= 300 AND
  detector IN (1..25)``, 5,000) and Q2 (``band = 'r'``, 6,650);
- ``q1_count`` / ``q2_count``: count them;
- ``q1_data_ids``: the (visit, detector) data IDs of Q1 (5,000);
- ``get_q1_refs`` (skybutler only; the Rubin repository has no files): Q1's query, then a
  ``get`` of each of its 5,000 refs, as gets per second (of wall and of CPU time).

Every figure's row count is checked against the workload's formulas and against the other
butler's (exit status 1 if one differs).  The last line names the lowest ratio by CPU and
by wall time against the target (5x on every figure).

The work directory is under TMPDIR (/tmp by default), or /dev/shm with ``--tmpfs`` (no disk
state in the figures).  ``--keep DIR`` builds both repositories in DIR once and reuses them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload as w  # noqa: E402

Q1 = "visit > 100 AND visit <= 300 AND detector IN (1..25)"
Q2 = "band = 'r'"
RUBIN_STORAGE_CLASS = "StructuredDataDict"
SEED_TYPE = "seed"
SEED_RUN = "w1/seed"
#: The targets (issue 19): every query figure this many times the Rubin butler's; gets per second.
RATIO_TARGET = 5
GETS_TARGET = 20_000
FIGURES = ("q1_refs", "q2_refs", "q1_count", "q2_count", "q1_data_ids", "get_q1_refs")


# -- building --------------------------------------------------------------------------------


def build_skybutler(root: Path, scale: w.Scale) -> float:
    from skybutler import Butler

    start = time.perf_counter()
    butler = Butler.create(root, run=w.METRICS_RUN)
    w.register_dimensions(butler, scale)
    w.register_metrics(butler)
    w.put_metrics(butler, scale)
    butler.close()
    return time.perf_counter() - start


def build_rubin(root: Path, work: Path, scale: w.Scale) -> float:
    """The Rubin repository: W1's records through a Rubin export of a small seed repository
    (one tiny dataset per visit and per detector, so every record is exported), then the
    20,000 metrics datasets registered in one ``insertDatasets`` call."""
    from lsst.daf.butler import Butler as RubinButler
    from lsst.daf.butler import DatasetType

    from skybutler import Butler
    from skybutler.interchange.rubin_export import export_rubin

    start = time.perf_counter()
    seed = Butler.create(work / "seed", run=SEED_RUN)
    w.register_dimensions(seed, scale)
    seed.register_dataset_type(SEED_TYPE, w.METRICS_DIMENSIONS, "Dict")
    ids = {(v, 0) for v in range(1, scale.n_visits + 1)} | {(1, d) for d in range(scale.n_detectors)}
    refs = seed.put_many(SEED_TYPE, [({"v": v}, {"instrument": w.INSTRUMENT, "visit": v, "detector": d})
                                     for v, d in sorted(ids)])
    export_rubin(seed, refs, work / "seed_export")
    seed.close()
    RubinButler.makeRepo(str(root))
    rubin = RubinButler.from_config(str(root), writeable=True)
    rubin.import_(directory=str(work / "seed_export"), filename=str(work / "seed_export" / "export.yaml"),
                  transfer="copy")
    dtype = DatasetType(w.METRICS_TYPE, w.METRICS_DIMENSIONS, RUBIN_STORAGE_CLASS, universe=rubin.dimensions)
    rubin.registry.registerDatasetType(dtype)
    rubin.registry.registerRun(w.METRICS_RUN)
    rubin.registry.insertDatasets(w.METRICS_TYPE, list(w.metrics_data_ids(scale)), run=w.METRICS_RUN)
    rubin.close()
    return time.perf_counter() - start


# -- the queries, in a child process ------------------------------------------------------------


def skybutler_queries(root: Path) -> dict[str, Callable[[], int]]:
    from skybutler import Butler

    butler = Butler(root, collections=[w.METRICS_RUN])

    def read_q1() -> int:
        return len([butler.get(ref) for ref in butler.query_datasets(w.METRICS_TYPE, where=Q1)])

    return {
        "q1_refs": lambda: len(list(butler.query_datasets(w.METRICS_TYPE, where=Q1))),
        "q2_refs": lambda: len(list(butler.query_datasets(w.METRICS_TYPE, where=Q2))),
        "q1_count": lambda: butler.query_datasets(w.METRICS_TYPE, where=Q1).count(),
        "q2_count": lambda: butler.query_datasets(w.METRICS_TYPE, where=Q2).count(),
        "q1_data_ids": lambda: len(list(butler.query_data_ids(["visit", "detector"], where=Q1))),
        "get_q1_refs": read_q1,
    }


def rubin_queries(root: Path) -> dict[str, Callable[[], int]]:
    from lsst.daf.butler import Butler as RubinButler

    butler = RubinButler.from_config(str(root), collections=[w.METRICS_RUN])

    def count(where: str) -> int:
        with butler.query() as query:
            return query.where(where).datasets(w.METRICS_TYPE, collections=[w.METRICS_RUN]).count(exact=True)

    return {
        "q1_refs": lambda: len(butler.query_datasets(w.METRICS_TYPE, where=Q1, limit=None, explain=False)),
        "q2_refs": lambda: len(butler.query_datasets(w.METRICS_TYPE, where=Q2, limit=None, explain=False)),
        "q1_count": lambda: count(Q1),
        "q2_count": lambda: count(Q2),
        "q1_data_ids": lambda: len(butler.query_data_ids(["visit", "detector"], where=Q1, limit=None,
                                                         explain=False)),
    }


def child(which: str, root: Path, reps: int) -> dict[str, Any]:
    """Time every query of one butler: a warm-up, then ``reps`` runs (wall and CPU seconds)."""
    queries = (skybutler_queries if which == "skybutler" else rubin_queries)(root)
    out: dict[str, Any] = {}
    for name, fn in queries.items():
        rows = fn()
        wall, cpu = [], []
        for _ in range(reps):
            start, start_cpu = time.perf_counter(), time.process_time()
            n = fn()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            if n != rows:
                raise RuntimeError(f"{which} {name}: {rows} rows, then {n}")
        out[name] = {"rows": rows, "wall": wall, "cpu": cpu}
    return out


# -- the parent: rounds, minima, ratios ------------------------------------------------------------


def expected(scale: w.Scale) -> dict[str, int]:
    rows = w.expected_rows(scale)
    return {"q1_refs": rows["Q1"], "q2_refs": rows["Q2"], "q1_count": rows["Q1"], "q2_count": rows["Q2"],
            "q1_data_ids": rows["data_ids_Q1"], "get_q1_refs": rows["Q1"]}


def run_child(which: str, root: Path, reps: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", which, str(root), "--reps", str(reps)],
                          check=True, capture_output=True, text=True, env=os.environ.copy())
    return json.loads(done.stdout.splitlines()[-1])


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name in runs[0]:
        wall = [t for r in runs for t in r[name]["wall"]]
        cpu = [t for r in runs for t in r[name]["cpu"]]
        out[name] = {"rows": runs[0][name]["rows"], "min_ms": min(wall) * 1000, "median_ms": statistics.median(wall) * 1000,
                     "min_cpu_ms": min(cpu) * 1000, "median_cpu_ms": statistics.median(cpu) * 1000, "runs": len(wall)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the report as JSON to this file")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the two butlers (default 3)")
    parser.add_argument("--reps", type=int, default=5, help="timed runs of each query per round (default 5)")
    parser.add_argument("--quick", action="store_true", help="a 10x smaller workload (40 visits), for a smoke run")
    parser.add_argument("--keep", type=Path, help="build both repositories here once and reuse them")
    parser.add_argument("--no-rubin", action="store_true", help="skybutler only")
    parser.add_argument("--child", nargs=2, metavar=("BUTLER", "ROOT"), help=argparse.SUPPRESS)
    w.add_tmpfs_option(parser)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.reps)))
        return 0

    try:
        import lsst.daf.butler  # noqa: F401
        have_rubin = not args.no_rubin
    except ImportError:
        have_rubin = False
    scale = w.Scale.quick() if args.quick else w.Scale()
    work = args.keep if args.keep is not None else w.work_dir("skybutler-compare-rubin-", args.tmpfs)
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"benchmark": "compare_rubin", "workload": "W1 (quick)" if args.quick else "W1",
                              "scale": scale.as_dict(), "rounds": args.rounds, "reps": args.reps,
                              "work_dir": str(work), "file_system": w.file_system_of(work), **w.environment()}
    try:
        roots = {"skybutler": work / "skybutler", "rubin": work / "rubin"}
        build = {}
        if not (roots["skybutler"] / "butler.yaml").exists():
            build["skybutler_s"] = build_skybutler(roots["skybutler"], scale)
        if have_rubin and not (roots["rubin"] / "butler.yaml").exists():
            build["rubin_s"] = build_rubin(roots["rubin"], work, scale)
        report["build"] = build
        runs: dict[str, list[dict[str, Any]]] = {"skybutler": [], "rubin": []}
        for _ in range(args.rounds):
            for which in ("skybutler", "rubin") if have_rubin else ("skybutler",):
                runs[which].append(run_child(which, roots[which], args.reps))
        results = {which: summarize(r) for which, r in runs.items() if r}
        report["results"] = results
        want = expected(scale)
        failures = [f"{which} {name}: {entry['rows']} rows, expected {want[name]}"
                    for which, entries in results.items() for name, entry in entries.items()
                    if entry["rows"] != want[name]]
        failures += [f"{name}: skybutler {entry['rows']} rows, Rubin {results['rubin'][name]['rows']}"
                     for name, entry in results["skybutler"].items()
                     if name in results.get("rubin", {}) and entry["rows"] != results["rubin"][name]["rows"]]
        report["failures"] = failures
        ratios: dict[str, Any] = {}
        print(f"W1 queries, {scale.n_datasets:,} datasets; minimum (median) of {args.rounds} x {args.reps} runs; "
              f"{report['file_system']} at {work}; load {report['host']['load_avg_1m']:.1f}")
        print(f"{'figure':<13}{'rows':>7}  {'skybutler ms':>20}  {'cpu':>7}  {'Rubin ms':>20}  {'cpu':>7}  "
              f"{'ratio':>6} {'cpu':>6}")
        for name in FIGURES:
            sky = results["skybutler"].get(name)
            rub = results.get("rubin", {}).get(name)
            line = f"{name:<13}{sky['rows']:>7}  {sky['min_ms']:>9.2f} ({sky['median_ms']:>8.2f})  {sky['min_cpu_ms']:>7.2f}"
            if rub is not None:
                ratios[name] = {"wall": rub["min_ms"] / sky["min_ms"], "cpu": rub["min_cpu_ms"] / sky["min_cpu_ms"]}
                line += (f"  {rub['min_ms']:>9.2f} ({rub['median_ms']:>8.2f})  {rub['min_cpu_ms']:>7.2f}  "
                         f"{ratios[name]['wall']:>5.1f}x {ratios[name]['cpu']:>5.1f}x")
            if name == "get_q1_refs":
                report["gets_per_s_from_query_refs"] = sky["rows"] / sky["min_ms"] * 1000
                report["gets_per_cpu_s_from_query_refs"] = sky["rows"] / sky["min_cpu_ms"] * 1000
                line += (f"   = {report['gets_per_s_from_query_refs']:,.0f} gets/s, "
                         f"{report['gets_per_cpu_s_from_query_refs']:,.0f} per CPU-second (query included; "
                         f"target {GETS_TARGET:,})")
            print(line)
        report["ratios"] = ratios
        if ratios:
            lowest = {kind: min(ratios, key=lambda n: ratios[n][kind]) for kind in ("wall", "cpu")}
            report["lowest_ratio"] = {kind: {"figure": n, "ratio": ratios[n][kind]} for kind, n in lowest.items()}
            print(f"lowest ratio: {ratios[lowest['cpu']]['cpu']:.1f}x by CPU time ({lowest['cpu']}), "
                  f"{ratios[lowest['wall']]['wall']:.1f}x by wall time ({lowest['wall']}); target {RATIO_TARGET}x "
                  "on every figure (CPU time holds on a loaded machine; wall time needs a quiet one)")
        for failure in failures:
            print(f"WRONG ROW COUNT: {failure}", file=sys.stderr)
        w.save_json(report, args.json)
        return 1 if failures else 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
