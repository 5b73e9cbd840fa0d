"""The files of a HATS publication: partitions, HATS metadata, our state, and the atomic swap.

The one module of ``catalogs/`` that touches files.  A publication directory is a HATS
collection::

    DEST/collection.properties            the collection: main catalog + margin
    DEST/<name>/hats.properties           main catalog: properties, partition_info.csv,
    DEST/<name>/partition_info.csv          dataset/_metadata, dataset/_common_metadata,
    DEST/<name>/dataset/Norder=k/Dir=d/Npix=n.parquet
    DEST/<name>_<w>arcs/...               the margin cache, laid out the same way
    DEST/skybutler_publication.json       what skybutler needs to add to it later
    DEST/skybutler_histogram.parquet      rows and bytes per fine pixel

A new version is written in a hidden sibling (``.DEST.publishing-<token>``), untouched
partitions hard-linked from the current one, and made visible in one step: a rename when
``DEST`` does not exist, else an atomic exchange of the two directories (Linux
``renameat2(RENAME_EXCHANGE)``), after which the old version is deleted.  A publisher holds
``flock`` on ``.DEST.lock``; a sibling left by a killed publisher is deleted by the next one,
or, for the publications a server makes in its repository, by the next open of the repository
(:func:`remove_abandoned_versions`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import PublicationError, SearchError
from .healpix import HEALPIX_COLUMN
from .partitioning import Histogram

__all__ = ["PublicationDir", "STATE_NAME", "partition_path", "read_partition", "write_partition"]

STATE_NAME = "skybutler_publication.json"
HISTOGRAM_NAME = "skybutler_histogram.parquet"
#: Rows per Parquet row group: a search skips row groups by their ``_healpix_29`` statistics.
ROW_GROUP_ROWS = 20_000


def partition_path(catalog_dir: Path, order: int, pixel: int) -> Path:
    """``<catalog>/dataset/Norder=k/Dir=d/Npix=n.parquet`` (the HATS layout)."""
    return catalog_dir / "dataset" / f"Norder={order}" / f"Dir={pixel // 10000 * 10000}" / f"Npix={pixel}.parquet"


def write_partition(path: Path, table: pa.Table) -> None:
    """One partition, sorted by ``_healpix_29``, in row groups a search can skip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sorting = [pq.SortingColumn(table.schema.get_field_index(HEALPIX_COLUMN))]
    pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS, sorting_columns=sorting, compression="snappy")


def read_partition(path: Path, columns: list[str] | None = None,
                   ranges: list[tuple[int, int]] | None = None) -> pa.Table:
    """A partition's rows (``columns`` only), or those whose ``_healpix_29`` lies in one of
    the half-open, sorted, disjoint ``ranges``: row groups outside them are not read."""
    file = pq.ParquetFile(path)
    if ranges is None:
        return file.read(columns=columns)
    starts = np.array([lo for lo, _ in ranges], dtype=np.int64)
    ends = np.array([hi for _, hi in ranges], dtype=np.int64)
    meta = file.metadata
    at = next(i for i in range(meta.num_columns) if meta.schema.column(i).path == HEALPIX_COLUMN)
    groups = []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(at).statistics
        if stats is None or not stats.has_min_max:
            groups.append(g)
            continue
        k = int(np.searchsorted(starts, stats.max, side="right"))  # ranges starting at or before its max
        if k and ends[k - 1] > stats.min:
            groups.append(g)
    wanted = None if columns is None else list(dict.fromkeys([*columns, HEALPIX_COLUMN]))
    table = file.read_row_groups(groups, columns=wanted)
    index = table[HEALPIX_COLUMN].to_numpy()
    i = np.searchsorted(starts, index, side="right") - 1
    table = table.filter((i >= 0) & (index < ends[np.maximum(i, 0)]))
    return table if columns is None or HEALPIX_COLUMN in columns else table.drop_columns([HEALPIX_COLUMN])


