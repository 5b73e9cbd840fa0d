"""Writing an export the Rubin butler imports: ``export.yaml`` (format 1.0.2, universe
``daf_butler`` 8) with the files beside it, or a Rubin zip (``_butler_zip_index.json``).

Records are written as the Rubin butler writes them: the element's key under its
key name (``id``), timespans split into ``datetime_begin``/``datetime_end`` TAI
times, regions hex-encoded, sky-map hashes as bytes.  Fields skybutler has and the
Rubin universe lacks (``exposure.airmass``, ``visit.observation_type``) and band
records (a view in the Rubin butler) are left out, since it would refuse them.
Dataset types keep their Rubin storage-class names; skybutler's own classes are
written as ``StructuredDataDict``, ``ArrowAstropy`` and ``ImageF``.
"""

from __future__ import annotations

import json
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..copy_out import source
from ..datastore.copy_scratch import ScratchJournal, copy_out_into
from ..datastore.local_files import new_text_file, place_new_file, replace_file
from ..dimensions import DimensionRecord
from ..errors import SkybutlerError
from ..models import CollectionType, DatasetRef
from ..repository_transfer import CHUNK
from ..shared_files import refuse_shared
from ..timespan import NS_MAX, NS_MIN, Timespan
from . import rubin_yaml
from .rubin_formats import export_formatter, export_storage_class, export_suffix
from .rubin_read import EXPORT_NAME, ZIP_INDEX
from .rubin_yaml import RubinTimespan, TaiTime

if TYPE_CHECKING:
    from ..butler import Butler
    from ..copy_out import LocalSource, RemoteSource

FORMAT_VERSION = "1.0.2"
UNIVERSE = ("daf_butler", 8)
#: Elements the Rubin butler computes rather than stores.
_NOT_EXPORTED = {"band"}
#: Fields of the default universe that the Rubin universe lacks.
_SKYBUTLER_ONLY = {"exposure": {"airmass"}, "visit": {"observation_type"}}


#: Join elements whose rows go with the exported visits, as the Rubin butler exports them: the
#: exposures a visit was made of, and the visit systems it belongs to.
_FOLLOW_VISITS = ("visit_definition", "visit_system_membership")


def _with_related(butler: Butler, records: dict[str, list[DimensionRecord]]) -> dict[str, list[DimensionRecord]]:
    """The records the datasets' data IDs name, plus the visits' definitions and memberships and the
    records those name in turn (exposures, their groups, visit systems)."""
    universe = butler.universe
    visits = {r.identity for r in records.get("visit", [])}
    if not visits:
        return records
    out = {name: list(rows) for name, rows in records.items()}
    have = {name: {r.identity for r in rows} for name, rows in out.items()}
    wanted: dict[str, set[tuple]] = defaultdict(set)
    for join in _FOLLOW_VISITS:
        element = universe[join]
        at = [element.identity.index(d) for d in ("instrument", "visit")]
        rows = [r for r in butler.registry.dimensions.fetch_all(join) if tuple(r.identity[i] for i in at) in visits]
        out[join] = rows
        for row in rows:
            for dim in element.identity:
                wanted[dim].add(tuple(row[d] for d in universe[dim].identity))
    while wanted:
        name, keys = wanted.popitem()
        keys -= have.get(name, set())
        if not keys:
            continue
        fetched = butler.registry.dimensions.fetch_many(name, sorted(keys))
        out.setdefault(name, []).extend(fetched)
        have.setdefault(name, set()).update(r.identity for r in fetched)
        for record in fetched:
            for dim in universe[name].implies + universe[name].requires:
                wanted[dim].add(tuple(record[d] for d in universe[dim].identity))
    return {name: out[name] for name in universe.sorted(out)}


def _rubin_record(record: DimensionRecord) -> dict[str, Any]:
    element = record.element
    out: dict[str, Any] = {}
    for name, value in record.items():
        if name in _SKYBUTLER_ONLY.get(element.name, ()):
            continue
        if name == element.name and element.key is not None:
            out[element.key.name] = value
        elif name == "timespan":
            begin, end = (None, None) if value is None else _bounds(value)
            out["datetime_begin"] = None if begin is None else TaiTime(begin)
            out["datetime_end"] = None if end is None else TaiTime(end)
        elif name == "hash" and element.name == "skymap" and isinstance(value, str):
            out[name] = bytes.fromhex(value)
        else:
            out[name] = value
    return out


def _bounds(span: Timespan) -> tuple[int | None, int | None]:
    begin, end = span.to_ns()
    return (None if begin <= NS_MIN else begin, None if end >= NS_MAX else end)


def _span(span: Timespan) -> RubinTimespan:
    return RubinTimespan(*_bounds(span))


