"""Importing a Rubin butler export or zip into a skybutler repository.

The export is read and checked whole first (:mod:`.rubin_read`): format and
universe versions, every record's fields, every dataset's formatter and file.  Any
problem stops the import before anything is written, with one line per item.
Then everything lands in one butler transaction: dimension records, collections,
dataset types, the files (copied, linked, moved or used in place) under their
original dataset IDs, TAGGED memberships, CALIBRATION validity ranges and chains.
If anything fails, the transaction is rolled back and every placed file is taken
back out, so the repository is as it was.
"""

from __future__ import annotations

import logging
import os
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ..config import BOOKKEEPING_DIR
from ..datastore.uploads import scratch_directory
from ..errors import SkybutlerError
from ..formats.rubin_outputs import KEPT_READERS
from ..models import CollectionType, DatasetRef
from .rubin_formats import import_formatter, import_storage_class, is_kept
from .rubin_read import RubinDataset, RubinExport, RubinImportError, read_rubin_export

if TYPE_CHECKING:
    from ..butler import Butler
    from ..dimensions import DimensionUniverse

ZIP_TRANSFERS = ("copy", "move", "auto")
_log = logging.getLogger(__name__)


def import_rubin(butler: Butler, path: str | Path, transfer: str = "copy", skip_existing: bool = True) -> int:
    """Import a Rubin export (directory, export.yaml or zip) into ``butler``, keeping every
    dataset ID; returns how many datasets were imported (those already present are skipped)."""
    export, formatters = read_checked(path, butler.universe)
    present = {r.id for r in butler.registry.refs_by_id([d.id for d in export.datasets])}
    if present and not skip_existing:
        raise RubinImportError(export.source, [f"dataset {i} is already in the repository" for i in sorted(present)])
    if export.zip_path is None:
        files = {d.path: local_file(export, d) for d in export.datasets}
        return _apply(butler, export, formatters, present, transfer, lambda d: files[d.path])
    if transfer not in ZIP_TRANSFERS:
        raise SkybutlerError(f"files inside a zip can only be copied in (transfer {transfer!r} was asked)")
    # A held scratch directory of the repository: a process killed here leaves it to the next open.
    with scratch_directory(butler.root / BOOKKEEPING_DIR / "uploads", "zip-") as tmp:
        with zipfile.ZipFile(export.zip_path) as archive:
            wanted = {d.path for d in export.datasets if d.id not in present}
            for member in wanted:
                archive.extract(member, tmp)
        # The extracted copies are ours: moving them in is a rename on the same disk.
        mode = "move" if butler.datastore.local and len(wanted) == len(export.datasets) - len(present) else "copy"
        return _apply(butler, export, formatters, present, mode, lambda d: Path(tmp) / d.path)


def read_checked(path: str | Path, universe: DimensionUniverse) -> tuple[RubinExport, dict[uuid.UUID, str]]:
    """The Rubin export at ``path`` read and checked whole, with each dataset's formatter (see
    :func:`check_datasets`): RubinImportError naming every problem, before anything is written
    here or sent to a server; which datasets are kept without a reader is said as a warning."""
    export = read_rubin_export(path, universe)
    formatters = check_datasets(export)
    if export.problems:
        raise RubinImportError(export.source, export.problems)
    report_kept(export, formatters)
    return export, formatters


def check_datasets(export: RubinExport) -> dict[uuid.UUID, str]:
    """Each dataset's skybutler formatter (one that keeps the file unread when none reads it); a
    dataset of an undefined type, or a missing file, is a problem."""
    formatters: dict[uuid.UUID, str] = {}
    archive = zipfile.ZipFile(export.zip_path) if export.zip_path is not None else None
    try:
        for dataset in export.datasets:
            spec = export.dataset_types.get(dataset.dataset_type)
            if spec is None:
                export.problems.append(f"{dataset.path}: dataset type {dataset.dataset_type} is not defined in the "
                                       "export")
                continue
            if archive is None and not os.path.isfile(local_file(export, dataset)):
                export.problems.append(f"{dataset.path}: file missing from the export")
                continue
            formatters[dataset.id] = import_formatter(dataset.formatter, str(spec["storage_class"]),
                                                      _contents(export, dataset, archive))
    finally:
        if archive is not None:
            archive.close()
    return formatters


def _contents(export: RubinExport, dataset: RubinDataset, archive: zipfile.ZipFile | None):
    """What reads a dataset's file when its formatter needs to look at it."""
    if archive is not None:
        return lambda: archive.read(dataset.path)
    return lambda: local_file(export, dataset).read_bytes()


def kept_without_reader(export: RubinExport, formatters: Mapping[uuid.UUID, str]) -> dict[tuple[str, str], int]:
    """How many datasets of each (dataset type, Rubin formatter) come in kept without a reader."""
    kept: dict[tuple[str, str], int] = defaultdict(int)
    for dataset in export.datasets:
        if is_kept(formatters.get(dataset.id, "")) and formatters[dataset.id] not in KEPT_READERS:
            kept[(dataset.dataset_type, dataset.formatter)] += 1
    return dict(kept)


