"""Export and import of many datasets: datasets per second and peak memory, each way.

    python benchmarks/bench_export_import.py [--datasets N[,N...]] [--json FILE] [--quick] [--keep DIR]
                                             [--export-only] [--server]

For each N, a repository of N ``metrics`` datasets (W1's 10-float dicts over N/50 visits x 50
detectors, with W1's dimension records) is built with ``put_many`` (not timed), exported
whole to a directory (``export_datasets``, transfer ``copy``) and imported into a new
repository (``import_datasets``, transfer ``copy``).  Export and import each run in a
forked child, so each phase's peak resident memory is its own (the parent's memory at
the fork is reported beside it as the baseline).  Give two sizes a decade apart
(``--datasets 20000,200000``, the default) to see whether memory is flat: the last lines
compare each phase's peak at the largest size with its peak at the smallest.  Wall and
CPU seconds are reported for each phase (on a shared machine the CPU figure is the steadier
one); set ``TMPDIR=/dev/shm`` to keep the disk out of the figures.  ``--keep DIR`` keeps
the built source repositories in DIR and reuses them on the next run (building 200,000
datasets takes longer than exporting them).  ``--quick``: 5,000 datasets, for a smoke run.
``--server``: also export from the source served by ``skybutler serve`` (its own process, on
loopback) and import into a served new repository, with the client's and the server's peak
RSS of each phase.  ``--export-only``: no import (for the largest sizes, whose source, export
and target would not all fit in ``/dev/shm``).

Memory at the largest sizes: ``--datasets 200000,1000000`` (or ``200000,2000000``) shows
whether the export's and the import's peaks stay flat past what a 200,000 run can reveal (an
export's record of the IDs it has taken grew 16 bytes a dataset until it was bounded).  Each
dataset is a file, and a file of ``/dev/shm`` takes at least 4 KiB of memory: a million datasets
need about 4 GiB for each of the source (put it on disk with ``--keep``), the export and the
target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serving  # noqa: E402
import workload as w  # noqa: E402
from skybutler import Butler  # noqa: E402
from skybutler.repository_transfer import export_datasets, import_datasets  # noqa: E402

TARGETS = {"export_per_s": 5000.0, "import_per_s": 5000.0}


def rss_bytes() -> int:
    """Resident memory of this process now."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def in_child(fn) -> dict[str, Any]:
    """:func:`workload.in_child`, its result a count of datasets and their rate."""
    out = w.in_child(fn)
    out["count"] = out.pop("result")
    out["rate_per_s"] = w.rate(out["count"], out["seconds"])
    return out


def through_server(work: Path, source: Path, n: int) -> dict[str, Any]:
    """Export from the served source and import into a served new repository (each phase's client
    in a child; the server's peak RSS read from /proc before it stops)."""
    out: dict[str, Any] = {}
    with serving.served(source, "bench_export_import") as (url, token, pid):
        def export() -> int:
            with Butler(url, token=token, collections=[w.METRICS_RUN]) as butler:
                return export_datasets(butler, butler.query_datasets(w.METRICS_TYPE), work / "remote-export")

        out["export"] = in_child(export)
        out["export"]["server_peak_rss_bytes"] = serving.rss_kib(pid, "VmHWM") * 1024
        out["export"]["server_cpu_seconds"] = serving.cpu_seconds(pid)
    Butler.create(work / "remote-target").close()
    with serving.served(work / "remote-target", "bench_export_import") as (url, token, pid):
        def import_() -> int:
            with Butler(url, token=token) as butler:
                return import_datasets(butler, work / "remote-export")

        out["import"] = in_child(import_)
        out["import"]["server_peak_rss_bytes"] = serving.rss_kib(pid, "VmHWM") * 1024
        out["import"]["server_cpu_seconds"] = serving.cpu_seconds(pid)
    assert out["export"]["count"] == out["import"]["count"] == n
    return out


def build(root: Path, scale: w.Scale) -> None:
    with Butler.create(root) as butler:
        w.register_dimensions(butler, scale)
        w.register_metrics(butler)
        w.put_metrics(butler, scale, batch=20_000)


