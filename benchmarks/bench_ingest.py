"""Benchmark of ingest: W1 step 7 (butler.ingest of 2,000 small JSON raws) and SimCam FITS raws.

W1 step 7 (see ../shared/benchmarks/WORKLOAD.md): 2,000 small JSON files
(exposures 1..40 x detectors 0..49, a 10-float dict each, written beforehand and
not timed) are ingested as ``raw`` (instrument, exposure, detector; storage
class ``Dict``) with transfer modes copy, direct and symlink, each repetition
into a new RUN ``w1/raw_{mode}_{rep}``, one ``butler.ingest`` call for all files.
The timed section includes building the per-file (path, data ID) list.  Median of
3 per mode, reported as files/s.

Extra (not in W1): SimCam raw FITS files through :func:`skybutler.ingest.ingest_raws`,
which also reads every header and registers the exposure records; one run
each with headers read in this process, in a process pool, and through ``skybutler serve``
(the files uploaded; the client's and the server's CPU reported).

Usage: ``python benchmarks/bench_ingest.py [--json FILE] [--quick]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload as w  # noqa: E402
from skybutler import Butler  # noqa: E402

MODES = ("copy", "direct", "symlink")
N_EXPOSURES = 40
N_DETECTORS = 50
RAW_ELEMENTS = ("instrument", "band", "physical_filter", "detector", "day_obs", "group", "exposure")
TARGETS = {"ingest_copy_files_per_s": 5000.0, "ingest_direct_files_per_s": 20000.0}


def write_raw_files(directory: Path, n_exposures: int = N_EXPOSURES, n_detectors: int = N_DETECTORS) -> list[Path]:
    """The pre-written JSON raws: one 10-float dict per (exposure, detector)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for exposure in range(1, n_exposures + 1):
        for detector in range(n_detectors):
            path = directory / f"raw_{exposure:03d}_{detector:02d}.json"
            path.write_text(json.dumps(w.metrics_payload(exposure, detector)))
            paths.append(path)
    return paths


def prepare_repo(root: Path) -> Butler:
    """A repository with the W1 records that raws need, and the ``raw`` dataset type (Dict)."""
    butler = Butler.create(root)
    records = w.build_records(w.Scale())
    for element in RAW_ELEMENTS:
        butler.insert_records(element, records[element])
    butler.register_dataset_type("raw", ["instrument", "exposure", "detector"], "Dict")
    return butler


