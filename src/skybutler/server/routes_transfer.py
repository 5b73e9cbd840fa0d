"""Export and import routes: what ``export``, ``retrieve-artifacts``, ``transfer`` and ``import``
need from a butler opened on a server URL.

``POST /export`` answers a chunk of dataset IDs (those of a query the user ran, so already
only what they may see) with each dataset's file record -- its path as an export lays it out,
never the server's own, and a pre-signed URL where the server hands them out -- and, if asked,
the dimension records the data IDs name; a dataset the user may not see is missing (404), as
everywhere.  The files themselves come from the pre-signed URLs, or many in one response from
``POST /export/files`` (framed as ``wire.frame_files`` frames an upload, each named by its
dataset ID), with the same checks as the download route (``copy_out.py``).

``POST /import`` takes an export directory streamed as framed files (``wire.frame_files``),
written to a scratch directory as it arrives, then imports it in one transaction with the
checks of a put or an ingest: write rights on every RUN of the export; no new dimension
records unless the user is an administrator (inserting records is an administrator's right);
each dataset ID of a permitted kind (below); the quota of every user or group area the
datasets go to, with the areas locked until the commit.  Any failure rolls everything back.
An export bigger than the request-size limit comes as several such uploads, each a complete
small export of its own (``remote/imports.py``); ``POST /import/present`` tells a resumed
import which of a batch's datasets and records are already in, so it need not send them again.

Which imported dataset IDs are taken: an import keeps the IDs the source gave (so the same
dataset is never duplicated across repositories), so unlike a remote put -- whose random IDs
must be version 7, as the server would make them -- a random version-4 ID (the Rubin butler's)
is taken as well as a version-7 one: neither can ever equal a deterministic ID, which is
version 5.  A version-5 ID must be the one a rule gives the dataset's type and data ID (and
RUN): skybutler's, or the Rubin butler's DATAID_TYPE or DATAID_TYPE_RUN, so that nobody
claims, under another data ID, the deterministic ID of a dataset yet to come.  Other versions are refused.  An ID already in the repository is skipped, as locally,
only where it holds this very dataset (type, RUN, data ID) and the user may see it; any other
holder refuses the whole import with one error, the same whether the user may see that holder
or not, so that neither the answer nor the count imported tells what they may not see.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ..access import Access, User, quota_area
from ..butler import Butler
from ..config import BOOKKEEPING_DIR
from ..datastore.reading import export_path
from ..datastore.uploads import UploadedTree
from ..dimensions import DataCoordinate, DimensionRecord
from ..errors import (
    DatasetConflictError,
    DatasetNotFoundError,
    DatasetTypeError,
    InvalidFileError,
    PermissionDeniedError,
    SkybutlerError,
)
from ..models import REPRODUCIBLE_ID_MODES, DatasetType, reproducible_dataset_id
from ..remote import wire
from ..remote.wire import MAX_IDS
from ..repository_transfer import _record_from_json, export_contents, import_datasets, read_manifest, records_for
from . import authz
from .app import Ids, current_user
from .state import ServerState

router = APIRouter()


def _state(request: Request) -> ServerState:
    return request.app.state.skybutler


class ExportChunk(BaseModel):
    ids: Ids
    #: the dimension records the datasets' data IDs name too
    records: bool = False
    #: and those a Rubin export adds (the visits' definitions and memberships, and what they name)
    related: bool = False


@router.post("/export")
def export(request: Request, body: ExportChunk, user: User = Depends(current_user)) -> dict[str, Any]:
    """The file records (and optionally the dimension records) of up to one chunk of datasets."""
    state = _state(request)
    seconds = state.settings.presign_seconds
    with state.butler() as butler:
        refs = authz.visible_refs(butler, user, body.ids)
        out = []
        for ref in refs:
            artifact = ref.artifact
            if artifact is None:  # cold or purged: the caller says which it needed
                continue
            signed = butler.datastore.presigned_url(artifact, seconds) if seconds else None
            out.append({"id": str(ref.id), "path": export_path(artifact.path), "formatter": artifact.formatter,
                        "size": artifact.size, "checksum": artifact.checksum, "url": signed})
        records = records_for(butler, refs) if body.records else {}
        if body.related:
            from ..interchange.rubin_export import _with_related

            records = _with_related(butler, records)
    return {"artifacts": out,
            "records": {name: [wire.encode(r) for r in rows] for name, rows in records.items()}}


class FilesRequest(BaseModel):
    ids: Ids


@router.post("/export/files")
def export_files(request: Request, body: FilesRequest, user: User = Depends(current_user)) -> StreamingResponse:
    """The files of up to one chunk of datasets in one streamed response: per file, its dataset
    ID's length (4 bytes), the ID, the file's size (8 bytes) and its bytes; a zero length ends it.
    Every dataset is checked before the first byte goes out (one missing or hidden: 404)."""
    with _state(request).butler() as butler:
        refs = authz.visible_refs(butler, user, body.ids)
        for ref in refs:
            if ref.artifact is None:
                raise DatasetNotFoundError(f"dataset {ref} has no stored file (cold or purged)")
        datastore = butler.datastore
        sizes = [datastore.size(ref.artifact) for ref in refs]

    def frames() -> Iterator[bytes]:
        for ref, size in zip(refs, sizes):
            name = str(ref.id).encode()
            yield len(name).to_bytes(4, "big") + name + size.to_bytes(8, "big")
            yield from datastore.read_range(ref.artifact, 0, size)
        yield (0).to_bytes(4, "big")

    return StreamingResponse(frames(), media_type="application/octet-stream")


@router.post("/import", openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}})
async def import_export(request: Request, skip_existing: bool = True,
                        user: User = Depends(current_user)) -> dict[str, int]:
    """Import an export directory streamed as framed files, all or nothing."""
    from starlette.concurrency import run_in_threadpool

    state = _state(request)
    tree = UploadedTree(state.root / BOOKKEEPING_DIR / "uploads", state.settings.max_request_bytes)
    try:
        async for chunk in request.stream():
            tree.feed(chunk)
        tree.finish()
        return await run_in_threadpool(_import, state, user, tree, skip_existing)
    except InvalidFileError as err:  # each file named as the export names it, not by the server's scratch path
        root = f"{tree.root}{os.sep}"
        raise InvalidFileError([(path.removeprefix(root), why) for path, why in err.failures]) from None
    finally:
        tree.remove()


class RecordKeys(BaseModel):
    """The records of one line of an export's records file, by identity."""

    element: str
    #: each record's identity (its values of the element's identifying dimensions, in order)
    identities: list[list[Any]]


