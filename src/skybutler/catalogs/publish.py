"""Publishing a catalog dataset type as a HATS catalog, incrementally and atomically.

``butler.publish_catalog("src", "pub/src", collections=..., where=...)`` gathers the
matching datasets (find-first) and writes a HATS collection at the destination: the
catalog partitioned by HEALPix (NESTED) pixels holding at most ``max_rows`` rows and
``max_bytes`` bytes each, every row with its ``_healpix_29`` index, and a margin cache of
``margin_arcsec``.  Run again, it adds the datasets not yet published: only partitions that
gain rows (or are split) and margins that change are written, the rest are hard-linked from
the current version, and the result equals a full rebuild.  The new version becomes visible
in one step (see :mod:`.hats_files`), and is registered in the repository as a
``<dataset type>_hats`` dataset (a ``Dict`` manifest) whose recorded quantum has every
published catalog as an input.

Our own writer rather than ``hats-import``: it publishes incrementally, sizes partitions
by rows and bytes together, and measured faster (``benchmarks/bench_catalogs.py``); the
HATS metadata files are written by ``hats`` itself, and tests validate the result with
``hats`` and read it with ``lsdb``.
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import PublicationError
from ..extras import require
from ..faults import crash_point
from . import hats_files
from .healpix import HEALPIX_COLUMN, HEALPIX_ORDER, healpix_index
from .partitioning import Histogram, Layout, margin_order, pixel_range

if TYPE_CHECKING:
    from ..butler import Butler
    from ..models import DatasetRef

__all__ = ["Publication", "publish_catalog"]

#: Order of the fine histogram partitions are made of (hats-import's default highest order).
HISTOGRAM_ORDER = 10
#: Rows gathered before they are sorted and spilled to disk for the partition step.
SPILL_ROWS = 1_000_000
#: The settings a later publication into the same destination must share.
SETTINGS = ("dataset_type", "ra_column", "dec_column", "max_rows", "max_bytes", "margin_arcsec",
            "histogram_order", "name")


@dataclass
class Publication:
    """What one publication did."""

    path: Path
    name: str
    datasets_added: int
    rows_added: int
    total_rows: int
    partitions: int
    partitions_written: int
    margin_partitions_written: int
    seconds: float
    ref: DatasetRef | None = None
    datasets: int = 0
    notes: list[str] = field(default_factory=list)


#: Settings of a new publication unless given; a later one keeps the publication's own.
DEFAULTS = {"margin_arcsec": 10.0, "max_rows": 1_000_000, "max_bytes": 1 << 30, "ra_column": "ra",
            "dec_column": "dec"}


def publish_catalog(butler: Butler, dataset_type: str, destination: str | os.PathLike[str], *,
                    collections: str | Sequence[str] | None = None, where: str = "",
                    bind: Mapping[str, Any] | None = None, name: str | None = None, run: str | None = None,
                    margin_arcsec: float | None = None, max_rows: int | None = None, max_bytes: int | None = None,
                    ra_column: str | None = None, dec_column: str | None = None, rebuild: bool = False,
                    progress: Callable[[int, int], None] | None = None, refs: Sequence[DatasetRef] | None = None,
                    admit: Callable[[list[str]], None] | None = None) -> Publication:
    """Publish (or update) the HATS catalog of ``dataset_type`` at ``destination``; see the module doc.
    Settings not given are the publication's own (a new one: :data:`DEFAULTS`); giving one that
    differs from the publication's needs ``rebuild``.

    A server publishing for a user passes ``refs``, the datasets of the query that user may see
    (``collections`` and ``where`` are then only recorded), and ``admit``, called under the
    publication's lock with the IDs an update would keep (it raises to refuse them)."""
    require("hats", "publishing a HATS catalog")
    if name is not None and (name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name):
        raise PublicationError(f"a catalog's name is one directory name (no /, not . or ..), not {name!r}")
    started = time.perf_counter()
    given = {"margin_arcsec": margin_arcsec, "max_rows": max_rows, "max_bytes": max_bytes, "ra_column": ra_column,
             "dec_column": dec_column}
    if margin_arcsec is not None and not (margin_arcsec > 0 and math.isfinite(margin_arcsec)):
        raise PublicationError(f"the margin width must be a positive number of arcseconds, not {margin_arcsec}")
    for key in ("max_rows", "max_bytes"):
        if given[key] is not None and given[key] < 1:
            raise PublicationError(f"{key} must be positive, not {given[key]}")
    dtype = butler.registry.dataset_types.get(dataset_type)[1]
    if dtype.storage_class not in ("Table", "ArrowAstropy", "ArrowTable", "DataFrame"):
        raise PublicationError(f"{dataset_type!r} is a {dtype.storage_class} dataset type, not a catalog (Table)")
    dest = Path(destination).absolute()
    if refs is None:
        refs = butler.query_datasets(dataset_type, where, collections=collections, bind=bind, find_first=True)
    refs = sorted(refs, key=lambda r: str(r.id))
    pub = hats_files.PublicationDir(dest)
    with pub.publishing() as staging:
        current = pub.state()  # refuses a destination that is not ours, even when rebuilding
        if current is not None and current["dataset_type"] != dataset_type:
            raise PublicationError(f"{dest} holds the publication of {current['dataset_type']!r}, not of "
                                 f"{dataset_type!r}: choose another destination")
        if current is not None and current.get("run") and not _registered(butler, current["run"]):
            # made visible, then killed before its registration committed: register it now
            _register(butler, Publication(dest, current["name"], 0, 0, current["total_rows"],
                                          len(current["partitions"]), 0, 0, 0.0),
                      current, current["datasets"], current["version"], current["run"], None, "", lambda: None)
        state = None if rebuild else current
        base = {**DEFAULTS, **{k: current[k] for k in DEFAULTS}} if current else dict(DEFAULTS)
        settings = {k: (given[k] if given[k] is not None else base[k]) for k in DEFAULTS}
        settings["max_rows"], settings["max_bytes"] = int(settings["max_rows"]), int(settings["max_bytes"])
        settings["margin_arcsec"] = float(settings["margin_arcsec"])
        m_order = margin_order(settings["margin_arcsec"])
        settings.update(dataset_type=dataset_type, histogram_order=min(HISTOGRAM_ORDER, m_order),
                        name=name or (current["name"] if current else dest.name))
        name = settings["name"]
        if state is not None:
            differ = [k for k in SETTINGS if state.get(k) != settings[k]]
            if differ:
                raise PublicationError(
                    f"{dest} was published with other settings ({', '.join(f'{k}={state.get(k)!r}' for k in differ)}"
                    f"; now {', '.join(f'{k}={settings[k]!r}' for k in differ)}): publish with the same settings, "
                    "or rebuild it (rebuild=True, CLI --rebuild)")
        published = set(state["datasets"]) if state else set()
        if admit is not None and published:
            admit(sorted(published))
        new_refs = [r for r in refs if str(r.id) not in published]
        if state is not None and not new_refs:
            return Publication(dest, name, 0, 0, state["total_rows"], len(state["partitions"]), 0, 0,
                               time.perf_counter() - started, datasets=len(published),
                               notes=["nothing new to publish"])
        order = settings["histogram_order"]
        old_layout = Layout([tuple(p) for p in state["partitions"]]) if state else Layout([])
        old_hist = pub.histogram(order) if state else Histogram.empty(order)
        spill_dir = staging / "_spill"
        spill_dir.mkdir()
        spills, new_hist, schema = _gather(butler, new_refs, spill_dir, settings, progress)
        if state is not None and schema is not None and state.get("schema") != _schema_text(schema):
            raise PublicationError(f"the new {dataset_type} datasets have other columns than the publication at "
                                 f"{dest}: rebuild it (rebuild=True, CLI --rebuild)")
        schema = schema if schema is not None else _schema_from_text(state["schema"]) if state else None
        if schema is None:
            raise PublicationError(f"no {dataset_type} datasets match the query: nothing to publish")
        hist = old_hist + new_hist
        layout = Layout.of(hist, settings["max_rows"], settings["max_bytes"])
        main = staging / name
        margin_name = f"{name}_{settings['margin_arcsec']:g}arcs"
        written, changed = _write_partitions(pub, layout, old_layout, spills, main, name)
        margins = _write_margins(pub, layout, old_layout, spills, changed, main, staging / margin_name,
                                 margin_name, m_order,
                                 {tuple(p) for p in state["margin_partitions"]} if state else None)
        for path in spills:
            path.unlink()
        spill_dir.rmdir()
        _write_metadata(main, staging / margin_name, name, margin_name, layout, margins, settings, hist)
        hats_files.write_collection_properties(staging, name, margin_name)
        datasets = sorted(published | {str(r.id) for r in new_refs})
        version = version_now()
        run = run or f"publications/{name}/{version}"
        pub.write_state({**settings, "datasets": datasets, "partitions": [list(p) for p in layout.partitions],
                         "margin_partitions": [list(p) for p in margins.pixels], "run": run,
                         "total_rows": hist.total_rows, "schema": _schema_text(schema), "version": version}, hist)
        report = Publication(dest, name, len(new_refs), new_hist.total_rows, hist.total_rows, len(layout), written,
                             len(margins.written), 0.0, datasets=len(datasets))
        ref = _register(butler, report, settings, datasets, version, run, collections, where, pub.swap)
    report.ref = ref
    report.seconds = time.perf_counter() - started
    return report


