"""Small-file reads and writes on a local disk with plain ``os`` calls.

Buffered file objects cost several microseconds each to set up and tear down; for
the tens of thousands of small files a ``put_many`` or an ingest handles, that is a
sizeable share of the work.  These helpers do one open, the reads or writes, and one
close.
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from ..errors import DatastoreError
from ..faults import crash_point

if TYPE_CHECKING:
    from .copy_scratch import ScratchJournal

_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def read_all(fd: int, size: int) -> bytes:
    """The bytes of an open file of ``size`` bytes (from ``fstat``): one read call when that many
    come at once, as they do from a regular local file; otherwise read until the end."""
    first = os.read(fd, size)
    if len(first) == size:
        return first
    chunks = [first]
    while chunk := os.read(fd, max(size, 1 << 16)):
        chunks.append(chunk)
    return b"".join(chunks)


def write_new_file(path: str, data: bytes) -> None:
    """Create ``path`` (it must not exist) holding ``data``; on failure nothing is left behind."""
    fd = os.open(path, _NEW_FILE_FLAGS, 0o666)
    try:
        view, written = memoryview(data), 0
        while written < len(view):
            written += os.write(fd, view[written:])
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def copy_file(source: str, destination: str, journal: ScratchJournal) -> None:
    """Copy ``source`` to the new file ``destination`` in the kernel (``sendfile``), whatever the
    size, as :func:`place_new_file` places it: written under a hidden scratch name of its own
    (journaled in ``journal``, so that a copy killed meanwhile leaves nothing the next copy out
    does not remove), never half under the final name.  Spares ``shutil.copyfile``'s same-file
    checks and file objects: an export copies many small files.  FileNotFoundError when the
    directory is missing."""
    src = os.open(source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(src).st_size
        partial, dst = journal.open_new_file(destination)
        try:
            try:
                sent = 0
                while sent < size:
                    done = os.sendfile(dst, src, sent, size - sent)
                    if done == 0:  # the source shrank meanwhile
                        break
                    sent += done
            finally:
                os.close(dst)
            crash_point("scratch-filled")
        except BaseException:
            _remove_scratch(partial, journal)
            raise
        _place_scratch(partial, destination, journal)
    finally:
        os.close(src)


def download_new_file(fs: Any, source: str, destination: str, journal: ScratchJournal) -> None:
    """Download ``source`` from the fsspec file system ``fs`` to ``destination`` as
    :func:`place_new_file` places it: fetched under a hidden scratch name of its own in the same
    directory (made new and journaled in ``journal`` first, so fsspec overwrites nothing but it).
    FileNotFoundError when the directory is missing."""
    partial = journal.new_file(destination)
    try:
        fs.get_file(source, partial)
        crash_point("scratch-filled")
    except BaseException:
        _remove_scratch(partial, journal)
        raise
    _place_scratch(partial, destination, journal)


def write_chunks_new_file(chunks: Iterable[bytes], destination: str, size: int, journal: ScratchJournal,
                          what: str) -> None:
    """``chunks`` (the ``size`` bytes of ``what``, a download) written to the new file
    ``destination`` as :func:`download_new_file` writes it; DatastoreError naming ``what`` if
    another number of bytes came (nothing is placed)."""
    partial, fd = journal.open_new_file(destination)
    try:
        with open(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                crash_point("scratch-filled")
            written = out.tell()
        if written != size:
            raise DatastoreError(f"the download of {what} was cut short ({written} of {size} bytes)")
    except BaseException:
        _remove_scratch(partial, journal)
        raise
    _place_scratch(partial, destination, journal)


@contextlib.contextmanager
def new_text_file(destination: str | os.PathLike, journal: ScratchJournal) -> Iterator[TextIO]:
    """A text stream written under a scratch name of ``journal`` and placed at ``destination`` when
    the block ends without error, as :func:`place_new_file` places it (never replacing a file: the
    same bytes there are taken, other bytes are FileExistsError naming ``destination``)."""
    destination = os.fspath(destination)
    partial, fd = journal.open_new_file(destination)
    try:
        with open(fd, "w") as stream:
            yield stream
    except BaseException:
        _remove_scratch(partial, journal)
        raise
    try:
        _place_scratch(partial, destination, journal)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), destination) from None


def write_replacing(destination: str | os.PathLike, write: Callable[[BinaryIO], object],
                    journal: ScratchJournal) -> None:
    """``write(stream)``'s bytes at ``destination``, written under a scratch name of ``journal`` and
    renamed over whatever is there once whole: the old file or the new one stands there, whole,
    at every moment (an output a person named, which replaces the one there as ``cp`` would)."""
    destination = os.fspath(destination)
    partial, fd = journal.open_new_file(destination)
    try:
        with open(fd, "wb") as stream:
            write(stream)
        crash_point("scratch-filled")
        os.replace(partial, destination)
    except BaseException:
        _remove_scratch(partial, journal)
        raise
    journal.gone(partial)


def write_output(destination: str | os.PathLike, write: Callable[[BinaryIO], object],
                 journal: ScratchJournal | None = None) -> None:
    """:func:`write_replacing` (with a journal of its own in ``destination``'s directory unless
    given one there); FileNotFoundError naming ``destination`` if its directory is missing."""
    if journal is not None:
        write_replacing(destination, write, journal)
        return
    from .copy_scratch import ScratchJournal

    directory = os.path.dirname(os.path.abspath(destination))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fspath(destination))
    with ScratchJournal(directory) as own:
        write_replacing(destination, write, own)


def _place_scratch(partial: str, destination: str, journal: ScratchJournal) -> None:
    """:func:`place_new_file`, and ``journal`` told the scratch is gone."""
    try:
        place_new_file(partial, destination)
    finally:
        journal.gone(partial)


def _remove_scratch(partial: str, journal: ScratchJournal) -> None:
    """Remove a scratch file of ``journal`` (a copy that failed), and tell the journal."""
    os.unlink(partial)
    journal.gone(partial)


def make_directories(path: str) -> None:
    """The directory ``path`` and its missing parents (none made if it is there)."""
    os.makedirs(path, exist_ok=True)


def replace_file(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Move ``source`` to ``destination`` in one rename, replacing a file there (making its
    directory if missing): the old file or the new one stands there, whole, at every moment."""
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    os.replace(source, destination)


