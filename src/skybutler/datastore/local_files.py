"""Small-file reads and writes on a local disk with plain ``os`` calls.

Buffered file objects cost several microseconds each to set up and tear down; for
the tens of thousands of small files a ``put_many`` or an ingest handles, that is a
sizeable share of the work.  These helpers do one open, the reads or writes, and one
close.
"""

from __future__ import annotations

import os

_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def read_all(fd: int, size_hint: int) -> bytes:
    """Every byte left in an open file (``size_hint``: its size, if known, to read it in one call)."""
    chunks = []
    while chunk := os.read(fd, max(size_hint, 1 << 16)):
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
