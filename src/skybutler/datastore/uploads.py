"""Files a remote client sent for ingest, kept in a scratch directory of the repository
until the ingest has moved them in (or failed), then removed with whatever is left."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

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
