"""Bringing existing files into the datastore: copy, move, hardlink, symlink, or direct.

``direct`` leaves the file where it is and records its absolute URI; the other
modes place it at the dataset's template path.  Each ingested file can be undone
(the butler undoes them all if registering the batch fails), so a failed ingest
leaves the repository as it was; and the write journal covers the batch until it is
settled, so a crash does too (see :mod:`skybutler.datastore.journal`).  A move within
one device is a rename; across devices, or into an object store, it is a copy whose
source is deleted only after the registry has committed.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import ArtifactExistsError, FormatterError, InvalidFileError, TransferError
from ..faults import crash_point
from ..models import DatasetRef, StoredArtifact
from .checksums import checksum
from .journal import Intent, Journal
from .local_files import read_all, rename_no_replace, write_new_file
from .rollback import settle_intent

#: ``link`` is a hard link, or a symbolic one where the file is on another device than the
#: datastore; ``relsymlink`` a symbolic link holding the path relative to the link (the Rubin
#: butler's modes: the repository and the files may then move together).
TRANSFER_MODES = ("copy", "move", "hardlink", "symlink", "relsymlink", "link", "direct", "auto")
#: Threads that place the files of one batch at once into an object store, where each
#: transfer waits on the network.  On a local disk files are placed in order: creating
#: many files from several threads is slower there, not faster.
OBJECT_STORE_THREADS = 8
#: Files of a local batch read, and their checksums noted in the journal with one write, before
#: they are placed: at most this many, and this many bytes held.
NOTE_GROUP = 512
NOTE_BYTES = 64 << 20
#: Checks one file of a batch as it is placed: (its index in the batch, its bytes when they were read
#: for the copy or checksum, else None); raises FormatterError or InvalidFileError to refuse it.
Examine = Callable[[int, "bytes | None"], None]
#: Suffixes of compressed files: the suffix before them is kept too (``.fits.gz``).
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".fz", ".xz", ".z")


class IngestedFile:
    """One file brought in, with what is needed to take it back out, or to finish its move."""

    def __init__(self, artifact: StoredArtifact, placed: str | None, moved_from: str | None, fs=None,
                 delete_source: str | None = None):
        self.artifact = artifact
        self._placed = placed
        self._moved_from = moved_from  # a same-device move: the file itself is at ``placed``
        self._fs = fs  # the object store holding ``placed``; None on local disk
        self._delete_source = delete_source  # a copy-then-delete move: the source goes after the commit

    def finish(self) -> None:
        """The registry has committed: complete a copy-then-delete move by deleting its source."""
        if self._delete_source is not None:
            try:
                os.unlink(self._delete_source)
            except FileNotFoundError:
                pass
            self._delete_source = None

    def undo(self) -> None:
        """Take the file back out: a moved file goes back where it came from, a copy or link is deleted."""
        if self._placed is None:
            return
        if self._fs is not None:
            try:
                self._fs.rm_file(self._placed)
            except FileNotFoundError:
                pass
        elif self._moved_from is not None:
            rename_no_replace(self._placed, self._moved_from)
        else:
            try:
                os.unlink(self._placed)
            except FileNotFoundError:
                pass
        self._placed = None


class IngestBatch:
    """The files of one ingest and the journal entry that covers them until the batch is settled."""

    def __init__(self, datastore, files: list[IngestedFile], journal: Journal | None):
        self.datastore = datastore
        self.files = files
        self.journal = journal
        self._on_disk = False  # the per-file records were let go of: the journal file says what to do
        self._moves = False  # a spilled batch has moves to finish after the commit

    def spill(self) -> None:
        """Let go of the per-file records of a placed batch that waits for an enclosing transaction:
        its journal on disk names every file with what recognises it, and :meth:`undo` and
        :meth:`finish` work from that.  So a long import's undo list costs no memory per file."""
        if self.journal is None or self.journal.fd is None or self._on_disk:
            return
        self._moves = any(i.kind == "move" for i in self.journal.intents)
        self.files = []
        self.journal.forget()
        self._on_disk = True

    def finish(self) -> None:
        """After the registry commit: finish copy-then-delete moves, then drop the journal."""
        if self._on_disk and self._moves and self.journal is not None:
            for intent in self.journal.reread():
                if intent.kind == "move":  # a rename leaves nothing to do; a copy's source goes
                    settle_intent(self.datastore, intent, committed=True, claimed=False)
        for f in self.files:
            f.finish()
        self._close()

    def undo(self) -> None:
        """After a failure: take every file back out (moved ones back in place), then drop the journal."""
        if self._on_disk and self.journal is not None:
            # Settled as a dead writer's uncommitted intents are: only a file the journal recognises
            # as the one placed (inode, link target or checksum) is taken out.
            for intent in reversed(self.journal.reread()):
                settle_intent(self.datastore, intent, committed=False, claimed=False)
            self._on_disk = False
        for f in reversed(self.files):
            f.undo()
        self.files = []  # nothing left to finish: a later finish() deletes no source
        self._close()

    def _close(self) -> None:
        if self.journal is not None:
            self.datastore.journal.end(self.journal)
            self.journal = None