def time_w1_ingest(butler: Butler, source: Path, reps: int, n_exposures: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n_files = n_exposures * N_DETECTORS
    for mode in MODES:
        seconds, cpu = [], []
        for rep in range(reps):
            start, cpu_start = time.perf_counter(), time.process_time()
            items = [(source / f"raw_{e:03d}_{d:02d}.json", {"instrument": w.INSTRUMENT, "exposure": e, "detector": d})
                     for e in range(1, n_exposures + 1) for d in range(N_DETECTORS)]
            refs = butler.ingest("raw", items, run=f"w1/raw_{mode}_{rep}", transfer=mode)
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - cpu_start)
            assert len(refs) == n_files
        entry = w.summarize(seconds)
        entry["files"] = n_files
        entry["rate_per_s"] = w.rate(n_files, entry["seconds"])
        # CPU seconds of this process (threads included): on a busy host wall time also
        # counts waiting for a CPU, this does not.
        entry["cpu_seconds"] = sorted(cpu)[len(cpu) // 2]
        entry["rate_per_cpu_s"] = w.rate(n_files, entry["cpu_seconds"])
        out[mode] = entry
    # A check that what went in reads back.
    ref = butler.find_dataset("raw", instrument=w.INSTRUMENT, exposure=7, detector=3, collections="w1/raw_copy_0")
    assert butler.get(ref) == w.metrics_payload(7, 3)
    return out


def time_simcam_ingest(work: Path, n_science: int) -> dict[str, Any]:
    """ingest_raws of a simulated SimCam night (headers read, records registered), one run per variant."""
    from skybutler.ingest import ingest_raws
    from skybutler.instruments import simulate_night

    raws = work / "simcam"
    paths = simulate_night(raws, n_science=n_science, n_bias=2, n_flat=2, bands=("g", "r"), size=64)
    out: dict[str, Any] = {"files": len(paths)}
    for label, processes in (("sequential", 1), ("process_pool", None)):
        root = work / f"simcam_repo_{label}"
        with Butler.create(root) as butler:
            start, cpu = time.perf_counter(), time.process_time()
            result = ingest_raws(butler, [raws], transfer="copy", processes=processes if processes else 2)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert not result.failures and len(result.refs) == len(paths), result.summary()
        out[label] = {**w.summarize([seconds]), "rate_per_s": w.rate(len(paths), seconds), "cpu_s": cpu}
    out["through_server"] = time_simcam_ingest_served(work, raws, len(paths))
    return out


def time_simcam_ingest_served(work: Path, raws: Path, n_files: int) -> dict[str, Any]:
    """The same night through ``skybutler serve`` (its own process): headers read by the client, the
    files uploaded in batches and read again by the server; the client's and the server's CPU."""
    from serving import cpu_seconds, served
    from skybutler.ingest import ingest_raws, register_instrument

    root = work / "simcam_served"
    Butler.create(root).close()
    with served(root, "bench_ingest") as (url, token, pid), Butler(url, token=token) as remote:
        register_instrument(remote, "SimCam")
        server_cpu, client_cpu = cpu_seconds(pid), time.process_time()
        start = time.perf_counter()
        result = ingest_raws(remote, [raws], transfer="copy", processes=1)
        seconds = time.perf_counter() - start
        client_cpu, server_cpu = time.process_time() - client_cpu, cpu_seconds(pid) - server_cpu
    assert not result.failures and len(result.refs) == n_files, result.summary()
    return {**w.summarize([seconds]), "rate_per_s": w.rate(n_files, seconds), "client_cpu_s": client_cpu,
            "server_cpu_s": server_cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="Write the results to this JSON file.")
    parser.add_argument("--quick", action="store_true", help="Smaller and faster (for CI): 10 exposures, 1 rep.")
    args = parser.parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat()
    wall = time.perf_counter()
    reps = 1 if args.quick else 3
    n_exposures = 10 if args.quick else N_EXPOSURES
    work = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        probe_us = w.file_creation_probe(work)
        source = work / "source"
        write_raw_files(source, n_exposures)
        with prepare_repo(work / "repo") as butler:
            w1 = time_w1_ingest(butler, source, reps, n_exposures)
        simcam = time_simcam_ingest(work, 4 if args.quick else 30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = {f"ingest_{mode}_files_per_s": w1[mode]["rate_per_s"] for mode in MODES}
    figures["simcam_fits_ingest_files_per_s"] = simcam["sequential"]["rate_per_s"]
    figures["simcam_fits_ingest_pool_files_per_s"] = simcam["process_pool"]["rate_per_s"]
    figures["simcam_fits_ingest_server_files_per_s"] = simcam["through_server"]["rate_per_s"]
    doc = {
        "benchmark": "bench_ingest",
        "workload": "W1 step 7" + (" (quick)" if args.quick else ""),
        "quick": args.quick,
        "started_at": started,
        "wall_seconds": time.perf_counter() - wall,
        **w.environment(),
        **figures,
        "targets": TARGETS,
        "targets_met": {k: figures[k] >= v for k, v in TARGETS.items()},
        "timings": {"w1_ingest": w1, "simcam_ingest_raws": simcam},
        "fs_create_probe_us": probe_us,
        "peak_rss_bytes": w.peak_rss_bytes(),
        "load_avg_1m_after": os.getloadavg()[0],
    }
    w.print_file_creation_probe(probe_us)
    print(f"W1 step 7: ingest of {w1['copy']['files']} JSON raws "
          f"({'one run' if reps == 1 else f'median of {reps}'} per mode)")
    for mode in MODES:
        target = TARGETS.get(f"ingest_{mode}_files_per_s")
        note = "" if target is None else f"   target >= {target:,.0f}: {'met' if w1[mode]['rate_per_s'] >= target else 'MISSED'}"
        print(f"  {mode:8s} {w1[mode]['rate_per_s']:>10,.0f} files/s  ({w1[mode]['seconds']:.3f} s; "
              f"{w1[mode]['rate_per_cpu_s']:,.0f} files per CPU-second){note}")
    print(f"SimCam FITS ingest_raws of {simcam['files']} files, copy, headers read (one run each):")
    for label in ("sequential", "process_pool", "through_server"):
        run = simcam[label]
        cpu = f"{run['cpu_s']:.2f} CPU-s in this process" if "cpu_s" in run else \
            f"{run['client_cpu_s']:.2f} CPU-s in the client, {run['server_cpu_s']:.2f} in the server"
        print(f"  {label:14s} {run['rate_per_s']:>8,.0f} files/s  ({run['seconds']:.2f} s; {cpu})")
    print(f"peak RSS {doc['peak_rss_bytes'] / 2**20:.0f} MiB; 1-minute load average {doc['load_avg_1m_after']:.1f} "
          f"on {os.cpu_count()} CPUs")
    w.save_json(doc, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
