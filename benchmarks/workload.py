"""The W1 benchmark workload (see WORKLOAD.md): its data model, built on a butler.

Shared by every script in ``benchmarks/``: run a script from this directory (or put
it on ``sys.path``) and ``import workload``.  The pieces are:

- :class:`Scale` -- how big the workload is.  ``Scale()`` is W1 itself (400 visits x
  50 detectors); ``Scale(n_visits=500, n_detectors=100)`` is the larger query model;
  ``Scale.quick()`` is the CI smoke size.  The first visits of any scale are the
  same as W1's, because every value comes from the visit number by formula.
- ``*_records(scale)`` -- the dimension records of one element, as plain dicts (no
  butler needed); :func:`build_records` gives them all, in insertion order.
- :func:`register_dimensions` -- insert them into a butler, timing each element.
- :func:`metrics_payload`, :func:`metrics_data_ids`, :func:`register_metrics`,
  :func:`put_metrics` -- the ``metrics`` datasets.
- :func:`expected_rows` -- the row counts the W1 queries must return at a scale.
- Reporting helpers (:func:`summarize`, :func:`peak_rss_bytes`, :func:`environment`,
  :func:`stamp`, :func:`save_json`) so every script writes the same JSON shape.

Our dimension universe has no ``visit_system`` element: a visit is defined from
its exposure by a ``visit_definition`` record only, so the W1 "visit system" and
"visit system membership" records do not exist here (:data:`UNIVERSE_NOTES`).
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import os
import platform
import random
import resource
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from skybutler import Butler, Timespan
from skybutler.dimensions import regions

INSTRUMENT = "Cam"
BANDS = "gri"
METRICS_TYPE = "metrics"
METRICS_DIMENSIONS = ("instrument", "visit", "detector")
METRICS_RUN = "w1/metrics"
FIELD_DEG = 3.5
"""Side of the square visit footprint, degrees."""

UNIVERSE_NOTES = (
    "the skybutler universe has no visit_system element: visits are defined one-to-one from "
    "exposures by visit_definition records, and no visit-system or visit-system-membership "
    "records are inserted",
    "the instrument element has no exposure_max field; visit_max is 1,000,000 as specified",
)

#: Elements in the order their records are inserted (each needs only earlier ones).
ELEMENT_ORDER = ("instrument", "band", "physical_filter", "detector", "day_obs", "group", "exposure",
                 "visit", "visit_definition", "visit_detector_region")


@dataclass(frozen=True)
class Scale:
    """The size of the workload.  Everything else follows from the visit and detector numbers."""

    n_visits: int = 400
    n_detectors: int = 50
    visits_per_night: int = 40
    grid_columns: int = 10
    """Detectors tile the field on ``grid_columns`` x ceil(n_detectors / grid_columns) rectangles."""
    first_night: datetime.date = datetime.date(2025, 1, 1)

    @classmethod
    def quick(cls) -> Scale:
        """A 10x smaller W1 for CI smoke runs: 40 visits (one night) x 50 detectors."""
        return cls(n_visits=40)

    @property
    def n_nights(self) -> int:
        return math.ceil(self.n_visits / self.visits_per_night)

    @property
    def grid_rows(self) -> int:
        return math.ceil(self.n_detectors / self.grid_columns)

    @property
    def n_datasets(self) -> int:
        return self.n_visits * self.n_detectors

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["first_night"] = self.first_night.isoformat()
        out.update(n_nights=self.n_nights, grid_rows=self.grid_rows, n_datasets=self.n_datasets)
        return out


# -- per-visit formulas (WORKLOAD.md, "per visit v") ----------------------------------


def night_of(visit: int, scale: Scale) -> int:
    """Index of the night (0-based) visit ``visit`` was taken in."""
    return (visit - 1) // scale.visits_per_night


def day_obs_of(night: int, scale: Scale) -> int:
    """The YYYYMMDD day_obs of night number ``night``."""
    day = scale.first_night + datetime.timedelta(days=night)
    return day.year * 10000 + day.month * 100 + day.day


def seq_num_of(visit: int, scale: Scale) -> int:
    return (visit - 1) % scale.visits_per_night + 1


def band_of(visit: int) -> str:
    return BANDS[(visit - 1) % 3]


def exposure_time_of(visit: int) -> float:
    return 15.0 if visit % 10 == 0 else 30.0


def pointing(visit: int) -> tuple[float, float]:
    """(ra, dec) of the visit's boresight, degrees."""
    return (7.3 * visit) % 360, -75 + (11 * visit) % 70


