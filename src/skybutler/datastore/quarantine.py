"""The quarantine: where ``verify --fix`` sets aside files it cannot prove are skybutler's own.

Each repair that quarantines anything gets a directory ``<repository>/.skybutler/quarantine/
<UTC time>-<token>/`` holding the files under their path in the datastore (``files/<path>``)
and ``manifest.jsonl``: one line per file, written before the file is moved, saying where it
came from (``original``), where it is now (``quarantined_as``), why, when, and its size.  A
file is moved (a rename on the same device; a copy and then a delete elsewhere, an object
store's file downloaded then deleted), never changed.  To give one back, move it to its
``original`` place; to let it go, delete the directory.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid

from ..faults import crash_point
from .local_files import rename_no_replace


class Quarantine:
    """One repair's quarantine directory; made on first use."""

    def __init__(self, base: str):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.directory = os.path.join(base, f"{stamp}-{uuid.uuid4().hex[:6]}")
        self.count = 0

    @property
    def manifest(self) -> str:
        return os.path.join(self.directory, "manifest.jsonl")

    def take(self, datastore, path: str, reason: str) -> str:
        """Move the datastore file at ``path`` (relative to its root) here; returns where it went."""
        source = datastore.full_path(path)
        target = os.path.join(self.directory, "files", path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        size = os.lstat(source).st_size if datastore.local else datastore.fs.size(source)
        entry = {"original": datastore.uri_of_path(path), "quarantined_as": os.path.relpath(target, self.directory),
                 "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "size": size}
        with open(self.manifest, "a") as stream:  # the record first: a file is never somewhere unexplained
            stream.write(json.dumps(entry) + "\n")
        if not datastore.local:
            datastore.fs.get_file(source, target)
            datastore.fs.rm_file(source)
        else:
            try:
                rename_no_replace(source, target)
            except OSError as err:
                if err.errno != 18:  # EXDEV: the datastore is on another device
                    raise
                shutil.copy2(source, target, follow_symlinks=False)
                os.unlink(source)
            datastore.prune_empty_dirs([os.path.dirname(source)])
        self.count += 1
        crash_point("file-quarantined")
        return target