# -- gathering ------------------------------------------------------------------


def _gather(butler: Butler, refs: list[DatasetRef], spill_dir: Path, settings: dict[str, Any],
            progress: Callable[[int, int], None] | None) -> tuple[list[Path], Histogram, pa.Schema | None]:
    """Read each dataset once: index its rows, count them, and spill them sorted in batches."""
    ra_col, dec_col = settings["ra_column"], settings["dec_column"]
    declared = butler.get_catalog_schema(refs[0].dataset_type.name) if refs else None
    hist = Histogram.empty(settings["histogram_order"])
    schema: pa.Schema | None = None
    batch: list[pa.Table] = []
    rows_in_batch, spills = 0, []

    def flush() -> None:
        nonlocal batch, rows_in_batch
        if batch:
            table = pa.concat_tables(batch)
            table = table.take(pc.sort_indices(table[HEALPIX_COLUMN]))
            path = spill_dir / f"{len(spills):06d}.arrow"
            hats_files.spill(path, table)
            spills.append(path)
        batch, rows_in_batch = [], 0

    for done, ref in enumerate(refs, 1):
        table = butler.get(ref, parameters={"as": "arrow"})
        where = f"{ref.dataset_type.name} {dict(ref.data_id.required)} ({ref.id})"
        for col in (ra_col, dec_col):
            if col not in table.column_names:
                raise PublicationError(f"{where} has no column {col!r} (columns: {', '.join(table.column_names)}): "
                                     "name the position columns with ra_column/dec_column (CLI --ra/--dec)")
        if HEALPIX_COLUMN in table.column_names:
            raise PublicationError(f"{where} has a column {HEALPIX_COLUMN!r}, which publication adds itself")
        table = table.replace_schema_metadata(None)
        if schema is None:
            schema = _described(table.schema, declared)
        elif not table.schema.equals(schema, check_metadata=False):
            raise PublicationError(f"{where} has other columns than the first dataset published: "
                                 f"{_schema_difference(schema, table.schema)}")
        table = pa.Table.from_arrays(table.columns, schema=schema)
        ra = table[ra_col].to_numpy(zero_copy_only=False).astype(np.float64)
        dec = table[dec_col].to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90))
        if bad.any():
            raise PublicationError(f"{where}: {int(bad.sum())} of {len(ra)} rows have no valid position "
                                 f"({ra_col}/{dec_col} NaN, infinite or |dec| > 90), e.g. row {int(np.argmax(bad))}")
        index = healpix_index(ra % 360.0, dec)
        bytes_per_row = math.ceil(table.nbytes / table.num_rows) if table.num_rows else 0
        hist = hist + Histogram.of(hist.order, index, bytes_per_row)
        batch.append(table.append_column(HEALPIX_COLUMN, pa.array(index, pa.int64())))
        rows_in_batch += table.num_rows
        if rows_in_batch >= SPILL_ROWS:
            flush()
        if progress is not None:
            progress(done, len(refs))
    flush()
    if schema is not None:
        schema = schema.append(pa.field(HEALPIX_COLUMN, pa.int64()))
    return spills, hist, schema