def _night_begin(night: int, scale: Scale) -> Any:
    """Start of a day_obs: 12:00 TAI of its date."""
    from astropy.time import Time

    day = scale.first_night + datetime.timedelta(days=night)
    return Time(f"{day.isoformat()}T12:00:00", scale="tai")


def visit_timespan(visit: int, scale: Scale, night_begins: Sequence[Any] | None = None) -> Timespan:
    """[begin, begin + exposure time) with begin = night start + 12 h + (seq - 1) * 120 s."""
    from astropy.time import TimeDelta

    night = night_of(visit, scale)
    start = night_begins[night] if night_begins is not None else _night_begin(night, scale)
    begin = start + TimeDelta(43200 + (seq_num_of(visit, scale) - 1) * 120, format="sec")
    return Timespan(begin, begin + TimeDelta(exposure_time_of(visit), format="sec"))


def detector_full_name(detector: int) -> str:
    return f"R{detector // 9:02d}_S{detector % 9:02d}"


def detector_region(visit: int, detector: int, scale: Scale) -> regions.Region:
    """The detector's rectangle: its cell of the grid tiling the visit's field."""
    return visit_detector_regions(visit, scale)[detector]


@functools.lru_cache(maxsize=4)
def visit_detector_regions(visit: int, scale: Scale) -> tuple[regions.Region, ...]:
    """Every detector's rectangle of a visit (a cell of the grid tiling its field), their
    vertices' unit vectors computed by numpy at once: a build makes half a million, and
    making each vertex through ``LonLat`` cost more CPU than inserting the records."""
    import lsst.sphgeom as sphgeom
    import numpy as np

    ra0, dec0 = pointing(visit)
    width, height = FIELD_DEG / scale.grid_columns, FIELD_DEG / scale.grid_rows
    detectors = np.arange(scale.n_detectors)
    col, row = detectors % scale.grid_columns, detectors // scale.grid_columns
    dec = dec0 + (row - (scale.grid_rows - 1) / 2) * height
    cos_dec = np.maximum(np.cos(np.radians(dec)), 1e-6)
    ra = ra0 + (col - (scale.grid_columns - 1) / 2) * width / cos_dec
    # the corners of regions.rectangle(ra, dec, width, height), as (detector, corner) arrays
    corners = ((-1, -1), (1, -1), (1, 1), (-1, 1))
    lon = np.radians(np.stack([ra + dx * width / 2 / cos_dec for dx, _ in corners], axis=1))
    lat = np.radians(np.stack([dec + dy * height / 2 for _, dy in corners], axis=1))
    cos_lat = np.cos(lat)
    xyz = np.stack([cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)], axis=2).tolist()
    vector, hull = sphgeom.UnitVector3d, sphgeom.ConvexPolygon.convexHull
    return tuple(hull([vector(*v) for v in cell]) for cell in xyz)


# -- records ----------------------------------------------------------------------------


def instrument_records(scale: Scale) -> list[dict[str, Any]]:
    return [{"name": INSTRUMENT, "class_name": "benchmarks.workload.Cam", "detector_max": scale.n_detectors,
             "visit_max": 1_000_000}]


def band_records(scale: Scale) -> list[dict[str, Any]]:
    return [{"name": b} for b in BANDS]


def physical_filter_records(scale: Scale) -> list[dict[str, Any]]:
    return [{"instrument": INSTRUMENT, "name": f"{INSTRUMENT}-{b}", "band": b} for b in BANDS]


def detector_records(scale: Scale) -> list[dict[str, Any]]:
    return [{"instrument": INSTRUMENT, "id": d, "full_name": detector_full_name(d), "purpose": "SCIENCE",
             "raft": f"R{d // 9:02d}"} for d in range(scale.n_detectors)]


