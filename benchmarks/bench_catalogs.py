"""HATS publication and cone search: skybutler's against hats-import's and lsdb's, on the same rows.

    python benchmarks/bench_catalogs.py [--rows N] [--datasets D] [--json FILE] [--quick]

A repository holds D ``src`` catalog datasets (N/D synthetic sources each: a 1-degree
field per visit, fields spread over a 30 x 30 degree region, so fields overlap as a
survey's do), built with ``put_many`` (not timed).  Then, each in a forked child (its own
peak memory; the parent's at the fork is the baseline):

- ``publish_catalog``: the datasets gathered through the butler into a HATS catalog with
  a 10-arcsec margin cache (rows/s, peak RSS);
- ``hats-import``: the same Parquet files (the datastore's) imported into a HATS catalog
  by hats-import's pipeline on a local Dask cluster of one worker process (rows/s; peak
  RSS of the driver and, separately, the largest of its worker processes);
- a cone search of radius 0.5 degrees at the region's centre on each (the median of 5
  warm runs, in ms): ``cone_search`` on ours, ``lsdb``'s ``cone_search(...).compute()`` on
  hats-import's; both must return the same rows.

N defaults to 10,000,000 over D = 2,000 datasets (``--quick``: 200,000 over 40).

``--server``: also publish through ``skybutler serve`` (its own process, on loopback) -- the
server gathers and writes, the client waits for the summary -- with the client's and the
server's CPU seconds, and the same cone search through the server (the same rows).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload as w  # noqa: E402
from skybutler import Butler  # noqa: E402

#: The Felis schema of ``build``'s catalogs, declared before they are loaded into SQL databases.
SRC_SCHEMA = """\
name: bench
"@id": "#bench"
tables:
- name: src
  "@id": "#src"
  primaryKey: "#src.source_id"
  columns:
  - {name: source_id, "@id": "#src.source_id", datatype: long, nullable: false}
  - {name: ra, "@id": "#src.ra", datatype: double, nullable: false, "ivoa:unit": deg, "ivoa:ucd": "pos.eq.ra;meta.main"}
  - {name: dec, "@id": "#src.dec", datatype: double, nullable: false, "ivoa:unit": deg, "ivoa:ucd": "pos.eq.dec;meta.main"}
  - {name: psf_flux, "@id": "#src.psf_flux", datatype: double, "ivoa:unit": nJy}
  - {name: psf_flux_err, "@id": "#src.psf_flux_err", datatype: double, "ivoa:unit": nJy}
  - {name: visit, "@id": "#src.visit", datatype: int}
  - {name: flags, "@id": "#src.flags", datatype: long}
