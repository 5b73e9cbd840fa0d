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
from collections.abc import Iterator
from typing import IO, Any, NamedTuple

import lsst.sphgeom as sphgeom
import yaml

from ..errors import SkybutlerError

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
try:  # libyaml's events, composed into nodes one item at a time by PyYAML's own Composer
    from yaml.cyaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml.parser import Parser as _Parser  # type: ignore[assignment]
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


class _ItemLoader(_Parser, yaml.composer.Composer, yaml.constructor.SafeConstructor,  # type: ignore[misc]
                  yaml.resolver.Resolver):
    """The tags of :class:`RubinLoader`, with nodes composed (and objects built) one at a time
    from the parser's events, so that a node is never the whole document."""

    yaml_constructors = dict(RubinLoader.yaml_constructors)

    def __init__(self, stream: IO[str]):
        _Parser.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)

    def value(self) -> Any:
        """The next node, built into a Python object.  Its anchors are kept: a later record may
        name an earlier one's node (a dumper anchors an object written twice)."""
        return self.construct_document(self.compose_node(None, None))

    def key(self) -> Any | None:
        """The next key of the mapping being read, or None (and the mapping's end taken) at its end."""
        if self.check_event(yaml.MappingEndEvent):
            self.get_event()
            return None
        return self.value()

    def expect(self, kind: type, what: str) -> None:
        if not self.check_event(kind):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(None, None, f"expected {what}, found {type(event).__name__}",
                                       event.start_mark)
        self.get_event()


def load_streamed(stream: IO[str]) -> Any:
    """An ``export.yaml`` read a piece at a time: its top-level mapping with ``data`` an iterator of
    its blocks when ``version`` comes before it, as the Rubin butler writes them (the fields after
    ``data`` are then not read; otherwise ``data`` is read whole), and a block's ``records``, when other fields come before it as the Rubin
    butler writes them, an iterator of its records.  Memory holds one record, not the document: a
    block can list every dataset of a type and RUN.  Iterate the blocks in order; what a reader
    leaves of a block's records is skipped.  Raises SkybutlerError as :func:`load` does."""
    with _yaml_errors():
        loader = _ItemLoader(stream)
        loader.expect(yaml.StreamStartEvent, "a YAML stream")
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.expect(yaml.DocumentStartEvent, "a document")
        if not loader.check_event(yaml.MappingStartEvent):
            return loader.value()
        loader.get_event()
        header: dict[str, Any] = {}
        while (key := loader.key()) is not None:
            if key == "data" and "version" in header and loader.check_event(yaml.SequenceStartEvent):
                loader.get_event()
                header["data"] = _guarded(_blocks(loader))
                break
            header[key] = loader.value()
        return header


class _yaml_errors:
    """YAML's errors as the one-line SkybutlerError :func:`load` raises."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, err, trace) -> None:
        if isinstance(err, yaml.constructor.ConstructorError):
            raise SkybutlerError(f"the export holds a YAML tag skybutler does not read: {err.problem}") from None
        if isinstance(err, yaml.YAMLError):
            raise SkybutlerError(f"the export is not valid YAML: {err}") from None


def _guarded(items: Iterator[Any]) -> Iterator[Any]:
    while True:
        with _yaml_errors():
            item = next(items, _END)
        if item is _END:
            return
        yield item


_END = object()


def _blocks(loader: _ItemLoader) -> Iterator[Any]:
    while not loader.check_event(yaml.SequenceEndEvent):
        if not loader.check_event(yaml.MappingStartEvent):
            yield loader.value()  # not a mapping: the reader says what is wrong
            continue
        loader.get_event()
        block: dict[str, Any] = {}
        records = None
        while (key := loader.key()) is not None:
            if records is not None:
                raise SkybutlerError(f"field {key!r} of a {block.get('type')!r} block comes after its records; "
                                     "skybutler reads the records last, where the Rubin butler writes them")
            if key == "records" and block and loader.check_event(yaml.SequenceStartEvent):
                loader.get_event()
                block["records"] = records = _guarded(_records(loader))
                yield block
                for _ in records:  # what the reader left
                    pass
            else:
                block[key] = loader.value()
        if records is None:
            yield block
    loader.get_event()


def _records(loader: _ItemLoader) -> Iterator[Any]:
    while not loader.check_event(yaml.SequenceEndEvent):
        yield loader.value()
    loader.get_event()


def dump(data: Any, stream: IO[str]) -> None:
    """Write ``data`` as Rubin export YAML."""
    yaml.dump(data, stream, Dumper=RubinDumper, sort_keys=False, default_flow_style=False)
