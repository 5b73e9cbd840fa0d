"""Dataset types: registration (idempotent, conflicts refused) and lookup by name."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from ..dimensions import DimensionGroup
from ..errors import ConflictingDefinitionError, DatasetTypeError, MissingDatasetTypeError
from ..models import DatasetType, check_dataset_type_name
from . import definitions_mark
from .database import Database
from .schema import RegistrySchema


class DatasetTypeStore:
    """Reads and writes the dataset_type table and creates each type's membership tables."""

    def __init__(self, db: Database, schema: RegistrySchema):
        self.db = db
        self.schema = schema
        self._by_name: dict[str, tuple[int, DatasetType]] = {}
        self.refresh()

    def refresh(self) -> None:
        t = self.schema.dataset_type
        with self.db.reading() as conn:
            rows = conn.execute(sa.select(t)).mappings().all()
        by_name = {}
        for row in rows:
            dtype = DatasetType(name=row["name"], dimensions=tuple(filter(None, row["dimensions"].split(","))),
                                storage_class=row["storage_class"], is_calibration=row["is_calibration"])
            by_name[dtype.name] = (row["dataset_type_id"], dtype)
            self._tables_for(dtype)
        self._by_name = by_name

    def _tables_for(self, dtype: DatasetType) -> list[sa.Table]:
        group = self.group(dtype)
        tables = [self.schema.tags_table(group)]
        if dtype.is_calibration:
            tables.append(self.schema.calibs_table(group))
        return tables

    def group(self, dtype: DatasetType) -> DimensionGroup:
        return self.schema.universe.group(dtype.dimensions)

    def register(self, dtype: DatasetType) -> bool:
        """Register a dataset type; False if already registered identically, error if differently.
        A new name must follow the naming rule (:func:`~skybutler.models.check_dataset_type_name`)."""
        group = self.group(dtype)  # validates the dimension names
        dtype = dataclasses.replace(dtype, dimensions=group.required)
        existing = self.get_optional(dtype.name)
        if existing is not None:
            if existing[1] != dtype:
                raise ConflictingDefinitionError(
                    f"dataset type {dtype.name!r} is registered as {_describe(existing[1])}; "
                    f"cannot register it again as {_describe(dtype)}")
            return False
        check_dataset_type_name(dtype.name)  # only new names: a repository's existing types keep working
        if "." in dtype.name:
            raise DatasetTypeError(f"{dtype.name!r} names a component of {dtype.name.partition('.')[0]!r}: a "
                                   "component's type is not registered (as in the Rubin butler); read it with "
                                   f"butler.get({dtype.name!r}, ...) or butler.get(ref, component=...)")
        with self.db.transaction() as conn:
            self.db.create_tables(conn, self._tables_for(dtype))
            try:
                with conn.begin_nested():
                    conn.execute(self.schema.dataset_type.insert().values(
                        name=dtype.name, dimensions=",".join(dtype.dimensions),
                        storage_class=dtype.storage_class, is_calibration=dtype.is_calibration))
            except sa.exc.IntegrityError:  # another client registered it meanwhile
                self.refresh()
                return self.register(dtype)
        self.refresh()
        return True

    def get_optional(self, name: str) -> tuple[int, DatasetType] | None:
        found = self._by_name.get(name)
        if found is None:
            self.refresh()
            found = self._by_name.get(name)
        return found

    def get(self, name: str) -> tuple[int, DatasetType]:
        found = self.get_optional(name)
        if found is None:
            known = ", ".join(sorted(self._by_name)) or "none registered"
            raise MissingDatasetTypeError(f"dataset type {name!r} is not registered (known: {known})")
        return found

    def all(self) -> list[DatasetType]:
        self.refresh()
        return [d for _, d in sorted(self._by_name.values(), key=lambda x: x[1].name)]

    def name_of(self, type_id: int) -> DatasetType:
        for tid, dtype in self._by_name.values():
            if tid == type_id:
                return dtype
        self.refresh()
        for tid, dtype in self._by_name.values():
            if tid == type_id:
                return dtype
        raise MissingDatasetTypeError(f"no dataset type with id {type_id}")

    def remove(self, name: str) -> None:
        type_id, _ = self.get(name)
        with self.db.transaction() as conn:
            conn.execute(self.schema.dataset_type.delete().where(self.schema.dataset_type.c.dataset_type_id == type_id))
            definitions_mark.move(self.db, self.schema, conn)
        self.refresh()


def _describe(dtype: DatasetType) -> str:
    calib = ", calibration" if dtype.is_calibration else ""
    return f"({', '.join(dtype.dimensions)}) {dtype.storage_class}{calib}"
