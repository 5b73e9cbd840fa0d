"""Core butler benchmark: WORKLOAD.md steps 1 (create), 2 (records), 3 (put) and 6 (get).

    python benchmarks/bench_core.py [--json FILE] [--quick] [--keep]

Every repository is a fresh SQLite registry + local datastore in a new directory
under TMPDIR (/tmp by default), or /dev/shm with ``--tmpfs`` (removed at the end unless ``--keep``).  Cheap steps report the median
of 3 repetitions, the 20,000-put steps a single run; every figure says which.
Rates are wall-clock, as the workload asks; put, put_many and get also report
their rate per CPU-second of this process, which a busy host disturbs far less.
``--quick`` runs a 10x smaller workload (40 visits) for CI smoke tests.  The exit
status is 1 if a read-back check fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import workload as w
from skybutler import Butler

TARGETS = {"puts_per_s": 1_000, "put_many_per_s": 10_000, "gets_per_s": 2_000}
"""Rates the project aims for (from the performance issue)."""

REPS = 3

console = Console(stderr=True, highlight=False)


class Bench:
    """One benchmark run: a work directory of fresh repositories and the results so far."""

    def __init__(self, scale: w.Scale, n_gets: int, workdir: Path):
        self.scale = scale
        self.n_gets = n_gets
        self.workdir = workdir
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.payloads: list[tuple[dict[str, float], dict[str, Any]]] = []
        self.timings: dict[str, Any] = {}
        self.notes: list[str] = list(w.UNIVERSE_NOTES)
        self.failures: list[str] = []
        self._count = 0

    def new_root(self, label: str) -> Path:
        self._count += 1
        return self.workdir / f"{self._count:02d}-{label}"

    def prepared_repo(self, label: str, **kwargs: Any) -> Butler:
        """A fresh repository with every dimension record and the metrics dataset type (untimed)."""
        butler = Butler.create(self.new_root(label), **kwargs)
        w.register_dimensions(butler, self.scale, self.records)
        w.register_metrics(butler)
        return butler

    # -- preparation --------------------------------------------------------------

    def prepare(self) -> None:
        start = time.perf_counter()
        self.records = w.build_records(self.scale)
        self.payloads = [(w.metrics_payload(d["visit"], d["detector"]), d) for d in w.metrics_data_ids(self.scale)]
        self.timings["build_workload"] = {**w.summarize([time.perf_counter() - start]),
                                          "note": "building records and payloads in memory; not a butler figure"}

    # -- step 1 -------------------------------------------------------------------

    def create_repo(self) -> None:
        times = []
        for _ in range(REPS):
            root = self.new_root("create")
            start = time.perf_counter()
            butler = Butler.create(root)
            times.append(time.perf_counter() - start)
            butler.close()
        self.timings["create_repo"] = w.summarize(times)

    # -- step 2 -------------------------------------------------------------------

    def register_dimensions(self) -> Path:
        """Median of 3, each into a fresh repository; returns the last one's root (step 3a reuses it)."""
        totals, per_element = [], {e: [] for e in w.ELEMENT_ORDER}
        root = None
        for _ in range(REPS):
            root = self.new_root("records")
            butler = Butler.create(root)
            start = time.perf_counter()
            timings = w.register_dimensions(butler, self.scale, self.records)
            totals.append(time.perf_counter() - start)
            butler.close()
            for element, t in timings.items():
                per_element[element].append(t["seconds"])
        self.timings["register_dimensions"] = {
            **w.summarize(totals),
            "records": sum(len(r) for r in self.records.values()),
            "per_element": {e: {**w.summarize(v), "records": len(self.records[e])} for e, v in per_element.items()},
        }
        return root

    # -- step 3 -------------------------------------------------------------------

    def put_one_at_a_time(self, root: Path) -> Path:
        """(a) one put call per dataset, data ID as plain key/values, chunk rates along the way."""
        butler = Butler(root, run=w.METRICS_RUN)
        w.register_metrics(butler)
        n = len(self.payloads)
        chunk = 1000 if n >= 20_000 else max(1, n // 20)
        marks = []
        cpu = time.process_time()
        start = last = time.perf_counter()
        for i, (payload, data_id) in enumerate(self.payloads, 1):
            butler.put(payload, w.METRICS_TYPE, **data_id)
            if i % chunk == 0:
                now = time.perf_counter()
                marks.append(chunk / (now - last))
                last = now
        total = time.perf_counter() - start
        cpu = time.process_time() - cpu
        stored = len(butler.registry.datasets.ids_in_collection(w.METRICS_RUN))
        butler.close()
        if stored != n:
            self.failures.append(f"put: {stored} datasets in {w.METRICS_RUN}, expected {n}")
        self.timings["put"] = {**w.summarize([total]), "count": n, "rate_per_s": w.rate(n, total),
                               "cpu_seconds": cpu, "rate_per_cpu_s": w.rate(n, cpu),
                               "chunk_size": chunk, "chunk_rates_per_s": marks,
                               "chunk_rate_first": marks[0] if marks else None,
                               "chunk_rate_median": statistics.median(marks) if marks else None,
                               "chunk_rate_last": marks[-1] if marks else None}
        return root

    def outer_transaction_problem(self) -> str | None:
        """Whether ``with butler.transaction():`` around puts is safe; None if it is.

        A rolled-back transaction must leave no registry rows and no files, and the
        butler must keep working afterwards.
        """
        tiny = w.Scale(n_visits=2, n_detectors=2)
        root = self.new_root("txn-check")
        butler = Butler.create(root)
        w.register_dimensions(butler, tiny)
        w.register_metrics(butler)
        try:
            with butler.transaction():
                for data_id in w.metrics_data_ids(tiny):
                    butler.put({"x": 1.0}, w.METRICS_TYPE, data_id, run="txn/check")
                raise _Rollback
        except _Rollback:
            pass
        problems = []
        left = [p for p in root.rglob("*.json")]
        if left:
            problems.append(f"a rolled-back transaction left {len(left)} published file(s) behind")
        try:
            butler.put({"x": 1.0}, w.METRICS_TYPE, next(w.metrics_data_ids(tiny)), run="txn/check")
        except Exception as err:  # noqa: BLE001 - any failure means "not usable"
            problems.append(f"the next put failed with {type(err).__name__}: {err}")
        butler.close()
        return "; ".join(problems) or None

    def put_in_transaction(self) -> None:
        """(b) the same puts inside one explicit transaction, if that is safe to do."""
        problem = self.outer_transaction_problem()
        if problem is not None:
            reason = f"butler.transaction() was tested and is not safe around puts: {problem}"
            self.timings["put_in_transaction"] = {"skipped": True, "reason": reason}
            self.notes.append(f"step 3(b) skipped: {reason}")
            return
        butler = self.prepared_repo("put-txn", run=w.METRICS_RUN)
        start = time.perf_counter()
        with butler.transaction():
            for payload, data_id in self.payloads:
                butler.put(payload, w.METRICS_TYPE, **data_id)
        total = time.perf_counter() - start
        butler.close()
        n = len(self.payloads)
        self.timings["put_in_transaction"] = {**w.summarize([total]), "count": n, "rate_per_s": w.rate(n, total),
                                              "api": "with butler.transaction(): butler.put(...)"}

    def put_many(self) -> None:
        """(c) every dataset in one put_many call (one transaction), on a fresh repository."""
        butler = self.prepared_repo("put-many", run=w.METRICS_RUN)
        n = len(self.payloads)
        cpu = time.process_time()
        start = time.perf_counter()
        refs = butler.put_many(w.METRICS_TYPE, self.payloads)
        total = time.perf_counter() - start
        cpu = time.process_time() - cpu
        butler.close()
        if len(refs) != n:
            self.failures.append(f"put_many returned {len(refs)} refs, expected {n}")
        self.timings["put_many"] = {**w.summarize([total]), "count": n, "calls": 1, "rate_per_s": w.rate(n, total),
                                    "cpu_seconds": cpu, "rate_per_cpu_s": w.rate(n, cpu)}

    # -- step 6 -------------------------------------------------------------------

    def get(self, root: Path) -> None:
        """(a) by data ID with the default collection, (b) by refs resolved beforehand; median of 3."""
        sample = w.sample_data_ids(self.scale, self.n_gets)
        expected = [w.metrics_payload(d["visit"], d["detector"]) for d in sample]
        butler = Butler(root, collections=[w.METRICS_RUN])  # a newly opened client

        def timed(read, items: list[Any]) -> tuple[list[float], list[Any]]:
            times, got = [], []
            for _ in range(REPS):
                cpu = time.process_time()
                start = time.perf_counter()
                got = [read(item) for item in items]
                times.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu)
            return times, got

        cpus: list[float] = []
        times, got = timed(lambda d: butler.get(w.METRICS_TYPE, **d), sample)
        self._check("get by data ID", got, expected)
        self.timings["get_by_data_id"] = {**w.summarize(times), "count": len(sample),
                                          "rate_per_s": w.rate(len(sample), statistics.median(times)),
                                          "cpu_seconds": statistics.median(cpus),
                                          "rate_per_cpu_s": w.rate(len(sample), statistics.median(cpus))}
        cpus.clear()

        # (b) as the workload says: refs from one query, each read as it came (a fresh query
        # per repetition, so each one includes looking up its batches' files)
        wanted = {(d["visit"], d["detector"]) for d in sample}

        def query_then_read(_: Any) -> list[Any]:
            refs = [r for r in butler.query_datasets(w.METRICS_TYPE)
                    if (r.data_id["visit"], r.data_id["detector"]) in wanted]
            refs.sort(key=lambda r: order[r.data_id["visit"], r.data_id["detector"]])
            return [butler.get(r) for r in refs]

        order = {(d["visit"], d["detector"]): i for i, d in enumerate(sample)}
        times, got = timed(query_then_read, [None])
        self._check("get by query ref", got[0], expected)
        self.timings["get_by_query_ref"] = {
            **w.summarize(times), "count": len(sample), "rate_per_s": w.rate(len(sample), statistics.median(times)),
            "cpu_seconds": statistics.median(cpus), "rate_per_cpu_s": w.rate(len(sample), statistics.median(cpus)),
            "note": f"one query of all {self.scale.n_datasets:,} datasets, then a get of each sampled ref; "
                    "the query and its file look-ups are inside the timing"}
        cpus.clear()

        # (c) the issue's loop: every ref of one query, each read as it came (query included)
        def read_every_ref(_: Any) -> list[Any]:
            return [(ref.data_id, butler.get(ref)) for ref in butler.query_datasets(w.METRICS_TYPE)]

        times, got = timed(read_every_ref, [None])
        self._check("get of every query ref", [payload for _, payload in got[0]],
                    [w.metrics_payload(d["visit"], d["detector"]) for d, _ in got[0]]
                    + [None] * (self.scale.n_datasets - len(got[0])))
        self.timings["get_every_query_ref"] = {
            **w.summarize(times), "count": self.scale.n_datasets,
            "rate_per_s": w.rate(self.scale.n_datasets, statistics.median(times)),
            "cpu_seconds": statistics.median(cpus),
            "rate_per_cpu_s": w.rate(self.scale.n_datasets, statistics.median(cpus)),
            "note": "for ref in butler.query_datasets(...): butler.get(ref), over every dataset"}
        cpus.clear()

        start = time.perf_counter()
        refs = [butler.find_dataset(w.METRICS_TYPE, d) for d in sample]
        resolve = time.perf_counter() - start
        times, got = timed(butler.get, refs)
        self._check("get by ref", got, expected)
        self.timings["get_by_ref"] = {**w.summarize(times), "count": len(sample),
                                      "rate_per_s": w.rate(len(sample), statistics.median(times)),
                                      "cpu_seconds": statistics.median(cpus),
                                      "rate_per_cpu_s": w.rate(len(sample), statistics.median(cpus)),
                                      "resolve_seconds": resolve,
                                      "note": "refs resolved beforehand with find_dataset, one per data ID (untimed)"}
        butler.close()

    def _check(self, what: str, got: list[Any], expected: list[Any]) -> None:
        bad = sum(1 for g, e in zip(got, expected) if g != e) + abs(len(got) - len(expected))
        if bad:
            self.failures.append(f"{what}: {bad} of {len(expected)} datasets read back wrong")

    # -- everything ---------------------------------------------------------------

    def run(self) -> None:
        self.timings["fs_create_probe_us"] = w.file_creation_probe(self.workdir)
        _progress("building the workload in memory")
        self.prepare()
        _progress("step 1: create_repo")
        self.create_repo()
        _progress("step 2: register_dimensions")
        root = self.register_dimensions()
        _progress(f"step 3(a): {len(self.payloads):,} puts, one call each")
        self.put_one_at_a_time(root)
        _progress("step 3(b): puts inside one explicit transaction")
        self.put_in_transaction()
        _progress("step 3(c): put_many on a fresh repository")
        self.put_many()
        _progress(f"step 6: {self.n_gets:,} gets by data ID and by ref")
        self.get(root)


