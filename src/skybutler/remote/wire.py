"""Values as they cross the HTTP boundary between a remote client and the server.

JSON has no times, timespans, sky regions or UUIDs; these are tagged objects
(``{"$ts": [begin_ns, end_ns]}``) so that bind values, dimension records and data IDs
come back as the very objects a local butler gives.  Times travel as integer TAI
nanoseconds, the registry's own unit, so nothing is rounded on the way.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..errors import SkybutlerError

_PLAIN = (bool, int, float, str)

#: The most dataset IDs (or other names) one request may list.  The server refuses a longer list
#: with a 413 naming the field and this number, before looking anything up (a hostile client could
#: otherwise make it judge millions); a remote butler splits a longer call into requests under it
#: (``/info`` says the server's number as ``max_ids``).
MAX_IDS = 20_000


def encode(value: Any) -> Any:
    """A JSON-ready form of ``value`` (nested mappings and sequences included)."""
    if value is None or isinstance(value, _PLAIN):
        return value
    if type(value) is dict and all(v is None or isinstance(v, _PLAIN) for v in value.values()):
        return value  # a data ID's values: nothing to convert
    import lsst.sphgeom as sphgeom
    from astropy.time import Time

    from ..dimensions import DataCoordinate, DimensionRecord
    from ..timespan import Timespan, time_to_ns

    if isinstance(value, Timespan):
        return {"$ts": [None if value.begin is None else time_to_ns(value.begin),
                        None if value.end is None else time_to_ns(value.end)]}
    if isinstance(value, Time):
        return {"$time": time_to_ns(value)}
    if isinstance(value, sphgeom.Region):
        return {"$region": base64.b64encode(bytes(value.encode())).decode()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, (DataCoordinate, DimensionRecord)):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [encode(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return encode(value.item())
    raise SkybutlerError(f"cannot send a value of type {type(value).__name__} to a server")


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        key, inner = next(iter(value.items()))
        if key == "$ts":
            from ..timespan import Timespan

            return Timespan.from_ns(*inner)
        if key == "$time":
            from ..timespan import ns_to_time

            return ns_to_time(inner)
        if key == "$region":
            import lsst.sphgeom as sphgeom

            return sphgeom.Region.decode(base64.b64decode(inner))
        if key == "$uuid":
            return uuid.UUID(inner)
    return {k: decode(v) for k, v in value.items()}


def ref_to_json(ref: Any) -> dict[str, Any]:
    """A dataset reference as a compact JSON object (its data ID with any implied values)."""
    return {"id": str(ref.id), "dataset_type": ref.dataset_type.name, "run": ref.run, "data_id": ref.data_id.mapping}


def records_to_json(data_id: Any) -> dict[str, Any]:
    """The records a data ID holds (``with_dimension_records``), by element, as JSON."""
    return {name: None if record is None else encode(record) for name, record in data_id.records.items()}


def with_records(data_id: Any, records: Mapping[str, Any], universe: Any) -> Any:
    """``data_id`` holding the records :func:`records_to_json` sent."""
    from ..dimensions import DimensionRecord
    from ..dimensions.data_id import DataCoordinateWithRecords

    held = {name: None if values is None else DimensionRecord(universe[name], decode(values))
            for name, values in records.items()}
    return DataCoordinateWithRecords(data_id.group, data_id.as_dict(), held)


def ref_from_json(item: Mapping[str, Any], dataset_type: Any, universe: Any) -> Any:
    """A :class:`~skybutler.models.DatasetRef` from :func:`ref_to_json` output."""
    from ..dimensions import DataCoordinate
    from ..models import DatasetRef

    group = dataset_type.group(universe)
    return DatasetRef(uuid.UUID(item["id"]), dataset_type, DataCoordinate(group, dict(item["data_id"])), item["run"])


def pack(header: Mapping[str, Any], payloads: list[bytes]) -> bytes:
    """One request body holding a JSON header and binary payloads (objects to put, files to
    ingest): the header's length (8 bytes), the header, then the payloads back to back."""
    import json

    text = json.dumps({**header, "sizes": [len(p) for p in payloads]}).encode()
    return b"".join([len(text).to_bytes(8, "big"), text, *payloads])


def unpack(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """The header and payloads of a :func:`pack` body; SkybutlerError if it is malformed."""
    import json

    try:
        size = int.from_bytes(data[:8], "big")
        header = json.loads(data[8:8 + size])
        sizes = header["sizes"]
        if not isinstance(sizes, list) or sum(sizes) != len(data) - 8 - size or any(
                not isinstance(n, int) or n < 0 for n in sizes):
            raise ValueError("the payload sizes do not add up")
    except (ValueError, KeyError, TypeError) as err:
        raise SkybutlerError(f"malformed request body: {err}") from None
    out, at = [], 8 + size
    for n in sizes:
        out.append(data[at:at + n])
        at += n
    return header, out


def frame_files(files: Iterable[tuple[str, str | os.PathLike[str]]], chunk: int = 1 << 20) -> Iterator[bytes]:
    """A streamed request body holding files under relative names (an export to import), read a
    chunk at a time: for each, its name's length (4 bytes), the name, its size (8 bytes) and its
    bytes; a zero name length ends it (``datastore.uploads.UploadedTree`` reads it)."""
    for name, path in files:
        encoded = name.encode()
        size = os.path.getsize(path)
        yield len(encoded).to_bytes(4, "big") + encoded + size.to_bytes(8, "big")
        with open(path, "rb") as stream:
            sent = 0
            while data := stream.read(min(chunk, size - sent)):
                sent += len(data)
                yield data
        if sent != size:
            raise SkybutlerError(f"{path} changed while it was sent")
    yield (0).to_bytes(4, "big")


def raise_error(name: Any, message: str, status: int | None = None) -> None:
    """Raise the skybutler exception a server named (``ServerError`` for a name that is not one)."""
    from .. import errors

    kind = getattr(errors, name, None) if isinstance(name, str) else None
    if not (isinstance(kind, type) and issubclass(kind, errors.SkybutlerError)):
        kind = errors.ServerError
        message = f"server answered {status}: {message}" if status is not None else message
    try:
        err = kind(message)
    except (TypeError, ValueError):  # an error made of more than a message (InvalidFileError's failures)
        err = errors.ServerError(message)
    err.status = status
    raise err
