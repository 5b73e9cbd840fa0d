"""Moving datasets between repositories: export to a directory, import from one, or
transfer directly, with dataset IDs preserved.

An export directory holds ``export.json`` (dimension records, dataset types, RUNs
and datasets with their artifact paths) and the artifacts under the same relative
paths they had in the source datastore.  Import is all or nothing: records are
synced, then every dataset of a type is ingested in one transaction with its
original ID, so the same raw or product is never duplicated across repositories.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .butler import Butler
from .datastore.transfer import check_sources, ingest_files
from .faults import crash_point
from .dimensions import DataCoordinate, DimensionRecord
from .dimensions import regions as sky
from .errors import DatasetConflictError, SkybutlerError
from .formats import get_formatter, get_storage_class
from .formats.file_facts import file_facts
from .models import CollectionType, DatasetRef, DatasetType
from .timespan import Timespan

MANIFEST = "export.json"
FORMAT_VERSION = 1


def records_for(butler: Butler, refs: list[DatasetRef]) -> dict[str, list[DimensionRecord]]:
    """Every dimension record the refs' data IDs depend on, element by element."""
    universe = butler.universe
    keys: dict[str, set[tuple]] = defaultdict(set)
    expanded = [butler.registry.dimensions.expand(r.data_id) for r in refs]
    for data_id in expanded:
        for name in data_id.group.elements:
            element = universe[name]
            if all(d in data_id for d in element.identity):
                keys[name].add(tuple(data_id[d] for d in element.identity))
    out: dict[str, list[DimensionRecord]] = {}
    for name in universe.sorted(keys):
        records = butler.registry.dimensions.fetch_many(name, sorted(keys[name]))
        if records:
            out[name] = records
    return out