def report_kept(export: RubinExport, formatters: Mapping[uuid.UUID, str]) -> None:
    """Say (as a warning) which datasets the up-front check found are kept without a reader."""
    kept = kept_without_reader(export, formatters)
    if kept:
        _log.warning("%s: kept without a reader (files placed as they are, read with Butler.get_uri): %s",
                     export.source, "; ".join(f"{n} {t} ({f or 'no formatter named'})" for (t, f), n in kept.items()))


def local_file(export: RubinExport, dataset: RubinDataset) -> Path:
    """Where a dataset's file is: relative to the export's directory, or an absolute file URI."""
    parts = urlsplit(dataset.path)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme:
        return Path("/nonexistent-remote") / dataset.path  # a remote URI is reported as missing
    path = Path(dataset.path)
    return path if path.is_absolute() else (export.root or Path(".")) / path


def _apply(butler: Butler, export: RubinExport, formatters: dict[uuid.UUID, str], present: set[uuid.UUID],
           transfer: str, file_of) -> int:
    groups: dict[tuple[str, str, str], list[RubinDataset]] = defaultdict(list)
    for dataset in export.datasets:
        if dataset.id not in present:
            groups[(dataset.dataset_type, dataset.run, formatters[dataset.id])].append(dataset)
    refs: dict[uuid.UUID, DatasetRef] = {r.id: r for r in butler.registry.refs_by_id(list(present))}
    with butler.transaction():
        for element in butler.universe.sorted(export.records):
            butler.insert_records(element, export.records[element], skip_existing=True)
        for collection in export.collections:
            butler.collections.register(collection["name"], CollectionType(collection["type"]),
                                        doc=collection["doc"])
        for spec in dataset_type_specs(export, formatters):
            butler.register_dataset_type(spec["name"], spec["dimensions"], spec["storage_class"],
                                         is_calibration=spec["is_calibration"])
        for (type_name, run, formatter), items in groups.items():
            for ref in butler.ingest(type_name, [(file_of(d), d.data_id) for d in items], run=run,
                                     transfer=transfer, formatter=formatter, ids=[d.id for d in items]):
                refs[ref.id] = ref
        apply_memberships(butler, export, refs)
    return sum(len(items) for items in groups.values())


def dataset_type_specs(export: RubinExport, formatters: dict[uuid.UUID, str]) -> list[dict[str, object]]:
    """The export's dataset types as skybutler defines them (``DatasetType.to_dict``): each storage
    class mapped by the formatter its datasets use; a type with no datasets here and no skybutler
    counterpart is left out."""
    used_formatter: dict[str, str] = {}
    for dataset in export.datasets:  # a formatter that reads the files wins over one that keeps them unread
        formatter = formatters.get(dataset.id)
        if formatter is not None and (dataset.dataset_type not in used_formatter or not is_kept(formatter)):
            used_formatter[dataset.dataset_type] = formatter
    out = []
    for name, spec in export.dataset_types.items():
        storage_class = spec["storage_class"]
        formatter = used_formatter.get(name)
        if formatter is not None:
            storage_class = import_storage_class(storage_class, formatter)
        elif not _known_storage_class(storage_class):
            continue
        out.append({"name": name, "dimensions": list(spec["dimensions"]), "storage_class": storage_class,
                    "is_calibration": spec["is_calibration"]})
    return out


def apply_memberships(butler: Butler, export: RubinExport, refs: Mapping[uuid.UUID, DatasetRef]) -> None:
    """The export's TAGGED memberships, CALIBRATION validity ranges (those already held skipped) and
    chains, once its datasets are in; ``refs`` holds every dataset the memberships name."""
    kinds = {c["name"]: c["type"] for c in export.collections}
    for name, ids in export.tagged.items():
        butler.collections.associate(name, [_ref(refs, i, name) for i in ids])
    for name, ranges in export.certified.items():
        done = _certified(butler, name, {refs[i].dataset_type.name for _, ids in ranges for i in ids if i in refs})
        for span, ids in ranges:
            todo = [_ref(refs, i, name) for i in ids if (i, span) not in done]
            if todo:
                butler.collections.certify(name, todo, timespan=span)
    for collection in export.collections:
        if collection["type"] == "CHAINED":
            missing = [c for c in collection["children"] if c not in kinds and not butler.collections.exists(c)]
            if missing:
                raise SkybutlerError(f"chain {collection['name']} names collection(s) {', '.join(missing)} "
                                     "that are neither in the export nor in the repository")
            butler.collections.set_chain(collection["name"], collection["children"])


def _certified(butler: Butler, collection: str, type_names: set[str]) -> set[tuple[uuid.UUID, object]]:
    """The (dataset ID, validity) pairs a CALIBRATION collection already holds (a re-import skips them)."""
    if not butler.collections.exists(collection):
        return set()
    return {(ref.id, span) for name in type_names for ref, span in butler.collections.validity(collection, name)}


def _ref(refs: Mapping[uuid.UUID, DatasetRef], dataset_id: uuid.UUID, collection: str) -> DatasetRef:
    try:
        return refs[dataset_id]
    except KeyError:
        raise SkybutlerError(f"collection {collection} holds dataset {dataset_id}, which is neither in the export "
                             "nor in the repository") from None


def _known_storage_class(name: str) -> bool:
    from ..formats import storage_class_names

    return name in storage_class_names()

