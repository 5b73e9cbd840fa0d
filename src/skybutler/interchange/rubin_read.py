"""Reading a Rubin butler export (``export.yaml`` format 1.x, or a zip with
``_butler_zip_index.json``) into one neutral description of what it holds.

Nothing here touches a repository: the description (:class:`RubinExport`) lists
dimension records converted to skybutler's universe, collections, dataset types,
datasets with their files and formatter classes, and TAGGED/CALIBRATION
memberships.  Everything wrong with the input is found here, item by item, before
an import writes anything.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..dimensions import DimensionUniverse
from ..errors import SkybutlerError
from ..timespan import Timespan
from . import rubin_yaml
from .rubin_yaml import RubinTimespan

EXPORT_NAME = "export.yaml"
ZIP_INDEX = "_butler_zip_index.json"
#: The export format versions read here: any 1.x (a later minor version's new blocks or fields, if
#: any, are reported item by item like any other unknown content).
SUPPORTED_MAJOR = 1
UNIVERSE_NAMESPACE = "daf_butler"
#: Rubin universe versions read (day_obs and group became dimensions in version 6). Versions 6 and 7
#: are subsets of 8: version 7 lacks the ``ssp_*`` elements, and version 6 also
#: ``exposure.can_see_sky``, which is filled in as the Rubin butler's own 6-to-7 migration fills it.
MIN_UNIVERSE_VERSION = 6
MAX_UNIVERSE_VERSION = 8
#: Observation types whose exposures see the sky, and those that do not: the values the Rubin
#: butler's migration from universe 6 to 7 gives ``can_see_sky`` (others stay NULL).
SKY_OBSERVATION_TYPES = frozenset({"science", "object", "standard", "sky flat", "standard_star", "skyflat", "focus",
                                   "focusing", "exp", "skyexp"})
NON_SKY_OBSERVATION_TYPES = frozenset({"dark", "bias", "agexp", "domeflat", "dome flat", "zero", "spot"})


class RubinImportError(SkybutlerError):
    """A Rubin export that cannot come in; ``problems`` lists each item and why."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        shown = "; ".join(problems[:10]) + (f"; ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        super().__init__(f"cannot import {source} ({len(problems)} problem(s), nothing was imported): {shown}")


@dataclass
class RubinDataset:
    """One dataset: its ID, type, RUN, (minimal) data ID, file and the Rubin formatter class."""

    id: uuid.UUID
    dataset_type: str
    run: str
    data_id: dict[str, Any]
    path: str
    formatter: str


@dataclass
class RubinExport:
    """Everything a Rubin export holds, in skybutler's terms."""

    source: str
    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    collections: list[dict[str, Any]] = field(default_factory=list)
    dataset_types: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: list[RubinDataset] = field(default_factory=list)
    tagged: dict[str, list[uuid.UUID]] = field(default_factory=lambda: defaultdict(list))
    certified: dict[str, list[tuple[Timespan, list[uuid.UUID]]]] = field(default_factory=lambda: defaultdict(list))
    problems: list[str] = field(default_factory=list)
    #: The zip the files are in (None: ``path`` is relative to ``root`` or a file:// URI).
    zip_path: Path | None = None
    root: Path | None = None


def is_rubin_export(path: str | Path) -> bool:
    """Whether ``path`` is a Rubin export: an export.yaml, a directory holding one, or a Rubin zip."""
    path = Path(path)
    if path.is_dir():
        return (path / EXPORT_NAME).is_file()
    if path.suffix == ".zip" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return ZIP_INDEX in archive.namelist()
    return path.is_file() and path.suffix in (".yaml", ".yml")


