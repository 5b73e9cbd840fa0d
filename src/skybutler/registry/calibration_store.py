"""CALIBRATION collections: certify datasets over validity ranges, decertify, and look up
the calibration valid at an observation time.

Validity ranges are half-open ``[begin, end)`` integer TAI nanoseconds.  Two ranges
for the same dataset type and data ID in one collection must not overlap: certify
checks that in the same transaction as the insert.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from ..dimensions import DataCoordinate
from ..errors import CalibrationConflictError, CalibrationLookupError, CollectionError, DatasetTypeError
from ..models import CollectionType, DatasetRef, DatasetType
from ..timespan import Timespan
from .collection_store import CollectionStore
from .database import Database
from .dataset_type_store import DatasetTypeStore
from .schema import RegistrySchema


class CalibrationStore:
    """Reads and writes the dataset_calibs_* tables."""

    def __init__(self, db: Database, schema: RegistrySchema, types: DatasetTypeStore, collections: CollectionStore):
        self.db = db
        self.schema = schema
        self.types = types
        self.collections = collections

    def _calib_collection(self, name: str) -> int:
        cid, kind = self.collections.lookup(name)
        if kind is not CollectionType.CALIBRATION:
            raise CollectionError(f"collection {name!r} is {kind.value}, not CALIBRATION")
        return cid

    def _calib_type(self, name: str) -> tuple[int, DatasetType]:
        type_id, dtype = self.types.get(name)
        if not dtype.is_calibration:
            raise DatasetTypeError(f"dataset type {name!r} is not a calibration type; register it with is_calibration=True")
        return type_id, dtype

    def certify(self, collection: str, refs: Sequence[DatasetRef], timespan: Timespan) -> None:
        """Make refs valid over ``timespan`` in a CALIBRATION collection; overlaps are refused."""
        cid = self._calib_collection(collection)
        begin, end = timespan.to_ns()
        with self.db.transaction() as conn:
            by_type: dict[str, list[DatasetRef]] = {}
            for ref in refs:
                by_type.setdefault(ref.dataset_type.name, []).append(ref)
            for name, group_refs in by_type.items():
                type_id, dtype = self._calib_type(name)
                table = self.schema.calibs_table(self.types.group(dtype))
                seen: set[tuple] = set()
                for ref in group_refs:
                    key = ref.data_id.required_values
                    if key in seen:
                        raise CalibrationConflictError(
                            f"two {name} datasets for data ID {ref.data_id.required} certified over the same range")
                    seen.add(key)
                    clash = conn.execute(sa.select(table.c.dataset_id, table.c.validity_begin, table.c.validity_end)
                                         .where(table.c.collection_id == cid, table.c.dataset_type_id == type_id,
                                                table.c.validity_begin < end, table.c.validity_end > begin,
                                                *[table.c[d] == v for d, v in ref.data_id.required.items()])).first()
                    if clash is not None:
                        raise CalibrationConflictError(
                            f"{name} for data ID {ref.data_id.required} in {collection!r} would overlap the validity "
                            f"{Timespan.from_ns(clash[1], clash[2])} of dataset {clash[0]}")
                conn.execute(table.insert(), [
                    {"dataset_type_id": type_id, "collection_id": cid, "dataset_id": r.id, **r.data_id.required,
                     "validity_begin": begin, "validity_end": end} for r in group_refs])
                self.db.note_inserted(table, len(group_refs))

    def decertify(self, collection: str, dataset_type: str, timespan: Timespan,
                  data_ids: Sequence[DataCoordinate] | None = None) -> int:
        """Remove validity over ``timespan`` (ranges partly inside are truncated or split); returns rows touched."""
        cid = self._calib_collection(collection)
        type_id, dtype = self._calib_type(dataset_type)
        table = self.schema.calibs_table(self.types.group(dtype))
        begin, end = timespan.to_ns()
        dims = self.types.group(dtype).required
        with self.db.transaction() as conn:
            cond = [table.c.collection_id == cid, table.c.dataset_type_id == type_id,
                    table.c.validity_begin < end, table.c.validity_end > begin]
            rows = conn.execute(sa.select(table).where(*cond)).mappings().all()
            if data_ids is not None:
                keys = {d.required_values for d in data_ids}
                rows = [r for r in rows if tuple(r[d] for d in dims) in keys]
            for row in rows:
                conn.execute(table.delete().where(table.c.calib_id == row["calib_id"]))
                base = {k: v for k, v in row.items() if k != "calib_id"}
                if row["validity_begin"] < begin:
                    conn.execute(table.insert().values(**{**base, "validity_end": begin}))
                if row["validity_end"] > end:
                    conn.execute(table.insert().values(**{**base, "validity_begin": end}))
        return len(rows)

    def find(self, dtype: DatasetType, data_id: DataCoordinate, collection_ids: Sequence[int],
             timespan: Timespan) -> tuple[int, DatasetRef] | None:
        """The calibration valid over ``timespan`` in the earliest of ``collection_ids``, with its rank."""
        if not collection_ids or not dtype.is_calibration:
            return None
        type_id, dtype = self.types.get(dtype.name)
        group = self.types.group(dtype)
        table = self.schema.calibs_table(group)
        begin, end = timespan.to_ns()
        if begin == end:  # an instant: the range that contains it
            end = begin + 1
        ds = self.schema.dataset
        stmt = (sa.select(table.c.collection_id, table.c.dataset_id, ds.c.run_id, table.c.validity_begin,
                          table.c.validity_end)
                .join(ds, ds.c.id == table.c.dataset_id)
                .where(table.c.dataset_type_id == type_id, table.c.collection_id.in_(list(collection_ids)),
                       table.c.validity_begin < end, table.c.validity_end > begin,
                       *[table.c[d] == data_id[d] for d in group.required]))
        with self.db.reading() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return None
        rank = {cid: i for i, cid in enumerate(collection_ids)}
        best_rank = min(rank[r[0]] for r in rows)
        best = [r for r in rows if rank[r[0]] == best_rank]
        if len(best) > 1:
            candidates = "; ".join(f"{r[1]} (run {self.collections.name_of(r[2])!r}, valid "
                                   f"{Timespan.from_ns(r[3], r[4])})" for r in best)
            raise CalibrationLookupError(
                f"{dtype.name} for {data_id.required}: {len(best)} calibrations are valid over {timespan} in "
                f"{self.collections.name_of(best[0][0])!r}: {candidates}; give a narrower timespan")
        row = best[0]
        return best_rank, DatasetRef(row[1], dtype, data_id.subset(group), self.collections.name_of(row[2]))

    def validity(self, collection: str, dataset_type: str) -> list[tuple[DatasetRef, Timespan]]:
        """Every certified (ref, validity) of a type in a CALIBRATION collection."""
        cid = self._calib_collection(collection)
        type_id, dtype = self._calib_type(dataset_type)
        group = self.types.group(dtype)
        table = self.schema.calibs_table(group)
        ds = self.schema.dataset
        with self.db.reading() as conn:
            rows = conn.execute(sa.select(table, ds.c.run_id).join(ds, ds.c.id == table.c.dataset_id).where(
                table.c.collection_id == cid, table.c.dataset_type_id == type_id)
                .order_by(table.c.validity_begin)).mappings().all()
        return [(DatasetRef(r["dataset_id"], dtype,
                                 DataCoordinate.from_required(group, tuple(r[d] for d in group.required)),
                                 self.collections.name_of(r["run_id"])),
                 Timespan.from_ns(r["validity_begin"], r["validity_end"])) for r in rows]