def _record_to_json(record: DimensionRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == "region":
            value = None if value is None else base64.b64encode(sky.encode(value)).decode()
        elif key == "timespan":
            value = None if value is None else list(value.to_ns())
        out[key] = value
    return out


def _record_from_json(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    if row.get("region") is not None:
        row["region"] = sky.decode(base64.b64decode(row["region"]))
    if row.get("timespan") is not None:
        row["timespan"] = Timespan.from_ns(*row["timespan"])
    return row


def export_datasets(butler: Butler, refs: Iterable[DatasetRef], directory: str | Path,
                    transfer: str = "copy") -> int:
    """Write ``refs`` (files and everything needed to import them) to ``directory``."""
    directory = Path(directory)
    if (directory / MANIFEST).exists():
        raise SkybutlerError(f"{directory} already holds an export; choose an empty directory")
    refs = list({r.id: r for r in refs}.values())
    artifacts = butler.registry.datasets.artifacts(r.id for r in refs)
    records = records_for(butler, refs)
    directory.mkdir(parents=True, exist_ok=True)
    datasets = []
    for ref in refs:
        artifact = artifacts.get(ref.id)
        if artifact is None:
            raise SkybutlerError(f"dataset {ref} has no stored artifact to export")
        path = butler.datastore.export_artifact(artifact, directory, transfer)
        datasets.append({"id": str(ref.id), "type": ref.dataset_type.name, "run": ref.run,
                         "data_id": dict(ref.data_id.required), "path": path, "formatter": artifact.formatter})
    types = {r.dataset_type.name: r.dataset_type.model_dump() for r in refs}
    manifest = {"format_version": FORMAT_VERSION, "universe": [butler.universe.name, butler.universe.version],
                "records": {k: [_record_to_json(r) for r in v] for k, v in records.items()},
                "dataset_types": list(types.values()), "runs": sorted({r.run for r in refs}),
                "datasets": datasets}
    (directory / MANIFEST).write_text(json.dumps(manifest))
    return len(datasets)


def import_datasets(butler: Butler, directory: str | Path, transfer: str = "copy",
                    skip_existing: bool = True) -> int:
    """Import an export directory, or a Rubin butler export (directory, export.yaml or zip);
    datasets already present with the same ID are skipped."""
    from .interchange import import_rubin, is_rubin_export

    directory = Path(directory)
    if is_rubin_export(directory):
        return import_rubin(butler, directory, transfer, skip_existing)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise SkybutlerError(f"{directory} holds no {MANIFEST} nor a Rubin export.yaml or zip index; is it an "
                             "export?") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SkybutlerError(f"unsupported export format {manifest.get('format_version')!r}")
    if manifest["universe"] != [butler.universe.name, butler.universe.version]:
        raise SkybutlerError(f"export was made with universe {manifest['universe']}, this repository has "
                             f"{[butler.universe.name, butler.universe.version]}")
    entries = [(directory / d["path"], d) for d in manifest["datasets"]]
    check_sources([(path, d["formatter"]) for path, d in entries])  # before anything is registered
    with butler.registry.transaction():
        for element, rows in manifest["records"].items():
            butler.registry.dimensions.insert(element, [_record_from_json(r) for r in rows], skip_existing=True)
        for spec in manifest["dataset_types"]:
            dtype = DatasetType.model_validate(spec)
            butler.registry.dataset_types.register(dtype)
        for run in manifest["runs"]:
            butler.registry.collections.register(run, CollectionType.RUN)
    return ingest_with_ids(butler, entries, transfer, skip_existing)


def ingest_with_ids(butler: Butler, entries: list[tuple[Path, dict[str, Any]]], transfer: str,
                    skip_existing: bool) -> int:
    """Bring files in as datasets with given IDs, types, RUNs and data IDs (all or nothing)."""
    ids = [uuid.UUID(d["id"]) for _, d in entries]
    present = {r.id for r in butler.registry.datasets.refs_by_id(ids)}
    if present and not skip_existing:
        raise DatasetConflictError(f"{len(present)} dataset(s) already exist, e.g. {next(iter(present))}")
    groups: dict[tuple[str, str], list[tuple[Path, DatasetRef, str]]] = defaultdict(list)
    for (path, d), dataset_id in zip(entries, ids):
        if dataset_id in present:
            continue
        dtype = butler.get_dataset_type(d["type"])
        data_id = butler.registry.dimensions.expand(DataCoordinate.standardize(dtype.group(butler.universe),
                                                                               d["data_id"]))
        groups[(d["type"], d["run"])].append((path, DatasetRef(dataset_id, dtype, data_id, d["run"]),
                                              d["formatter"]))
    facts: dict[tuple[str, str], list[tuple[uuid.UUID, dict[str, Any]]]] = {}
    for key, items in groups.items():  # validated and their facts extracted before anything moves
        storage_class = get_storage_class(items[0][1].dataset_type.storage_class)
        found = [(ref.id, file_facts(path, get_formatter(formatter), storage_class)) for path, ref, formatter in items]
        facts[key] = [(i, f) for i, f in found if f is not None]
        if storage_class.metadata_fields:
            butler.registry.metadata.table(storage_class.name, storage_class.metadata_fields)
    placed = [(path, ref) for items in groups.values() for path, ref, _ in items]
    formatters = [formatter for items in groups.values() for _, _, formatter in items]
    if not placed:
        return 0
    batch = None
    try:  # every file checked already, before any record was registered
        batch = ingest_files(butler.datastore, placed, transfer, formatters, check=False)
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
    batch.finish()
    return len(batch.files)


def transfer_datasets(source: Butler, target: Butler, refs: Iterable[DatasetRef], transfer: str = "copy",
                      skip_existing: bool = True) -> int:
    """Copy datasets straight from one repository to another (any stacks), IDs preserved."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="skybutler-transfer-") as tmp:
        export_datasets(source, refs, tmp, transfer="copy")
        return import_datasets(target, tmp, transfer="copy" if transfer == "auto" else transfer,
                               skip_existing=skip_existing)