def day_obs_records(scale: Scale) -> list[dict[str, Any]]:
    from astropy.time import TimeDelta

    out = []
    for night in range(scale.n_nights):
        begin = _night_begin(night, scale)
        out.append({"instrument": INSTRUMENT, "id": day_obs_of(night, scale),
                    "timespan": Timespan(begin, begin + TimeDelta(86400, format="sec"))})
    return out


def group_name(visit: int, scale: Scale) -> str:
    return f"{day_obs_of(night_of(visit, scale), scale)}_{seq_num_of(visit, scale):05d}"


def group_records(scale: Scale) -> list[dict[str, Any]]:
    return [{"instrument": INSTRUMENT, "name": group_name(v, scale)} for v in range(1, scale.n_visits + 1)]


def exposure_records(scale: Scale) -> list[dict[str, Any]]:
    begins = [_night_begin(n, scale) for n in range(scale.n_nights)]
    out = []
    for v in range(1, scale.n_visits + 1):
        day_obs = day_obs_of(night_of(v, scale), scale)
        seq = seq_num_of(v, scale)
        ra, dec = pointing(v)
        out.append({
            "instrument": INSTRUMENT, "id": v, "physical_filter": f"{INSTRUMENT}-{band_of(v)}", "day_obs": day_obs,
            "group": group_name(v, scale), "obs_id": f"CAM_{day_obs}_{seq:06d}", "seq_num": seq,
            "exposure_time": exposure_time_of(v), "dark_time": exposure_time_of(v), "observation_type": "science",
            "observation_reason": "science", "science_program": "W1", "target_name": f"field{v % 37}",
            "tracking_ra": ra, "tracking_dec": dec, "sky_angle": 0.0, "azimuth": 180.0, "zenith_angle": 30.0,
            "airmass": 1 / math.cos(math.radians(30.0)), "timespan": visit_timespan(v, scale, begins),
        })
    return out


def visit_records(scale: Scale) -> list[dict[str, Any]]:
    begins = [_night_begin(n, scale) for n in range(scale.n_nights)]
    out = []
    for v in range(1, scale.n_visits + 1):
        ra, dec = pointing(v)
        out.append({
            "instrument": INSTRUMENT, "id": v, "physical_filter": f"{INSTRUMENT}-{band_of(v)}",
            "day_obs": day_obs_of(night_of(v, scale), scale), "exposure_time": exposure_time_of(v),
            "observation_type": "science", "science_program": "W1", "target_name": f"field{v % 37}",
            "zenith_angle": 30.0, "region": regions.rectangle(ra, dec, FIELD_DEG, FIELD_DEG),
            "timespan": visit_timespan(v, scale, begins),
        })
    return out


def visit_definition_records(scale: Scale) -> list[dict[str, Any]]:
    return [{"instrument": INSTRUMENT, "exposure": v, "visit": v} for v in range(1, scale.n_visits + 1)]


def visit_detector_region_records(scale: Scale) -> list[dict[str, Any]]:
    return [{"instrument": INSTRUMENT, "visit": v, "detector": d, "region": detector_region(v, d, scale)}
            for v in range(1, scale.n_visits + 1) for d in range(scale.n_detectors)]


RECORD_BUILDERS: dict[str, Callable[[Scale], list[dict[str, Any]]]] = {
    "instrument": instrument_records,
    "band": band_records,
    "physical_filter": physical_filter_records,
    "detector": detector_records,
    "day_obs": day_obs_records,
    "group": group_records,
    "exposure": exposure_records,
    "visit": visit_records,
    "visit_definition": visit_definition_records,
    "visit_detector_region": visit_detector_region_records,
}


def build_records(scale: Scale = Scale()) -> dict[str, list[dict[str, Any]]]:
    """Every dimension record of the workload, by element, in insertion order."""
    return {element: RECORD_BUILDERS[element](scale) for element in ELEMENT_ORDER}


