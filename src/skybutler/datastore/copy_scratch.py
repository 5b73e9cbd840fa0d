"""The scratch files and directories a copy out (export, retrieve-artifacts, a Rubin export or zip,
an output a person names with ``-o``) makes in a person's directory, journaled so that those of a killed copy out are removed later --
and nothing else ever is.

A copy out writes each file under a hidden scratch name beside its final one and renames it into
place once whole, so no half file ever stands under a final name; killed with ``kill -9``, it
leaves its scratch behind.  So each copy out holds a journal in the directory it copies into (its
*root*): ``.skybutler-copy-out.<token>.journal``, made new (``O_EXCL``), held by an exclusive
``flock`` for as long as the copy out runs (the kernel drops it when the process dies, however it
dies), and starting with a line naming skybutler, the token, the process ID, host and boot ID
(flushed to disk with its directory before any scratch is made).  Before making a scratch file
(or directory) it appends the scratch's path (relative to the root) as an *intent*, then makes it
new (``O_EXCL``, ``mkdir``), then appends its device and inode as *made*.

:func:`remove_abandoned` -- run by every copy out into the same root before it starts, and by
``skybutler clean-copy-out DIR`` -- takes each journal whose lock is free (its writer is dead;
where the file system has no ``flock``: written on this host, in an earlier boot or by a process
that is gone) and removes
exactly the scratch that journal proves its writer made: a path of the journal, hidden, inside the
root, whose file (or directory) is the very inode recorded as *made*; or, recorded only as an
intent (killed between ``open`` and the next append), a regular file still empty or an empty
directory.  A person's file is never removed, whatever its name: one named like a scratch file
but in no dead writer's journal, or at a journaled path but another inode, is not the scratch that
was made.  A scratch directory proved so (a retrieve's staging directory, a zip's work directory)
is removed with what is in it: only its copy out puts files there.  Then the journal goes.

Nothing is fsynced per file: a ``kill -9`` loses no write the kernel was given.  After a power
cut a scratch file may outlive its journal line and stay behind; never the other way round to any
harm, since a journal line alone deletes nothing the inode check does not prove.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..faults import crash_point

#: A text as a JSON string (the journal's lines are written without building dicts: many a second).
_quoted = json.encoder.encode_basestring_ascii

#: A journal's name: ``.skybutler-copy-out.<32 hex digits>.journal`` in the root.
JOURNAL_PREFIX, JOURNAL_SUFFIX = ".skybutler-copy-out.", ".journal"
#: The first field of a journal's first line, naming what wrote it.
MARK = "skybutler copy-out scratch journal"
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_JOURNAL_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class ScratchJournal:
    """The journal of one copy out into ``root`` (an existing directory): made and held on
    creation, after the scratch of dead copy outs there is removed; :meth:`close` removes what
    scratch of its own is left, then the journal."""

    def __init__(self, root: str | Path):
        self.root = os.path.abspath(root)
        #: How a path inside the root begins, as the caller spells the root and absolute.
        self._prefixes = tuple({os.path.join(str(root), ""), os.path.join(self.root, "")})
        #: The scratch journaled and not yet known gone, by path (few at a time): its kind, and its
        #: (device, inode) once made.
        self._outstanding: dict[str, tuple[str, tuple[int, int] | None]] = {}
        remove_abandoned(self.root)
        self.token = uuid.uuid4().hex
        self.path = os.path.join(self.root, f"{JOURNAL_PREFIX}{self.token}{JOURNAL_SUFFIX}")
        self._fd = os.open(self.path, _JOURNAL_FLAGS, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            header = {"skybutler": MARK, "version": 1, "token": self.token, "pid": os.getpid(),
                      "host": socket.gethostname(), "boot_id": _boot_id(), "started": time.time()}
            os.write(self._fd, (json.dumps(header) + "\n").encode())
            os.fsync(self._fd)
            _fsync_directory(self.root)
        except BaseException:
            os.unlink(self.path)
            os.close(self._fd)
            raise

    def new_file(self, destination: str, suffix: str = ".download") -> str:
        """A new, empty scratch file beside ``destination`` (``.<name>.<hex>.download``), journaled;
        returns its path.  FileNotFoundError if the directory is missing."""
        path, fd = self.open_new_file(destination, suffix)
        os.close(fd)
        return path

    def open_new_file(self, destination: str, suffix: str = ".download") -> tuple[str, int]:
        """:meth:`new_file`, and a descriptor of it open for writing (close it)."""
        head, name = os.path.split(destination)
        path = os.path.join(head, f".{name}.{os.urandom(16).hex()}{suffix}")
        relative = self._intent(path, "file")
        try:
            fd = os.open(path, _FLAGS, 0o666)
        except OSError:  # its directory is missing: nothing made
            self.gone(path)
            raise
        try:
            self._made(path, relative, "file", os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return path, fd

    def new_directory(self, parent: str | Path, prefix: str) -> Path:
        """A new, empty scratch directory inside ``parent`` (``<prefix><hex>``, the prefix starting
        with a dot), journaled."""
        path = os.path.join(parent, f"{prefix}{os.urandom(16).hex()}")
        relative = self._intent(path, "directory")
        os.mkdir(path, 0o700)
        self._made(path, relative, "directory", os.lstat(path))
        return Path(path)

    def gone(self, path: str) -> None:
        """Note that the scratch ``path`` is no more (moved into place, or removed)."""
        self._outstanding.pop(path, None)

    def close(self) -> None:
        """Remove what scratch of this copy out is left (one that failed), then the journal."""
        if self._fd < 0:
            return
        try:
            for path, (kind, inode) in reversed(self._outstanding.items()):
                _remove_proven(path, kind, inode)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ScratchJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _intent(self, path: str, kind: str) -> str:
        relative = next((path[len(p):] for p in self._prefixes if path.startswith(p)), None)
        if relative is None or os.path.normpath(relative) != relative or relative.startswith(".."):
            relative = os.path.relpath(path, self.root)
        if relative.startswith(".." + os.sep) or relative == ".." or not os.path.basename(path).startswith("."):
            raise ValueError(f"scratch {path} is not a hidden name inside {self.root}")
        self._outstanding[path] = (kind, None)
        os.write(self._fd, f'{{"intent": {_quoted(relative)}, "kind": "{kind}"}}\n'.encode())
        crash_point("scratch-journaled")
        return relative

    def _made(self, path: str, relative: str, kind: str, info: os.stat_result) -> None:
        self._outstanding[path] = (kind, (info.st_dev, info.st_ino))
        os.write(self._fd, f'{{"made": {_quoted(relative)}, "dev": {info.st_dev}, "ino": {info.st_ino}}}\n'.encode())
        crash_point("scratch-made")


@contextlib.contextmanager
def copy_out_into(root: str | Path) -> Iterator[ScratchJournal]:
    """A :class:`ScratchJournal` for the copy out the block does into ``root`` (made if missing)."""
    os.makedirs(root, exist_ok=True)
    journal = ScratchJournal(root)
    try:
        yield journal
    finally:
        journal.close()


def remove_abandoned(root: str | Path) -> list[str]:
    """Remove the scratch of the dead copy outs journaled in ``root`` (see the module doc), then
    their journals; returns the scratch paths removed."""
    root = os.path.abspath(root)
    try:
        names = [n for n in os.listdir(root) if n.startswith(JOURNAL_PREFIX) and n.endswith(JOURNAL_SUFFIX)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed: list[str] = []
    for name in names:
        path = os.path.join(root, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:  # gone meanwhile (another copy out removed it), or not a file of ours
            continue
        try:
            if _writer_dead(fd) and _still_named(fd, path):
                removed += _settle(root, path, fd)
        finally:
            os.close(fd)
    return removed


def _writer_dead(fd: int) -> bool:
    """Whether the journal open as ``fd`` belongs to a process that is gone (its lock is then ours)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:  # its copy out is at work
        return False
    except OSError as err:
        if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    header = _header(next(_entries(fd), None))  # no flock on this file system: the process's identity decides
    if header is None or header.get("host") != socket.gethostname():
        return False
    return header.get("boot_id") != _boot_id() or not _alive(int(header.get("pid", 0)))