class PresentQuery(BaseModel):
    """What of a batch of an export a resumed import asks the repository about."""

    #: the dataset types of the export (as its manifest lists them)
    dataset_types: list[dict[str, Any]] = []
    #: dataset lines of an export (their ``id``, ``type``, ``run`` and ``data_id``), at most ``MAX_IDS``
    datasets: Annotated[list[dict[str, Any]], Field(max_length=MAX_IDS)] = []
    #: the records of an export's lines of records, by identity
    records: list[RecordKeys] = []


@router.post("/import/present")
def import_present(request: Request, body: PresentQuery, user: User = Depends(current_user)) -> dict[str, Any]:
    """What of an export the repository already holds: its datasets, as an import of them would
    judge it (the same rights -- write on their RUNs --, the same ID checks, and the same 409 for
    an ID held by another dataset or by one the user may not see), and, per line of records, the
    positions of the records there (records are no one's secret).  So a resumed import leaves out
    what is in without uploading it again, and learns nothing the import itself would not tell."""
    state = _state(request)
    with state.butler() as butler:
        types = _types(body.dataset_types)
        _require_writable(butler, user, set(), [entry.get("run") for entry in body.datasets])
        ids = _checked_ids(butler, types, body.datasets)
        present = _present(butler, user, types, [("", entry) for entry in body.datasets], ids)
        held = []
        for line in body.records:
            element = butler.universe[line.element] if line.element in butler.universe else None
            keys = [tuple(i) for i in line.identities]
            if element is None or any(len(k) != len(element.identity) for k in keys):
                raise SkybutlerError(f"malformed query: records of {line.element[:100]!r} by identity")
            found = butler.registry.existing_identities(line.element, sorted(set(keys)))
            held.append([i for i, key in enumerate(keys) if key in found])
    return {"datasets": sorted(str(i) for i in present), "records": held}


def _types(specs: Any) -> dict[str, DatasetType]:
    """An export's dataset types by name."""
    try:
        return {spec["name"]: DatasetType(**spec) for spec in specs}
    except (KeyError, TypeError, ValueError, DatasetTypeError) as err:
        raise SkybutlerError(f"malformed export: its dataset types: {' '.join(str(err).split())[:200]}") from None


