"""An import into a server, sent in batches that each stay under the server's request-size
limit (``max_request_bytes`` of ``/info``), as ``remote/ingest.py`` splits raw uploads.

Each batch is a small export of its own (format 2): the manifest's dataset types and RUNs
(every batch carries them all, so every batch passes the same rights checks), a share of the
dimension records (they go first, in the export's order), then dataset lines with their files.
The server imports each batch in one transaction with the checks of ``POST /import``
(``server/routes_transfer.py``): rights, records, ID kinds and conflicts, quotas.  So an import
that fits in one request is all or nothing, as before; a bigger one is all or nothing per batch.
When batch 3 of 5 fails, batches 1-2 stay: the error says so, and running the same import again
resumes it (``skip_existing``, the default): before each batch goes, the server is asked which of
its datasets and records it holds (``POST /import/present``, judged as the import would judge
them, so it tells a user nothing the import would not), and those are left out -- a batch already
in is not sent again, nor are its files.  Before anything is sent, every file is checked against
the limit: one that cannot fit in a request even alone refuses the import, naming it.
A Rubin butler export goes in as such batches too (``remote/rubin_imports.py``).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SkybutlerError
from . import wire

if TYPE_CHECKING:
    from ..butler import Butler

#: the names of a batch's own files, as a local export names them
MANIFEST, RECORDS, DATASETS = "export.json", "export.records.jsonl", "export.datasets.jsonl"


def _frame(name: str, size: int) -> int:
    """The bytes a file of ``size`` takes in an upload (``wire.frame_files``)."""
    return 4 + len(name.encode()) + 8 + size


class _Batch:
    """One request's share of the export: record lines, dataset lines and the files they name."""

    def __init__(self, fixed: int):
        self.records: list[str] = []
        self.datasets: list[str] = []
        self.files: list[tuple[str, str]] = []
        #: the body's bytes so far: the manifest and the three files' frames, the end mark, the lines
        self.size = fixed

    def upload(self, manifest: dict[str, Any]) -> Iterator[bytes]:
        """The request body: this batch's manifest, records and dataset lines, then its files."""
        head = {**manifest, "format_version": 2, "datasets": len(self.datasets),
                "records_file": RECORDS, "datasets_file": DATASETS}
        parts = [(MANIFEST, json.dumps(head).encode()), (RECORDS, "".join(self.records).encode()),
                 (DATASETS, "".join(self.datasets).encode())]
        for name, data in parts:
            yield len(name.encode()).to_bytes(4, "big") + name.encode() + len(data).to_bytes(8, "big") + data
        yield from wire.frame_files(self.files)


#: an export's contents, read anew at each call: its records (element, rows as the records file
#: holds them, in the order they go in) and its datasets (chunks of (file, dataset line) pairs)
Contents = Callable[[], tuple[Iterable[tuple[str, list[Any]]], Iterable[list[tuple[str, dict[str, Any]]]]]]


def batches(butler: Butler, directory: Path, limit: int) -> tuple[dict[str, Any], Iterator[_Batch]]:
    """The manifest every batch shares (with the export's count of datasets) and the batches of the export at ``directory`` (read as
    they are made); SkybutlerError naming a file or record that cannot fit in a request alone."""
    shared, total, contents = _export(butler, directory)
    return {**shared, "datasets": total}, plan(shared, contents, limit)


def _export(butler: Butler, directory: Path) -> tuple[dict[str, Any], int | None, Contents]:
    """The export at ``directory``: what every batch of it shares (its universe, dataset types and
    RUNs), its count of datasets (None if it does not say) and its contents."""
    from ..repository_transfer import export_contents, read_manifest

    manifest = read_manifest(butler, directory)
    shared = {"universe": manifest["universe"], "dataset_types": manifest["dataset_types"],
              "runs": manifest["runs"]}
    total = len(manifest["datasets"]) if manifest["format_version"] == 1 else manifest.get("datasets")
    return shared, total, lambda: export_contents(directory, manifest)


def plan(shared: dict[str, Any], contents: Contents, limit: int, most: int = wire.MAX_IDS) -> Iterator[_Batch]:
    """The batches of an export (``shared``: its universe, dataset types and RUNs), read as they are made,
    each within ``limit`` bytes and ``most`` datasets (what one ``import/present`` question may list)."""
    # the manifest as sent (its counts at most 20 digits), the three frames' names and the end mark
    fixed = (len(json.dumps({**shared, "format_version": 2, "datasets": 10 ** 20, "records_file": RECORDS,
                             "datasets_file": DATASETS}).encode())
             + _frame(MANIFEST, 0) + _frame(RECORDS, 0) + _frame(DATASETS, 0) + 4)
    if fixed > limit:
        raise SkybutlerError(f"the export's dataset types and RUNs alone take {fixed} bytes, above the server's "
                             f"request-size limit of {limit} bytes: nothing was imported")

    def made() -> Iterator[_Batch]:
        records, chunks = contents()
        batch = _Batch(fixed)
        for element, rows in records:
            for line in _record_lines(element, rows, limit - fixed):
                if batch.size + len(line.encode()) > limit:
                    yield batch
                    batch = _Batch(fixed)
                batch.records.append(line)
                batch.size += len(line.encode())
        for chunk in chunks:
            for path, entry in chunk:
                line = json.dumps(entry) + "\n"
                name = entry.get("path")
                if not isinstance(name, str):
                    raise SkybutlerError(f"malformed export: dataset entry {str(entry)[:200]}")
                try:
                    size = os.path.getsize(path)
                except OSError as err:
                    raise SkybutlerError(f"{path}: cannot be read ({err.strerror}): nothing was imported") from None
                need = len(line.encode()) + _frame(name, size)
                if fixed + need > limit:
                    raise SkybutlerError(f"{path} ({size} bytes) cannot fit in one request within the server's "
                                         f"limit of {limit} bytes: nothing was imported")
                if batch.size + need > limit or len(batch.datasets) >= most:
                    yield batch
                    batch = _Batch(fixed)
                batch.datasets.append(line)
                batch.files.append((name, path))
                batch.size += need
        yield batch  # the last (or only, for an export of nothing: its types and RUNs still go in)

    return made()


