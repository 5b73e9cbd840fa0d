"""Files landing under an object-store prefix (``s3://bucket/incoming/``), for the watcher.

An object store has no inotify, and no half-written objects: a PUT, or a multipart upload
once completed, makes an object appear whole.  So an object is complete as soon as it is
listed, and watching a prefix is listing it each cycle (one LIST request per 1,000 objects,
through fsspec: ``s3fs`` for S3, with the endpoint from the usual ``AWS_*`` variables).  An
object is known by its key and signature (size and ETag, which changes when it is written
again).  Its bytes are fetched to a local staging directory, where ingest reads headers and
moves the file into the datastore, and the object is deleted once its ingest committed (or
kept, when the user asked for a copy).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from ..errors import SkybutlerError

#: (size, ETag or modification time) of an object as listed.
Signature = tuple[Any, Any]


class RemotePrefix:
    """The objects under ``uri`` (a URL with a protocol fsspec knows), fetched into ``staging``."""

    def __init__(self, uri: str, staging: Path):
        import fsspec

        self.uri = uri
        try:
            self.fs, self.root = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as err:
            raise SkybutlerError(f"cannot watch {uri}: {err}") from None
        self.protocol = uri.split("://", 1)[0]
        self.staging = staging

    def url(self, key: str) -> str:
        """An object's key as the user writes it (``s3://bucket/incoming/a.fits``)."""
        return f"{self.protocol}://{key}"

    def check(self) -> None:
        """Raise a one-line error if the prefix cannot be listed (no bucket, no rights, no endpoint)."""
        try:
            self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            raise SkybutlerError(f"cannot watch {self.uri}: it does not exist") from None
        except Exception as err:  # noqa: BLE001 - botocore and friends raise their own kinds
            raise SkybutlerError(f"cannot watch {self.uri}: {type(err).__name__}: {err}") from None

    def listing(self) -> dict[str, Signature]:
        """Every object under the prefix now, by key (listed afresh, not from fsspec's cache)."""
        self.fs.invalidate_cache(self.root)
        found = self.fs.find(self.root, detail=True)
        return {key: (info.get("size"), info.get("ETag") or info.get("mtime") or info.get("LastModified"))
                for key, info in found.items() if info.get("type", "file") == "file"}

    def reset_staging(self) -> None:
        """An empty staging directory (a killed watcher's downloads are fetched again)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True, exist_ok=True)

    def fetch(self, key: str) -> Path:
        """The object's bytes as a local file in the staging directory, under its own name
        (in a directory per key, so two objects with one name never meet)."""
        folder = self.staging / hashlib.sha256(key.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / key.rsplit("/", 1)[-1]
        self.fs.get_file(key, str(target))
        return target

    def discard(self, path: Path) -> None:
        """Forget a staged file (one that failed, or was ingested by copy)."""
        shutil.rmtree(path.parent, ignore_errors=True)

    def remove(self, key: str) -> None:
        """Delete an object whose ingest committed (transfer 'move')."""
        self.fs.rm_file(key)