def _with_children(butler: Butler, names: Sequence[str]) -> list[str]:
    """``names`` with every CHAINED collection's children (recursively) before it: the Rubin
    butler's import defines a chain only from collections already there."""
    out: list[str] = []

    def add(name: str) -> None:
        if name in out:
            return
        if butler.collections.info(name).type is CollectionType.CHAINED:
            for child in butler.collections.get_chain(name):
                add(child)
        out.append(name)

    for name in names:
        add(name)
    return out


def _collections(butler: Butler, names: Sequence[str], refs: list[DatasetRef]) -> tuple[list[dict], list[dict]]:
    """Collection blocks (RUNs of the refs first, then the named ones) and association blocks."""
    ids = {r.id for r in refs}
    types = sorted({r.dataset_type.name for r in refs})
    blocks: list[dict[str, Any]] = []
    runs = sorted({r.run for r in refs})
    for run in runs:
        blocks.append({"type": "collection", "collection_type": "RUN", "name": run, "host": None,
                       "timespan_begin": None, "timespan_end": None})
    associations: list[dict[str, Any]] = []
    seen = set(runs)
    for name in _with_children(butler, names):
        if name in seen:
            continue
        seen.add(name)
        kind = butler.collections.info(name).type
        block: dict[str, Any] = {"type": "collection", "collection_type": kind.value, "name": name}
        if kind is CollectionType.RUN:
            block.update(host=None, timespan_begin=None, timespan_end=None)
        elif kind is CollectionType.CHAINED:
            block["children"] = list(butler.collections.get_chain(name))
        elif kind is CollectionType.TAGGED:
            members = [r.id for t in types for r in butler.query_datasets(t, collections=name, find_first=False)
                       if r.id in ids]
            associations.append({"type": "associations", "collection": name, "collection_type": "TAGGED",
                                 "dataset_ids": members})
        elif kind is CollectionType.CALIBRATION:
            by_span: dict[RubinTimespan, list] = defaultdict(list)
            for t in types:
                if butler.get_dataset_type(t).is_calibration:
                    for ref, span in butler.collections.validity(name, t):
                        if ref.id in ids:
                            by_span[_span(span)].append(ref.id)
            associations.append({"type": "associations", "collection": name, "collection_type": "CALIBRATION",
                                 "validity_ranges": [{"timespan": s, "dataset_ids": i} for s, i in by_span.items()]})
        blocks.append(block)
    return blocks, associations


def export_rubin(butler: Butler, refs: Iterable[DatasetRef], destination: str | Path, *,
                 collections: Sequence[str] = (), transfer: str = "copy", overwrite: bool = False) -> int:
    """Write ``refs`` as a Rubin export: a directory (export.yaml and files) or, for a
    destination ending in ``.zip``, a Rubin zip (one already there is replaced, in one step once
    the new one is whole, only if ``overwrite``).  ``collections`` adds TAGGED, CALIBRATION
    and CHAINED collections with the refs' memberships.  Returns the number of datasets."""
    destination = Path(destination)
    refs = list({r.id: r for r in refs}.values())
    if destination.suffix == ".zip":
        return _write_zip(butler, refs, destination, overwrite)
    if (destination / EXPORT_NAME).exists():
        raise SkybutlerError(f"{destination} already holds an {EXPORT_NAME}; choose an empty directory")
    files = source(butler)
    artifacts = {}
    for begin in range(0, len(refs), CHUNK):  # through a server, the records come with the artifacts
        artifacts.update(files.artifacts(refs[begin:begin + CHUNK], records=True, related=True))
    missing = [r for r in refs if r.id not in artifacts]
    if missing:
        raise SkybutlerError(f"dataset {missing[0]} has no stored file to export")
    refuse_shared({r: artifacts[r.id] for r in refs}, "a Rubin export")
    gathered: dict[str, list[DimensionRecord]] = defaultdict(list)
    for element, rows in files.records():
        gathered[element].extend(rows)
    if not files.remote:  # a server adds the related records itself (the registry is there)
        gathered = _with_related(butler, gathered)
    data: list[dict[str, Any]] = []
    for element, records in gathered.items():
        if element not in _NOT_EXPORTED:  # in identity order, however they were fetched
            data.append({"type": "dimension", "element": element,
                         "records": [_rubin_record(r) for r in sorted(records, key=lambda r: r.identity)]})
    blocks, associations = _collections(butler, collections, refs)
    data += blocks
    by_group: dict[tuple[str, str], list[DatasetRef]] = defaultdict(list)
    for ref in refs:
        by_group[(ref.dataset_type.name, ref.run)].append(ref)
    with copy_out_into(destination) as journal:
        _place_groups(butler, files, by_group, artifacts, destination, journal, transfer, data)
        data += associations
        document = {"description": "Butler Data Repository Export", "version": FORMAT_VERSION,
                    "universe_version": UNIVERSE[1], "universe_namespace": UNIVERSE[0], "data": data}
        try:  # placed whole, never over a file there
            with new_text_file(destination / EXPORT_NAME, journal) as stream:
                rubin_yaml.dump(document, stream)
        except FileExistsError:
            raise SkybutlerError(f"{destination / EXPORT_NAME} is already there, and is not this export's: "
                                 "choose an empty directory (nothing there was changed)") from None
    return len(refs)