def register_dimensions(butler: Butler, scale: Scale = Scale(),
                        records: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, dict[str, float]]:
    """Insert the workload's records, one ``insert_records`` call per element.

    Pass ``records`` from :func:`build_records` to keep building them (regions,
    timespans) out of the timing.  Returns ``{element: {"seconds": s, "records": n}}``.
    """
    records = records if records is not None else build_records(scale)
    timings: dict[str, dict[str, float]] = {}
    for element in ELEMENT_ORDER:
        rows = records[element]
        start = time.perf_counter()
        butler.insert_records(element, rows)
        timings[element] = {"seconds": time.perf_counter() - start, "records": len(rows)}
    return timings


# -- the metrics datasets -----------------------------------------------------------------


def metrics_data_ids(scale: Scale = Scale()) -> Iterator[dict[str, Any]]:
    """Every (visit, detector) data ID, visit-major, as plain key/values."""
    for v in range(1, scale.n_visits + 1):
        for d in range(scale.n_detectors):
            yield {"instrument": INSTRUMENT, "visit": v, "detector": d}


def metrics_payload(visit: int, detector: int, seed: int = 0) -> dict[str, float]:
    """The 10 seeded floats ``m0``..``m9`` of one data ID (the same in every process)."""
    rng = random.Random(f"{seed}:{visit}:{detector}")
    return {f"m{i}": rng.random() for i in range(10)}


def register_metrics(butler: Butler) -> None:
    butler.register_dataset_type(METRICS_TYPE, METRICS_DIMENSIONS, "Dict")


def put_metrics(butler: Butler, scale: Scale = Scale(), run: str = METRICS_RUN, seed: int = 0,
                batch: int | None = None) -> int:
    """Fill ``run`` with every metrics dataset through ``put_many`` (``batch`` per call; all in one
    call by default): the fast way to prepare a repository for the query benchmarks."""
    items = [(metrics_payload(d["visit"], d["detector"], seed), d) for d in metrics_data_ids(scale)]
    size = batch or len(items)
    for start in range(0, len(items), size):
        butler.put_many(METRICS_TYPE, items[start:start + size], run=run)
    return len(items)


