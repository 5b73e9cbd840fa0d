"""Server benchmark: Q1, get and put through ``skybutler serve`` with 1 and 8 concurrent
clients, against the local Butler on the same repository; and the peak memory of both
processes while a large data-ID answer streams from the server to a client.

The repository (SQLite + local files) has the W1 records of 400 visits and
``--detectors`` detectors (2,500 by default: the (visit, detector) data IDs number
1,000,000), and one ``metrics`` dataset per data ID of visits 1-300 and detectors
0-25 (7,800), so Q1 (``visit > 100 AND visit <= 300 AND detector IN (1..25)``,
find-first) returns 5,000 refs.  The server runs as its own process
(``python -m skybutler.cli serve``) on loopback; concurrent clients are separate
processes, each with its own remote Butler.  Figures:

- Q1: queries per second (each returning all 5,000 refs), local vs 1 and 8 clients;
- get: datasets read per second (a seeded sample of data IDs, each found then read);
- put: datasets written per second, one ``put`` per dataset, each client into its own RUN;
- stream: ``query_data_ids(["visit", "detector"])`` iterated through the remote butler
  (rows counted, not kept), with the peak RSS of the client and of the server during
  the stream (peaks reset through ``/proc/PID/clear_refs`` first; Linux only), beside
  their RSS before it.

    python benchmarks/bench_server.py [--json FILE] [--quick] [--detectors N] [--stream-only]

``--quick`` streams 100,000 rows (250 detectors) and does fewer operations.  Each
figure is one timed pass (the machine is shared: compare figures of one run).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serving  # noqa: E402
import workload  # noqa: E402
from skybutler import Butler  # noqa: E402

Q1_WHERE = "visit > 100 AND visit <= 300 AND detector IN (1..25)"
RUN = "w1/metrics"


def build(root: Path, detectors: int) -> None:
    scale = workload.Scale(n_visits=400, n_detectors=detectors)
    butler = Butler.create(root)
    for element in ("instrument", "band", "physical_filter", "detector", "day_obs", "visit"):
        butler.insert_records(element, workload.RECORD_BUILDERS[element](scale))
    workload.register_metrics(butler)
    items = [(workload.metrics_payload(v, d), {"instrument": "Cam", "visit": v, "detector": d})
             for v in range(1, 301) for d in range(26)]
    butler.put_many("metrics", items, run=RUN)
    butler.close()


def reset_peak(pid: int | str) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")


# -- the operations, each run by one client ------------------------------------------------

def q1(location: str, token: str | None, n: int) -> int:
    butler = Butler(location, token=token, collections=RUN)
    rows = 0
    for _ in range(n):
        rows += sum(1 for _ in butler.query_datasets("metrics", Q1_WHERE))
    return rows


def gets(location: str, token: str | None, n: int, seed: int) -> int:
    butler = Butler(location, token=token, collections=RUN)
    sample = [d for d in workload.sample_data_ids(workload.Scale(n_visits=300, n_detectors=26), n, seed=seed)]
    for data_id in sample:
        butler.get("metrics", data_id)
    return len(sample)


def puts(location: str, token: str | None, n: int, client: int) -> int:
    butler = Butler(location, token=token, run=f"bench/put{client}-{time.time_ns()}")
    for i in range(n):
        butler.put(workload.metrics_payload(1 + i % 300, i % 26, client), "metrics", instrument="Cam",
                   visit=1 + i % 300, detector=i % 26)
    return n


def timed(function: Any, clients: int, location: str, token: str | None, *args: Any) -> dict[str, Any]:
    """Run ``function`` in ``clients`` processes at once; operations per second over the wall time."""
    if clients == 1:
        start = time.perf_counter()
        count = function(location, token, *args, 0)
        seconds = time.perf_counter() - start
    else:
        with ProcessPoolExecutor(clients) as pool:
            start = time.perf_counter()
            count = sum(pool.map(function, *zip(*[(location, token, *args, c) for c in range(clients)])))
            seconds = time.perf_counter() - start
    return {"clients": clients, "operations": count, "seconds": round(seconds, 3),
            "per_second": round(count / seconds, 1)}


def q1_job(location: str, token: str | None, n: int, _client: int) -> int:
    q1(location, token, n)
    return n


def stream(url: str, token: str, server_pid: int) -> dict[str, Any]:
    butler = Butler(url, token=token)
    results = butler.query_data_ids(["visit", "detector"])
    before = {"client_rss_mib": serving.rss_kib("self", "VmRSS") / 1024,
              "server_rss_mib": serving.rss_kib(server_pid, "VmRSS") / 1024}
    reset_peak("self")
    reset_peak(server_pid)
    start = time.perf_counter()
    rows = sum(1 for _ in results)
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
            **{k: round(v, 1) for k, v in before.items()},
            "client_peak_rss_mib": round(serving.rss_kib("self", "VmHWM") / 1024, 1),
            "server_peak_rss_mib": round(serving.rss_kib(server_pid, "VmHWM") / 1024, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="Write the figures here as JSON.")
    parser.add_argument("--quick", action="store_true", help="A smaller stream and fewer operations.")
    parser.add_argument("--detectors", type=int, help="Detectors (the stream has 400 x this many rows).")
    parser.add_argument("--stream-only", action="store_true", help="Only the streaming figure.")
    args = parser.parse_args()
    detectors = args.detectors or (250 if args.quick else 2500)
    n_q1, n_get, n_put = (2, 50, 50) if args.quick else (5, 200, 200)
    with tempfile.TemporaryDirectory(prefix="bench_server_") as scratch:
        root = Path(scratch) / "repo"
        start = time.perf_counter()
        build(root, detectors)
        print(f"built the repository in {time.perf_counter() - start:.1f} s")
        with serving.served(root, "bench_server") as (url, token, server_pid):
            figures: dict[str, Any] = {"q1": {}, "get": {}, "put": {}}
            local = str(root)
            if not args.stream_only:
                figures["q1"]["local"] = timed(q1_job, 1, local, None, n_q1)
                figures["get"]["local"] = timed(gets, 1, local, None, n_get)
                figures["put"]["local"] = timed(puts, 1, local, None, n_put)
            for clients in () if args.stream_only else (1, 8):
                figures["q1"][f"server_{clients}"] = timed(q1_job, clients, url, token, n_q1)
                figures["get"][f"server_{clients}"] = timed(gets, clients, url, token, n_get)
                figures["put"][f"server_{clients}"] = timed(puts, clients, url, token, n_put)
            for name, entries in figures.items():
                for where, entry in entries.items():
                    print(f"{name:4s} {where:9s} {entry['per_second']:>9} /s  ({entry['operations']} in "
                          f"{entry['seconds']} s)")
            figures["stream"] = stream(url, token, server_pid)
            print("stream", json.dumps(figures["stream"]))
    figures["environment"] = workload.environment()
    workload.save_json(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
