"""A Rubin butler export (``export.yaml`` directory or zip) imported into a server.

The export is read and checked on the client exactly as a local import reads it
(``interchange/rubin_read.py`` and ``rubin_import.read_checked``): every problem is
reported, item by item, before anything is sent.  It then goes in in three steps, each
through a route that already checks the user's rights:

1. its collections are registered with their docs (one remote transaction);
2. its dimension records, dataset types and datasets go in as the batches of a skybutler
   export (``remote/imports.py``, imported by ``POST /import`` with its checks of rights,
   records, IDs and quotas), each batch in one transaction;
3. its TAGGED memberships, CALIBRATION validity ranges and chains are applied as a local
   import applies them (``rubin_import.apply_memberships``), in one remote transaction.

So the server keeps one validated import path, and the repository ends as a local import of
the same export leaves it.  A failure after step 1 keeps what went in (as a batched import
does); running the same import again resumes it: registered collections, datasets already
in (not uploaded again) and validity ranges already held are skipped.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..dimensions import DataCoordinate, DimensionRecord
from ..errors import SkybutlerError
from ..models import CollectionType, DatasetRef
from ..repository_transfer import CHUNK, record_to_json
from .imports import send_batches

if TYPE_CHECKING:
    from ..butler import Butler
    from ..interchange.rubin_read import RubinExport


def send_rubin_import(butler: Butler, path: Path, skip_existing: bool, progress: Any) -> int:
    """Import the Rubin export at ``path`` into the server (module doc); returns the datasets imported."""
    from ..interchange.rubin_import import dataset_type_specs, read_checked

    export, formatters = read_checked(path, butler.universe)
    specs = dataset_type_specs(export, formatters)
    runs = sorted({d.run for d in export.datasets} | {c["name"] for c in export.collections if c["type"] == "RUN"})
    shared = {"universe": [butler.universe.name, butler.universe.version], "dataset_types": specs, "runs": runs}
    with tempfile.TemporaryDirectory(prefix="skybutler-rubin-") as scratch:
        files = _files(export, Path(scratch))
        entries = _entries(export, formatters, files)
        with butler.transaction():
            for collection in export.collections:
                butler.collections.register(collection["name"], CollectionType(collection["type"]),
                                            doc=collection["doc"])

        def contents() -> tuple[list[tuple[str, list[Any]]], Iterator[list[tuple[str, dict[str, Any]]]]]:
            return _records(butler, export), (entries[i:i + CHUNK] for i in range(0, len(entries), CHUNK))

        imported = send_batches(butler, shared, contents, len(entries), skip_existing, progress)
    _memberships(butler, export)
    return imported


def _files(export: RubinExport, scratch: Path) -> dict[str, str]:
    """Each dataset's file on this machine by its path in the export (a zip's files extracted to ``scratch``)."""
    from ..interchange.rubin_import import local_file

    if export.zip_path is None:
        return {d.path: os.fspath(local_file(export, d)) for d in export.datasets}
    with zipfile.ZipFile(export.zip_path) as archive:
        for member in {d.path for d in export.datasets}:
            archive.extract(member, scratch)
    return {d.path: os.fspath(scratch / d.path) for d in export.datasets}


def _entries(export: RubinExport, formatters: dict[uuid.UUID, str],
             files: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """The export's datasets as the dataset lines of a skybutler export, each with its file.  A
    file keeps its relative path in the export as its name in the upload, where that is a plain
    relative path named once; any other is named by its dataset's ID."""
    out = []
    named: set[str] = set()
    for dataset in export.datasets:
        name = PurePosixPath(dataset.path)
        plain = not name.is_absolute() and ".." not in name.parts and ":" not in dataset.path
        upload = str(name) if plain and str(name) not in named else f"{dataset.id}/{name.name}"
        named.add(upload)
        out.append((files[dataset.path], {"id": str(dataset.id), "type": dataset.dataset_type, "run": dataset.run,
                                          "data_id": dataset.data_id, "path": upload,
                                          "formatter": formatters[dataset.id]}))
    return out


def _records(butler: Butler, export: RubinExport) -> list[tuple[str, list[Any]]]:
    """The export's dimension records as the records file of a skybutler export holds them, in
    the order they go in."""
    universe = butler.universe
    return [(element, [record_to_json(r) for r in DimensionRecord.validate_many(universe, element, export.records[element])])
            for element in universe.sorted(export.records) if export.records[element]]


def _memberships(butler: Butler, export: RubinExport) -> None:
    """Step 3 of the module doc; a dataset a membership names that the export lacks is left to
    the server to find (a missing or hidden one refuses the step, as a get would answer)."""
    from ..interchange.rubin_import import apply_memberships

    if not (export.tagged or export.certified or any(c["type"] == "CHAINED" for c in export.collections)):
        return
    refs = _Refs()
    types = {}
    for dataset in export.datasets:
        dtype = types.get(dataset.dataset_type)
        if dtype is None:
            dtype = types[dataset.dataset_type] = butler.get_dataset_type(dataset.dataset_type)
        coordinate = DataCoordinate.standardize(dtype.group(butler.universe), dataset.data_id)
        refs[dataset.id] = DatasetRef(dataset.id, dtype, coordinate, dataset.run)
    try:
        with butler.transaction():
            apply_memberships(butler, export, refs)
    except SkybutlerError as err:
        raise _unfinished(err) from None


def _unfinished(err: SkybutlerError) -> SkybutlerError:
    """``err`` (the same kind, its HTTP status kept) saying that the datasets are in and how to finish."""
    try:
        out = type(err)(f"{err} (the export's datasets are in; its memberships, validity ranges and chains are "
                        "not: run the same import again to finish it)")
    except (TypeError, ValueError):  # an error made of more than a message
        return err
    out.status = getattr(err, "status", None)
    return out


class _Refs(dict):
    """The export's refs by ID; one it lacks stands for itself (the server checks it)."""

    def __missing__(self, key: uuid.UUID) -> Any:
        return _Named(key)


class _Named:
    """A dataset known here only by its ID (all a remote membership call sends)."""

    def __init__(self, dataset_id: uuid.UUID):
        self.id = dataset_id
