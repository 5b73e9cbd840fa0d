"""Moving datasets between repositories: export to a directory, import from one, or
transfer directly, with dataset IDs preserved.

An export directory holds ``export.json`` (dataset types, RUNs, the format version),
the dimension records and the datasets (with their artifact paths) as JSON lines in
``export.records.jsonl`` and ``export.datasets.jsonl``, and the artifacts under the
same relative paths they had in the source datastore.  Both directions stream: a
chunk of datasets at a time (export remembers the IDs written -- past 4 MiB of them in an
unnamed file in its directory -- and a bounded set of the records written).  Import is all or
nothing: records, dataset types, RUNs and then the datasets, chunk by chunk with their original
IDs, go in inside one transaction (so the same raw or product is never duplicated across
repositories), and each chunk's placed files are remembered by its write journal on disk, not
in memory, until the transaction ends.  Exports of format 1 (everything in ``export.json``)
are still read.

A butler opened on a server URL does the same: an export reads its files and records through
the server (``copy_out.py``), and an import uploads the export in batches under the server's
request-size limit (``remote/imports.py``), each imported in one transaction with the user's
rights and quotas checked (``server/routes_transfer.py``).
"""

from __future__ import annotations

import base64
import itertools
import json
import operator
import os
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sized
from pathlib import Path
from typing import Any

from .butler import Butler
from .datastore.copy_scratch import ScratchJournal, copy_out_into
from .datastore.local_files import new_text_file
from .datastore.transfer import ingest_files
from .dimensions import DataCoordinate, DimensionRecord
from .dimensions import regions as sky
from .errors import DatasetConflictError, FormatterError, InvalidFileError, SkybutlerError
from .faults import crash_point
from .formats import get_formatter, get_storage_class
from .formats.file_facts import examine_file
from .models import CollectionType, DatasetRef, DatasetType
from .shared_files import refuse_shared
from .timespan import Timespan

#: Told how far a long step is: (done, total or None).
Progress = Callable[[int, int | None], None]

MANIFEST = "export.json"
#: Version 2 keeps records and datasets in JSON-lines files beside export.json (streamed);
#: version 1 (everything in export.json) is still read.
FORMAT_VERSION = 2
RECORDS_FILE = "export.records.jsonl"
DATASETS_FILE = "export.datasets.jsonl"
#: Datasets (or records) handled at a time by export and import.
CHUNK = 20_000


def records_for(butler: Butler, refs: list[DatasetRef]) -> dict[str, list[DimensionRecord]]:
    """Every dimension record the refs' data IDs depend on, element by element."""
    keys: dict[str, set[tuple]] = defaultdict(set)
    _collect_record_keys(butler, refs, keys)
    _follow_implied(butler, keys)
    out: dict[str, list[DimensionRecord]] = {}
    for name in butler.universe.sorted(keys):
        records = butler.registry.dimensions.fetch_many(name, sorted(keys[name]))
        if records:
            out[name] = records
    return out


def _collect_record_keys(butler: Butler, refs: Iterable[DatasetRef], keys: dict[str, set[tuple]]) -> None:
    """Add to ``keys`` the identity of every record the refs' data IDs name by their required values
    (no expansion: :func:`_follow_implied` then adds the records those imply)."""
    universe = butler.universe
    by_group: dict[Any, list[tuple]] = defaultdict(list)
    for ref in refs:
        by_group[ref.data_id.group].append(ref.data_id.required_values)
    for group, rows in by_group.items():
        at = {d: i for i, d in enumerate(group.required)}
        for name in group.elements:
            identity = universe[name].identity
            if all(d in at for d in identity):
                get = operator.itemgetter(*(at[d] for d in identity))
                keys[name].update(map(get, rows) if len(identity) > 1 else ((v,) for v in map(get, rows)))


def _follow_implied(butler: Butler, keys: dict[str, set[tuple]]) -> None:
    """Add to ``keys`` the records implied by those it names, and theirs in turn (a visit's
    physical filter and day, a filter's band): what expanding every data ID would have named.
    Only records of elements that imply something are read, as plain rows, and none is kept."""
    universe = butler.universe
    done: dict[str, set[tuple]] = defaultdict(set)
    todo = [name for name in keys if universe[name].implies]
    while todo:
        name = todo.pop()
        new = sorted(keys[name] - done[name])
        done[name].update(new)
        for begin in range(0, len(new), CHUNK):
            for record in butler.registry.dimensions.export_rows(name, new[begin:begin + CHUNK]):
                for dim in universe[name].implies:
                    key = tuple(record[d] for d in universe[dim].identity)
                    if None not in key and key not in keys[dim]:
                        keys[dim].add(key)
                        if universe[dim].implies and dim not in todo:
                            todo.append(dim)