class _Rollback(Exception):
    """Raised on purpose to roll a transaction back."""


def _progress(message: str) -> None:
    console.print(f"[dim]{datetime.datetime.now():%H:%M:%S}[/dim] {message}")


def result_document(bench: Bench, quick: bool, started: str, wall: float) -> dict[str, Any]:
    t = bench.timings
    figures = {
        "puts_per_s": t["put"]["rate_per_s"],
        "put_many_per_s": t["put_many"]["rate_per_s"],
        "gets_per_s": t["get_by_data_id"]["rate_per_s"],
        "gets_by_ref_per_s": t["get_by_ref"]["rate_per_s"],
        "gets_by_query_ref_per_s": t["get_by_query_ref"]["rate_per_s"],
        "gets_of_every_query_ref_per_s": t["get_every_query_ref"]["rate_per_s"],
    }
    txn = t.get("put_in_transaction", {})
    if not txn.get("skipped"):
        figures["puts_in_transaction_per_s"] = txn.get("rate_per_s")
    rss = w.peak_rss_bytes()
    return {
        "benchmark": "bench_core",
        "workload": "W1 (quick: 10x smaller)" if quick else "W1",
        "quick": quick,
        "started_at": started,
        "wall_seconds": wall,
        "scale": {**bench.scale.as_dict(), "n_gets": bench.n_gets, "reps": REPS},
        **w.environment(),
        **figures,
        "targets": TARGETS,
        "targets_met": {k: figures[k] >= v for k, v in TARGETS.items()},
        "timings": t,
        "peak_rss_bytes": rss,
        "peak_rss_mib": rss / 2**20,
        "checks_failed": bench.failures,
        "notes": bench.notes,
    }