def ingest_files(datastore, entries: Sequence[tuple[str | Path, DatasetRef]], transfer: str,
                 formatter: str | Sequence[str], extension: str = "", *,
                 examine: Examine | None = None, also_named: Sequence[str] = ()) -> IngestBatch:
    """Bring many files in (see :func:`ingest_file`): ``entries`` are (source, dataset ref) pairs,
    a file's path in the datastore comes from its ref and suffix (``extension`` if it has none, or one
    neither it nor ``also_named`` is: see :func:`file_suffix`);
    ``formatter`` is one name for all or one per entry.

    Every file has been checked by its formatter already (``formats.file_facts.examine_file``),
    or is checked by ``examine`` as it is placed: each file is then read
    once, checked from the bytes that are copied, and a refused file stops the placing (the
    files after it are still checked, so that every refusal is reported) and undoes the batch
    (:class:`InvalidFileError`).  Then the intents of the
    whole batch go to the write journal (flushed to disk for a move) before the first file is
    placed, so a crash at any instant can be undone on the next open.  All or nothing: if one file
    fails, those already placed are undone and the error is raised.  The caller ends the returned
    batch with ``finish()`` after its registry commit, or ``undo()``.
    """
    formatters = [formatter] * len(entries) if isinstance(formatter, str) else list(formatter)
    token = uuid.uuid4().hex
    plans: list[tuple[str, str, str, int | None]] = []  # source, relative path, mode, intent number
    intents: list[Intent] = []
    for source, ref in entries:
        source = os.path.abspath(source)
        mode = _mode(datastore, source, transfer)
        if mode == "direct":  # recorded where it is: the datastore's template names no path for it
            plans.append((source, "", mode, None))
            continue
        relative = datastore.relative_path(ref, file_suffix(source, extension, also_named))
        final = datastore.full_path(relative)
        identity = _identity(source) if mode in ("move", "hardlink") else None
        staged = f"{final}.tmp-{token}-{len(intents)}" if datastore.local and mode in ("copy", "move") else None
        plans.append((source, relative, mode, len(intents)))
        intents.append(Intent(str(ref.id), relative, mode, staged=staged, source=source, identity=identity))
    journal = datastore.journal.begin(intents, token=token, durable=transfer == "move") \
        if datastore.journal is not None and intents else None
    batch = IngestBatch(datastore, [], journal)

    def one(index: int, read: tuple[int, bytes | None] | None = None) -> IngestedFile:
        source, relative, mode, number = plans[index]
        return ingest_file(datastore, source, relative, mode, formatters[index], journal=journal,
                           intent=None if number is None else intents[number], number=number, read=read)

    def _checked_first(index: int) -> IngestedFile:
        """Read the file, have ``examine`` check those bytes, note their checksum, then place them."""
        source, relative, mode, number = plans[index]
        read = _read_source(datastore, source, relative, mode)
        _refuse(_examined(examine, [(index, read[1])], plans))
        if journal is not None and number is not None and read[1] is not None:
            journal.note(number, checksum=checksum(read[1], "xxh3"))
        return one(index, read)

    try:
        if datastore.local or len(plans) < 2:
            _place_in_groups(datastore, plans, journal, batch, one, examine)
            return batch
        with ThreadPoolExecutor(OBJECT_STORE_THREADS) as pool:
            futures = [pool.submit(one if examine is None else _checked_first, index) for index in range(len(plans))]
        error, failures = None, []
        for future in futures:
            try:
                batch.files.append(future.result())
            except InvalidFileError as err:  # every refused file is named
                failures.extend(err.failures)
            except BaseException as err:  # keep the first error, undo everything that succeeded
                error = error or err
        if error is not None:
            raise error
        _refuse(failures)
        return batch
    except BaseException:
        batch.undo()
        raise


def _place_in_groups(datastore, plans: list[tuple[str, str, str, int | None]], journal: Journal | None,
                     batch: IngestBatch, one, examine: Examine | None) -> None:
    """Place the files of a local batch in order, a group at a time: each group's files are read
    (at most :data:`NOTE_GROUP` of them, :data:`NOTE_BYTES` in all), checked by ``examine``, and
    their checksums noted in the journal with one write, before the first of them is placed.
    After a refused file nothing more is placed; the rest are only checked."""
    pending: list[tuple[int, tuple[int, bytes | None]]] = []
    failures: list[tuple[str, str]] = []
    held = 0

    def flush() -> None:
        if journal is not None and not failures:
            journal.note_many([(plans[i][3], {"checksum": checksum(data, "xxh3")}) for i, (_, data) in pending
                               if plans[i][3] is not None and data is not None])
        for index, read in pending if not failures else ():
            batch.files.append(one(index, read))
        pending.clear()

    for index, (source, relative, mode, _) in enumerate(plans):
        read = _read_source(datastore, source, relative, mode)
        if examine is not None:
            failures.extend(_examined(examine, [(index, read[1])], plans))
        if failures:
            continue
        pending.append((index, read))
        held += read[0] if read[1] is not None else 0
        if len(pending) >= NOTE_GROUP or held >= NOTE_BYTES:
            flush()
            held = 0
    flush()
    _refuse(failures)


