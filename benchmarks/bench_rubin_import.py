"""Rubin export import benchmark: ``skybutler import`` of a 20,000-dataset Rubin export.

    python benchmarks/bench_rubin_import.py [--datasets N | --quick] [--rubin] [--json FILE] [--keep]

Writes a Rubin butler export (``export.yaml`` format 1.0.2, universe daf_butler 8)
of one camera's records (detectors, day_obs, groups, exposures, visits with regions
and timespans, visit definitions) and N small StructuredDataDict YAML files over
(instrument, visit, detector), then imports it into a new skybutler repository
(SQLite + local files, transfer copy) in a fresh process, and reports datasets/s
CPU time and that process's peak resident memory (CPU time, datasets per CPU-second,
is the steadier figure on a shared machine).  ``--rubin`` also times the Rubin butler's
own import of the same export into a new Rubin repository (needs lsst-daf-butler).
The export is written with skybutler's Rubin YAML dumper; the interchange tests
check that dumper against the Rubin butler itself.

Measured on the 2-core development host, shared with seven other jobs (load average
~25 during the run, so wall times are mostly waiting): 20,000 datasets in 77.4 s wall,
259 datasets/s, 17.5 s of CPU (1,142 datasets per CPU-second), 328 MiB peak. At 2,000
datasets side by side (load ~23): skybutler 150/s wall, 749 per CPU-second, 158 MiB;
the Rubin butler 66/s wall, 300 per CPU-second.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from skybutler import Butler
from skybutler.dimensions import regions
from skybutler.interchange import import_rubin, rubin_yaml
from skybutler.interchange.rubin_yaml import TaiTime, iso_to_ns

N_DETECTORS = 100
YAML_FORMATTER = "lsst.daf.butler.formatters.yaml.YamlFormatter"


def write_export(root: Path, n_datasets: int) -> None:
    """A Rubin export of ``n_datasets`` summaries, 100 detectors per visit."""
    n_visits = -(-n_datasets // N_DETECTORS)
    night = iso_to_ns("2024-01-01 12:00:00")
    exposures, visits, definitions = [], [], []
    for v in range(1, n_visits + 1):
        begin = night + 43_200_000_000_000 + v * 60_000_000_000
        span = {"datetime_begin": TaiTime(begin), "datetime_end": TaiTime(begin + 30_000_000_000)}
        exposures.append({"instrument": "Cam", "id": v, "day_obs": 20240101, "group": f"g{v}",
                          "physical_filter": "Cam-r", "obs_id": f"CAM_{v:06d}", "exposure_time": 30.0,
                          "observation_type": "science", "seq_num": v, "can_see_sky": True, **span})
        visits.append({"instrument": "Cam", "id": v, "day_obs": 20240101, "physical_filter": "Cam-r",
                       "name": f"CAM_{v:06d}", "exposure_time": 30.0,
                       "region": regions.rectangle((v * 0.7) % 360, -30.0, 1.0, 1.0), **span})
        definitions.append({"instrument": "Cam", "exposure": v, "visit": v})
    data = [
        {"type": "dimension", "element": "instrument",
         "records": [{"name": "Cam", "visit_max": 10**6, "exposure_max": 10**6, "detector_max": N_DETECTORS,
                      "class_name": "bench.Cam"}]},
        {"type": "dimension", "element": "day_obs",
         "records": [{"instrument": "Cam", "id": 20240101, "datetime_begin": TaiTime(night),
                      "datetime_end": TaiTime(night + 86_400_000_000_000)}]},
        {"type": "dimension", "element": "detector",
         "records": [{"instrument": "Cam", "id": d, "full_name": f"D{d:03d}", "purpose": "SCIENCE"}
                     for d in range(N_DETECTORS)]},
        {"type": "dimension", "element": "group",
         "records": [{"instrument": "Cam", "name": f"g{v}"} for v in range(1, n_visits + 1)]},
        {"type": "dimension", "element": "physical_filter",
         "records": [{"instrument": "Cam", "name": "Cam-r", "band": "r"}]},
        {"type": "dimension", "element": "exposure", "records": exposures},
        {"type": "dimension", "element": "visit", "records": visits},
        {"type": "dimension", "element": "visit_definition", "records": definitions},
        {"type": "collection", "collection_type": "RUN", "name": "Cam/run", "host": None,
         "timespan_begin": None, "timespan_end": None},
        {"type": "dataset_type", "name": "summary", "dimensions": ["instrument", "visit", "detector"],
         "storage_class": "StructuredDataDict", "is_calibration": False},
    ]
    records = []
    for i in range(n_datasets):
        v, d = divmod(i, N_DETECTORS)
        path = f"Cam/run/summary/{v + 1}/summary_{v + 1}_{d}.yaml"
        file = root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(f"visit: {v + 1}\ndetector: {d}\nscatter: {0.001 * i}\n")
        records.append({"dataset_id": [uuid.uuid4()], "data_id": [{"instrument": "Cam", "visit": v + 1, "detector": d}],
                        "path": path, "formatter": YAML_FORMATTER})
    data.append({"type": "dataset", "dataset_type": "summary", "run": "Cam/run", "records": records})
    with (root / "export.yaml").open("w") as stream:
        rubin_yaml.dump({"description": "Butler Data Repository Export", "version": "1.0.2",
                         "universe_version": 8, "universe_namespace": "daf_butler", "data": data}, stream)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def import_only(export: Path, root: Path) -> None:
    """Import ``export`` into a new repository at ``root``; print seconds, count and peak RSS as JSON."""
    butler = Butler.create(root)
    start, cpu = time.perf_counter(), time.process_time()
    n = import_rubin(butler, export, transfer="copy")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert butler.query_datasets("summary", collections="Cam/run").count() == n
    print(json.dumps({"imported": n, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
                      "peak_rss_mib": round(peak_rss_mib())}))


def main() -> int:
    if sys.argv[1:2] == ["--import-only"]:
        import_only(Path(sys.argv[2]), Path(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 datasets (a CI smoke test)")
    parser.add_argument("--rubin", action="store_true", help="also time the Rubin butler's import")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.quick:
        args.datasets = 2_000
    work = Path(tempfile.mkdtemp(prefix="bench-rubin-"))
    results: dict[str, float] = {"datasets": args.datasets}
    try:
        export = work / "export"
        export.mkdir()
        start = time.perf_counter()
        write_export(export, args.datasets)
        results["write_export_s"] = round(time.perf_counter() - start, 2)
        # The import runs in a fresh process, so its peak memory is its own.
        child = subprocess.run([sys.executable, __file__, "--import-only", str(export), str(work / "sky")],
                               check=True, capture_output=True, text=True)
        figures = json.loads(child.stdout)
        assert figures["imported"] == args.datasets, figures
        results.update(skybutler_import_s=figures["seconds"],
                       skybutler_datasets_per_s=round(args.datasets / figures["seconds"]),
                       skybutler_cpu_s=figures["cpu_s"],
                       skybutler_datasets_per_cpu_s=round(args.datasets / figures["cpu_s"]),
                       skybutler_peak_rss_mib=figures["peak_rss_mib"])
        if args.rubin:
            from lsst.daf.butler import Butler as RubinButler

            RubinButler.makeRepo(str(work / "rubin"))
            rubin = RubinButler.from_config(str(work / "rubin"), writeable=True)
            start, cpu = time.perf_counter(), time.process_time()
            rubin.import_(directory=str(export), filename=str(export / "export.yaml"), transfer="copy")
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            results.update(rubin_import_s=round(elapsed, 2), rubin_datasets_per_s=round(args.datasets / elapsed),
                           rubin_cpu_s=round(cpu, 2), rubin_datasets_per_cpu_s=round(args.datasets / cpu))
        results["load_average_1min"] = round(os.getloadavg()[0], 1)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