def _fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _stat(entry: dict[str, Any]) -> str:
    return f"median of {entry['reps']}" if entry["stat"] == "median" else "one run"


def _cpu(entry: dict[str, Any]) -> str:
    """The rate per CPU-second of this process: on a busy host, wall-clock rates mostly measure waiting."""
    return f"; {_fmt_rate(entry['rate_per_cpu_s'])}/CPU-s" if "rate_per_cpu_s" in entry else ""


def _target(doc: dict[str, Any], key: str) -> str:
    if key not in TARGETS:
        return ""
    ok = doc["targets_met"][key]
    return f"[{'green' if ok else 'red'}]≥{TARGETS[key]:,} {'met' if ok else 'missed'}[/]"


def print_report(doc: dict[str, Any]) -> None:
    t = doc["timings"]
    out = Console(highlight=False, width=max(Console().width, 132))
    table = Table(title=f"skybutler core benchmark: {doc['workload']}, {doc['scale']['n_visits']} visits x "
                        f"{doc['scale']['n_detectors']} detectors", title_justify="left")
    for name, justify in (("step", "left"), ("figure", "right"), ("unit", "left"), ("how", "left"),
                          ("target", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "how")
    table.add_row("1 create_repo", f"{t['create_repo']['seconds'] * 1000:,.1f}", "ms", _stat(t["create_repo"]), "")
    reg = t["register_dimensions"]
    table.add_row(f"2 register_dimensions ({reg['records']:,})", f"{reg['seconds']:,.2f}", "s", _stat(reg), "")
    for element, entry in reg["per_element"].items():
        table.add_row(f"    {element} ({entry['records']:,})", f"{entry['seconds'] * 1000:,.1f}", "ms",
                      _stat(entry), "")
    put = t["put"]
    table.add_row("3a put, one call each", _fmt_rate(put["rate_per_s"]), "puts/s",
                  f"one run of {put['count']:,} ({put['seconds']:,.1f} s){_cpu(put)}", _target(doc, "puts_per_s"))
    table.add_row(f"    {put['chunk_size']:,}-put chunks",
                  " / ".join(_fmt_rate(put[k]) for k in ("chunk_rate_first", "chunk_rate_median", "chunk_rate_last")),
                  "puts/s", "first / median / last chunk", "")
    txn = t["put_in_transaction"]
    if txn.get("skipped"):
        table.add_row("3b put in one transaction", "skipped", "", "see the note below", "")
    else:
        table.add_row("3b put in one transaction", _fmt_rate(txn["rate_per_s"]), "puts/s",
                      f"one run of {txn['count']:,}", "")
    many = t["put_many"]
    table.add_row("3c put_many, one call", _fmt_rate(many["rate_per_s"]), "datasets/s",
                  f"one run of {many['count']:,} ({many['seconds']:,.2f} s){_cpu(many)}",
                  _target(doc, "put_many_per_s"))
    g = t["get_by_data_id"]
    table.add_row("6a get by data ID", _fmt_rate(g["rate_per_s"]), "gets/s",
                  f"{_stat(g)} x {g['count']:,}{_cpu(g)}", _target(doc, "gets_per_s"))
    g = t["get_by_query_ref"]
    table.add_row("6b get by ref from one query", _fmt_rate(g["rate_per_s"]), "gets/s",
                  f"{_stat(g)} x {g['count']:,}, query included{_cpu(g)}", "")
    g = t["get_every_query_ref"]
    table.add_row("6c every ref of one query, read", _fmt_rate(g["rate_per_s"]), "gets/s",
                  f"{_stat(g)} x {g['count']:,}, query included{_cpu(g)}", "")
    g = t["get_by_ref"]
    table.add_row("    get by find_dataset ref", _fmt_rate(g["rate_per_s"]), "gets/s",
                  f"{_stat(g)} x {g['count']:,}{_cpu(g)}", "")
    table.add_row("peak RSS", f"{doc['peak_rss_mib']:,.0f}", "MiB", "ru_maxrss, whole run", "")
    out.print(table)
    v = doc["versions"]
    out.print(f"skybutler {v['skybutler']}, Python {v['python']}, SQLite {v['sqlite']}, "
              f"SQLAlchemy {v['sqlalchemy']} on {doc['host']['hostname']} ({doc['host']['cpu_count']} CPUs, "
              f"load {doc['host']['load_avg_1m']:.1f}); wall {doc['wall_seconds']:,.0f} s")
    for note in doc["notes"]:
        out.print(f"[yellow]note:[/yellow] {note}")
    for failure in doc["checks_failed"]:
        out.print(f"[red]check failed:[/red] {failure}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON to FILE")
    parser.add_argument("--quick", action="store_true", help="10x smaller workload, for CI smoke runs")
    parser.add_argument("--keep", action="store_true", help="keep the repositories (their directory is printed)")
    w.add_tmpfs_option(parser)
    args = parser.parse_args(argv)

    scale = w.Scale.quick() if args.quick else w.Scale()
    workdir = w.work_dir("skybutler-bench-core-", args.tmpfs)
    bench = Bench(scale, n_gets=100 if args.quick else 1000, workdir=workdir)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    start = time.perf_counter()
    try:
        bench.run()
    finally:
        if args.keep:
            console.print(f"repositories kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    doc = result_document(bench, args.quick, started, time.perf_counter() - start)
    print_report(doc)
    w.print_file_creation_probe(bench.timings["fs_create_probe_us"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        console.print(f"results written to {args.json}")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