def _examined(examine: Examine, reads, plans: list[tuple[str, str, str, int | None]]) -> list[tuple[str, str]]:
    """Run ``examine`` on each (index, bytes or None); the (file, reason) of each one it refused."""
    failures: list[tuple[str, str]] = []
    for index, data in reads:
        try:
            examine(index, data)
        except InvalidFileError as err:
            failures.extend(err.failures)
        except FormatterError as err:
            failures.append((plans[index][0], str(err)))
    return failures


def _refuse(failures: list[tuple[str, str]]) -> None:
    if failures:
        raise InvalidFileError(failures)


def file_suffix(path: str | Path, default: str, also: Sequence[str] = ()) -> str:
    """The suffix a stored copy of ``path`` keeps: ``.fits``, or ``.fits.gz`` for a compressed file
    (the compression suffix and the one before it); ``default`` if it has none.  With ``default``
    given (its format's extension), a suffix that is neither it nor one of ``also`` (the format's
    other names) gives way to it: a FITS file named ``raw.txt`` is stored as ``.fits``, ``raw.txt.gz``
    and ``raw.gz`` as ``.fits.gz``."""
    suffixes = _suffixes(os.fspath(path))
    if not suffixes:
        return default
    kept = suffixes[-1:]
    if suffixes[-1].lower() in COMPRESSION_SUFFIXES and len(suffixes) > 1 and suffixes[-2][1:].isalnum() \
            and len(suffixes[-2]) <= 8:
        kept = suffixes[-2:]
    if not default or kept[0].lower() in (default, *also):
        return "".join(kept)
    if kept[0].lower() in COMPRESSION_SUFFIXES:  # raw.gz: a compressed file of the format
        return default + kept[0]
    return default + "".join(kept[1:])


def _suffixes(path: str) -> list[str]:
    """What ``PurePath(path).suffixes`` says, without making a path object (one per ingested file)."""
    name = path.rstrip("/").rpartition("/")[2]
    if name.endswith(".") or "." not in name.lstrip("."):
        return []
    return ["." + s for s in name.lstrip(".").split(".")[1:]]


def _mode(datastore, source: str, transfer: str) -> str:
    """The transfer a file gets: ``auto`` is direct for a file already inside the datastore root, else copy;
    ``link`` a hard link on the datastore's device, else a symbolic link."""
    if transfer == "link":
        return "hardlink" if datastore.local and _same_device_as(datastore, source, "") else "symlink"
    if transfer not in ("auto", "direct"):
        return transfer
    inside = datastore.local and source.startswith(datastore.root.rstrip("/") + "/")
    return "direct" if transfer == "direct" or inside else "copy"


def _identity(source: str) -> list[int]:
    """What recognises a user's file after a move or link: device, inode, size, modification time."""
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise TransferError(f"cannot ingest {source}: no such file") from None
    except OSError as err:
        raise TransferError(f"cannot ingest {source}: {err.strerror or err}") from err
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _read_source(datastore, source: str, relative_path: str, transfer: str) -> tuple[int, bytes | None]:
    """The size of ``source`` and, when its checksum is kept or it is copied, its bytes."""
    copies = transfer == "copy" or not datastore.local or (transfer == "move" and (
        os.path.islink(source) or not _same_device_as(datastore, source, relative_path)))
    return _read_for_checksum(source, datastore.checksum_algorithm is not None or copies)


