"""Copying datasets' files and records out of a repository -- what export, retrieve-artifacts and
transfer read -- the same way whether the butler was opened on a path or on a server's URL.

:func:`source` gives a :class:`LocalSource` (the registry's artifact records, the datastore's
copy or link, the records the data IDs name) or a :class:`RemoteSource`: the server answers
each chunk of datasets with their artifact records and dimension records (refusing, as every
route does, a dataset the user may not see), and the files come from the pre-signed URLs the
server hands out for an object store, or else a chunk of them in one response of the server's
``export/files`` route (one request per file cost a round trip each), straight to disk.  Memory holds one chunk of datasets and the dimension records named so
far (a local export holds their keys), never a file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .datastore.local_files import make_directories, write_chunks_new_file
from .datastore.reading import export_path
from .errors import SkybutlerError

if TYPE_CHECKING:
    from .butler import Butler
    from .datastore.copy_scratch import ScratchJournal
    from .dimensions import DimensionRecord
    from .models import DatasetRef, StoredArtifact

#: How many records of one element are fetched at a time when an export writes them out.
RECORD_CHUNK = 20_000
#: Most record identities an export remembers having written (see :class:`Written`).
WRITTEN_LIMIT = 50_000


def source(butler: Butler) -> LocalSource | RemoteSource:
    """How files and records come out of ``butler``'s repository."""
    return LocalSource(butler) if butler.served_by is None else RemoteSource(butler)


