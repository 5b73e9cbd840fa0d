"""Loading a catalog dataset type's datasets into a user's SQL database (``butler.load_catalog``).

The datasets of a query are read through the butler (as Arrow), checked against the
declared schema in force (a file stored under an earlier version, or ingested, must
still fit the table; a nullable column added since is NULL in its rows), given their
``_healpix_29`` column (computed by ``hats``, as for HATS publication, from the columns
whose UCDs mark the main position), and loaded with their bookkeeping rows: a dataset's
rows and its bookkeeping row are always in the same transaction, which holds one large
dataset or several small ones (up to ``GROUP_ROWS`` rows), so that a commit's cost is
shared (see ``registry/catalog_target.py``, which speaks the database's SQL).

So a load is idempotent and safe to interrupt: a re-run loads only the datasets whose
bookkeeping row is missing, and a load killed at any instant has committed each
dataset's rows entirely or not at all -- every row is there exactly once after the
re-run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..errors import CatalogSchemaError
from ..faults import crash_point
from ..registry.catalog_target import Loaded, open_target
from .healpix import HEALPIX_COLUMN, healpix_index
from .validation import conform

if TYPE_CHECKING:
    from ..butler import Butler

__all__ = ["LoadSummary", "load_catalog", "with_healpix"]

#: A transaction loads datasets until it holds this many rows or datasets: one commit (an
#: fsync) per small dataset would cost more than its rows.
GROUP_ROWS = 100_000
GROUP_DATASETS = 200


@dataclass(frozen=True)
class LoadSummary:
    """What a load did: the table, and datasets and rows loaded now or found loaded before."""

    table: str
    datasets_matched: int
    datasets_loaded: int
    datasets_skipped: int
    rows_loaded: int


def with_healpix(rows: pa.Table, ra: str, dec: str) -> pa.Table:
    """``rows`` with the ``_healpix_29`` column appended (null where the position is null, not
    finite, or off the sphere)."""
    ra_values = rows.column(ra).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    dec_values = rows.column(dec).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(ra_values) & np.isfinite(dec_values) & (np.abs(dec_values) <= 90)
    pixels = np.zeros(len(ra_values), dtype=np.int64)
    if ok.any():
        pixels[ok] = healpix_index(ra_values[ok], dec_values[ok])
    column = pa.array(pixels, type=pa.int64(), mask=None if ok.all() else ~ok)
    return rows.append_column(pa.field(HEALPIX_COLUMN, pa.int64()), column)


def load_catalog(butler: Butler, dataset_type: str, db_url: str, *, collections: str | Sequence[str] | None = None,
                 where: str = "", bind: Mapping[str, Any] | None = None, table: str | None = None,
                 progress: Callable[[int, int], None] | None = None, group_rows: int = GROUP_ROWS) -> LoadSummary:
    """The work of :meth:`skybutler.Butler.load_catalog`; ``group_rows`` sizes its transactions."""
    schema = butler.get_catalog_schema(dataset_type)
    if schema is None:
        raise CatalogSchemaError(f"dataset type {dataset_type!r} declares no schema, which its SQL table is made "
                                 "from: declare one first (declare_catalog_schema; CLI: declare-catalog-schema)")
    positions = schema.position_columns()
    if positions is None:
        raise CatalogSchemaError(f"the schema of {dataset_type!r} (table {schema.table!r}) marks no position: "
                                 "the HEALPix column needs columns with UCDs pos.eq.ra and pos.eq.dec (or named "
                                 "ra and dec)")
    refs = list(butler.query_datasets(dataset_type, where, collections=collections, bind=bind, find_first=True))
    name = table or schema.table
    loaded = skipped = rows_loaded = 0
    with open_target(db_url) as target:
        target.prepare(schema, name)
        done = target.loaded(name)
        todo = [ref for ref in refs if ref.id.hex not in done]
        skipped = len(refs) - len(todo)
        group: list[tuple[Loaded, pa.Table]] = []
        finished = 0

        def commit() -> None:
            nonlocal loaded, skipped, rows_loaded, finished
            if target.load(name, [item for item, _ in group], _concat(group)):
                loaded += len(group)
                rows_loaded += sum(item.n_rows for item, _ in group)
            else:  # a concurrent loader committed one of them: each on its own, skipping those there now
                for item, rows in group:
                    if target.load(name, [item], rows):
                        loaded += 1
                        rows_loaded += item.n_rows
                    else:
                        skipped += 1
            finished += len(group)
            group.clear()
            crash_point("catalog-dataset-committed")
            if progress is not None:
                progress(finished, len(todo))

        for ref in todo:
            table = conform(butler.get(ref), schema, f"dataset {ref}", missing_as_null=True)
            rows = with_healpix(table, *positions)
            group.append((Loaded(ref.id.hex, dataset_type, schema.version, rows.num_rows), rows))
            if sum(r.num_rows for _, r in group) >= group_rows or len(group) >= GROUP_DATASETS:
                commit()
        if group:
            commit()
    return LoadSummary(table=name, datasets_matched=len(refs), datasets_loaded=loaded, datasets_skipped=skipped,
                       rows_loaded=rows_loaded)


def _concat(group: list[tuple[Loaded, pa.Table]]) -> pa.Table:
    tables = [rows for _, rows in group]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)