def _described(schema: pa.Schema, declared: Any) -> pa.Schema:
    """The columns with their descriptions, units and UCDs: from the declared (Felis) schema of
    the dataset type if it has one, else as the stored Parquet carries them."""
    if declared is None:
        return schema
    described = {f.name: f.metadata for f in declared.arrow_schema()}
    return pa.schema([f.with_metadata(described[f.name]) if described.get(f.name) else f for f in schema])


def _schema_difference(a: pa.Schema, b: pa.Schema) -> str:
    fa, fb = {f.name: str(f.type) for f in a}, {f.name: str(f.type) for f in b}
    missing = [n for n in fa if n not in fb]
    extra = [n for n in fb if n not in fa]
    retyped = [f"{n} is {fb[n]}, not {fa[n]}" for n in fa if n in fb and fa[n] != fb[n]]
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"extra {', '.join(extra)}"] if extra else [])
    return "; ".join(parts + retyped) or "the column order differs"


def _schema_text(schema: pa.Schema) -> str:
    return schema.serialize().to_pybytes().hex()


def _schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(text)))


# -- partitions -----------------------------------------------------------------


def _canonical(table: pa.Table) -> pa.Table:
    """Rows in one order whatever the order they came in: by ``_healpix_29``, then every
    sortable column, so an incremental publication writes what a rebuild writes."""
    keys = [(HEALPIX_COLUMN, "ascending")] + [
        (f.name, "ascending") for f in table.schema
        if f.name != HEALPIX_COLUMN and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
                                         or pa.types.is_string(f.type) or pa.types.is_boolean(f.type)
                                         or pa.types.is_temporal(f.type))]
    return table.take(pc.sort_indices(table, sort_keys=keys))