def read_rubin_export(path: str | Path, universe: DimensionUniverse) -> RubinExport:
    """Read a Rubin export directory, export.yaml or zip; problems are collected, not raised."""
    path = Path(path)
    if path.suffix == ".zip":
        return _read_zip(path, universe)
    file = path / EXPORT_NAME if path.is_dir() else path
    if not file.is_file():
        raise SkybutlerError(f"{path} is not a Rubin export: no {EXPORT_NAME}")
    out = RubinExport(source=str(file), root=file.parent)
    with file.open() as stream:  # a record at a time: the parsed document is never held whole
        document = rubin_yaml.load_streamed(stream)
        if not isinstance(document, dict) or not isinstance(document.get("data"), (list, Iterator)):
            raise RubinImportError(str(file), ["not a Rubin export (no 'data' list)"])
        _check_version(out, document.get("version"))
        _check_universe(out, document.get("universe_namespace", UNIVERSE_NAMESPACE),
                        document.get("universe_version", 0))
        if out.problems:
            raise RubinImportError(out.source, out.problems)
        for number, block in enumerate(document["data"]):
            kind = block.get("type") if isinstance(block, dict) else None
            reader = _BLOCKS.get(kind)
            if reader is None:
                out.problems.append(f"block {number} of {file.name}: unknown block type {kind!r}")
                continue
            reader(out, block, universe)
    _migrate(out, int(document.get("universe_version", 0)))
    _add_bands(out, universe)
    return out


def _migrate(out: RubinExport, version: int) -> None:
    """Records of an older Rubin universe brought to version 8, as the Rubin butler's migrations do:
    from version 6, each exposure's ``can_see_sky`` is set from its observation type."""
    if version >= 7:
        return
    for record in out.records.get("exposure", []):
        if record.get("can_see_sky") is None:
            kind = record.get("observation_type")
            record["can_see_sky"] = (True if kind in SKY_OBSERVATION_TYPES
                                     else False if kind in NON_SKY_OBSERVATION_TYPES else None)


def _check_version(out: RubinExport, version: Any) -> None:
    if version == 0:  # Rubin's own name for the first 1.0.0 files
        return
    try:
        major, *_ = (int(p) for p in str(version).split("."))
    except ValueError:
        out.problems.append(f"export format version {version!r} is not a version number")
        return
    if major != SUPPORTED_MAJOR:
        out.problems.append(f"export format version {version} is not supported (skybutler reads "
                            f"{SUPPORTED_MAJOR}.x)")


def _check_universe(out: RubinExport, namespace: str, version: int) -> None:
    if namespace != UNIVERSE_NAMESPACE or not MIN_UNIVERSE_VERSION <= int(version) <= MAX_UNIVERSE_VERSION:
        out.problems.append(f"dimension universe {namespace} version {version} is not supported (skybutler "
                            f"reads {UNIVERSE_NAMESPACE} versions {MIN_UNIVERSE_VERSION} to {MAX_UNIVERSE_VERSION})")


def convert_record(universe: DimensionUniverse, element_name: str, row: dict[str, Any]) -> dict[str, Any]:
    """A Rubin dimension record as a skybutler record row (split timespan joined, hash as hex)."""
    element = universe[element_name]
    known = set(element.identity) | set(element.implies) | set(element.fields) | {"region", "timespan"}
    if element.key is not None:
        known.add(element.key.name)
    out: dict[str, Any] = {}
    begin = end = None
    for name, value in row.items():
        if name in ("datetime_begin", "timespan_begin"):
            begin = value
        elif name in ("datetime_end", "timespan_end"):
            end = value
        elif name == "timespan" and isinstance(value, RubinTimespan):
            begin, end = value
        elif name not in known:
            raise SkybutlerError(f"field {name!r} of {element_name} is not in skybutler's universe")
        elif isinstance(value, bytes):
            out[name] = value.hex()
        else:
            out[name] = value
    if element.timespan and (begin is not None or end is not None):
        out["timespan"] = Timespan.from_ns(getattr(begin, "ns", begin), getattr(end, "ns", end))
    return out


def _dimension_block(out: RubinExport, block: dict[str, Any], universe: DimensionUniverse) -> None:
    element = block.get("element")
    if element not in universe or universe[element].skypix is not None:
        out.problems.append(f"dimension element {element!r} is not in skybutler's universe")
        return
    for row in block.get("records") or []:
        try:
            out.records[element].append(convert_record(universe, element, row))
        except SkybutlerError as err:
            out.problems.append(f"{element} record {row}: {err}")