def run_size(n: int, keep: Path | None, server: bool = False, export_only: bool = False) -> dict[str, Any]:
    """Build (or reuse) a source of ``n`` datasets, export it and import it (unless ``export_only``);
    the figures."""
    scale = w.Scale(n_visits=max(1, n // 50), n_detectors=50)
    work = Path(tempfile.mkdtemp(prefix="skybutler-bench-export-"))
    source = (keep / f"source-{scale.n_datasets}") if keep else work / "source"
    try:
        if not (source / "butler.yaml").exists():
            shutil.rmtree(source, ignore_errors=True)
            in_child(lambda: build(source, scale) or scale.n_datasets)  # keeps this process small
        baseline = rss_bytes()

        def export() -> int:
            with Butler(source, collections=[w.METRICS_RUN]) as butler:
                return export_datasets(butler, butler.query_datasets(w.METRICS_TYPE), work / "export")

        def import_() -> int:
            with Butler.create(work / "target") as butler:
                return import_datasets(butler, work / "export")

        def check() -> int:
            with Butler(work / "target", collections=[w.METRICS_RUN]) as butler:
                assert butler.query_datasets(w.METRICS_TYPE).count() == scale.n_datasets
                ref = butler.find_dataset(w.METRICS_TYPE, instrument=w.INSTRUMENT, visit=scale.n_visits, detector=7)
                assert butler.get(ref) == w.metrics_payload(scale.n_visits, 7)
            return scale.n_datasets

        exported = in_child(export)
        assert exported["count"] == scale.n_datasets
        if export_only:
            return {"datasets": scale.n_datasets, "export_per_s": exported["rate_per_s"], "export": exported,
                    "baseline_rss_bytes": baseline}
        imported = in_child(import_)
        w.in_child(check)  # in a child too: the next size's forks start from the same small parent
        remote = through_server(work, source, scale.n_datasets) if server else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"datasets": scale.n_datasets, "export_per_s": exported["rate_per_s"],
            "import_per_s": imported["rate_per_s"], "export": exported, "import": imported,
            "baseline_rss_bytes": baseline, **{f"server_{k}": v for k, v in remote.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="20000,200000", help="one size or several, comma-separated")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--quick", action="store_true", help="5,000 datasets, for a smoke run")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the built source repositories here")
    parser.add_argument("--server", action="store_true", help="also export and import through a server")
    parser.add_argument("--export-only", action="store_true", help="export only, no import")
    args = parser.parse_args(argv)
    if args.server and args.export_only:
        parser.error("--server exports and imports; it cannot go with --export-only")
    sizes = [5_000] if args.quick else [int(n) for n in args.datasets.split(",")]
    load_before = os.getloadavg()[0]
    runs = []
    for n in sizes:
        fig = run_size(n, args.keep, args.server, args.export_only)
        runs.append(fig)
        print(f"export/import of {fig['datasets']:,} datasets (files in {tempfile.gettempdir()}; parent RSS at "
              f"fork {fig['baseline_rss_bytes'] / 2**20:.0f} MiB; 1-minute load now {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} CPUs)", flush=True)
        for label in ("export", "import", "server_export", "server_import"):
            if label not in fig:
                continue
            f = fig[label]
            server = (f"; server {f['server_cpu_seconds']:.2f} s CPU, peak RSS "
                      f"{f['server_peak_rss_bytes'] / 2**20:.0f} MiB") if "server_cpu_seconds" in f else ""
            print(f"  {label:13s} {f['rate_per_s']:>8,.0f} datasets/s  ({f['seconds']:.2f} s wall, "
                  f"{f['cpu_seconds']:.2f} s CPU = {w.rate(f['count'], f['cpu_seconds']):,.0f} per CPU-second; "
                  f"peak RSS {f['peak_rss_bytes'] / 2**20:.0f} MiB{server})", flush=True)
    largest = runs[-1]
    figures = {k: largest[k] for k in TARGETS if k in largest}
    doc = {"benchmark": "bench_export_import", "datasets": largest["datasets"], **w.environment(), **figures,
           "targets": TARGETS, "targets_met": {k: figures[k] >= v for k, v in TARGETS.items() if k in figures},
           "runs": runs,
           "tmpdir": tempfile.gettempdir(), "load_avg_1m_before": load_before, "load_avg_1m_after": os.getloadavg()[0]}
    if len(runs) > 1:
        smallest = runs[0]
        doc["peak_rss_growth"] = {}
        for label in [k for k in ("export", "import", "server_export", "server_import") if k in largest]:
            small, large = smallest[label]["peak_rss_bytes"], largest[label]["peak_rss_bytes"]
            doc["peak_rss_growth"][label] = large / small
            if "server_peak_rss_bytes" in largest[label]:
                doc["peak_rss_growth"][f"{label}_server"] = (largest[label]["server_peak_rss_bytes"]
                                                             / smallest[label]["server_peak_rss_bytes"])
            print(f"  {label} peak RSS at {largest['datasets']:,}: {large / 2**20:.0f} MiB, at {smallest['datasets']:,}: "
                  f"{small / 2**20:.0f} MiB ({large / small:.2f}x)")
    w.save_json(doc, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