"""

CENTRE = (15.0, 0.0)
RADIUS = 0.5


def rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def build(root: Path, rows: int, datasets: int) -> list[str]:
    """The repository; returns the datastore paths of the catalogs (hats-import's input)."""
    rng = np.random.default_rng(42)
    per = rows // datasets
    with Butler.create(root, run="survey/run1") as butler:
        butler.insert_records("instrument", [{"name": "Cam", "detector_max": datasets}])
        butler.insert_records("detector", [{"instrument": "Cam", "id": i} for i in range(datasets)])
        butler.register_dataset_type("src", ["instrument", "detector"], "Table")
        for start in range(0, datasets, 100):
            items = []
            for i in range(start, min(start + 100, datasets)):
                ra0, dec0 = rng.uniform(0, 30), rng.uniform(-15, 15)
                r = np.sqrt(rng.uniform(0, 1, per)) * 1.0
                theta = rng.uniform(0, 2 * np.pi, per)
                dec = np.clip(dec0 + r * np.sin(theta), -90, 90)
                ra = (ra0 + r * np.cos(theta) / np.cos(np.radians(dec))) % 360
                items.append((pa.table({"source_id": np.arange(per, dtype=np.int64) + i * per, "ra": ra, "dec": dec,
                                        "psf_flux": rng.lognormal(5, 1, per), "psf_flux_err": rng.uniform(1, 5, per),
                                        "visit": np.full(per, i, np.int32), "flags": rng.integers(0, 256, per)}),
                              {"instrument": "Cam", "detector": i}))
            butler.put_many("src", items)
        return [butler.get_uri(ref).removeprefix("file://") for ref in butler.query_datasets("src", collections="survey/run1")]


def timed_ms(fn, reps: int = 5) -> tuple[float, Any]:
    fn()  # warm: imports, footers in the page cache
    times, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def through_server(root: Path, expected_ids: list[int]) -> dict[str, Any]:
    """Publish the same datasets through a server (a client in a child; the server's CPU from /proc)
    and run the same cone search through it."""
    import serving

    with serving.served(root, "bench_catalogs") as (url, token, pid):
        before = serving.cpu_seconds(pid)

        def publish() -> dict[str, Any]:
            with Butler(url, token=token) as butler:
                done = butler.publish_catalog("src", "bench", collections="survey/run1")
            return {"rows": done.total_rows, "run": done.ref.run}

        out = w.in_child(publish)
        out["server_cpu_seconds"] = serving.cpu_seconds(pid) - before
        out["rows_per_s"] = w.rate(out["result"]["rows"], out["seconds"])
        with Butler(url, token=token) as butler:
            out["cone_search_ms"], found = timed_ms(
                lambda: butler.cone_search("src", *CENTRE, RADIUS, collections=out["result"]["run"]))
    assert sorted(found["source_id"].to_pylist()) == expected_ids, "the search through the server disagrees"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--datasets", type=int, default=2_000)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--quick", action="store_true", help="200,000 rows over 40 datasets, for a smoke run")
    parser.add_argument("--no-hats-import", action="store_true", help="skip the hats-import/lsdb comparison")
    parser.add_argument("--no-load", action="store_true", help="skip loading the rows into SQLite and DuckDB")
    parser.add_argument("--server", action="store_true", help="also publish and search through a server")
    args = parser.parse_args(argv)
    rows, datasets = (200_000, 40) if args.quick else (args.rows, args.datasets)
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="skybutler-bench-catalogs-"))
    try:
        built = w.in_child(lambda: build(work / "repo", rows, datasets))
        files = built["result"]
        baseline = rss_bytes()

        def publish() -> dict[str, Any]:
            with Butler(work / "repo") as butler:
                done = butler.publish_catalog("src", work / "ours", collections="survey/run1")
            return {"rows": done.total_rows, "partitions": done.partitions}

        ours = w.in_child(publish)
        ours["rows_per_s"] = w.rate(ours["result"]["rows"], ours["seconds"])

        from skybutler.catalogs.search import cone_search

        ours_ms, found = timed_ms(lambda: cone_search(work / "ours", *CENTRE, RADIUS))
        ours_ids = sorted(found["source_id"].to_pylist())
        theirs: dict[str, Any] | None = None
        lsdb_ms = None
        if not args.no_hats_import:
            def hats_import() -> dict[str, Any]:
                from hats_import.catalog.arguments import ImportArguments
                from hats_import.pipeline import pipeline

                pipeline(ImportArguments(input_file_list=files, file_reader="parquet", ra_column="ra",
                                         dec_column="dec", output_path=work, output_artifact_name="theirs",
                                         tmp_dir=work / "tmp", dask_n_workers=1, progress_bar=False,
                                         pixel_threshold=1_000_000))
                return {"rows": rows}

            theirs = w.in_child(hats_import)
            theirs["rows_per_s"] = w.rate(rows, theirs["seconds"])
            import lsdb

            catalog = lsdb.open_catalog(work / "theirs")
            lsdb_ms, frame = timed_ms(lambda: catalog.cone_search(*CENTRE, RADIUS * 3600).compute())
            assert sorted(frame["source_id"].tolist()) == ours_ids, "the two cone searches disagree"
        remote = through_server(work / "repo", ours_ids) if args.server else None
        loads = None
        if not args.no_load:  # the same rows into SQLite and DuckDB (bench_catalog_load.py)
            from bench_catalog_load import load_all

            loads = w.in_child(lambda: load_all(work / "repo", SRC_SCHEMA, work, collections="survey/run1"))["result"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = {"load": loads, "benchmark": "bench_catalogs", "rows": rows, "datasets": datasets, **w.environment(),
           "publish": ours, "publish_through_server": remote, "cone_search_ms": ours_ms, "cone_rows": len(ours_ids), "hats_import": theirs,
           "lsdb_cone_search_ms": lsdb_ms, "baseline_rss_bytes": baseline, "build_seconds": built["seconds"],
           "tmpdir": tempfile.gettempdir(), "load_avg_1m_before": load_before,
           "load_avg_1m_after": os.getloadavg()[0]}
    print(f"HATS publication of {rows:,} rows over {datasets:,} datasets (files in {tempfile.gettempdir()}; 1-minute "
          f"load {load_before:.1f} -> {doc['load_avg_1m_after']:.1f} on {os.cpu_count()} CPUs; parent RSS at fork "
          f"{baseline / 2**20:.0f} MiB)")
    print(f"  skybutler publish  {ours['rows_per_s']:>10,.0f} rows/s ({ours['seconds']:.1f} s, "
          f"{ours['result']['partitions']} partitions, peak RSS {ours['peak_rss_bytes'] / 2**20:.0f} MiB)")
    if theirs is not None:
        print(f"  hats-import        {theirs['rows_per_s']:>10,.0f} rows/s ({theirs['seconds']:.1f} s, peak RSS driver "
              f"{theirs['peak_rss_bytes'] / 2**20:.0f} MiB, largest worker {theirs['peak_child_rss_bytes'] / 2**20:.0f}"
              " MiB)")
    if remote is not None:
        print(f"  through a server   {remote['rows_per_s']:>10,.0f} rows/s ({remote['seconds']:.1f} s; CPU: server "
              f"{remote['server_cpu_seconds']:.1f} s, client {remote['cpu_seconds']:.1f} s; local publish CPU "
              f"{ours['cpu_seconds']:.1f} s); cone search {remote['cone_search_ms']:.1f} ms")
    print(f"  cone r={RADIUS} deg: skybutler {ours_ms:.1f} ms" +
          (f", lsdb {lsdb_ms:.1f} ms" if lsdb_ms is not None else "") + f" ({len(ours_ids)} rows)")
    for target, figures in (loads or {}).items():
        print(f"  load-catalog {target:<7}{figures['rows_per_s']:>10,.0f} rows/s ({figures['wall_s']:.1f} s, "
              f"CPU {figures['cpu_s']:.1f} s)")
    w.save_json(doc, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
