"""The write journal: what an in-flight write is about to do to files, so a crash never loses or
strands one.

Before a batch places any file in the datastore (a put's staged bytes; an ingest's copy, move or
link), its writer records each intent -- dataset ID, final path, staged name, the source of an
ingested file and how to recognise the file it places -- in ``<token>.json`` (JSON lines) in the
journal directory (``.skybutler/journal/`` of the repository), and holds an exclusive ``flock`` on
that file until the batch's registry transaction has committed or rolled back and its files are
settled; then it deletes the journal.  The kernel drops the lock when the writer dies, even by
``kill -9``: a journal whose lock can be taken belongs to a dead writer, and is replayed (see
:mod:`skybutler.recovery`).  A journal is written under a hidden name and renamed into place with
its lock already held (an anonymous ``O_TMPFILE`` linked into place, where offered), so every
visible journal is complete and locked from its first instant.

Lines after the intents add what is learnt file by file (the checksum of an ingested file is known
once it is read), always before the action they describe.  The writes of one enclosing transaction
share one journal (:class:`JournalScope`): each later write appends its intents, numbered on from
the last, before touching a file, so a transaction of any number of writes holds one descriptor
and one lock; the journal is settled once, after the block has committed or rolled back.  A journal lives on the writer's host:
a file system that does not share ``flock`` between hosts must not hold one repository directory
written from several hosts at once.  Hosts with a repository directory each, sharing a PostgreSQL
registry, see each other's writers through it (:mod:`skybutler.registry.writer_presence`).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..faults import crash_point
from .local_files import unlink_if_present

#: A hidden journal older than this (seconds) belongs to a writer killed while writing it: no file
#: was touched yet, since the journal is complete before the first file action.
PARTIAL_AGE = 60.0


@dataclass
class Intent:
    """One file a batch is about to place in the datastore."""

    dataset_id: str
    #: the artifact path (relative to the datastore root)
    path: str
    #: put, copy, move, hardlink, symlink, relsymlink; remove (a file about to be deleted after its rows);
    #: restore (staging or recompute write-back); cold-copy (a file in the cold tier);
    #: quarantine (a repair's move of a file no dataset claims, ``source`` being where it goes)
    kind: str
    #: the full path of the temporary file the bytes are staged in (local datastores)
    staged: str | None = None
    #: the absolute path of an ingested file (of a quarantine move: where the file goes)
    source: str | None = None
    #: the xxh3 checksum of the bytes placed (a put, a copy), once known
    checksum: str | None = None
    #: (device, inode, size, mtime_ns) of the source, for a move or hardlink
    identity: list[int] | None = None


@dataclass
class Journal:
    """An open journal: its file, its lock and its intents."""

    path: str
    intents: list[Intent]
    header: dict = field(default_factory=dict)
    fd: int | None = None
    #: why the journal cannot be read (a damaged file): it is never replayed nor deleted
    damaged: str | None = None

    @property
    def token(self) -> str:
        return os.path.basename(self.path)[:-len(".json")]

    def note(self, number: int, **fields) -> None:
        """Record more about intent ``number`` (before the action it describes happens)."""
        for key, value in fields.items():
            setattr(self.intents[number], key, value)
        if self.fd is not None:
            _write_all(self.fd, (json.dumps({"n": number, **fields}) + "\n").encode())

    def note_many(self, notes: Sequence[tuple[int, dict]]) -> None:
        """:meth:`note` for many intents in one write (before any of the actions they describe)."""
        for number, fields in notes:
            for key, value in fields.items():
                setattr(self.intents[number], key, value)
        if self.fd is not None and notes:
            _write_all(self.fd, "".join(json.dumps({"n": n, **f}) + "\n" for n, f in notes).encode())

    def append(self, intents: Sequence[Intent]) -> int:
        """Record more intents (a later write of the same transaction), numbered on from the last;
        returns the number of the first.  A failed write takes the journal back to its old end, so
        no torn line is ever followed by another."""
        first = len(self.intents)
        if self.fd is not None:
            end = os.fstat(self.fd).st_size
            try:
                _write_all(self.fd, "".join(json.dumps(vars(i)) + "\n" for i in intents).encode())
            except BaseException:
                os.ftruncate(self.fd, end)
                raise
        self.intents.extend(intents)
        crash_point("journal-appended")
        return first

    def void(self, numbers: Sequence[int]) -> None:
        """Intents whose write failed and whose files are gone again: a replay must not take a file
        at their paths for theirs (it would be a stranger's, or another writer's)."""
        if self.fd is not None and numbers:
            _write_all(self.fd, "".join(json.dumps({"n": n, "staged": None, "checksum": None}) + "\n"
                                        for n in numbers).encode())
        for n in numbers:
            self.intents[n].staged = self.intents[n].checksum = None

    def reread(self) -> list[Intent]:
        """The intents as the file on disk records them (notes applied): what a batch that let go
        of its in-memory intents (:meth:`forget`) settles from."""
        if self.fd is None:
            return list(self.intents)
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))  # ours is write-only
        try:
            return _parse(self.path, fd).intents
        finally:
            os.close(fd)

    def forget(self) -> None:
        """Let go of the in-memory intents once no more notes will be written: the file keeps them,
        so a long write's journals cost no memory while they wait to be settled."""
        if self.fd is not None:
            self.intents = []

    def close(self) -> None:
        """The batch is settled: delete the journal, then let go of its lock."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None


class JournalScope:
    """The one journal that every write of an enclosing transaction records its intents in.

    Begun by the transaction's first write that journals anything (so a block that writes no file
    makes none), appended to by the later ones, ended by :meth:`end` once the block has committed
    or rolled back and every write of it is settled.  Staged names carry its token."""

    def __init__(self, journals: WriteJournal):
        self.journals = journals
        self.token = uuid.uuid4().hex
        self.journal: Journal | None = None

    @property
    def next_number(self) -> int:
        """The number the next intent recorded will get."""
        return len(self.journal.intents) if self.journal is not None else 0

    def record(self, intents: Sequence[Intent]) -> Journal:
        """Record a write's intents (before it touches a file); returns the transaction's journal."""
        if self.journal is None:
            self.journal = self.journals.begin(intents, token=self.token)
        else:
            self.journal.append(intents)
        return self.journal

    def end(self) -> None:
        """The transaction is settled: delete its journal and let go of the lock."""
        if self.journal is not None:
            self.journals.end(self.journal)
            self.journal = None


class WriteJournal:
    """The journal directory of one repository."""

    def __init__(self, directory: str):
        self.directory = directory
        self._own: set[str] = set()  # journal paths this process holds open
        self._made = False  # the directory was made (or found) by this process: no makedirs per write
        #: journals of dead writers that cannot be read, by path: why (left for a person, see ``verify``)
        self.damaged: dict[str, str] = {}
        #: called before every journal is begun, so before any file is placed: a client of a shared
        #: registry makes itself known to the other hosts there (``registry.writer_presence``)
        self.before_write: Callable[[], None] | None = None

    def begin(self, intents: Sequence[Intent], token: str | None = None, durable: bool = False,
              dataset_locks: bool = False) -> Journal:
        """Record the intents of a batch (flushed to disk first if ``durable``: a move of a user's
        file) and hold the journal's lock; ``end`` the returned journal once the batch is settled.
        ``token`` names the journal (the batch's staged files carry it too).  ``dataset_locks``: the
        writer holds its datasets' locks (a retention write), and so must whoever replays it."""
        if self.before_write is not None:
            self.before_write()
        token = token or uuid.uuid4().hex
        final = os.path.join(self.directory, f"{token}.json")
        header = {"pid": os.getpid(), "host": _host(), "time": time.time()}
        if dataset_locks:
            header["dataset_locks"] = True
        lines = [json.dumps(header)] + [json.dumps(vars(i)) for i in intents]
        data = ("\n".join(lines) + "\n").encode()
        if not self._made:
            os.makedirs(self.directory, exist_ok=True)
            self._made = True
        try:
            fd = self._write_locked(token, final, data, durable, anonymous=True)
        except OSError:  # no anonymous files here (or no /proc to name one by): a hidden name instead
            fd = self._write_locked(token, final, data, durable, anonymous=False)
        journal = Journal(final, list(intents), header, fd)
        self._own.add(final)
        crash_point("journal-written")
        return journal

    def _write_locked(self, token: str, final: str, data: bytes, durable: bool, anonymous: bool) -> int:
        """:func:`_write_locked`, making the directory again if it went since this process made it."""
        try:
            return _write_locked(self.directory, token, final, data, durable, anonymous)
        except FileNotFoundError:
            os.makedirs(self.directory, exist_ok=True)
            return _write_locked(self.directory, token, final, data, durable, anonymous)

    def end(self, journal: Journal) -> None:
        """The batch is settled: delete its journal and let go of the lock."""
        journal.close()
        self._own.discard(journal.path)

    def release(self, journal: Journal) -> None:
        """Let go of an abandoned journal without settling it (a later open tries again)."""
        if journal.fd is not None:
            os.close(journal.fd)
            journal.fd = None
        self._own.discard(journal.path)

    def _names(self) -> list[str]:
        try:
            return sorted(os.listdir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def has_entries(self) -> bool:
        return bool(self._names())

    def abandoned(self) -> Iterator[Journal]:
        """The journals of dead writers, each locked by this process while the caller replays it;
        the caller closes (deletes) each one it has settled."""
        for name in self._names():
            path = os.path.join(self.directory, name)
            if name.startswith(".") and name.endswith(".partial"):
                _remove_stale_partial(path)
                continue
            if not name.endswith(".json") or path in self._own:
                continue
            journal = _take(path)
            if journal is not None and journal.damaged:
                # What its writer did cannot be known: settling it could delete a user's file, and
                # deleting it would lose the record.  Left as it is; verify reports it.
                self.damaged[path] = journal.damaged
                os.close(journal.fd)
            elif journal is not None:
                self.damaged.pop(path, None)
                self._own.add(path)  # held by this process now: not a live writer's
                yield journal

    def live(self) -> list[Journal]:
        """The journals of writers still at work (their intents; no lock is taken)."""
        out = []
        for name in self._names():
            path = os.path.join(self.directory, name)
            if not name.endswith(".json"):
                continue
            if path in self._own:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    out.append(_parse(path, fd))
                    continue
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        return out


def _write_locked(directory: str, token: str, final: str, data: bytes, durable: bool, anonymous: bool) -> int:
    """Write a journal at ``final`` with its lock held from before it is visible; returns its descriptor.

    ``anonymous``: an ``O_TMPFILE`` file (Linux), named once complete, so a writer killed while
    writing leaves nothing; else ``.<token>.partial`` renamed into place, which a later replay
    deletes once it is old and unlocked."""
    flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
    hidden = None
    if anonymous:
        if not hasattr(os, "O_TMPFILE"):
            raise OSError("no anonymous files on this system")
        fd = os.open(directory, flags | os.O_TMPFILE, 0o644)
    else:
        hidden = os.path.join(directory, f".{token}.partial")
        fd = os.open(hidden, flags | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _write_all(fd, data)
        if durable:
            os.fsync(fd)
        if hidden is None:
            _link_anonymous(fd, directory, os.path.basename(final))
        else:
            os.rename(hidden, final)
        if durable:
            _fsync_directory(directory)
    except BaseException:
        os.close(fd)
        if hidden is not None:
            unlink_if_present(hidden)
        raise
    return fd


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (a write to a file may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _link_anonymous(fd: int, directory: str, name: str) -> None:
    """Give an ``O_TMPFILE`` file a name: ``linkat`` of its ``/proc/self/fd`` entry, following it.
    A directory descriptor makes Python call ``linkat`` with ``AT_SYMLINK_FOLLOW`` (``link`` would
    link the symbolic link itself); both paths are absolute, so the kernel ignores the descriptor,
    and the file's own descriptor serves: no directory is opened and closed per journal."""
    os.link(f"/proc/self/fd/{fd}", os.path.join(os.path.abspath(directory), name), dst_dir_fd=fd,
            follow_symlinks=True)


@functools.cache
def _host() -> str:
    """This host's name, for the journals' headers (asked once per process, not per write)."""
    return socket.gethostname()


def _take(path: str) -> Journal | None:
    """Lock a journal if its writer is gone; None if the writer holds it (or it was just settled)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, PermissionError):  # settled meanwhile, or a repository we may only read
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:  # the writer may have settled and deleted it between our open and our lock
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            os.close(fd)
            return None
    except FileNotFoundError:
        os.close(fd)
        return None
    journal = _parse(path, fd)
    journal.fd = fd
    return journal


def _parse(path: str, fd: int) -> Journal:
    """The intents of a journal, with later notes applied; a torn last line is ignored (the
    action it would have described never happened)."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    header: dict = {}
    intents: list[Intent] = []
    lines = b"".join(chunks).split(b"\n")
    damaged = None
    for number, line in enumerate(lines):
        try:
            item = json.loads(line)
        except ValueError:
            if number < len(lines) - 1 or number == 0:  # only the last line may be torn
                damaged = f"line {number + 1} is not JSON"
            continue
        try:
            if number == 0:
                if not isinstance(item, dict):
                    raise TypeError("no header")
                header = item
            elif "n" in item:
                for key, value in item.items():
                    if key != "n" and 0 <= item["n"] < len(intents):
                        setattr(intents[item["n"]], key, value)
            else:
                intent = Intent(**item)
                uuid.UUID(intent.dataset_id)
                if not isinstance(intent.path, str):
                    raise TypeError("no path")
                intents.append(intent)
        except (TypeError, ValueError, AttributeError) as err:
            damaged = f"line {number + 1} is not an intent skybutler wrote ({err})"
    return Journal(path, intents, header, None, damaged)


def _remove_stale_partial(path: str) -> None:
    try:
        if time.time() - os.stat(path).st_mtime < PARTIAL_AGE:
            return
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        unlink_if_present(path)
    except OSError:  # held by its writer, or not ours to delete
        pass
    finally:
        os.close(fd)


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
