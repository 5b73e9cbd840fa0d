"""Serializable models shared by the parts: dataset types, refs, collections, artifacts.

They are pydantic so that they cross an HTTP boundary unchanged.
"""

from __future__ import annotations

import enum
import os
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .dimensions import DataCoordinate, DimensionGroup, DimensionUniverse

#: Namespace of deterministic (UUIDv5) dataset IDs: fixed forever, so every
#: repository computes the same ID for the same raw.
DATASET_ID_NAMESPACE = uuid.UUID("2f7c1f5e-5a2c-4a8e-9d43-8f1d1c0c9b6e")


def uuid7() -> uuid.UUID:
    """A random, time-ordered UUID (RFC 9562 version 7): index-friendly primary keys."""
    return uuid7_batch(1)[0]


def uuid7_batch(n: int) -> list[uuid.UUID]:
    """``n`` distinct version-7 UUIDs of the current millisecond: one call to the OS for the randomness."""
    high = ((time.time_ns() // 1_000_000) & ((1 << 48) - 1)) << 80 | 0x7 << 76 | 0x2 << 62
    keep = ((1 << 76) - 1) & ~(0x3 << 62)  # 74 random bits around the version and variant
    random = os.urandom(10 * n)
    return [uuid.UUID(int=high | (int.from_bytes(random[10 * k:10 * k + 10], "big") & keep)) for k in range(n)]


def deterministic_dataset_id(dataset_type: str, data_id: DataCoordinate) -> uuid.UUID:
    """A UUIDv5 from the dataset type and required data-ID values, independent of the RUN."""
    key = ",".join(f"{k}={v}" for k, v in data_id.required.items())
    return uuid.uuid5(DATASET_ID_NAMESPACE, f"{dataset_type}|{key}")


class CollectionType(str, enum.Enum):
    """The four kinds of collection."""

    RUN = "RUN"
    TAGGED = "TAGGED"
    CHAINED = "CHAINED"
    CALIBRATION = "CALIBRATION"

    @classmethod
    def parse(cls, value: str | CollectionType) -> CollectionType:
        from .errors import CollectionError

        try:
            return value if isinstance(value, CollectionType) else cls(str(value).upper())
        except ValueError:
            raise CollectionError(
                f"unknown collection type {value!r}; use one of {', '.join(t.value.lower() for t in cls)}") from None


class CollectionInfo(BaseModel):
    """What the registry knows of one collection."""

    name: str
    type: CollectionType
    doc: str = ""
    children: tuple[str, ...] = ()


class DatasetType(BaseModel):
    """A named kind of dataset: its dimensions and storage class."""

    model_config = ConfigDict(frozen=True)

    name: str
    dimensions: tuple[str, ...]
    storage_class: str
    is_calibration: bool = False

    def group(self, universe: DimensionUniverse) -> DimensionGroup:
        return universe.group(self.dimensions)


class StoredArtifact(BaseModel):
    """Where and how a dataset's file is stored: the datastore's record of it."""

    model_config = ConfigDict(frozen=True)

    path: str
    formatter: str
    size: int
    checksum: str | None = None


class DatasetRef(BaseModel):
    """A resolved reference to one dataset: its ID, type, data ID and RUN."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: uuid.UUID
    dataset_type: DatasetType
    data_id: DataCoordinate
    run: str
    component: str | None = None
    artifact: StoredArtifact | None = Field(default=None, exclude=True, repr=False)

    @classmethod
    def make(cls, id: uuid.UUID, dataset_type: DatasetType, data_id: DataCoordinate, run: str,
             artifact: StoredArtifact | None = None) -> DatasetRef:
        """Build without re-validation: the fast path for values the registry produced or checked.

        The same instance state as ``model_construct`` with every field given, set through
        the slots' own descriptors without its per-call bookkeeping: a put_many or a large
        query builds tens of thousands of refs (0.6 us each instead of 2.7).
        """
        ref = _new_object(cls)
        _set_dict(ref, {"id": id, "dataset_type": dataset_type, "data_id": data_id, "run": run,
                        "component": None, "artifact": artifact})
        _set_fields_set(ref, set(_REF_FIELDS))
        _set_extra(ref, None)
        _set_private(ref, None)
        return ref

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatasetRef) and other.id == self.id and other.component == self.component

    def __str__(self) -> str:
        return f"{self.dataset_type.name}@{dict(self.data_id.required)} [{self.run}] ({self.id})"

    def with_artifact(self, artifact: StoredArtifact | None) -> DatasetRef:
        return self.model_copy(update={"artifact": artifact})

    def summary(self) -> dict[str, Any]:
        """A flat, JSON-friendly description for tables and ``--json`` output."""
        return {"dataset_type": self.dataset_type.name, "run": self.run, "id": str(self.id), **dict(self.data_id)}


#: What DatasetRef.make sets: every field, and a pydantic model's instance-state slots.
_REF_FIELDS = frozenset(DatasetRef.model_fields)
_new_object = object.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
