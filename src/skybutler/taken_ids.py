"""The dataset IDs an export has taken, exactly, in memory that does not grow with the export.

An export is given refs by any iterable -- a list, a query, several queries one after another --
and the same dataset may be named twice (in two queries, or twice in a list).  It must be written
once, so every ID taken is remembered exactly.  The most recent :data:`MEMORY_LIMIT` are kept in
memory as a sorted array (16 bytes each, merged in place as chunks arrive); past that they are
merged into one sorted file of 16-byte IDs in a directory the caller names (an export's own
directory, so the space is where the export's files already go), which each new chunk is
checked against by reading it :data:`BLOCK` IDs at a time.  Memory so holds at most
:data:`MEMORY_LIMIT` IDs and a block (4 MiB each; about 12 MiB while the array is being merged),
however many datasets are exported; the file has no name (the system removes it when it is
closed or the process dies).  A dataset query names each dataset once already, but an export
may be given several queries, or refs by a list or generator, so this check is kept for all.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .models import DatasetRef

#: IDs kept in memory (16 bytes each) before they are merged into the file on disk.
MEMORY_LIMIT = 1 << 18
#: IDs read from the file at a time when a chunk is checked against it or merged into it.
BLOCK = 1 << 18
_ID = np.dtype("S16")


class TakenIds:
    """Which of a chunk's dataset IDs were taken before (in this chunk or an earlier one)."""

    def __init__(self, directory: str | Path):
        self._directory = os.fspath(directory)
        self._memory = np.empty(0, dtype=_ID)  # sorted; none of them also in the file
        self._file: IO[bytes] | None = None  # sorted IDs, 16 bytes each
        self._on_disk = 0

    def __len__(self) -> int:
        return len(self._memory) + self._on_disk

    def new(self, refs: Iterable[DatasetRef]) -> list[DatasetRef]:
        """The refs whose dataset ID was not taken before (the first of each, in their order), now taken."""
        first: dict[uuid.UUID, DatasetRef] = {}
        for ref in refs:
            first.setdefault(ref.id, ref)
        if not first:
            return []
        ids = np.array([i.bytes for i in first], dtype=_ID)
        order = np.argsort(ids, kind="stable")
        keys = ids[order]
        taken = self._in_memory(keys) | self._in_file(keys)
        fresh_keys = keys[~taken]
        if len(fresh_keys):
            self._memory = np.insert(self._memory, np.searchsorted(self._memory, fresh_keys), fresh_keys)
            if len(self._memory) > MEMORY_LIMIT:
                self._spill()
        kept = np.zeros(len(ids), dtype=bool)
        kept[order[~taken]] = True
        return [ref for ref, keep in zip(first.values(), kept.tolist()) if keep]

    def close(self) -> None:
        """Let go of the file on disk (the system removes it)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> TakenIds:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _in_memory(self, keys: np.ndarray) -> np.ndarray:
        """Which of the sorted ``keys`` are in the array in memory."""
        return _found(self._memory, keys)

    def _in_file(self, keys: np.ndarray) -> np.ndarray:
        """Which of the sorted ``keys`` are in the file, read a block at a time."""
        found = np.zeros(len(keys), dtype=bool)
        for block in self._blocks():
            low = int(np.searchsorted(keys, block[0], side="left"))
            high = int(np.searchsorted(keys, block[-1], side="right"))
            if low < high:
                found[low:high] |= _found(block, keys[low:high])
        return found

    def _blocks(self):
        """The file's IDs, :data:`BLOCK` at a time, in order."""
        if self._file is None:
            return
        self._file.seek(0)
        while data := self._file.read(BLOCK * _ID.itemsize):
            yield np.frombuffer(data, dtype=_ID)

    def _spill(self) -> None:
        """Merge the IDs in memory into the file (a new one, written block by block) and let go of them."""
        merged = tempfile.TemporaryFile(dir=self._directory, prefix=".taken-ids-")
        memory, start = self._memory, 0
        try:
            for block in self._blocks():
                end = int(np.searchsorted(memory, block[-1], side="right"))
                merged.write(_merge(block, memory[start:end]).tobytes())
                start = end
            merged.write(memory[start:].tobytes())
            merged.flush()
        except BaseException:
            merged.close()
            raise
        self.close()
        self._file, self._on_disk = merged, self._on_disk + len(memory)
        self._memory = np.empty(0, dtype=_ID)


def _found(sorted_ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Which of ``keys`` are in the sorted array ``sorted_ids``."""
    if not len(sorted_ids):
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, keys), len(sorted_ids) - 1)
    return sorted_ids[at] == keys


def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two sorted arrays of distinct IDs as one sorted array (without sorting again)."""
    return np.insert(a, np.searchsorted(a, b), b) if len(b) else a
