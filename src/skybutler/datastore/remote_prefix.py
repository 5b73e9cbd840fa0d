"""Files landing under an object-store prefix (``s3://bucket/incoming/``), for the watcher.

An object store has no inotify, and no half-written objects: a PUT, or a multipart upload
once completed, makes an object appear whole.  So an object is complete as soon as it is
listed, and watching a prefix is listing it each cycle (one LIST request per 1,000 objects,
through fsspec: ``s3fs`` for S3, with the endpoint from the usual ``AWS_*`` variables).  An
object is known by its key and signature (size and ETag, which changes when it is written
again).  Its bytes are fetched to a local staging directory, where ingest reads headers and
moves the file into the datastore, and the object is deleted once its ingest committed (or
kept, when the user asked for a copy).  The objects kept are remembered, by key and
signature, in a small state file of the prefix (:class:`CopiedObjects`), so that a restarted
watcher neither fetches nor ingests them again; an object written again (a new signature)
is taken again, and one deleted from the store is forgotten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import SkybutlerError

#: (size, ETag or modification time) of an object as listed.
Signature = tuple[Any, Any]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CopiedObjects:
    """The objects of one prefix ingested by copy, by key -> signature, in a JSON file that is
    replaced atomically (written to a temporary name, flushed to disk, renamed over it): a
    kill at any moment leaves the previous record or the new one, never half of one.  A kill
    between an ingest's commit and the record's update costs one fetch on restart, which finds
    the raw already ingested and records it then."""

    def __init__(self, path: Path, uri: str):
        self.path = path
        self.uri = uri
        self.objects: dict[str, Signature] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.objects = {key: (size, tag) for key, (size, tag) in data["objects"].items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SkybutlerError(f"the record of the objects of {uri} already ingested by copy, {path}, cannot be "
                                 f"read ({type(err).__name__}: {err}); delete it to have them fetched again "
                                 "(each is then found already ingested)") from None

    def has(self, key: str, signature: Signature) -> bool:
        """Whether the object ``key`` was ingested by copy as it is now."""
        return self.objects.get(key) == signature

    def add(self, objects: dict[str, Signature]) -> None:
        """Remember these objects (their ingest committed) and save the record."""
        if objects:
            self.objects.update(objects)
            self._save()

    def keep_only(self, listing: dict[str, Signature]) -> None:
        """Forget the objects no longer in the store (saving the record if that changed it)."""
        gone = [key for key in self.objects if key not in listing]
        for key in gone:
            del self.objects[key]
        if gone:
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        data = json.dumps({"uri": self.uri, "objects": {k: list(v) for k, v in sorted(self.objects.items())}})
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class RemotePrefix:
    """The objects under ``uri`` (a URL with a protocol fsspec knows), fetched into ``staging``;
    those ingested by copy are recorded under ``state`` (see :class:`CopiedObjects`)."""

    def __init__(self, uri: str, staging: Path, state: Path):
        import fsspec

        self.uri = uri
        try:
            self.fs, self.root = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as err:
            raise SkybutlerError(f"cannot watch {uri}: {err}") from None
        self.protocol = uri.split("://", 1)[0]
        self.staging = staging
        self.copied = CopiedObjects(state / f"{_digest(uri)}.json", uri)

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
        return {key: (info.get("size"), str(info.get("ETag") or info.get("mtime") or info.get("LastModified")))
                for key, info in found.items() if info.get("type", "file") == "file"}

    def reset_staging(self) -> None:
        """An empty staging directory (a killed watcher's downloads are fetched again)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True, exist_ok=True)

    def fetch(self, key: str) -> Path:
        """The object's bytes as a local file in the staging directory, under its own name
        (in a directory per key, so two objects with one name never meet)."""
        folder = self.staging / _digest(key)
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