def _place_groups(butler: Butler, files: LocalSource | RemoteSource, by_group: dict[tuple[str, str], list[DatasetRef]],
                  artifacts: dict, destination: Path, journal: ScratchJournal, transfer: str,
                  data: list[dict[str, Any]]) -> None:
    """Each (dataset type, RUN)'s files placed in ``destination``, and its blocks added to ``data``."""
    typed: set[str] = set()
    for (type_name, run), items in by_group.items():
        dtype = items[0].dataset_type
        if type_name not in typed:
            typed.add(type_name)
            data.append({"type": "dataset_type", "name": type_name,
                         "dimensions": list(dtype.group(butler.universe).names),
                         "storage_class": export_storage_class(dtype.storage_class),
                         "is_calibration": dtype.is_calibration})
        records = []
        for ref in items:
            artifact = artifacts[ref.id]
            path = files.place(ref, artifact, destination, journal, transfer,
                               suffix=export_suffix(artifact.formatter))
            records.append({"dataset_id": [ref.id], "data_id": [dict(ref.data_id.required)], "path": path,
                            "formatter": export_formatter(artifact.formatter, dtype.storage_class)})
        data.append({"type": "dataset", "dataset_type": type_name, "run": run, "records": records})


def _write_zip(butler: Butler, refs: list[DatasetRef], destination: Path, overwrite: bool = False) -> int:
    """A Rubin zip: each file once, named ``<dataset ID>-<file name>``, and the index the Rubin
    butler's ``ingest_zip`` reads (dataset types, refs with data IDs, and each file's formatter).

    Written under a hidden name of its own (never a name a person's file may have) and renamed
    over ``destination`` once whole: a writer killed meanwhile leaves the old zip, if any, as it was."""
    if destination.exists() and not overwrite:
        raise SkybutlerError(f"{destination} already exists")
    files = source(butler)
    artifacts = {}
    for begin in range(0, len(refs), CHUNK):
        artifacts.update(files.artifacts(refs[begin:begin + CHUNK]))
    refuse_shared({r: artifacts[r.id] for r in refs if r.id in artifacts}, "a Rubin export")
    with copy_out_into(destination.parent) as journal:
        partial = Path(journal.new_file(str(destination), ".partial"))
        _write_zip_members(butler, files, refs, artifacts, partial, journal)
        # (the journal removes the partial zip of a failure)
        if overwrite:
            replace_file(partial, destination)
        else:  # never over a zip that came meanwhile
            try:
                place_new_file(str(partial), str(destination))
            except FileExistsError:
                raise SkybutlerError(f"{destination} already exists") from None
    return len(refs)


def _write_zip_members(butler: Butler, files: LocalSource | RemoteSource, refs: list[DatasetRef], artifacts: dict,
                       partial: Path, journal: ScratchJournal) -> None:
    """The files and the index of a Rubin zip, written to ``partial`` (a new, empty scratch file of
    ``journal``), each file copied out into a scratch directory of the journal first."""
    types: dict[str, Any] = {}
    compact: dict[str, Any] = {}
    artifact_map: dict[str, Any] = {}
    tmp = journal.new_directory(partial.parent, ".rubin-zip-")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for ref in refs:
            artifact = artifacts.get(ref.id)
            if artifact is None:
                raise SkybutlerError(f"dataset {ref} has no stored file to export")
            dtype = ref.dataset_type
            storage_class = export_storage_class(dtype.storage_class)
            types.setdefault(dtype.name, {"name": dtype.name, "storageClass": storage_class,
                                          "dimensions": list(dtype.group(butler.universe).required),
                                          "parentStorageClass": None, "isCalibration": dtype.is_calibration})
            compact[str(ref.id)] = {"dataset_type_name": dtype.name, "run": ref.run,
                                    "data_id": dict(ref.data_id.required)}
            relative = files.place(ref, artifact, tmp, journal, "copy", suffix=export_suffix(artifact.formatter))
            member = f"{ref.id}-{Path(relative).name}"
            archive.write(tmp / relative, member)
            artifact_map[member] = {"info": {"formatter": export_formatter(artifact.formatter, dtype.storage_class),
                                             "path": relative, "storage_class": storage_class, "component": None,
                                             "checksum": None, "file_size": artifact.size},
                                    "ids": [str(ref.id)]}
        index = {"index_version": "V1",
                 "refs": {"container_version": "V1", "universe_version": UNIVERSE[1],
                          "universe_namespace": UNIVERSE[0], "dataset_types": types, "compact_refs": compact,
                          "dimension_records": None},
                 "artifact_map": artifact_map}
        archive.writestr(ZIP_INDEX, json.dumps(index))