def _renameat2_exchange(a: Path, b: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        raise PublicationError("replacing a publication atomically needs renameat2 (Linux): publish into a new "
                             "directory instead")
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


class PublicationDir:
    """The destination directory of a publication and the version being written beside it."""

    def __init__(self, dest: str | os.PathLike[str]):
        self.dest = Path(dest).absolute()
        self.lock_path = self.dest.parent / f".{self.dest.name}.lock"
        self.staging: Path | None = None
        self._lock_fd: int | None = None

    # -- what is there ---------------------------------------------------------

    def state(self) -> dict[str, Any] | None:
        """The current publication's state, None if ``dest`` is missing or empty; refuses a
        directory holding anything else (another catalog, or files of the user)."""
        if not self.dest.exists():
            return None
        if not self.dest.is_dir():
            raise PublicationError(f"publication destination {self.dest} is a file, not a directory")
        entries = sorted(os.listdir(self.dest))
        if not entries:
            return None
        if STATE_NAME not in entries:
            what = "another HATS catalog" if {"hats.properties", "collection.properties"} & set(entries) else \
                f"{len(entries)} entries, e.g. {entries[0]!r}"
            raise PublicationError(f"publication destination {self.dest} holds {what}, not a skybutler publication: "
                                 "choose a new or empty directory")
        try:
            return json.loads((self.dest / STATE_NAME).read_text())
        except (OSError, ValueError) as err:
            raise PublicationError(f"{self.dest / STATE_NAME} cannot be read: {err}") from None

    def histogram(self, order: int) -> Histogram:
        path = self.dest / HISTOGRAM_NAME
        if not path.exists():
            return Histogram.empty(order)
        t = pq.read_table(path)
        return Histogram(order, *(t[c].to_numpy().astype(np.int64) for c in ("pixel", "rows", "bytes")))

    # -- writing a new version -------------------------------------------------

    @contextlib.contextmanager
    def publishing(self) -> Iterator[Path]:
        """Hold the destination's lock, clear what killed publishers left, and give a fresh
        staging directory; it is deleted on the way out unless :meth:`swap` made it current."""
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in (errno.EAGAIN, errno.EACCES):
                    raise PublicationError(f"another process is publishing into {self.dest}: try again when it "
                                         "has finished") from None
                raise
            for leftover in self.dest.parent.glob(f".{self.dest.name}.publishing-*"):
                shutil.rmtree(leftover, ignore_errors=True)  # ours, and its writer is dead: we hold the lock
            self.staging = self.dest.parent / f".{self.dest.name}.publishing-{uuid.uuid4().hex}"
            self.staging.mkdir()
            try:
                yield self.staging
            finally:
                if self.staging is not None and self.staging.exists():
                    shutil.rmtree(self.staging, ignore_errors=True)
                self.staging = None
        finally:
            os.close(fd)  # drops the flock

    def link_or_copy(self, relative: Path) -> None:
        """Carry an unchanged file of the current version into the staging one (hard link)."""
        assert self.staging is not None
        target = self.staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(self.dest / relative, target)
        except OSError:
            shutil.copy2(self.dest / relative, target)

    def write_state(self, state: dict[str, Any], hist: Histogram) -> None:
        assert self.staging is not None
        pq.write_table(pa.table({"pixel": hist.pixels, "rows": hist.rows, "bytes": hist.nbytes}),
                       self.staging / HISTOGRAM_NAME)
        (self.staging / STATE_NAME).write_text(json.dumps(state, indent=1, sort_keys=True))

    def swap(self) -> None:
        """Make the staging version the publication, in one atomic step."""
        from ..faults import crash_point

        assert self.staging is not None
        for directory in [p for p in self.staging.rglob("*") if p.is_dir()] + [self.staging]:
            fd = os.open(directory, os.O_RDONLY)  # the new version is on disk before it is visible
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        crash_point("publication-staged")
        if self.dest.exists():
            _renameat2_exchange(self.staging, self.dest)  # staging now holds the old version
            crash_point("publication-swapped")
            shutil.rmtree(self.staging, ignore_errors=True)
        else:
            os.rename(self.staging, self.dest)
        self.staging = None


def remove_abandoned_versions(directory: Path) -> list[str]:
    """Delete the hidden versions killed publishers left in ``directory``: those of each publication
    whose lock no live publisher holds (the next publisher would delete them too); returns them."""
    removed: list[str] = []
    for lock in directory.glob(".*.lock"):
        leftovers = list(directory.glob(f"{lock.name[:-len('.lock')]}.publishing-*"))
        if not leftovers:
            continue
        fd = os.open(lock, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a publisher at work
                continue
            for leftover in leftovers:
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(str(leftover))
        finally:
            os.close(fd)
    return removed


def write_catalog_metadata(catalog_dir: Path, properties: dict[str, Any], pixels: list[tuple[int, int]]) -> None:
    """``partition_info.csv``, ``hats.properties`` and the Parquet ``_metadata``/``_common_metadata``
    of one catalog, through the ``hats`` package's own writers."""
    from hats.catalog import PartitionInfo, TableProperties
    from hats.io.parquet_metadata import write_parquet_metadata
    from hats.pixel_math.healpix_pixel import HealpixPixel

    (catalog_dir / "dataset").mkdir(parents=True, exist_ok=True)
    PartitionInfo.from_healpix([HealpixPixel(o, p) for o, p in pixels]).write_to_file(catalog_path=catalog_dir)
    if pixels:
        write_parquet_metadata(catalog_dir)
    TableProperties(**properties).to_properties_file(catalog_dir)


def write_empty_metadata(catalog_dir: Path, schema: pa.Schema) -> None:
    """``_common_metadata`` and an empty ``_metadata`` for a catalog without partitions (an empty margin)."""
    dataset = catalog_dir / "dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    pq.write_metadata(schema, dataset / "_common_metadata")
    pq.write_metadata(schema, dataset / "_metadata")


def write_collection_properties(dest: Path, name: str, margin: str) -> None:
    from hats.catalog.dataset.collection_properties import CollectionProperties

    CollectionProperties(obs_collection=name, hats_primary_table_url=name, all_margins=[margin],
                         default_margin=margin).to_properties_file(dest)


def spill(path: Path, table: pa.Table) -> None:
    """A batch of rows sorted by ``_healpix_29``, kept for the partition step (Arrow IPC)."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def read_spill(path: Path) -> pa.Table:
    """A spilled batch, memory-mapped: slicing it reads only the rows sliced."""
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()




def _properties(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    return values


def catalog_info(path: str | os.PathLike[str]) -> tuple[Path, dict[str, str], list[tuple[int, int]]]:
    """The main catalog directory of a HATS collection or catalog at ``path``, its properties and
    its partitions, read from ``collection.properties``, ``hats.properties`` and
    ``partition_info.csv`` (a few small files, no data)."""
    root = Path(path).absolute()
    try:
        if (root / "collection.properties").exists():
            primary = _properties(root / "collection.properties")["hats_primary_table_url"]
            root = root / primary
        properties = _properties(root / "hats.properties")
        lines = (root / "partition_info.csv").read_text().split()
    except (OSError, KeyError) as err:
        raise SearchError(f"{path} is not a HATS catalog: {err}") from None
    header = [h.strip() for h in lines[0].split(",")]
    try:
        at_order, at_pixel = header.index("Norder"), header.index("Npix")
    except ValueError:
        raise SearchError(f"{root / 'partition_info.csv'} has no Norder,Npix columns") from None
    pixels = [(int(row.split(",")[at_order]), int(row.split(",")[at_pixel])) for row in lines[1:] if row]
    return root, properties, pixels


def catalog_schema(catalog_dir: Path) -> pa.Schema:
    """The Arrow schema of a catalog, from its ``dataset/_common_metadata``."""
    return pq.read_schema(catalog_dir / "dataset" / "_common_metadata")
