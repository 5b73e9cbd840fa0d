"""Puts, gets and a typical query on each stack, with 1 and with 8 writer processes.

    python benchmarks/bench_stacks.py [--json FILE] [--quick]

Runs on SQLite + local files always, and on PostgreSQL (+ S3 if configured) when
``SKYBUTLER_TEST_POSTGRES_URL`` (and ``SKYBUTLER_TEST_S3_ENDPOINT``) are set, as
``.ci/services.sh`` provides.  Each stack gets a fresh repository with the W1 records
(200 visits x 50 detectors, or a tenth with --quick); the writers put one dataset per
call, each process into the same RUN, and the rates are datasets per second of wall
time for the whole group.  The query is W1's Q1 over the datasets written.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import workload as w  # noqa: E402
from skybutler import Butler  # noqa: E402

RUN = "bench/stacks"


def stacks() -> dict[str, dict[str, str | None]]:
    out: dict[str, dict[str, str | None]] = {"sqlite": {"registry": None, "datastore": None}}
    pg = os.environ.get("SKYBUTLER_TEST_POSTGRES_URL")
    if pg:
        out["postgres"] = {"registry": f"{pg}?schema=bench_{uuid.uuid4().hex[:8]}", "datastore": None}
    s3 = os.environ.get("SKYBUTLER_TEST_S3_ENDPOINT")
    if pg and s3:
        # Against moto's S3 server (a Python process on this machine) every object costs a
        # round trip to it: these figures measure the mock, not an object store.
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        bucket = os.environ.get("SKYBUTLER_TEST_S3_BUCKET", "skybutler-test")
        os.environ.setdefault("AWS_ENDPOINT_URL_S3", s3)
        out["postgres+s3"] = {"registry": f"{pg}?schema={schema}", "datastore": f"s3://{bucket}/{schema}"}
    return out


def _writer(root: str, data_ids: list[dict[str, Any]], start: Any, finished: Any) -> None:
    butler = Butler(root, run=RUN)
    start.wait()  # every writer has imported and opened the repository
    for data_id in data_ids:
        butler.put(w.metrics_payload(data_id["visit"], data_id["detector"]), w.METRICS_TYPE, **data_id)
    finished.put(time.time())  # before closing: process teardown is not part of the figure
    butler.close()


def time_writers(root: Path, data_ids: list[dict[str, Any]], n_proc: int) -> float:
    """Seconds for ``n_proc`` processes to put ``data_ids`` between them, one put per call."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(n_proc + 1)
    chunks = [data_ids[i::n_proc] for i in range(n_proc)]
    finished = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(root), chunk, start, finished)) for chunk in chunks]
    for p in procs:
        p.start()
    start.wait()
    began = time.time()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a writer process failed with exit code {p.exitcode}")
    return max(finished.get() for _ in procs) - began


def bench_stack(name: str, locations: dict[str, str | None], scale: w.Scale, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ids = list(w.metrics_data_ids(scale))
    half = len(ids) // 2
    root = work / name
    butler = Butler.create(root, **locations, collections=[RUN])
    w.register_dimensions(butler, scale)
    w.register_metrics(butler)
    butler.close()
    for n_proc, chunk in ((1, ids[:half]), (8, ids[half:])):
        seconds = time_writers(root, chunk, n_proc)
        out[f"puts_per_s_{n_proc}_writer{'s' if n_proc > 1 else ''}"] = w.rate(len(chunk), seconds)
    butler = Butler(root, collections=[RUN])
    assert butler.query_datasets(w.METRICS_TYPE).count() == len(ids), "a dataset was lost or duplicated"
    sample = w.sample_data_ids(scale, 500)
    times = []
    for _ in range(3):
        began = time.perf_counter()
        for data_id in sample:
            butler.get(w.METRICS_TYPE, **data_id)
        times.append(time.perf_counter() - began)
    out["gets_per_s"] = w.rate(len(sample), statistics.median(times))
    n = scale.n_visits
    where = f"visit > {n // 4} AND visit <= {3 * n // 4} AND detector IN (1..25)"
    times = []
    for _ in range(5):
        began = time.perf_counter()
        rows = len(list(butler.query_datasets(w.METRICS_TYPE, where)))
        times.append(time.perf_counter() - began)
    out["query_ms"] = statistics.median(times) * 1000
    out["query_rows"] = rows
    butler.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--quick", action="store_true", help="a tenth of the size, for a smoke run")
    args = parser.parse_args(argv)
    scale = w.Scale(n_visits=20 if args.quick else 200, n_detectors=50)
    results: dict[str, Any] = {"scale": scale.as_dict(), "environment": w.environment(), "stacks": {}}
    with tempfile.TemporaryDirectory(prefix="skybutler-bench-stacks-") as tmp:
        for name, locations in stacks().items():
            figures = bench_stack(name, locations, scale, Path(tmp))
            results["stacks"][name] = figures
            print(f"{name:12s} puts/s 1 writer {figures['puts_per_s_1_writer']:8,.0f}   "
                  f"8 writers {figures['puts_per_s_8_writers']:8,.0f}   gets/s {figures['gets_per_s']:8,.0f}   "
                  f"query {figures['query_ms']:6.1f} ms ({figures['query_rows']:,} rows)")
    results["peak_rss_bytes"] = w.peak_rss_bytes()
    w.save_json(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