def _slices(spills: list[pa.Table], lo: int, hi: int) -> list[pa.Table]:
    out = []
    for table in spills:
        column = table[HEALPIX_COLUMN].to_numpy()
        a, b = np.searchsorted(column, [lo, hi])
        if b > a:
            out.append(table.slice(a, b - a))
    return out


def _write_partitions(pub: hats_files.PublicationDir, layout: Layout, old_layout: Layout, spill_paths: list[Path],
                      main: Path, name: str) -> tuple[int, set[int]]:
    """Write the partitions that gain rows or change shape, link the others; returns how many
    were written and the indexes (in ``layout``) of those whose pixel is new."""
    spills = [hats_files.read_spill(p) for p in spill_paths]
    old_index = {p: i for i, p in enumerate(old_layout.partitions)}
    written, new_shape = 0, set()
    for index, (order, pixel) in enumerate(layout.partitions):
        lo, hi = pixel_range(order, pixel)
        fresh = _slices(spills, lo, hi)
        relative = hats_files.partition_path(Path(name), order, pixel)
        if (order, pixel) not in old_index:
            new_shape.add(index)
        elif not fresh:
            pub.link_or_copy(relative)
            continue
        old = [hats_files.read_partition(pub.dest / hats_files.partition_path(Path(name), *old_layout.partitions[i]),
                                         ranges=[(lo, hi)]) for i in old_layout.overlapping(lo, hi)]
        table = _canonical(pa.concat_tables(old + fresh))
        hats_files.write_partition(main.parent / relative, table)
        written += 1
        crash_point("publication-partition")
    return written, new_shape


@dataclass
class _Margins:
    pixels: list[tuple[int, int]] = field(default_factory=list)
    written: list[tuple[int, int]] = field(default_factory=list)


def _write_margins(pub: hats_files.PublicationDir, layout: Layout, old_layout: Layout, spill_paths: list[Path],
                   new_shape: set[int], main: Path, margin_dir: Path, margin_name: str, m_order: int,
                   old_margins: set[tuple[int, int]] | None) -> _Margins:
    """The margin of each partition: rows of the others in the pixels of ``m_order`` touching it.
    Recomputed for new partitions and those new rows come near; the rest are linked."""
    from hats.pixel_math.pixel_margins import get_margin

    from .partitioning import margin_targets

    full = old_margins is None
    affected = set(range(len(layout))) if full else set(new_shape)
    if not full:
        for path in spill_paths:
            rows = hats_files.read_spill(path)[HEALPIX_COLUMN].to_numpy()
            affected.update(int(t) for t in np.unique(margin_targets(layout, rows, m_order)[1]))
    result = _Margins()
    shift = 2 * (HEALPIX_ORDER - m_order)
    for index, (order, pixel) in enumerate(layout.partitions):
        relative = hats_files.partition_path(Path(margin_name), order, pixel)
        if index not in affected:
            if (order, pixel) in (old_margins or ()):
                pub.link_or_copy(relative)
                result.pixels.append((order, pixel))
            continue
        pixels = np.array(get_margin(order, pixel, m_order - order), dtype=np.int64)
        if not len(pixels):
            continue
        ranges = _merge_ranges(pixels << shift, (pixels + 1) << shift)
        parts = []
        for source in sorted({i for lo, hi in ranges for i in layout.overlapping(lo, hi)} - {index}):
            parts.append(hats_files.read_partition(hats_files.partition_path(main, *layout.partitions[source]),
                                                   ranges=ranges))
        table = pa.concat_tables(parts) if parts else None
        if table is None or table.num_rows == 0:
            continue
        hats_files.write_partition(margin_dir.parent / relative, _canonical(table))
        result.pixels.append((order, pixel))
        result.written.append((order, pixel))
    result.pixels.sort(key=lambda op: pixel_range(*op)[0])
    return result