def ingest_file(datastore, source: str | Path, relative_path: str, transfer: str, formatter: str, *,
                journal: Journal | None = None, intent: Intent | None = None,
                number: int | None = None, read: tuple[int, bytes | None] | None = None) -> IngestedFile:
    """Bring ``source`` in under ``relative_path`` with ``transfer`` (``direct`` records it where it
    is); ``intent`` (number ``number`` of ``journal``) is told the file's checksum before the
    file is placed.  ``read``: the file's size and bytes, read (and their checksum noted) already."""
    source = os.path.abspath(source)
    transfer = _mode(datastore, source, transfer)
    size, data = read if read is not None else _read_source(datastore, source, relative_path, transfer)
    digest = checksum(data, datastore.checksum_algorithm) if data is not None else None
    if transfer == "direct":
        inside = datastore.local and source.startswith(datastore.root.rstrip("/") + "/")
        path = os.path.relpath(source, datastore.root) if inside else f"file://{source}"
        return IngestedFile(StoredArtifact(path=path, formatter=formatter, size=size, checksum=digest), None, None)
    if read is None and journal is not None and number is not None and data is not None:
        journal.note(number, checksum=checksum(data, "xxh3"))
    artifact = StoredArtifact(path=relative_path, formatter=formatter, size=size, checksum=digest)
    final = datastore.full_path(relative_path)
    if not datastore.local:
        if transfer not in ("copy", "move"):
            raise TransferError(f"transfer {transfer!r} needs a local datastore; use copy or move")
        if datastore.fs.exists(final):
            raise ArtifactExistsError(f"refusing to overwrite existing object {final}", final)
        try:  # exclusive: a concurrent writer's object of the same name is never replaced
            datastore.fs.pipe_file(final, data, mode="create")
        except FileExistsError:
            raise ArtifactExistsError(f"refusing to overwrite existing object {final}", final) from None
        except Exception as err:  # the store's own errors vary by backend
            raise TransferError(f"{transfer} of {source} to {datastore.fs.unstrip_protocol(final)} failed: "
                                f"{err}") from err
        crash_point("file-placed")
        return IngestedFile(artifact, final, None, datastore.fs,
                            delete_source=source if transfer == "move" else None)
    staged = intent.staged if intent is not None and intent.staged else f"{final}.tmp-{uuid.uuid4().hex}"
    try:
        how = datastore.in_directory_of(final, lambda: _place(source, final, transfer, data, staged))
    except OSError as err:
        raise TransferError(f"{transfer} of {source} to {final} failed: {err}") from err
    crash_point("file-placed")
    return IngestedFile(artifact, final, source if how == "moved" else None,
                        delete_source=source if how == "copied for a move" else None)


def _place(source: str, final: str, transfer: str, data: bytes | None, staged: str) -> str:
    """Put ``source`` at the local path ``final`` by ``transfer``; says how: moved (renamed), copied
    for a move (the source is deleted after the commit), or placed.  A move of a symbolic link copies
    the file it points to (the link goes after the commit, the file it pointed to stays): renamed,
    the link would leave the repository's file outside it.

    An existing file at ``final`` is never replaced: copies and moves end in one no-clobber
    rename (no window between a check and the rename), links fail on their own."""
    def refusal() -> ArtifactExistsError:  # made only when needed: most files meet no other
        return ArtifactExistsError(f"refusing to overwrite existing file {final}", final)

    how = "placed"
    if transfer == "move" and not os.path.islink(source) and _same_device(source, final):
        try:
            rename_no_replace(source, final)
        except FileExistsError:
            raise refusal() from None
        return "moved"
    if transfer in ("copy", "move"):
        write_new_file(staged, data if data is not None else Path(source).read_bytes())
        try:
            rename_no_replace(staged, final)
        except FileExistsError:
            os.unlink(staged)
            raise refusal() from None
        except BaseException:  # an I/O error: the staged copy must not outlive the batch
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
            raise
        how = "copied for a move" if transfer == "move" else how
    elif transfer in ("hardlink", "symlink", "relsymlink"):
        target = os.path.relpath(source, os.path.dirname(final)) if transfer == "relsymlink" else source
        try:
            (os.link if transfer == "hardlink" else os.symlink)(target, final)
        except FileExistsError:
            raise refusal() from None
    else:
        raise TransferError(f"unknown transfer mode {transfer!r}; use one of {', '.join(TRANSFER_MODES)}")
    return how


def _read_for_checksum(source: str, read: bool) -> tuple[int, bytes | None]:
    """The size of ``source`` and, if ``read``, its bytes (one open, one stat).  Only a regular file
    is taken (opened without blocking: a FIFO must not hang the ingest)."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise TransferError(f"cannot ingest {source}: no such file") from None
    except OSError as err:
        raise TransferError(f"cannot ingest {source}: {err.strerror or err}") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TransferError(f"cannot ingest {source}: not a regular file")
        return st.st_size, read_all(fd, st.st_size) if read else None
    except OSError as err:  # a directory, an unreadable device
        raise TransferError(f"cannot ingest {source}: {err.strerror or err}") from err
    finally:
        os.close(fd)


def _same_device(source: str, final: str) -> bool:
    return os.stat(source).st_dev == os.stat(os.path.dirname(final)).st_dev


def _same_device_as(datastore, source: str, relative_path: str) -> bool:
    """Whether a move of ``source`` into the datastore is a rename (same device as its root)."""
    try:
        return os.stat(source).st_dev == os.stat(datastore.root).st_dev
    except OSError:
        return True  # a missing source is reported by the read that follows
