"""Models shared by the parts: dataset types, refs, collections, artifacts.

Plain (data)classes: every repository open makes some, and importing pydantic would
take longer than a trivial command may run.  They still cross an HTTP boundary
unchanged: pydantic (imported by the server and remote client only) validates and
serialises standard dataclasses, and :class:`DatasetRef` says how to do it itself.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
import os
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .dimensions import DataCoordinate, DimensionGroup, DimensionUniverse
from .errors import DatasetTypeError, StorageClassError

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler

#: Namespace of deterministic (UUIDv5) dataset IDs: fixed forever, so every
#: repository computes the same ID for the same raw.
DATASET_ID_NAMESPACE = uuid.UUID("2f7c1f5e-5a2c-4a8e-9d43-8f1d1c0c9b6e")


def uuid7() -> uuid.UUID:
    """A random, time-ordered UUID (RFC 9562 version 7): index-friendly primary keys."""
    return uuid7_batch(1)[0]


def uuid7_batch(n: int) -> list[uuid.UUID]:
    """``n`` distinct version-7 UUIDs of the current millisecond, in increasing order: one call
    to the OS for the randomness.  In order, a batch's index entries are appended one
    after another rather than scattered over the pages of the batch's range (a fifth less
    of SQLite's time for a bulk insert)."""
    high = ((time.time_ns() // 1_000_000) & ((1 << 48) - 1)) << 80 | 0x7 << 76 | 0x2 << 62
    keep = ((1 << 76) - 1) & ~(0x3 << 62)  # 74 random bits around the version and variant
    random = os.urandom(10 * n)
    ints = sorted(high | (int.from_bytes(random[10 * k:10 * k + 10], "big") & keep) for k in range(n))
    return [uuid.UUID(int=i) for i in ints]


def uuid7_hex_batch(n: int) -> list[str]:
    """What :func:`uuid7_batch` makes (in increasing order too), as 32 lowercase hex digits each
    (how SQLite stores IDs), without a :class:`uuid.UUID` per ID: the bytes of the whole
    batch are set with numpy."""
    import numpy as np  # not at import: opening a repository loads no numpy

    ms = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, :6] = np.frombuffer(ms.to_bytes(6, "big"), dtype=np.uint8)
    raw[:, 6] = 0x70 | (raw[:, 6] & 0x0F)  # version 7
    raw[:, 8] = 0x80 | (raw[:, 8] & 0x3F)  # the RFC 4122 variant
    text = np.sort(raw.view("S16").ravel()).tobytes().hex()  # sorted as bytes, in C
    return np.frombuffer(text.encode("ascii"), dtype="S32").astype("U32").tolist()


def deterministic_dataset_id(dataset_type: str, data_id: DataCoordinate) -> uuid.UUID:
    """A UUIDv5 from the dataset type and required data-ID values, independent of the RUN."""
    key = ",".join(f"{k}={v}" for k, v in data_id.required.items())
    return uuid.uuid5(DATASET_ID_NAMESPACE, f"{dataset_type}|{key}")


RUBIN_ID_NAMESPACE = uuid.UUID("840b31d9-05cd-5161-b2c8-00d32b280d0f")
"""The namespace of the Rubin butler's reproducible dataset IDs (``uuid5(NAMESPACE_DNS, "lsst.org")``)."""

#: The ways a dataset ID is made from what it identifies, by ``id_mode``: skybutler's own rule,
#: and the Rubin butler's DATAID_TYPE and DATAID_TYPE_RUN (so both butlers give a dataset one ID).
REPRODUCIBLE_ID_MODES = ("deterministic", "dataid_type", "dataid_type_run")


def reproducible_dataset_id(id_mode: str, dataset_type: str, data_id: DataCoordinate, run: str) -> uuid.UUID:
    """The UUIDv5 ``id_mode`` (one of :data:`REPRODUCIBLE_ID_MODES`) gives a dataset: for the
    Rubin butler's modes, of the text ``dataset_type=T[,run=R],k1=v1,...`` (the required data-ID
    values in key order) in :data:`RUBIN_ID_NAMESPACE`, as the Rubin butler makes it."""
    if id_mode == "deterministic":
        return deterministic_dataset_id(dataset_type, data_id)
    if id_mode not in REPRODUCIBLE_ID_MODES:
        raise ValueError(f"unknown id_mode {id_mode!r}")
    items = [("dataset_type", dataset_type), *([("run", run)] if id_mode == "dataid_type_run" else [])]
    items += sorted((k, str(v)) for k, v in data_id.required.items())
    return uuid.uuid5(RUBIN_ID_NAMESPACE, ",".join(f"{k}={v}" for k, v in items))


class CollectionType(str, enum.Enum):
    """The four kinds of collection."""

    RUN = "RUN"
    TAGGED = "TAGGED"
    CHAINED = "CHAINED"
    CALIBRATION = "CALIBRATION"

    @classmethod
    def parse(cls, value: str | CollectionType | Any) -> CollectionType:
        """A collection type from its name (any case), a member, or the Rubin butler's enum member."""
        from .errors import CollectionError

        if isinstance(value, enum.Enum) and not isinstance(value, CollectionType):
            value = value.name  # the Rubin butler's CollectionType.CHAINED
        try:
            return value if isinstance(value, CollectionType) else cls(str(value).upper())
        except ValueError:
            raise CollectionError(
                f"unknown collection type {value!r}; use one of {', '.join(t.value.lower() for t in cls)}") from None


@dataclasses.dataclass(slots=True)
class CollectionInfo:
    """What the registry knows of one collection (``type`` may be given by its name, ``children``
    as any sequence: as they come from JSON)."""

    name: str
    type: CollectionType
    doc: str = ""
    children: tuple[str, ...] = ()
    #: the CHAINED collections holding it, when asked for (``collections.get_info(..., include_parents=True)``)
    parents: frozenset[str] | None = None

    def __post_init__(self) -> None:
        self.type = CollectionType.parse(self.type)
        self.children = tuple(self.children)
        if self.parents is not None:
            self.parents = frozenset(self.parents)


DATASET_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
"""What a dataset type name may be (the Rubin butler's rule): a letter or ``_``, then letters,
digits and ``_``; a ``.`` only separates a component name (``calexp.wcs``)."""


def check_dataset_type_name(name: str) -> str:
    """``name`` if it follows :data:`DATASET_TYPE_NAME`; DatasetTypeError naming the rule otherwise."""
    if not isinstance(name, str) or DATASET_TYPE_NAME.fullmatch(name) is None:
        raise DatasetTypeError(f"invalid dataset type name {name!r}: a name starts with a letter (or _) and holds "
                               "only letters, digits and _, with '.' only between a name and its component")
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetType:
    """A named kind of dataset: its dimensions and storage class.  Built from what a manifest
    or a client sent too, so each field is checked (``dimensions`` may be any sequence)."""

    name: str
    dimensions: tuple[str, ...]
    storage_class: str
    is_calibration: bool = False

    def __post_init__(self) -> None:
        dims = self.dimensions
        if isinstance(dims, str) or not isinstance(dims, Sequence) or not all(isinstance(d, str) for d in dims):
            raise DatasetTypeError(f"dataset type {self.name!r}: dimensions must be a list of names, not {dims!r}")
        object.__setattr__(self, "dimensions", tuple(dims))
        for field, value, kind in (("name", self.name, str), ("storage_class", self.storage_class, str),
                                   ("is_calibration", self.is_calibration, bool)):
            if not isinstance(value, kind):
                raise DatasetTypeError(f"dataset type {self.name!r}: {field} must be a {kind.__name__}, "
                                       f"not {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-friendly values (what ``DatasetType(**d)`` reads back)."""
        return {"name": self.name, "dimensions": list(self.dimensions), "storage_class": self.storage_class,
                "is_calibration": self.is_calibration}

    def group(self, universe: DimensionUniverse) -> DimensionGroup:
        return universe.group(self.dimensions)

    # A component's dataset type (``calexp.wcs``), as the Rubin butler makes it: never registered,
    # read with ``butler.get`` from its parent's file (see :func:`split_component`).

    def makeComponentDatasetType(self, component: str) -> DatasetType:
        """The dataset type of one component of this type's storage class (``calexp.wcs``)."""
        from .formats import get_storage_class

        components = get_storage_class(self.storage_class).components
        if self.component() is not None or component not in components:
            raise StorageClassError(f"dataset type {self.name!r} ({self.storage_class}) has no component "
                                    f"{component!r}; components: {', '.join(components) or 'none'}")
        return dataclasses.replace(self, name=f"{self.name}.{component}")

    def makeCompositeDatasetType(self) -> DatasetType:
        """The parent type of a component's type (itself for a parent)."""
        return dataclasses.replace(self, name=self.nameAndComponent()[0])

    def nameAndComponent(self) -> tuple[str, str | None]:
        parent, _, component = self.name.partition(".")
        return parent, component or None

    def component(self) -> str | None:
        return self.nameAndComponent()[1]

    def isComponent(self) -> bool:
        return self.component() is not None


#: The formatter prefix of a dataset that is one HDU of a file shared with other datasets.
SHARED_HDU_PREFIX = "fits-hdu:"


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class StoredArtifact:
    """Where and how a dataset's file is stored: the datastore's record of it (made from
    registry rows, so trusted as given)."""

    path: str
    formatter: str
    size: int
    checksum: str | None = None
    #: When this record was read from the registry (``time.time_ns()``, taken before the read;
    #: None: not known).  A file at its path whose inode last changed well before then is the
    #: file it describes; one placed later may be another's (the dataset was purged, moved to
    #: the cold tier or removed since), so a read of such a file asks the registry first.  Not
    #: part of what the record says of the file: ignored by ``==``.
    seen_ns: int | None = dataclasses.field(default=None, repr=False)

    @property
    def shared_hdu(self) -> int | None:
        """The HDU this record reads of a whole-exposure file other datasets share (a detector of a
        DECam or MegaPrime raw, formatter ``fits-hdu:<n>``); None: the file is this dataset's alone."""
        if not self.formatter.startswith(SHARED_HDU_PREFIX):
            return None
        number = self.formatter[len(SHARED_HDU_PREFIX):]
        return int(number) if number.isdigit() else None

    def same_file(self, other: StoredArtifact | None) -> bool:
        """Whether ``other`` records the same file (path, formatter, size and checksum)."""
        return other is not None and (self.path, self.formatter, self.size, self.checksum) == \
            (other.path, other.formatter, other.size, other.checksum)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoredArtifact) and self.same_file(other)

    def __hash__(self) -> int:
        return hash((self.path, self.formatter, self.size, self.checksum))


class ArtifactBatch:
    """The stored files of a batch of refs (one batch of a query's results), looked up
    together, with one statement, the first time any ref of the batch is asked for its
    ``artifact``: reading the refs a query returned costs no look-up per ref, and a query
    whose refs are never read pays nothing.  ``lookup`` maps dataset IDs to their artifact
    records' (path, formatter, size, checksum), and is dropped once it has run; each
    record becomes a :class:`StoredArtifact` when its ref asks."""

    __slots__ = ("_lookup", "_ids", "_found", "_seen_ns")

    def __init__(self, lookup: Callable[[Sequence[uuid.UUID]], dict[uuid.UUID, tuple]], ids: Sequence[uuid.UUID]):
        self._lookup: Callable[[Sequence[uuid.UUID]], dict[uuid.UUID, tuple]] | None = lookup
        self._ids: Sequence[uuid.UUID] | None = ids
        self._found: dict[uuid.UUID, tuple] | None = None
        self._seen_ns = 0

    def get(self, dataset_id: uuid.UUID) -> StoredArtifact | None:
        """The artifact of one dataset of the batch (None if it has none: purged, say)."""
        if self._found is None:
            self._seen_ns = time.time_ns()
            self._found = self._lookup(self._ids)
            self._lookup = self._ids = None
        row = self._found.get(dataset_id)
        if row is None:
            return None
        path, formatter, size, checksum = row
        return StoredArtifact(path=path, formatter=formatter, size=size, checksum=checksum, seen_ns=self._seen_ns)


class DatasetRef:
    """A resolved reference to one dataset: its ID, type, data ID and RUN, and where the
    datastore keeps it (``artifact``) when the caller already knows, or (for a query's
    refs, an :class:`ArtifactBatch`) can find out for a whole batch at once.

    Immutable (read-only attributes; ``with_artifact`` makes a changed copy).  Queries and
    ``put_many`` make refs by the tens of thousands, so this is a slotted class with a
    plain ``__init__`` (0.15 us a ref; a pydantic model took 0.7 us even built without
    validation), and the constructor trusts its arguments: refs are made from values the
    registry produced or checked.  It still crosses a pydantic boundary like the models
    around it: ``TypeAdapter(DatasetRef)`` (or a model field of this type) validates and
    serialises it as ``{id, dataset_type, data_id, run}``; the artifact stays behind.
    """

    __slots__ = ("_id", "_dataset_type", "_data_id", "_run", "_artifact")

    def __init__(self, id: uuid.UUID, dataset_type: DatasetType, data_id: DataCoordinate, run: str,
                 artifact: StoredArtifact | ArtifactBatch | None = None):
        self._id = id
        self._dataset_type = dataset_type
        self._data_id = data_id
        self._run = run
        self._artifact = artifact

    id = property(operator.attrgetter("_id"), doc="The dataset's UUID.")
    dataset_type = property(operator.attrgetter("_dataset_type"), doc="The dataset's type.")
    data_id = property(operator.attrgetter("_data_id"), doc="The dataset's data ID.")
    run = property(operator.attrgetter("_run"), doc="The RUN collection the dataset was written to.")
    dataId = property(operator.attrgetter("_data_id"), doc="``data_id``, by the Rubin butler's name.")
    datasetType = property(operator.attrgetter("_dataset_type"), doc="``dataset_type``, by the Rubin butler's name.")

    @property
    def artifact(self) -> StoredArtifact | None:
        """Its stored file, if known (not serialised); a query's ref looks it up with its batch."""
        artifact = self._artifact
        if artifact.__class__ is ArtifactBatch:
            artifact = self._artifact = artifact.get(self._id)
        return artifact

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatasetRef) and other._id == self._id

    def __repr__(self) -> str:
        return (f"DatasetRef(id={self._id!r}, dataset_type={self._dataset_type.name!r}, "
                f"data_id={self._data_id!r}, run={self._run!r})")

    def __str__(self) -> str:
        return f"{self.dataset_type.name}@{dict(self.data_id.required)} [{self.run}] ({self.id})"

    def __reduce__(self) -> tuple:
        known = None if self._artifact.__class__ is ArtifactBatch else self._artifact  # no look-up to pickle
        return DatasetRef, (self._id, self._dataset_type, self._data_id, self._run, known)

    def makeComponentRef(self, component: str) -> DatasetRef:
        """This dataset's ``component`` (``butler.get`` of it reads that part), as the Rubin butler's."""
        return DatasetRef(self._id, self._dataset_type.makeComponentDatasetType(component), self._data_id, self._run,
                          self._artifact)

    def makeCompositeRef(self) -> DatasetRef:
        """The dataset a component ref is part of (itself for a dataset)."""
        return DatasetRef(self._id, self._dataset_type.makeCompositeDatasetType(), self._data_id, self._run,
                          self._artifact)

    def with_artifact(self, artifact: StoredArtifact | ArtifactBatch | None) -> DatasetRef:
        return DatasetRef(self._id, self._dataset_type, self._data_id, self._run, artifact)

    def with_data_id(self, data_id: DataCoordinate) -> DatasetRef:
        """A copy whose data ID is ``data_id`` (the same one, holding more: implied values, records)."""
        return DatasetRef(self._id, self._dataset_type, data_id, self._run, self._artifact)

    def summary(self) -> dict[str, Any]:
        """A flat, JSON-friendly description for tables and ``--json`` output."""
        return {"dataset_type": self.dataset_type.name, "run": self.run, "id": str(self.id), **dict(self.data_id)}

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        from pydantic_core import core_schema  # only a server or client model asks

        fields = core_schema.typed_dict_schema({
            "id": core_schema.typed_dict_field(handler.generate_schema(uuid.UUID)),
            "dataset_type": core_schema.typed_dict_field(handler.generate_schema(DatasetType)),
            "data_id": core_schema.typed_dict_field(handler.generate_schema(DataCoordinate)),
            "run": core_schema.typed_dict_field(core_schema.str_schema()),
        })
        from_fields = core_schema.no_info_after_validator_function(lambda values: cls(**values), fields)
        return core_schema.json_or_python_schema(
            json_schema=from_fields,
            python_schema=core_schema.union_schema([core_schema.is_instance_schema(cls), from_fields]),
            serialization=core_schema.wrap_serializer_function_ser_schema(
                lambda ref, serialize: serialize({"id": ref.id, "dataset_type": ref.dataset_type,
                                                  "data_id": ref.data_id, "run": ref.run}),
                schema=fields))


def dataset_id_of(target: DatasetRef | uuid.UUID | str) -> uuid.UUID:
    """The dataset ID a caller named: a ref's, a UUID, or its text (ValueError if not a UUID)."""
    if isinstance(target, DatasetRef):
        return target.id
    return target if isinstance(target, uuid.UUID) else uuid.UUID(str(target))


def split_component(target: str | DatasetRef, component: str | None) -> tuple[str | DatasetRef, str | None]:
    """A component named in the dataset type (``"calexp.wcs"``, or a ref of ``makeComponentRef``)
    as the parent (its name or ref) and the component's name; a dataset type object as its
    name; anything else as given."""
    if not isinstance(target, (str, DatasetRef)) and hasattr(target, "name"):
        target = target.name  # a dataset type (skybutler's or the Rubin butler's)
    name = target.dataset_type.name if isinstance(target, DatasetRef) else target
    if not isinstance(name, str) or "." not in name:
        return target, component
    parent, _, named = name.partition(".")
    if component is not None and component != named:
        raise DatasetTypeError(f"{name!r} names the component {named!r}, and component={component!r} another")
    return (target.makeCompositeRef() if isinstance(target, DatasetRef) else parent), named