def _import(state: ServerState, user: User, tree: UploadedTree, skip_existing: bool) -> dict[str, int]:
    with state.butler() as butler, butler.transaction():
        manifest = read_manifest(butler, tree.root)
        if manifest["format_version"] != 1:
            _require_uploaded(tree, manifest.get("records_file"), manifest.get("datasets_file"))
        writable: set[str] = set()
        _require_writable(butler, user, writable, manifest.get("runs"))
        if not user.admin:
            _refuse_new_records(butler, export_contents(tree.root, manifest)[0])
        types = _types(manifest["dataset_types"])
        usage: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        total = 0
        for chunk in export_contents(tree.root, manifest)[1]:
            total += len(chunk)
            ids = _checked_ids(butler, types, [entry for _, entry in chunk])
            # a dataset line's RUN is checked as well as the manifest's: the import registers it
            _require_writable(butler, user, writable, [entry.get("run") for _, entry in chunk])
            present = _present(butler, user, types, chunk, ids)
            _require_uploaded(tree, *(entry.get("path") for _, entry in chunk))
            for (_, entry), dataset_id in zip(chunk, ids):
                area = quota_area(entry["run"])
                if area is not None and dataset_id not in present:
                    usage[area][0] += tree.sizes.get(entry["path"], 0)
                    usage[area][1] += 1
        quota = Access.of(butler)
        for area, (size, count) in sorted(usage.items()):
            # the check reads the area of a RUN: any RUN of it will do
            quota.check_quota_locked(f"{'u' if area[0] == 'user' else 'g'}/{area[1]}/import", size, count)
        imported = import_datasets(butler, tree.root, "move", skip_existing)
    return {"imported": imported, "datasets": total}


def _require_writable(butler: Butler, user: User, checked: set[str], runs: Any) -> None:
    """Refuse unless the user may write every RUN of ``runs`` (those in ``checked`` already passed)."""
    if not isinstance(runs, list) or not all(isinstance(r, str) and r for r in runs):
        raise SkybutlerError("malformed export: its RUNs are not a list of names")
    for run in runs:
        if run not in checked:
            authz.require(butler, user, run, "write", must_exist=False)
            checked.add(run)


def _require_uploaded(tree: UploadedTree, *names: Any) -> None:
    """Every file an export names must be one the client uploaded (so within the scratch tree):
    an entry naming ``../`` or an absolute path would otherwise reach the server's own files."""
    for name in names:
        if not isinstance(name, str) or name not in tree.sizes:
            raise SkybutlerError(f"malformed export: it names the file {str(name)[:100]!r}, which was not uploaded")


def _refuse_new_records(butler: Butler, records: Any) -> None:
    """PermissionDeniedError if the export brings a dimension record the repository lacks."""
    for element, rows in records:
        given = {DimensionRecord(butler.universe[element], _record_from_json(row)).identity for row in rows}
        found = butler.registry.existing_identities(element, sorted(given))
        missing = given - found
        if missing:
            raise PermissionDeniedError(f"only a repository administrator may insert dimension records: the export "
                                        f"brings {len(missing)} {element} record(s) this repository lacks, e.g. "
                                        f"{min(missing)}")


def _present(butler: Butler, user: User, types: dict[str, DatasetType], chunk: list[tuple[str, dict[str, Any]]],
             ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """The IDs of the chunk already in the repository, each holding the very dataset the export
    describes where the user may see it; DatasetConflictError for any other (module doc)."""
    found = {r.id: r for r in butler.registry.refs_by_id(ids)}
    for (_, entry), dataset_id in zip(chunk, ids):
        ref = found.get(dataset_id)
        if ref is None:
            continue
        same = ref.run == entry["run"] and ref.dataset_type.name == entry["type"] and dict(ref.data_id.required) \
            == dict(DataCoordinate.standardize(types[entry["type"]].group(butler.universe), entry["data_id"]).required)
        try:
            visible = same and bool(authz.visible_refs(butler, user, [dataset_id]))
        except DatasetNotFoundError:
            visible = False
        if not visible:
            raise DatasetConflictError(f"dataset ID {dataset_id} is taken in this repository, by another dataset or "
                                       "by one you may not see: nothing of this upload was imported")
    return set(found)


def _checked_ids(butler: Butler, types: dict[str, DatasetType], entries: list[dict[str, Any]]) -> list[uuid.UUID]:
    """The dataset IDs of an export's entries, each of a kind an import may bring (module doc)."""
    out = []
    for entry in entries:
        try:
            dataset_id = uuid.UUID(str(entry["id"]))
            dtype = types[entry["type"]]
        except (KeyError, ValueError, TypeError):
            raise SkybutlerError(f"malformed export: dataset entry {str(entry)[:200]}") from None
        if dataset_id.version == 5:
            coordinate = DataCoordinate.standardize(dtype.group(butler.universe), entry["data_id"])
            if all(reproducible_dataset_id(mode, dtype.name, coordinate, str(entry.get("run"))) != dataset_id
                   for mode in REPRODUCIBLE_ID_MODES):
                raise SkybutlerError(f"dataset ID {dataset_id} is a deterministic (version 5) ID that is not the "
                                     f"one {dtype.name} {dict(coordinate.required)} has in this repository")
        elif dataset_id.version not in (4, 7):
            raise SkybutlerError(f"dataset ID {dataset_id} is a version-{dataset_id.version} UUID; an import takes "
                                 "random (version 4 or 7) and deterministic (version 5) IDs")
        out.append(dataset_id)
    return out