class LocalSource:
    """The registry and the datastore, read directly."""

    remote = False

    def __init__(self, butler: Butler):
        self._butler = butler
        self._keys: dict[str, set[tuple]] = defaultdict(set)
        self._written = Written()

    def artifacts(self, refs: Sequence[DatasetRef], records: bool = False,
                  related: bool = False) -> dict[uuid.UUID, StoredArtifact]:
        """The stored file of each ref that has one; with ``records``, the dimension records
        their data IDs name are noted for :meth:`records` (``related``: a server adds the records a
        Rubin export adds, which a local caller adds itself)."""
        from .repository_transfer import _collect_record_keys

        if records:
            _collect_record_keys(self._butler, refs, self._keys)
        return self._butler.registry.datasets.artifacts(r.id for r in refs)

    def reading_once(self) -> contextlib.AbstractContextManager:
        """Around a pass that reads each row once (an export): the database keeps a small cache."""
        return self._butler.registry.db.small_cache()

    def place(self, ref: DatasetRef, artifact: StoredArtifact, directory: str | Path, journal: ScratchJournal,
              transfer: str = "copy", suffix: str | None = None) -> str:
        """Copy (or link) the file under ``directory`` (a copy through a scratch file ``journal``
        records); returns its path there."""
        return self._butler.datastore.export_artifact(artifact, directory, journal, transfer, suffix=suffix)

    def place_many(self, items: Sequence[tuple[DatasetRef, StoredArtifact]], directory: str | Path,
                   journal: ScratchJournal, transfer: str = "copy", suffix: str | None = None) -> list[str]:
        """:meth:`place` of each (ref, artifact), in order."""
        return [self.place(ref, artifact, directory, journal, transfer, suffix) for ref, artifact in items]

    def records(self) -> Iterator[tuple[str, list[DimensionRecord]]]:
        """The records noted so far (and those they imply), element by element in dependency order,
        a chunk at a time."""
        return self._noted(self._butler.registry.dimensions.fetch_many)

    def record_rows(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """:meth:`records` as plain rows (the region encoded, the timespan in nanoseconds: see
        :meth:`DimensionRecordStore.export_rows`), for an export that writes them out a chunk of
        datasets at a time: records given by an earlier call are left out (as far as
        :class:`Written` remembers them)."""
        return self._noted(self._butler.registry.dimensions.export_rows, self._written)

    def _noted(self, fetch: Callable[[str, list[tuple]], list],
               written: Written | None = None) -> Iterator[tuple[str, list]]:
        from .repository_transfer import _follow_implied

        if written is not None:
            written.drop_from(self._keys)
        _follow_implied(self._butler, self._keys)
        if written is not None:
            written.drop_from(self._keys)  # implied records written already
        for name in self._butler.universe.sorted(self._keys):
            identities = sorted(self._keys.pop(name))
            if written is not None:
                written.add(name, identities)
            for begin in range(0, len(identities), RECORD_CHUNK):
                found = fetch(name, identities[begin:begin + RECORD_CHUNK])
                if found:
                    yield name, found


class RemoteSource:
    """A server's export route and its downloads."""

    remote = True

    def __init__(self, butler: Butler):
        self._butler = butler
        self._transport = butler.served_by
        self._urls: dict[uuid.UUID, str | None] = {}
        self._records: dict[str, dict[tuple, DimensionRecord]] = defaultdict(dict)
        self._written = Written()

    def reading_once(self) -> contextlib.AbstractContextManager:
        """As :meth:`LocalSource.reading_once`; the server's database is its own affair."""
        return contextlib.nullcontext()

    def artifacts(self, refs: Sequence[DatasetRef], records: bool = False,
                  related: bool = False) -> dict[uuid.UUID, StoredArtifact]:
        from .models import StoredArtifact

        answer = self._transport.post_json("export", {"ids": [str(r.id) for r in refs], "records": records,
                                                      "related": related})
        self._urls = {}
        out = {}
        for item in answer["artifacts"]:
            key = uuid.UUID(item["id"])
            out[key] = StoredArtifact(path=item["path"], formatter=item["formatter"], size=item["size"],
                                      checksum=item.get("checksum"))
            self._urls[key] = item.get("url")
        if records:
            from .dimensions import DimensionRecord
            from .remote import wire

            for name, rows in answer["records"].items():
                element = self._butler.universe[name]
                kept = self._records[name]
                for row in rows:
                    record = DimensionRecord(element, wire.decode(row))
                    kept.setdefault(record.identity, record)
        return out

    def place(self, ref: DatasetRef, artifact: StoredArtifact, directory: str | Path, journal: ScratchJournal,
              transfer: str = "copy", suffix: str | None = None) -> str:
        """Download the file to its export path under ``directory`` (through a scratch file
        ``journal`` records: a partial download never stands under the final name)."""
        _copy_only(transfer)
        return _write(ref, artifact, directory, suffix, journal,
                      self._transport.download_chunks(ref, self._urls.get(ref.id)))

    def place_many(self, items: Sequence[tuple[DatasetRef, StoredArtifact]], directory: str | Path,
                   journal: ScratchJournal, transfer: str = "copy", suffix: str | None = None) -> list[str]:
        """Download the files: each from its pre-signed URL, the others a chunk of datasets at a
        time in one response of the server's ``export/files`` route."""
        _copy_only(transfer)
        out = {ref.id: self.place(ref, artifact, directory, journal, transfer, suffix)
               for ref, artifact in items if self._urls.get(ref.id)}
        from .repository_transfer import CHUNK

        rest = [(ref, artifact) for ref, artifact in items if ref.id not in out]
        for begin in range(0, len(rest), CHUNK):
            wanted = {str(ref.id): (ref, artifact) for ref, artifact in rest[begin:begin + CHUNK]}
            for name, pieces in _Frames(self._transport.stream_bytes("export/files", {"ids": list(wanted)})):
                if name not in wanted:
                    raise SkybutlerError(f"the server sent a file that was not asked for ({name[:40]!r})")
                ref, artifact = wanted.pop(name)
                out[ref.id] = _write(ref, artifact, directory, suffix, journal, pieces)
            if wanted:
                raise SkybutlerError(f"the server's answer was cut short: {len(wanted)} file(s) did not come")
        return [out[ref.id] for ref, _ in items]

    def records(self) -> Iterator[tuple[str, list[DimensionRecord]]]:
        for name in self._butler.universe.sorted(self._records):
            kept = self._records.pop(name)
            rows = [kept[identity] for identity in sorted(kept)]
            if not rows:  # an element the server named with no records (a Rubin export lists it)
                yield name, []
            for begin in range(0, len(rows), RECORD_CHUNK):
                yield name, rows[begin:begin + RECORD_CHUNK]

    def record_rows(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """:meth:`records` as plain rows, as :meth:`LocalSource.record_rows` gives them."""
        from .repository_transfer import record_row

        for name, records in self.records():
            records = self._written.new(name, records)
            if records:
                yield name, [record_row(r) for r in records]


class Written:
    """The identities of the records an export has written, element by element, so that one
    named by many chunks of datasets (an instrument, a visit) is written once.  It remembers at
    most :data:`WRITTEN_LIMIT`, forgetting the largest elements' first: such a record may be written again
    (an import skips a record it has), and memory stays flat however large the export."""

    def __init__(self) -> None:
        self._keys: dict[str, set[tuple]] = defaultdict(set)
        self._count = 0

    def drop_from(self, keys: dict[str, set[tuple]]) -> None:
        """Take the identities written already out of ``keys``."""
        for name, identities in keys.items():
            if self._keys.get(name):
                identities -= self._keys[name]

    def add(self, name: str, identities: Sequence[tuple]) -> None:
        """Note ``identities`` of element ``name`` as written, within :data:`WRITTEN_LIMIT`."""
        # Past the limit the largest elements are forgotten first: theirs are the records named by
        # few datasets (one per dataset, in the workload), the small ones are named again and again.
        for largest in sorted(self._keys, key=lambda n: len(self._keys[n]), reverse=True):
            if self._count + len(identities) <= WRITTEN_LIMIT:
                break
            self._count -= len(self._keys.pop(largest))
        if self._count + len(identities) <= WRITTEN_LIMIT:
            self._keys[name].update(identities)
            self._count += len(identities)

    def new(self, name: str, records: list[DimensionRecord]) -> list[DimensionRecord]:
        """The records not written yet, now noted as written."""
        known = self._keys.get(name, ())
        fresh = [r for r in records if r.identity not in known]
        self.add(name, [r.identity for r in fresh])
        return fresh


def _copy_only(transfer: str) -> None:
    if transfer != "copy":
        raise SkybutlerError(f"transfer {transfer!r} links files of the server's file system; from a server "
                             "URL the files are downloaded (copy)")


def _write(ref: DatasetRef, artifact: StoredArtifact, directory: str | Path, suffix: str | None,
           journal: ScratchJournal, chunks: Iterator[bytes]) -> str:
    """A downloaded file at its export path under ``directory``, checked whole (a partial
    download never stands under the final name); returns that path."""
    relative = export_path(artifact.path, suffix)
    target = os.path.join(directory, relative)
    try:
        make_directories(os.path.dirname(target))
        write_chunks_new_file(chunks, target, artifact.size, journal, str(ref))
    except FileExistsError:  # never replaced: taken only if it holds these very bytes (an export run again)
        raise SkybutlerError(f"{target} is already there, and is not {artifact.path}: export into an empty "
                             "directory (nothing there was changed)") from None
    return relative


class _Frames:
    """The files of an ``export/files`` response as they arrive: (dataset ID, its bytes in
    pieces) each; the pieces of one file must be consumed before the next is asked for."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buffer, self._at = b"", 0

    def _fill(self, size: int) -> None:
        while len(self._buffer) - self._at < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise SkybutlerError("the server's answer was cut short in the middle of a file")
            self._buffer, self._at = self._buffer[self._at:] + chunk, 0

    def _take(self, size: int) -> bytes:
        self._fill(size)
        out = self._buffer[self._at:self._at + size]
        self._at += size
        return out

    def _pieces(self, size: int) -> Iterator[bytes]:
        while size:
            self._fill(1)
            piece = self._buffer[self._at:self._at + size]
            self._at += len(piece)
            size -= len(piece)
            yield piece

    def __iter__(self) -> Iterator[tuple[str, Iterator[bytes]]]:
        while length := int.from_bytes(self._take(4), "big"):
            name = self._take(length).decode(errors="replace")
            yield name, self._pieces(int.from_bytes(self._take(8), "big"))