def record_to_json(record: DimensionRecord) -> dict[str, Any]:
    """A record as an export's records file holds it (the Rubin import through a server sends its
    records so)."""
    return _row_to_json(record_row(record))


def record_row(record: DimensionRecord) -> dict[str, Any]:
    """A record as the plain row :meth:`DimensionRecordStore.export_rows` gives: its region
    encoded, its timespan as its nanosecond bounds."""
    row = record.to_dict()
    if row.get("region") is not None:
        row["region"] = sky.encode(row["region"])
    if row.get("timespan") is not None:
        row["timespan"] = row["timespan"].to_ns()
    return row


def _row_to_json(row: dict[str, Any]) -> dict[str, Any]:
    """A record's plain row (:meth:`DimensionRecordStore.export_rows`) as written to an export:
    its encoded region in base64."""
    region = row.get("region")
    if region is not None:
        row["region"] = base64.b64encode(region).decode()
    return row


def _record_from_json(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    if row.get("region") is not None:
        row["region"] = sky.decode(base64.b64decode(row["region"]))
    if row.get("timespan") is not None:
        row["timespan"] = Timespan.from_ns(*row["timespan"])
    return row


def export_datasets(butler: Butler, refs: Iterable[DatasetRef], directory: str | Path,
                    transfer: str = "copy", progress: Progress | None = None) -> int:
    """Write ``refs`` (files and everything needed to import them) to ``directory``.

    Streamed: refs are taken :data:`CHUNK` at a time, each chunk's files copied and its
    datasets written as lines of ``export.datasets.jsonl``, then the records they need that
    were not written for an earlier chunk as lines of ``export.records.jsonl`` (each line's
    records after those they depend on); ``export.json`` (types, RUNs, the format) is written
    last, so a directory holding it holds a whole export.  Memory holds a chunk, at most 4 MiB of
    the IDs taken (:class:`taken_ids.TakenIds`, exact: a dataset given twice, in one query or two,
    is written once; the rest in an unnamed file in ``directory``), a bounded set of the records
    written (:class:`copy_out.Written`), and the registry's reads keep a small SQLite cache (each
    row is read once), so it stays flat with the number of datasets.  ``progress(done, total)``
    is told each file copied (``total``: the number of refs when they have one, else None)."""
    from .copy_out import source
    from .query.list_habits import ListHabits
    from .taken_ids import TakenIds

    files = source(butler)
    directory = Path(directory)
    if (directory / MANIFEST).exists():
        raise SkybutlerError(f"{directory} already holds an export; choose an empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    types: dict[str, dict[str, Any]] = {}
    runs: set[str] = set()
    count = 0
    # a query's results are read batch by batch, never whole (their len() would read them all)
    total = len(refs) if isinstance(refs, Sized) and not isinstance(refs, ListHabits) else None
    if hasattr(refs, "streaming"):
        refs.streaming = True
    # Every file is written under a scratch name and placed when whole, never over a file already
    # there (the line files once all are written, export.json last).
    try:
        with copy_out_into(directory) as journal:
            with new_text_file(directory / DATASETS_FILE, journal) as out, \
                    new_text_file(directory / RECORDS_FILE, journal) as records_out, \
                    files.reading_once(), TakenIds(directory) as seen:
                for chunk in _chunks(refs, CHUNK):
                    count += _export_chunk(files, seen.new(chunk), directory, journal, transfer, out, records_out,
                                           types, runs,
                                           progress and (lambda done, base=count: progress(base + done, total)))
                    del chunk  # not held while the next chunk is read
            manifest = {"format_version": FORMAT_VERSION, "universe": [butler.universe.name, butler.universe.version],
                        "dataset_types": list(types.values()), "runs": sorted(runs), "datasets": count,
                        "records_file": RECORDS_FILE, "datasets_file": DATASETS_FILE}
            with new_text_file(directory / MANIFEST, journal) as stream:
                stream.write(json.dumps(manifest))
    except FileExistsError as err:
        raise SkybutlerError(f"{err.filename} is already there, and is not this export's: export into an empty "
                             "directory (nothing there was changed)") from None
    return count


def _export_chunk(files: Any, chunk: list[DatasetRef], directory: Path, journal: ScratchJournal, transfer: str,
                  out: Any, records_out: Any, types: dict[str, dict[str, Any]], runs: set[str],
                  progress: Callable[[int], None] | None) -> int:
    """Copy one chunk's files, write its datasets' lines and then the records they need that were
    not written before; returns how many datasets it wrote.  Its own function, so that nothing
    of a chunk (refs, artifact records, lines) is still held while the next one is read."""
    artifacts = files.artifacts(chunk, records=True)
    for ref in chunk:
        if ref.id not in artifacts:
            raise SkybutlerError(f"dataset {ref} has no stored artifact to export")
    refuse_shared({ref: artifacts[ref.id] for ref in chunk}, "exporting (or transferring)")
    paths = files.place_many([(ref, artifacts[ref.id]) for ref in chunk], directory, journal, transfer)
    lines = []
    for ref, path in zip(chunk, paths):
        artifact = artifacts[ref.id]
        lines.append(json.dumps({"id": str(ref.id), "type": ref.dataset_type.name, "run": ref.run,
                                 "data_id": dict(ref.data_id.required), "path": path,
                                 "formatter": artifact.formatter}))
        if ref.dataset_type.name not in types:
            types[ref.dataset_type.name] = ref.dataset_type.to_dict()
        runs.add(ref.run)
        if progress is not None:
            progress(len(lines))
    if lines:
        out.write("\n".join(lines) + "\n")
    for name, rows in files.record_rows():
        records_out.write(json.dumps({"element": name, "records": [_row_to_json(r) for r in rows]}) + "\n")
    return len(chunk)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size``; a list given out is not held here while the next is read."""
    iterator = iter(items)
    for first in iterator:
        yield [first, *itertools.islice(iterator, size - 1)]


def import_datasets(butler: Butler, directory: str | Path, transfer: str = "copy",
                    skip_existing: bool = True, progress: Progress | None = None) -> int:
    """Import an export directory, a Rubin butler export (directory, export.yaml or zip) or a
    whole Rubin butler repository; datasets already present with the same ID are skipped.  ``progress(done, total)`` is told
    the datasets of the export taken in so far, a chunk at a time (not for a Rubin export)."""
    from .interchange import import_rubin, is_rubin_export
    from .interchange.rubin_repository import import_rubin_repository, is_rubin_repository

    if butler.served_by is not None:  # the export is uploaded; the server imports it
        return butler.served_by.import_datasets(directory, transfer, skip_existing, progress)
    directory = Path(directory)
    if is_rubin_export(directory):
        return import_rubin(butler, directory, transfer, skip_existing)
    if is_rubin_repository(directory):
        return import_rubin_repository(butler, directory, transfer, skip_existing)
    manifest = read_manifest(butler, directory)
    version = manifest["format_version"]
    total = len(manifest["datasets"]) if version == 1 else manifest.get("datasets")
    tell = progress or (lambda done, total: None)
    records, chunks = export_contents(directory, manifest)
    # One transaction around everything (records, types, RUNs and every chunk's datasets and
    # files), so that a failure anywhere -- the last chunk included -- leaves the repository as it
    # was.  Each chunk's placed files are then remembered by its journal on disk, not in memory.
    count = done = 0
    with butler.transaction():
        for element, rows in records:
            butler.registry.dimensions.insert(element, [_record_from_json(r) for r in rows], skip_existing=True)
        for spec in manifest["dataset_types"]:
            butler.registry.dataset_types.register(DatasetType(**spec))
        for run in manifest["runs"]:
            butler.registry.collections.register(run, CollectionType.RUN)
        tell(0, total)
        for chunk in chunks:
            count += ingest_with_ids(butler, chunk, transfer, skip_existing, spill=True)
            done += len(chunk)
            tell(done, total)
    return count


def read_manifest(butler: Butler, directory: Path) -> dict[str, Any]:
    """The ``export.json`` of an export directory, checked against this repository's universe."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise SkybutlerError(f"{directory} holds no {MANIFEST} nor a Rubin export.yaml or zip index; is it an "
                             "export?") from None
    except (ValueError, OSError) as err:
        raise SkybutlerError(f"{directory / MANIFEST} cannot be read: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") not in (1, FORMAT_VERSION):
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise SkybutlerError(f"unsupported export format {version!r}")
    if manifest.get("universe") != [butler.universe.name, butler.universe.version]:
        raise SkybutlerError(f"export was made with universe {manifest.get('universe')}, this repository has "
                             f"{[butler.universe.name, butler.universe.version]}")
    return manifest


def export_contents(directory: Path, manifest: dict[str, Any]) -> tuple[Iterable[tuple[str, list]],
                                                                         Iterator[list[tuple[str, dict]]]]:
    """An export's records (element, rows) and its datasets ((file, entry) chunks), read as they
    are used."""
    if manifest["format_version"] == 1:  # everything in export.json
        return (manifest["records"].items(),
                iter([[(os.path.join(directory, d["path"]), d) for d in manifest["datasets"]]]))
    return _record_lines(directory / manifest["records_file"]), _dataset_chunks(directory, manifest["datasets_file"])


def _record_lines(path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with open(path) as lines:
        for line in lines:
            item = json.loads(line)
            yield item["element"], item["records"]


def _dataset_chunks(directory: Path, name: str) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """The export's datasets a chunk at a time, each with its file's path (a plain string: one a dataset)."""
    root = os.fspath(directory)
    with open(directory / name) as lines:
        for chunk in _chunks(lines, CHUNK):
            yield [(os.path.join(root, d["path"]), d) for d in map(json.loads, chunk)]


def ingest_with_ids(butler: Butler, entries: list[tuple[str, dict[str, Any]]], transfer: str,
                    skip_existing: bool, spill: bool = False) -> int:
    """Bring files in as datasets with given IDs, types, RUNs and data IDs (all or nothing).
    ``spill``: inside an enclosing transaction, the batch's undo works from its journal on disk
    (:meth:`IngestBatch.spill`), so many chunks waiting for one commit hold no per-file memory."""
    ids = [uuid.UUID(d["id"]) for _, d in entries]
    present = {r.id for r in butler.registry.datasets.refs_by_id(ids)}
    if present and not skip_existing:
        raise DatasetConflictError(f"{len(present)} dataset(s) already exist, e.g. {next(iter(present))}")
    given: dict[tuple[str, str], list[tuple[str, uuid.UUID, DataCoordinate, str]]] = defaultdict(list)
    groups_of: dict[str, Any] = {}  # dataset type name -> its dimension group, looked up once
    for (path, d), dataset_id in zip(entries, ids):
        if dataset_id in present:
            continue
        type_name = d["type"]
        group = groups_of.get(type_name)
        if group is None:
            group = groups_of[type_name] = butler.get_dataset_type(type_name).group(butler.universe)
        given[(type_name, d["run"])].append((path, dataset_id, DataCoordinate.standardize(group, d["data_id"]),
                                             d["formatter"]))
    groups: dict[tuple[str, str], list[tuple[str, DatasetRef, str]]] = {}
    for (type_name, run), items in given.items():  # each group's data IDs expanded as one batch
        dtype = butler.get_dataset_type(type_name)
        expanded = butler.registry.dimensions.expand_many([data_id for _, _, data_id, _ in items])
        groups[(type_name, run)] = [(path, DatasetRef(i, dtype, data_id, run), formatter)
                                    for (path, i, _, formatter), data_id in zip(items, expanded)]
    facts: dict[tuple[str, str], list[tuple[uuid.UUID, dict[str, Any]]]] = {}
    checks = []  # per file, in placing order: its group, its ref, and how to check it
    for key, items in groups.items():
        storage_class = get_storage_class(items[0][1].dataset_type.storage_class)
        facts[key] = []
        checks.extend((key, path, ref, get_formatter(formatter), storage_class) for path, ref, formatter in items)
        if storage_class.metadata_fields:
            butler.registry.metadata.table(storage_class.name, storage_class.metadata_fields)

    def examine(index: int, data: bytes | None) -> None:
        """Check one file (from the bytes read to copy it) and keep its facts for its row."""
        key, path, ref, formatter, storage_class = checks[index]
        try:
            examined = examine_file(path, formatter, storage_class, data)
        except FormatterError as err:
            raise InvalidFileError([(str(path), str(err))]) from None
        if examined.facts is not None:
            facts[key].append((ref.id, examined.facts))

    placed = [(path, ref) for items in groups.values() for path, ref, _ in items]
    formatters = [formatter for items in groups.values() for _, _, formatter in items]
    if not placed:
        return 0
    batch = None
    try:  # each file is checked as it is copied (read once); a refused one undoes the batch
        batch = ingest_files(butler.datastore, placed, transfer, formatters, examine=examine)
        with butler.registry.transaction():
            position = 0
            for (type_name, run), items in groups.items():
                butler.registry.collections.register(run, CollectionType.RUN)
                chunk = batch.files[position:position + len(items)]
                position += len(items)
                storage_class = get_storage_class(items[0][1].dataset_type.storage_class)
                butler.registry.insert_datasets(items[0][1].dataset_type, run, [r.data_id for _, r, _ in items],
                                                [r.id for _, r, _ in items], [c.artifact for c in chunk],
                                                storage_class.name, storage_class.metadata_fields,
                                                facts[(type_name, run)])
    except BaseException:
        if batch is not None:
            batch.undo()
        raise
    crash_point("registry-committed")
    butler.settle_placed_files(batch.undo, batch.finish)  # a copy-then-delete move deletes its sources once final
    placed_count = len(placed)
    if spill:
        batch.spill()
    return placed_count


def transfer_datasets(source: Butler, target: Butler, refs: Iterable[DatasetRef], transfer: str = "copy",
                      skip_existing: bool = True) -> int:
    """Copy datasets straight from one repository to another (any stacks), IDs preserved.  The
    export between them waits in a held scratch directory of a local target, so a process killed
    meanwhile leaves its copies to the target's next open, not in the system's temporary space."""
    with target.scratch_directory("transfer-") as tmp:
        export_datasets(source, refs, tmp, transfer="copy")
        return import_datasets(target, tmp, transfer="copy" if transfer == "auto" else transfer,
                               skip_existing=skip_existing)