def place_new_file(scratch: str, destination: str) -> None:
    """Move the complete file ``scratch`` to ``destination`` without ever replacing a file there:
    renamed only if nothing is there, atomically (:func:`rename_no_replace`), so a person's file
    placed at any moment is never overwritten.  A regular file already there with the very same
    bytes is taken (a copy out killed and run again); any other is FileExistsError, left as it
    was.  ``scratch`` is gone afterwards, whatever happened."""
    try:
        rename_no_replace(scratch, destination)
    except BaseException as err:
        try:
            if not (isinstance(err, FileExistsError) and os.path.isfile(destination)
                    and not os.path.islink(destination) and filecmp.cmp(scratch, destination, shallow=False)):
                raise
        finally:
            if os.path.lexists(scratch):
                os.unlink(scratch)


def unlink_if_present(path: str) -> bool:
    """Delete the file ``path``; whether there was one to delete (a missing file is no error)."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def rename_no_replace(source: str, destination: str) -> None:
    """Rename ``source`` to ``destination`` unless ``destination`` exists (FileExistsError).

    One atomic ``renameat2(RENAME_NOREPLACE)`` call where the C library and the file
    system offer it (Linux: ext4, xfs, btrfs, tmpfs...), which also closes the window
    between checking and renaming; elsewhere a check, then a plain rename.
    """
    renameat2 = _load_renameat2()
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(destination), _RENAME_NOREPLACE) == 0:
            return
        import ctypes

        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # unsupported here: fall through
            raise OSError(code, os.strerror(code), source, None, destination)  # EEXIST: a FileExistsError
    if os.path.lexists(destination):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), destination)
    os.rename(source, destination)


@functools.cache
def _load_renameat2():
    """The C library's ``renameat2``, or None where there is none.  Looked up on the first
    rename, not on import: finding the C library runs ``ldconfig`` (about 8 ms), which a
    command that writes nothing need not wait for."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
