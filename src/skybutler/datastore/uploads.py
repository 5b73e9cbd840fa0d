"""Files a remote client sent for ingest or import, kept in a scratch directory of the
repository until the ingest or import has moved them in (or failed), then removed with
whatever is left."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import TransferError


@contextlib.contextmanager
def uploaded_files(directory: str | Path, files: Sequence[tuple[str, bytes]]) -> Iterator[list[Path]]:
    """``(name, bytes)`` written as files (under their base names, so their extension tells the
    format) in a new directory inside ``directory``; removed when the block ends."""
    os.makedirs(directory, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="upload-", dir=directory))
    try:
        paths = []
        for number, (name, data) in enumerate(files):
            base = os.path.basename(name.replace("\\", "/"))
            if not base or base in (".", "..") or "\0" in base:
                raise TransferError(f"invalid uploaded file name {name[:100]!r}")
            path = scratch / str(number) / base
            path.parent.mkdir()
            path.write_bytes(data)
            paths.append(path)
        yield paths
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class UploadedTree:
    """A tree of files a client streams to the server (an export to import), written to disk as
    the bytes arrive: no file is ever whole in memory.  :meth:`feed` takes the body's chunks in
    order; the body is a sequence of frames (:func:`skybutler.remote.wire.frame_file`): a 4-byte
    name length, the UTF-8 relative path, an 8-byte size and the bytes, ended by a zero name
    length.  Paths must stay inside the tree (no ``..``, no absolute path, no file twice)."""

    def __init__(self, directory: str | Path, limit: int):
        os.makedirs(directory, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="import-", dir=directory))
        #: each received file's relative path and size
        self.sizes: dict[str, int] = {}
        self._limit, self._total = limit, 0
        self._buffer = b""
        self._out: Any = None
        self._left = 0
        self.complete = False

    def feed(self, chunk: bytes) -> None:
        self._total += len(chunk)
        if self._total > self._limit:
            raise TransferError(f"the upload is above this server's limit of {self._limit} bytes")
        self._buffer += chunk
        while self._buffer:
            if self.complete:
                raise TransferError("malformed upload: bytes after its end")
            if self._out is not None:
                data, self._buffer = self._buffer[:self._left], self._buffer[self._left:]
                self._out.write(data)
                self._left -= len(data)
                if self._left == 0:
                    self._out.close()
                    self._out = None
                continue
            if len(self._buffer) < 4:
                return
            length = int.from_bytes(self._buffer[:4], "big")
            if length == 0:
                self.complete, self._buffer = True, self._buffer[4:]
                continue
            if length > 4096:
                raise TransferError("malformed upload: a file name longer than 4096 bytes")
            if len(self._buffer) < 4 + length + 8:
                return
            name = self._buffer[4:4 + length].decode("utf-8", errors="replace")
            size = int.from_bytes(self._buffer[4 + length:12 + length], "big")
            self._buffer = self._buffer[12 + length:]
            self._open(name, size)

    def _open(self, name: str, size: int) -> None:
        parts = name.split("/")
        if (name.startswith("/") or "\\" in name or "\0" in name or name in self.sizes
                or any(p in ("", ".", "..") for p in parts)):
            raise TransferError(f"invalid uploaded file name {name[:100]!r}")
        path = self.root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.sizes[name] = size
        self._out = open(path, "wb")
        self._left = size
        if size == 0:
            self._out.close()
            self._out = None

    def finish(self) -> Path:
        """The tree's directory, once the body ended where its last frame says."""
        if not self.complete or self._out is not None or self._buffer:
            raise TransferError("the upload was cut short")
        return self.root

    def read_json(self, name: str) -> Any:
        """The JSON an uploaded file of the tree holds (a batch's header); TransferError if it is
        missing or not JSON."""
        if name not in self.sizes:
            raise TransferError(f"malformed upload: it holds no {name}")
        try:
            return json.loads(self.root.joinpath(*name.split("/")).read_bytes())
        except ValueError as err:
            raise TransferError(f"malformed upload: {name} is not JSON ({err})") from None

    def remove(self) -> None:
        """Delete the tree and whatever is left in it."""
        if self._out is not None:
            self._out.close()
        shutil.rmtree(self.root, ignore_errors=True)
