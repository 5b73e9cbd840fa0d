"""A disk cache of rendered pictures of datasets (quicklook and cut-out PNGs) for the web view.

Kept under ``<repository>/.skybutler/cache/render/``: one file per (dataset ID, rendering
key), in a directory per dataset.  A dataset ID names fixed content (a recompute writes
back the same pixels under the same ID), so an entry never goes stale; it only outlives
its dataset, and callers check the registry and the caller's rights before they look
here.  Files are written under a temporary name and renamed, so a reader never sees half
a PNG.  The cache holds at most ``max_bytes``: when a write takes it over, the least
recently written entries are deleted until it is at three quarters of that.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from pathlib import Path


class RenderCache:
    """Rendered bytes by dataset ID and a key such as ``"quicklook-zscale-512"``."""

    def __init__(self, directory: str | Path, max_bytes: int = 256 * 1024 * 1024):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._total: int | None = None

    def _path(self, dataset_id: uuid.UUID, key: str) -> Path:
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.directory / str(dataset_id) / f"{name}.png"

    def get(self, dataset_id: uuid.UUID, key: str) -> bytes | None:
        """The cached bytes, or None."""
        try:
            return self._path(dataset_id, key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def put(self, dataset_id: uuid.UUID, key: str, data: bytes) -> None:
        """Keep ``data``; a cache that cannot be written (a read-only repository) is skipped."""
        path = self._path(dataset_id, key)
        temporary = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)
            return
        with self._lock:
            self._total = (self._size() if self._total is None else self._total) + len(data)
            if self._total > self.max_bytes:
                self._total = self._trim(self.max_bytes * 3 // 4)

    def _entries(self) -> list[tuple[float, int, Path]]:
        out = []
        for path in self.directory.glob("*/*.png"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            out.append((stat.st_mtime, stat.st_size, path))
        return out

    def _size(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _trim(self, target: int) -> int:
        """Delete the oldest entries until at most ``target`` bytes remain; returns what remains."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= target:
                break
            path.unlink(missing_ok=True)
            total -= size
            try:
                path.parent.rmdir()
            except OSError:
                pass  # the dataset has other entries
        return total