def _record_lines(element: str, rows: list[Any], room: int) -> Iterator[str]:
    """An element's records as lines of the records file, each within ``room`` bytes (a line that
    would not fit is split; a record that cannot fit alone refuses the import)."""
    line = json.dumps({"element": element, "records": rows}) + "\n"
    if len(line.encode()) <= room:
        yield line
    elif len(rows) == 1:
        raise SkybutlerError(f"a {element} record takes {len(line.encode())} bytes, above the server's "
                             f"request-size limit: nothing was imported")
    else:
        half = len(rows) // 2
        yield from _record_lines(element, rows[:half], room)
        yield from _record_lines(element, rows[half:], room)


def send_import(butler: Butler, directory: Path, skip_existing: bool, progress: Any) -> int:
    """Import the export at ``directory`` into the server in batches (module doc); returns the
    datasets imported."""
    shared, total, contents = _export(butler, directory)
    return send_batches(butler, shared, contents, total, skip_existing, progress)


def send_batches(butler: Butler, shared: dict[str, Any], contents: Contents, total: int | None,
                 skip_existing: bool, progress: Any) -> int:
    """Send an export's batches (module doc); returns the datasets imported.  Every batch is
    planned (and every file checked) before the first is sent.  With ``skip_existing``, the
    server is first asked which of a batch's datasets it holds (``POST /import/present``, with
    the checks of the import itself): those are left out, files and all, and a batch left with
    nothing to bring is not sent -- so a rerun after a failure sends again only what is missing.
    The questions stop at the first batch of which the server holds nothing (where a resumed
    import had stopped; a new import asks once): after it, the server's own skipping suffices."""
    transport = butler._remote
    limit = transport.max_request_bytes
    count = sum(1 for _ in plan(shared, contents, limit, transport.max_ids))  # a first read: one batch in memory
    imported = done = sent = 0
    asking = skip_existing  # until a batch of which the server holds nothing: a resumed import's frontier
    for number, batch in enumerate(plan(shared, contents, limit, transport.max_ids), 1):
        size = len(batch.datasets)
        try:
            if asking and (batch.datasets or batch.records):
                asking = _leave_out_present(butler, shared, batch)
            if batch.datasets or batch.records or (number == count and not sent):
                answer = transport._send("POST", "import", content=batch.upload(shared),
                                         params={"skip_existing": skip_existing},
                                         headers={"Content-Type": "application/octet-stream"}).json()
                imported += answer["imported"]
                sent += 1
        except SkybutlerError as err:
            if number == 1:
                raise
            raise _resumable(err, number, count, done) from None
        done += size
        if progress is not None:
            progress(done, total)
    return imported


def _leave_out_present(butler: Butler, shared: dict[str, Any], batch: _Batch) -> bool:
    """Drop from ``batch`` the datasets and records the server already holds (an import would skip
    them); whether it held any."""
    from ..dimensions import DimensionRecord
    from ..repository_transfer import _record_from_json

    entries = [json.loads(line) for line in batch.datasets]
    lines = [json.loads(line) for line in batch.records]
    try:
        keys = [{"element": line["element"], "identities": [
            list(record.identity) for record in DimensionRecord.validate_many(
                butler.universe, line["element"], [_record_from_json(row) for row in line["records"]])]}
            for line in lines]
    except (KeyError, TypeError, ValueError) as err:
        raise SkybutlerError(f"malformed export: its records ({' '.join(str(err).split())[:200]})") from None
    answer = butler._remote.post_json("import/present", {
        "dataset_types": shared["dataset_types"], "records": keys,
        "datasets": [{k: e.get(k) for k in ("id", "type", "run", "data_id")} for e in entries]})
    present = set(answer["datasets"])
    kept = [i for i, e in enumerate(entries) if _canonical(e.get("id")) not in present]
    batch.datasets = [batch.datasets[i] for i in kept]
    batch.files = [batch.files[i] for i in kept]
    batch.records = []
    for line, held in zip(lines, answer["records"]):
        there = set(held)
        rows = [row for i, row in enumerate(line["records"]) if i not in there]
        if rows:
            batch.records.append(json.dumps({"element": line["element"], "records": rows}) + "\n")
    return bool(present or any(answer["records"]))


def _canonical(text: Any) -> str:
    try:
        return str(uuid.UUID(str(text)))
    except ValueError:
        return str(text)


def _resumable(err: SkybutlerError, number: int, count: int, done: int) -> SkybutlerError:
    """``err`` (the same kind, its HTTP status kept) saying what stayed in and how to resume."""
    before = "batch 1" if number == 2 else f"batches 1-{number - 1}"
    message = (f"{err} (batch {number} of {count}; {before}, {done} datasets, imported: run the same import "
               "again to resume it, what is there is skipped)")
    try:
        out = type(err)(message)
    except (TypeError, ValueError):  # an error made of more than a message
        return err
    out.status = getattr(err, "status", None)
    return out