def _still_named(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (another cleaner may have removed it)."""
    try:
        here, held = os.lstat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino) and stat.S_ISREG(here.st_mode)


def _settle(root: str, path: str, fd: int) -> list[str]:
    """Remove the scratch the held journal ``path`` (open as ``fd``) proves made and still there,
    then the journal, if it is one of skybutler's (else nothing is touched).  Read as a stream: a
    file's intent and its inode are adjacent lines, so memory holds the few intents not yet made."""
    entries = _entries(fd)
    header = _header(next(entries, None))
    if header is None or not path.endswith(f"{JOURNAL_PREFIX}{header['token']}{JOURNAL_SUFFIX}"):
        return []
    removed = []
    intents: dict[str, str] = {}  # journaled, not yet made: their kind
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        relative, made = entry.get("intent"), entry.get("made")
        if isinstance(relative, str):
            intents[relative] = "directory" if entry.get("kind") == "directory" else "file"
            continue
        if not isinstance(made, str) or made not in intents:
            continue
        kind = intents.pop(made)
        try:
            inode = (int(entry["dev"]), int(entry["ino"]))
        except (KeyError, TypeError, ValueError):
            continue
        scratch = _inside(root, made)
        if scratch is not None and _remove_proven(scratch, kind, inode):
            removed.append(scratch)
    for relative, kind in reversed(intents.items()):
        scratch = _inside(root, relative)
        if scratch is not None and _remove_proven(scratch, kind, None):
            removed.append(scratch)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return removed


def _inside(root: str, relative: str) -> str | None:
    """The path of a journaled scratch, if it is a hidden name inside ``root``; else None."""
    if os.path.isabs(relative) or os.path.normpath(relative) != relative or relative.split(os.sep)[0] == "..":
        return None
    if not os.path.basename(relative).startswith(".") or "\0" in relative:
        return None
    return os.path.join(root, relative)


def _remove_proven(path: str, kind: str, inode: tuple[int, int] | None) -> bool:
    """Remove ``path`` if it is the scratch made (the recorded inode), or, recorded as an intent
    only, an empty file or directory of that kind.  True if removed."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    is_file, is_directory = stat.S_ISREG(info.st_mode), stat.S_ISDIR(info.st_mode)
    if not (is_file if kind == "file" else is_directory):
        return False
    if inode is not None and (info.st_dev, info.st_ino) != inode:
        return False
    try:
        if is_file and (inode is not None or info.st_size == 0):
            os.unlink(path)
        elif is_directory and inode is not None:
            shutil.rmtree(path)
        elif is_directory:
            os.rmdir(path)  # refused unless empty
        else:
            return False
    except OSError:  # gone meanwhile, or (an unproven directory) not empty: left as it is
        return False
    return True


def _entries(fd: int) -> Iterator[object]:
    """The journal's lines from its start, each parsed (None if it is not JSON)."""
    offset, rest = 0, b""
    while chunk := os.pread(fd, 1 << 20, offset):
        offset += len(chunk)
        *lines, rest = (rest + chunk).split(b"\n")
        yield from map(_parsed, lines)
    if rest:
        yield _parsed(rest)


def _parsed(line: bytes) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _header(header: object) -> dict | None:
    """A journal's first line, if it names skybutler's copy out and a token; else None."""
    if not isinstance(header, dict) or header.get("skybutler") != MARK:
        return None
    token = header.get("token")
    if not isinstance(token, str) or len(token) != 32 or any(c not in "0123456789abcdef" for c in token):
        return None
    return header


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as stream:
            return stream.read().strip()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse a directory's fsync: the journal's own was done
        pass
    finally:
        os.close(fd)