def _collection_block(out: RubinExport, block: dict[str, Any], universe: DimensionUniverse) -> None:
    kind = str(block.get("collection_type", "")).upper()
    if kind not in ("RUN", "TAGGED", "CHAINED", "CALIBRATION"):
        out.problems.append(f"collection {block.get('name')!r} has unknown type {kind!r}")
        return
    out.collections.append({"name": block["name"], "type": kind, "doc": block.get("doc") or "",
                            "children": list(block.get("children") or [])})


def _dataset_type_block(out: RubinExport, block: dict[str, Any], universe: DimensionUniverse) -> None:
    name = block["name"]
    try:
        dimensions = universe.group(block.get("dimensions") or []).required
    except SkybutlerError as err:
        out.problems.append(f"dataset type {name}: {err}")
        return
    spec = {"dimensions": dimensions, "storage_class": block["storage_class"],
            "is_calibration": bool(block.get("is_calibration", False))}
    if name in out.dataset_types and out.dataset_types[name] != spec:
        out.problems.append(f"dataset type {name} is defined twice, differently")
    out.dataset_types[name] = spec


def _dataset_block(out: RubinExport, block: dict[str, Any], universe: DimensionUniverse) -> None:
    type_name, run = block["dataset_type"], block["run"]
    for entry in block.get("records") or []:
        ids = entry.get("dataset_id")
        data_ids = entry.get("data_id")
        ids = ids if isinstance(ids, list) else [ids]
        data_ids = data_ids if isinstance(data_ids, list) else [data_ids]
        if len(ids) != len(data_ids):
            out.problems.append(f"{entry.get('path')}: {len(ids)} dataset IDs for {len(data_ids)} data IDs")
            continue
        for dataset_id, data_id in zip(ids, data_ids):
            if not isinstance(dataset_id, uuid.UUID):
                out.problems.append(f"{entry.get('path')}: dataset ID {dataset_id!r} is not a UUID "
                                    "(integer IDs of very old exports are not supported)")
                continue
            out.datasets.append(RubinDataset(dataset_id, type_name, run, dict(data_id), str(entry["path"]),
                                             str(entry.get("formatter") or "")))


def _associations_block(out: RubinExport, block: dict[str, Any], universe: DimensionUniverse) -> None:
    name = block["collection"]
    kind = str(block.get("collection_type", "")).upper()
    if kind == "TAGGED":
        out.tagged[name].extend(block.get("dataset_ids") or [])
    elif kind == "CALIBRATION":
        for validity in block.get("validity_ranges") or []:
            span = validity.get("timespan")
            if span is None:
                out.problems.append(f"CALIBRATION collection {name}: a validity range without a timespan")
                continue
            out.certified[name].append((Timespan.from_ns(*span), list(validity.get("dataset_ids") or [])))
    else:
        out.problems.append(f"associations of collection {name} with type {kind!r}")


_BLOCKS = {"dimension": _dimension_block, "collection": _collection_block, "dataset_type": _dataset_type_block,
           "dataset": _dataset_block, "associations": _associations_block}


def _add_bands(out: RubinExport, universe: DimensionUniverse) -> None:
    """Band records: a view of physical_filter (and of data IDs) in the Rubin butler, a table here."""
    if "band" not in universe:
        return
    bands = {r["band"] for r in out.records.get("physical_filter", []) if r.get("band")}
    bands |= {d.data_id["band"] for d in out.datasets if "band" in d.data_id}
    have = {r["name"] for r in out.records.get("band", [])}
    out.records["band"].extend({"name": b} for b in sorted(bands - have))


#: Rubin's TAI-nanosecond bounds of an unbounded timespan side (1970-01-01 and 2100-01-01).
_RUBIN_NS_MIN, _RUBIN_NS_MAX = 0, 4_102_444_800_000_000_000


