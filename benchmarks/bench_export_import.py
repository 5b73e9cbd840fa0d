"""Export and import of many datasets: datasets per second and peak memory, each way.

    python benchmarks/bench_export_import.py [--datasets N] [--json FILE] [--quick]

A repository of N ``metrics`` datasets (W1's 10-float dicts over N/50 visits x 50
detectors, with W1's dimension records) is built with ``put_many`` (not timed), exported
whole to a directory (``export_datasets``, transfer ``copy``) and imported into a new
repository (``import_datasets``, transfer ``copy``).  Export and import each run in a
forked child, so each phase's peak resident memory is its own (the parent's memory at
the fork is reported beside it as the baseline); "memory flat" means the peaks stay
near the baseline as N grows tenfold.  Wall and CPU seconds are reported for each phase;
set ``TMPDIR=/dev/shm`` to keep the disk out of the figures.  N defaults to 200,000
(``--quick``: 5,000).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

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


def build(root: Path, scale: w.Scale) -> None:
    with Butler.create(root) as butler:
        w.register_dimensions(butler, scale)
        w.register_metrics(butler)
        w.put_metrics(butler, scale, batch=20_000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=200_000)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--quick", action="store_true", help="5,000 datasets, for a smoke run")
    args = parser.parse_args(argv)
    n = 5_000 if args.quick else args.datasets
    scale = w.Scale(n_visits=max(1, n // 50), n_detectors=50)
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="skybutler-bench-export-"))
    try:
        built = in_child(lambda: build(work / "source", scale) or scale.n_datasets)  # keeps this process small
        baseline = rss_bytes()

        def export() -> int:
            with Butler(work / "source", collections=[w.METRICS_RUN]) as butler:
                return export_datasets(butler, butler.query_datasets(w.METRICS_TYPE), work / "export")

        def import_() -> int:
            with Butler.create(work / "target") as butler:
                return import_datasets(butler, work / "export")

        exported = in_child(export)
        imported = in_child(import_)
        with Butler(work / "target", collections=[w.METRICS_RUN]) as butler:
            assert butler.query_datasets(w.METRICS_TYPE).count() == scale.n_datasets
            ref = butler.find_dataset(w.METRICS_TYPE, instrument=w.INSTRUMENT, visit=scale.n_visits, detector=7)
            assert butler.get(ref) == w.metrics_payload(scale.n_visits, 7)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = {"export_per_s": exported["rate_per_s"], "import_per_s": imported["rate_per_s"]}
    doc = {"benchmark": "bench_export_import", "datasets": scale.n_datasets, **w.environment(), **figures,
           "targets": TARGETS, "targets_met": {k: figures[k] >= v for k, v in TARGETS.items()},
           "export": exported, "import": imported, "baseline_rss_bytes": baseline, "build_seconds": built["seconds"],
           "tmpdir": tempfile.gettempdir(), "load_avg_1m_before": load_before, "load_avg_1m_after": os.getloadavg()[0]}
    print(f"export/import of {scale.n_datasets:,} datasets (files in {tempfile.gettempdir()}; 1-minute load "
          f"{load_before:.1f} -> {doc['load_avg_1m_after']:.1f} on {os.cpu_count()} CPUs; parent RSS at fork "
          f"{baseline / 2**20:.0f} MiB)")
    for label, fig in (("export", exported), ("import", imported)):
        print(f"  {label:7s} {fig['rate_per_s']:>8,.0f} datasets/s  ({fig['seconds']:.2f} s wall, {fig['cpu_seconds']:.2f} s "
              f"CPU = {w.rate(fig['count'], fig['cpu_seconds']):,.0f} per CPU-second; peak RSS "
              f"{fig['peak_rss_bytes'] / 2**20:.0f} MiB)")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