def _merge_ranges(starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    order = np.argsort(starts)
    merged: list[tuple[int, int]] = []
    for lo, hi in zip(starts[order].tolist(), ends[order].tolist()):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _write_metadata(main: Path, margin_dir: Path, name: str, margin_name: str, layout: Layout, margins: _Margins,
                    settings: dict[str, Any], hist: Histogram) -> None:
    common = {"hats_col_ra": settings["ra_column"], "hats_col_dec": settings["dec_column"],
              "hats_npix_suffix": ".parquet", "hats_builder": f"skybutler {_version()}",
              "hats_creation_date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M%Z"),
              "hats_version": "v1.0"}
    hats_files.write_catalog_metadata(main, {
        **common, "obs_collection": name, "dataproduct_type": "object", "hats_nrows": hist.total_rows,
        "hats_col_healpix": HEALPIX_COLUMN, "hats_col_healpix_order": HEALPIX_ORDER,
        "hats_max_rows": settings["max_rows"], "hats_max_bytes": settings["max_bytes"],
        "hats_order": layout.highest_order}, layout.partitions)
    margin_rows = 0
    if margins.pixels:
        import pyarrow.parquet as pq

        margin_rows = sum(pq.ParquetFile(hats_files.partition_path(margin_dir, o, p)).metadata.num_rows
                          for o, p in margins.pixels)
    else:
        import pyarrow.parquet as pq

        hats_files.write_empty_metadata(margin_dir, pq.read_schema(main / "dataset" / "_common_metadata"))
    hats_files.write_catalog_metadata(margin_dir, {
        **common, "obs_collection": margin_name, "dataproduct_type": "margin", "hats_nrows": margin_rows,
        "hats_primary_table_url": name, "hats_margin_threshold": settings["margin_arcsec"],
        "hats_order": max((o for o, _ in margins.pixels), default=0)}, margins.pixels)


def version_now() -> str:
    """A new version's name: the UTC time, to the microsecond (``publications/<name>/<version>``)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("skybutler")
    except PackageNotFoundError:
        return "(source)"


# -- registration -----------------------------------------------------------------


def _registered(butler: Butler, run: str) -> bool:
    """Whether the RUN a publication was to be registered in holds its manifest."""
    from ..errors import MissingCollectionError

    try:
        butler.registry.collections.lookup(run)
    except MissingCollectionError:
        return False
    return True


def _recorded_path(butler: Butler, path: Path) -> str:
    """The publication's directory as its manifest records it: relative to the repository's root
    when inside it (where a server publishes: a client reading the manifest learns no server path,
    and the repository may move), else absolute."""
    try:
        return str(path.relative_to(Path(butler.root).absolute()))
    except ValueError:
        return str(path)


def _register(butler: Butler, report: Publication, settings: dict[str, Any], datasets: list[str], version: str,
              run: str, collections: Any, where: str, swap: Callable[[], None]) -> DatasetRef:
    """Record the publication as a ``<type>_hats`` dataset whose quantum read every published
    catalog, and make the new version visible inside that transaction: if the swap fails,
    nothing is registered."""
    from ..registry.quantum_store import DatasetLink, QuantumRecord

    type_name = f"{settings['dataset_type']}_hats"
    butler.register_dataset_type(type_name, [], "Dict")
    manifest = {"path": _recorded_path(butler, report.path), "name": report.name, "version": version, "collections": collections,
                "where": where, "rows": report.total_rows, "partitions": report.partitions,
                "datasets": len(datasets), "datasets_added": report.datasets_added,
                **{k: settings[k] for k in ("dataset_type", "margin_arcsec", "max_rows", "max_bytes")}}
    inputs = butler.registry.refs_by_id([uuid.UUID(i) for i in datasets])
    start = time.time_ns()
    with butler.transaction():
        ref = butler.put(manifest, type_name, {}, run=run)
        record = QuantumRecord(uuid.uuid4(), run, "publish_catalog", "skybutler.catalogs.publish.publish_catalog",
                               {}, "succeeded", host=socket.gethostname(), pid=os.getpid(), start_ns=start,
                               end_ns=time.time_ns(),
                               inputs=[DatasetLink(r.id, r.dataset_type.name, "catalogs", dict(r.data_id.required))
                                       for r in inputs],
                               outputs=[DatasetLink(ref.id, type_name, "publication", {})])
        butler.provenance.store.insert([record])
        swap()
    return ref
