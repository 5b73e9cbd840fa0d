"""Loading catalogs into a user's SQL database: rows per second into SQLite and DuckDB.

    python benchmarks/bench_catalog_load.py [--rows N] [--datasets D] [--targets sqlite,duckdb] [--json FILE] [--quick]

A repository of D ``src`` catalog datasets (one per detector of a synthetic camera) holding
N synthetic source rows in all, under a declared Felis schema (``SOURCE_SCHEMA``: ID,
position, two fluxes with errors, flags, a band), is built with ``put_many`` (not timed;
its rows/s is reported too, since every put is validated against the schema).  Then
``load_catalog`` loads every dataset into a new database of each target, timed: rows per
second, wall and CPU seconds.  A second load is timed too (every dataset already there:
the cost of the bookkeeping check alone).  Defaults: the issue's 10,000,000 rows over
2,000 datasets (``--quick``: 200,000 over 200).  Set ``TMPDIR=/dev/shm`` to keep the disk
out of the figures.

The publication benchmark (``bench_catalogs.py``) loads its own repository's rows with
``load_all`` (declaring a schema of its columns first), so the issue's figures for
publication and loading come from one run on the same rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from skybutler import Butler

SOURCE_SCHEMA = """\
name: bench
"@id": "#bench"
description: Synthetic source catalogs of the catalog benchmarks.
tables:
- name: src
  "@id": "#src"
  description: Sources of one detector.
  primaryKey: "#src.id"
  columns:
  - {name: id, "@id": "#src.id", datatype: long, nullable: false, description: Source ID.}
  - {name: ra, "@id": "#src.ra", datatype: double, nullable: false, "ivoa:unit": deg,
     "ivoa:ucd": "pos.eq.ra;meta.main", description: Right ascension (ICRS).}
  - {name: dec, "@id": "#src.dec", datatype: double, nullable: false, "ivoa:unit": deg,
     "ivoa:ucd": "pos.eq.dec;meta.main", description: Declination (ICRS).}
  - {name: psf_flux, "@id": "#src.psf_flux", datatype: float, "ivoa:unit": nJy, description: PSF flux.}
  - {name: psf_flux_err, "@id": "#src.psf_flux_err", datatype: float, "ivoa:unit": nJy, description: Its error.}
  - {name: ap_flux, "@id": "#src.ap_flux", datatype: float, "ivoa:unit": nJy, description: Aperture flux.}
  - {name: flags, "@id": "#src.flags", datatype: int, nullable: false, description: Flag bits.}
  - {name: band, "@id": "#src.band", datatype: char, length: 1, nullable: false, description: Band.}