def _zip_records(out: RubinExport, records: dict[str, list[list[Any]]], universe_version: int,
                 universe: DimensionUniverse) -> None:
    """Dimension records of a zip, each a list of values in the Rubin universe's column order
    (required, implied, then the rest; regions hex-encoded, timespans as two nanosecond bounds)."""
    if not records:
        return  # the records its data IDs name must then be in the repository already
    columns = _columns(universe_version)
    for element, rows in records.items():
        names = columns.get(element)
        if names is None or element not in universe:
            out.problems.append(f"dimension element {element!r} of the zip is not in skybutler's universe")
            continue
        for values in rows:
            if len(values) != len(names):
                out.problems.append(f"{element} record {values}: {len(values)} values for {len(names)} columns")
                continue
            row = dict(zip(names, values))
            if row.get("region") is not None:
                row["region"] = rubin_yaml.decode_region(row["region"])
            if row.get("timespan") is not None:
                begin, end = row["timespan"]
                row["timespan"] = RubinTimespan(None if begin <= _RUBIN_NS_MIN else begin,
                                                None if end >= _RUBIN_NS_MAX else end)
            if element == "skymap" and isinstance(row.get("hash"), str):
                row["hash"] = bytes.fromhex(row["hash"])
            try:
                out.records[element].append(convert_record(universe, element, row))
            except SkybutlerError as err:
                out.problems.append(f"{element} record {values}: {err}")


def _columns(version: int) -> dict[str, list[str]]:
    """Each element's column order in a zip of Rubin universe ``version`` (6 to 8): version 8's,
    less what the older versions lack."""
    from importlib import resources

    columns = yaml.safe_load(resources.files(__package__).joinpath("rubin_v8_columns.yaml").read_text())
    if version <= 7:
        for name in ("ssp_hypothesis_table", "ssp_hypothesis_bundle", "ssp_balanced_index"):
            columns.pop(name)
    if version <= 6:
        columns["exposure"] = [c for c in columns["exposure"] if c != "can_see_sky"]
    return columns


def _read_zip(path: Path, universe: DimensionUniverse) -> RubinExport:
    """A Rubin zip: the index lists dataset types, refs (with their data IDs) and each member's file."""
    out = RubinExport(source=str(path), zip_path=path)
    try:
        with zipfile.ZipFile(path) as archive:
            index = json.loads(archive.read(ZIP_INDEX))
            members = set(archive.namelist())
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as err:
        raise RubinImportError(str(path), [f"not a Rubin zip: {err}"]) from None
    if index.get("index_version") != "V1":
        raise RubinImportError(str(path), [f"zip index version {index.get('index_version')!r} is not supported "
                                           "(skybutler reads V1)"])
    refs = index.get("refs") or {}
    _check_universe(out, refs.get("universe_namespace", UNIVERSE_NAMESPACE), refs.get("universe_version", 0))
    _zip_records(out, refs.get("dimension_records") or {}, int(refs.get("universe_version", 0)), universe)
    for name, spec in (refs.get("dataset_types") or {}).items():
        _dataset_type_block(out, {"name": name, "dimensions": spec.get("dimensions"),
                                  "storage_class": spec.get("storageClass"),
                                  "is_calibration": spec.get("isCalibration")}, universe)
    compact = refs.get("compact_refs") or {}
    runs: dict[str, None] = {}
    for member, artifact in (index.get("artifact_map") or {}).items():
        info = artifact.get("info") or {}
        if info.get("component"):
            out.problems.append(f"{member}: a component file of a disassembled dataset is not supported")
            continue
        if member not in members:
            out.problems.append(f"{member}: listed in the index but missing from the zip")
            continue
        for text in artifact.get("ids") or []:
            ref = compact.get(text)
            if ref is None:
                out.problems.append(f"{member}: dataset {text} is not in the index's refs")
                continue
            runs.setdefault(ref["run"])
            data_id = {k: v for k, v in ref["data_id"].items()}
            out.datasets.append(RubinDataset(uuid.UUID(text), ref["dataset_type_name"], ref["run"], data_id,
                                             member, str(info.get("formatter") or "")))
    out.collections = [{"name": run, "type": "RUN", "doc": "", "children": []} for run in runs]
    _migrate(out, int(refs.get("universe_version", 0)))
    _add_bands(out, universe)
    return out