def sample_data_ids(scale: Scale, n: int, seed: int = 1) -> list[dict[str, Any]]:
    """A seeded random sample of ``n`` distinct metrics data IDs."""
    rng = random.Random(seed)
    picks = rng.sample(range(scale.n_datasets), min(n, scale.n_datasets))
    return [{"instrument": INSTRUMENT, "visit": p // scale.n_detectors + 1, "detector": p % scale.n_detectors}
            for p in picks]


def expected_rows(scale: Scale = Scale()) -> dict[str, int]:
    """Rows the W1 queries return at this scale (Q1 5,000 and Q2 6,650 for W1 itself)."""
    q1_visits = max(0, min(300, scale.n_visits) - 100)
    q1_detectors = max(0, min(25, scale.n_detectors - 1))  # detector IN (1..25), ids start at 0
    r_visits = sum(1 for v in range(1, scale.n_visits + 1) if band_of(v) == "r")
    return {"Q1": q1_visits * q1_detectors, "Q2": r_visits * scale.n_detectors,
            "data_ids_Q1": q1_visits * q1_detectors}


# -- reporting ------------------------------------------------------------------------------


def summarize(values: Sequence[float], stat: str | None = None) -> dict[str, Any]:
    """A timing entry: ``seconds`` (median of several reps, or the single run), ``reps``, ``stat``, ``all``."""
    values = list(values)
    stat = stat or ("median" if len(values) > 1 else "single")
    seconds = statistics.median(values) if stat == "median" else values[0]
    return {"seconds": seconds, "reps": len(values), "stat": stat, "all": values}


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def stamp(name: str) -> dict[str, Any]:
    """The head of a benchmark's JSON document: its name and when it ran (UTC)."""
    return {"benchmark": name, "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def save_json(doc: dict[str, Any], path: Path | None, echo: bool = False) -> None:
    """Write a benchmark's JSON document to ``path`` (its ``--json``); without one, print it if ``echo``."""
    text = json.dumps(doc, indent=2, default=str)
    if path is not None:
        path.write_text(text)
    elif echo:
        print(text)


def environment() -> dict[str, Any]:
    """Versions of what the figures depend on, and the host they were measured on."""
    import sqlite3
    from importlib import metadata

    versions = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for dist in ("skybutler", "sqlalchemy", "numpy", "astropy", "pyarrow", "pandas", "lsst-sphgeom", "pydantic"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    host = {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    return {"versions": versions, "host": host}


def file_creation_probe(directory: Path, n: int = 2000) -> float:
    """Microseconds to create (and write 100 bytes to) one new file in ``directory``: the file
    system's floor for every figure that writes files.

    On a local ext4 without a journal this floor rises from ~20 us to several hundred for a
    few minutes after many files were deleted (new inodes skip the recently freed ones), so a
    benchmark run soon after another one's clean-up measures the disk, not the butler.  The
    files are left for the caller's clean-up.
    """
    probe = directory / "fs_probe"
    probe.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i in range(n):
        (probe / f"p{i}").write_bytes(b"x" * 100)
    return (time.perf_counter() - start) / n * 1e6


def print_file_creation_probe(us_per_file: float) -> None:
    note = ("" if us_per_file < 100 else
            "  <- slow: the file system is still reclaiming recently deleted files; file-writing figures "
            "of this run are low (wait a few minutes after large deletions)")
    print(f"file-creation probe: {us_per_file:.0f} us per new file{note}")


# -- where the repositories go ----------------------------------------------------------------

TMPFS = Path("/dev/shm")
"""A RAM-backed file system on Linux: figures taken there do not depend on the disk's state."""


def add_tmpfs_option(parser: Any) -> None:
    """``--tmpfs``: build the benchmark's repositories under /dev/shm (otherwise in ``TMPDIR``, /tmp by default)."""
    parser.add_argument("--tmpfs", action="store_true",
                        help=f"work under {TMPFS} (a tmpfs) instead of TMPDIR or /tmp")


def work_dir(prefix: str, tmpfs: bool = False) -> Path:
    """A new work directory: under /dev/shm with ``tmpfs``, else under ``TMPDIR`` (the
    standard library's choice: TMPDIR, then /tmp), so a run can be pointed at any file system."""
    if tmpfs and not TMPFS.is_dir():
        raise SystemExit(f"--tmpfs: {TMPFS} does not exist on this system; set TMPDIR instead")
    return Path(tempfile.mkdtemp(prefix=prefix, dir=TMPFS if tmpfs else None))


def file_system_of(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts; '' if unknown), for the report."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return ""
    best = max((m for m in mounts if str(path.resolve()).startswith(m[0].rstrip("/") + "/") or m[0] == "/"),
               key=lambda m: len(m[0]), default=None)
    return best[1] if best else ""


def in_child(fn) -> dict[str, Any]:
    """Run ``fn`` in a forked child: its result, wall and CPU seconds, and peak RSS (its own and
    its largest child process's)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 0
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            result = fn()
            out = {"result": result, "seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
                   "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                   "peak_child_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}
        except BaseException as err:  # reported to the parent, which raises
            out, code = {"error": repr(err)}, 1
        os.write(write, json.dumps(out, default=str).encode())
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        out = json.loads(pipe.read() or "{}")
    os.waitpid(pid, 0)
    if "error" in out:
        raise RuntimeError(f"child failed: {out['error']}")
    return out


class ServerCpu:
    """CPU seconds of the PostgreSQL backends a butler's connections use (same host only)."""

    def __init__(self, butler: Butler):
        import sqlalchemy as sa

        self.pids: set[int] = set()
        engine = butler.registry.db.engine
        sa.event.listen(engine, "checkout", lambda dbapi, *_: self.pids.add(dbapi.info.backend_pid))
        engine.dispose()  # connections made before the listener was added are not known: start afresh
        #: the read cache's watcher keeps a connection of its own, out of the pool
        self._watcher = butler.registry.db.read_cache.watcher

    def seconds(self) -> float | None:
        watcher_pid = getattr(self._watcher, "backend_pid", lambda: None)()
        if watcher_pid is not None:
            self.pids.add(watcher_pid)
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None  # another host, or the backend ended
            total += (int(fields[11]) + int(fields[12])) / tick
        return total