"""


def synthetic_sources(index: int, n: int, rng: np.random.Generator) -> pa.Table:
    """``n`` sources of dataset ``index``: a patch of sky about 1.5 deg across, unique IDs."""
    centre_ra, centre_dec = (index * 7.3) % 360.0, float(np.degrees(np.arcsin(((index * 0.618) % 2.0) - 1.0)))
    dec = np.clip(centre_dec + rng.uniform(-0.75, 0.75, n), -90.0, 90.0)
    ra = (centre_ra + rng.uniform(-0.75, 0.75, n) / max(np.cos(np.radians(centre_dec)), 0.05)) % 360.0
    flux = rng.lognormal(6.0, 1.0, n).astype(np.float32)
    return pa.table({
        "id": pa.array(index * 10_000_000 + np.arange(n), pa.int64()),
        "ra": ra, "dec": dec,
        "psf_flux": flux, "psf_flux_err": (np.sqrt(flux) + 1.0).astype(np.float32),
        "ap_flux": pa.array(flux * np.float32(1.05), mask=rng.random(n) < 0.02),
        "flags": rng.integers(0, 2**16, n).astype(np.int32),
        "band": pa.array(np.array(list("ugrizy"))[np.full(n, index % 6)]),
    })


def build_repository(root: Path, rows: int, datasets: int, *, batch: int = 50, seed: int = 1) -> Butler:
    """A repository with ``datasets`` ``src`` catalogs of ``rows`` rows in all (instrument
    BenchCam, one detector per dataset), in RUN ``bench/src``."""
    butler = Butler.create(root, run="bench/src")
    schema = root.parent / f"{root.name}-schema.yaml"
    schema.write_text(SOURCE_SCHEMA)
    butler.insert_records("instrument", [{"name": "BenchCam", "detector_max": datasets}])
    butler.insert_records("detector", [{"instrument": "BenchCam", "id": d} for d in range(datasets)])
    butler.register_dataset_type("src", ["instrument", "detector"], "Table", schema=schema)
    rng = np.random.default_rng(seed)
    per = [rows // datasets + (1 if d < rows % datasets else 0) for d in range(datasets)]
    for start in range(0, datasets, batch):
        items = [(synthetic_sources(d, per[d], rng), {"instrument": "BenchCam", "detector": d})
                 for d in range(start, min(start + batch, datasets))]
        butler.put_many("src", items)
    return butler


def bench_load(butler: Butler, db_url: str, collections: str = "bench/src") -> dict[str, Any]:
    """Load every ``src`` dataset into ``db_url``: rows, seconds, rows/s; then the re-run's seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    summary = butler.load_catalog("src", db_url, collections=collections)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    again = time.perf_counter()
    rerun = butler.load_catalog("src", db_url, collections=collections)
    again = time.perf_counter() - again
    assert rerun.datasets_loaded == 0 and rerun.datasets_skipped == summary.datasets_loaded
    return {"rows": summary.rows_loaded, "datasets": summary.datasets_loaded, "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "rows_per_s": round(summary.rows_loaded / wall), "rerun_s": round(again, 2)}


def target_url(target: str, work: Path) -> str:
    """The database URL of a target kind in directory ``work`` (PostgreSQL: SKYBUTLER_BENCH_POSTGRES_URL)."""
    return {"sqlite": f"sqlite:///{work / 'load.db'}", "duckdb": f"duckdb:///{work / 'load.duckdb'}",
            "postgresql": os.environ.get("SKYBUTLER_BENCH_POSTGRES_URL", "")}[target]


def load_all(root: Path, schema: str | None, work: Path, *, dataset_type: str = "src",
             collections: str = "bench/src", targets: tuple[str, ...] = ("sqlite", "duckdb")) -> dict[str, Any]:
    """Load every ``dataset_type`` dataset of the repository at ``root`` into each target (a new
    database in ``work``), first declaring ``schema`` (Felis YAML text) if given: figures per target."""
    with Butler(root) as butler:
        if schema is not None:
            path = work / "load-schema.yaml"
            path.write_text(schema)
            butler.declare_catalog_schema(dataset_type, path)
        figures = {}
        for target in targets:
            wall, cpu = time.perf_counter(), time.process_time()
            summary = butler.load_catalog(dataset_type, target_url(target, work), collections=collections)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            figures[target] = {"rows": summary.rows_loaded, "datasets": summary.datasets_loaded,
                               "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                               "rows_per_s": round(summary.rows_loaded / wall)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--datasets", type=int, default=2_000)
    parser.add_argument("--targets", default="sqlite,duckdb")
    parser.add_argument("--quick", action="store_true", help="200,000 rows over 200 datasets")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    rows, datasets = (200_000, 200) if args.quick else (args.rows, args.datasets)
    work = Path(tempfile.mkdtemp(prefix="bench-catalog-load-"))
    figures: dict[str, Any] = {"rows": rows, "datasets": datasets}
    try:
        start = time.perf_counter()
        butler = build_repository(work / "repo", rows, datasets)
        built = time.perf_counter() - start
        figures["put_many_rows_per_s"] = round(rows / built)
        print(f"built {datasets} datasets, {rows} rows in {built:.1f} s ({rows / built:,.0f} rows/s put, "
              "validated against the schema)", file=sys.stderr)
        for target in args.targets.split(","):
            figures[target] = bench_load(butler, target_url(target, work))
            print(f"{target}: {figures[target]}", file=sys.stderr)
        butler.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
