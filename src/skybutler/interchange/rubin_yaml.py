"""The YAML dialect of the Rubin butler's ``export.yaml``: its tags, read and written safely.

Rubin exports tag dataset IDs (``!uuid``), TAI times (``!butler_time/tai/iso``),
timespans (``!lsst.daf.butler.Timespan``) and sky regions
(``!<lsst.sphgeom.ConvexPolygon>`` and the other sphgeom classes, hex-encoded).
The loader here is a safe loader with constructors for exactly these tags (never
``yaml.unsafe_load``), backed by libyaml when it is installed; the dumper writes
the same tags back.  Times are kept as integer TAI nanoseconds since 1970-01-01
TAI, the unit skybutler stores: TAI has no leap seconds, so the ISO text converts
to and from nanoseconds exactly with calendar arithmetic.
"""

from __future__ import annotations

import datetime
import uuid
from typing import IO, Any, NamedTuple

import lsst.sphgeom as sphgeom
import yaml

from ..errors import SkybutlerError

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

TIME_TAG = "!butler_time/tai/iso"
TIMESPAN_TAG = "!lsst.daf.butler.Timespan"
UUID_TAG = "!uuid"
REGION_TAG_PREFIX = "lsst.sphgeom."
REGION_CLASSES = ("ConvexPolygon", "Ellipse", "Circle", "Box", "UnionRegion", "IntersectionRegion")

_EPOCH = datetime.datetime(1970, 1, 1)
_NS_PER_DAY = 86_400_000_000_000


class TaiTime(NamedTuple):
    """An instant as integer nanoseconds since 1970-01-01 TAI."""

    ns: int


class RubinTimespan(NamedTuple):
    """A half-open interval of TAI nanoseconds; None bounds are unbounded sides."""

    begin: int | None
    end: int | None


def iso_to_ns(text: str) -> int:
    """``'2024-01-02 03:00:00.123456789'`` (TAI) -> nanoseconds since 1970-01-01 TAI, exactly."""
    text = text.strip().replace("T", " ")
    whole, _, fraction = text.partition(".")
    try:
        moment = datetime.datetime.strptime(whole, "%Y-%m-%d %H:%M:%S")
        nanos = int((fraction + "000000000")[:9]) if fraction else 0
    except ValueError:
        raise SkybutlerError(f"cannot read TAI time {text!r} (expected 'YYYY-MM-DD HH:MM:SS[.fffffffff]')") from None
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + nanos


def ns_to_iso(ns: int) -> str:
    """Nanoseconds since 1970-01-01 TAI -> the ISO text Rubin exports (nine decimals)."""
    days, rem = divmod(int(ns), _NS_PER_DAY)
    seconds, nanos = divmod(rem, 1_000_000_000)
    moment = _EPOCH + datetime.timedelta(days=days, seconds=seconds)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{nanos:09d}"


class RubinLoader(_SafeLoader):  # type: ignore[misc, valid-type]
    """A safe loader that also reads the Rubin export tags."""


def _uuid(loader: yaml.BaseLoader, node: yaml.Node) -> uuid.UUID:
    return uuid.UUID(loader.construct_scalar(node))


def _time(loader: yaml.BaseLoader, node: yaml.Node) -> TaiTime | None:
    text = loader.construct_scalar(node)
    return None if text in ("", "null", "~") else TaiTime(iso_to_ns(text))


def _timespan(loader: yaml.BaseLoader, node: yaml.Node) -> RubinTimespan | None:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if value == "EMPTY":
            raise SkybutlerError("an empty timespan (EMPTY) cannot be a validity range or observation time")
        return None
    bounds = loader.construct_mapping(node, deep=True)
    begin, end = bounds.get("begin"), bounds.get("end")
    return RubinTimespan(None if begin is None else begin.ns, None if end is None else end.ns)


def decode_region(encoded: str) -> sphgeom.Region:
    """A sky region from its hex-encoded sphgeom bytes."""
    try:
        return sphgeom.Region.decode(bytes.fromhex(encoded))
    except (ValueError, TypeError) as err:
        raise SkybutlerError(f"bad region {encoded[:40]!r}... in the export: {err}") from None


def _region(loader: yaml.BaseLoader, node: yaml.Node) -> sphgeom.Region:
    mapping = loader.construct_mapping(node)
    if "encoded" not in mapping:
        raise SkybutlerError(f"a {node.tag} region without its 'encoded' bytes")
    return decode_region(mapping["encoded"])


RubinLoader.add_constructor(UUID_TAG, _uuid)
RubinLoader.add_constructor(TIME_TAG, _time)
RubinLoader.add_constructor(TIMESPAN_TAG, _timespan)
for _name in REGION_CLASSES:
    RubinLoader.add_constructor(REGION_TAG_PREFIX + _name, _region)


class RubinDumper(_SafeDumper):  # type: ignore[misc, valid-type]
    """A safe dumper that writes UUIDs, TAI times, timespans and regions with Rubin's tags."""


def _represent_uuid(dumper: yaml.BaseDumper, value: uuid.UUID) -> yaml.Node:
    return dumper.represent_scalar(UUID_TAG, str(value))


def _represent_time(dumper: yaml.BaseDumper, value: TaiTime) -> yaml.Node:
    return dumper.represent_scalar(TIME_TAG, ns_to_iso(value.ns))


def _represent_timespan(dumper: yaml.BaseDumper, value: RubinTimespan) -> yaml.Node:
    bounds = {"begin": None if value.begin is None else TaiTime(value.begin),
              "end": None if value.end is None else TaiTime(value.end)}
    return dumper.represent_mapping(TIMESPAN_TAG, bounds)


def _represent_region(dumper: yaml.BaseDumper, value: sphgeom.Region) -> yaml.Node:
    return dumper.represent_mapping(REGION_TAG_PREFIX + type(value).__name__, {"encoded": value.encode().hex()})


RubinDumper.add_representer(uuid.UUID, _represent_uuid)
RubinDumper.add_representer(TaiTime, _represent_time)
RubinDumper.add_representer(RubinTimespan, _represent_timespan)
for _name in REGION_CLASSES:
    RubinDumper.add_representer(getattr(sphgeom, _name), _represent_region)


def load(stream: IO[str] | str) -> Any:
    """Parse Rubin export YAML (safe: only plain data and the tags above)."""
    try:
        return yaml.load(stream, Loader=RubinLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as err:
        raise SkybutlerError(f"the export holds a YAML tag skybutler does not read: {err.problem}") from None
    except yaml.YAMLError as err:
        raise SkybutlerError(f"the export is not valid YAML: {err}") from None


def dump(data: Any, stream: IO[str]) -> None:
    """Write ``data`` as Rubin export YAML."""
    yaml.dump(data, stream, Dumper=RubinDumper, sort_keys=False, default_flow_style=False)
