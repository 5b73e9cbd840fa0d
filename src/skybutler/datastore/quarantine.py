"""The quarantine: where ``verify --fix`` sets aside files it cannot prove are skybutler's own.

Each repair that quarantines anything gets a directory ``<repository>/.skybutler/quarantine/
<UTC time>-<token>/`` holding the files under their path in the datastore (``files/<path>``)
and ``manifest.jsonl``: one line per file, written before the file is moved, saying where it
came from (``original``), where it is now (``quarantined_as``), why, when, and its size.  A
file is moved (a rename on the same device; a copy and then a delete elsewhere, an object
store's file downloaded then deleted), never changed.  To give one back, move it to its
``original`` place; to let it go, delete the directory.

A copy is made under a temporary name and renamed into place once complete, and the original is
deleted only after that.  The repair journals each move (intent ``quarantine``) before taking its
proof again, so a move killed half-way is settled by the next open (:func:`settle_move`): the
original, still there, stays; the copy goes, and the manifest says so.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid

from ..faults import crash_point
from .local_files import rename_no_replace, unlink_if_present


class Quarantine:
    """One repair's quarantine directory; made on first use."""

    def __init__(self, base: str):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.directory = os.path.join(base, f"{stamp}-{uuid.uuid4().hex[:6]}")
        self.count = 0

    @property
    def manifest(self) -> str:
        return os.path.join(self.directory, "manifest.jsonl")

    def target(self, path: str) -> str:
        """Where the datastore file at ``path`` (relative to its root) goes here."""
        return os.path.join(self.directory, "files", path)

    def take(self, datastore, path: str, reason: str) -> str:
        """Move the datastore file at ``path`` (relative to its root) here; returns where it went."""
        source = datastore.full_path(path)
        target = self.target(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        size = os.lstat(source).st_size if datastore.local else datastore.fs.size(source)
        entry = {"original": datastore.uri_of_path(path), "quarantined_as": os.path.relpath(target, self.directory),
                 "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "size": size}
        with open(self.manifest, "a") as stream:  # the record first: a file is never somewhere unexplained
            stream.write(json.dumps(entry) + "\n")
        if not datastore.local:
            datastore.fs.get_file(source, copying(target))
            os.rename(copying(target), target)
            crash_point("quarantine-copied")
            datastore.fs.rm_file(source)
        else:
            try:
                rename_no_replace(source, target)
            except OSError as err:
                if err.errno != 18:  # EXDEV: the datastore is on another device
                    raise
                shutil.copy2(source, copying(target), follow_symlinks=False)
                rename_no_replace(copying(target), target)
                crash_point("quarantine-copied")
                os.unlink(source)
            datastore.prune_empty_dirs([os.path.dirname(source)])
        self.count += 1
        crash_point("file-quarantined")
        return target


def copying(target: str) -> str:
    """The temporary name a copy into the quarantine is made under (renamed to ``target`` once complete)."""
    return f"{target}.copying"


def settle_move(datastore, path: str, target: str) -> list[str]:
    """Settle a quarantine move of the datastore file at ``path`` to ``target`` whose repair died
    (its journal's intent); returns what was done.  The original still there means the move did
    not finish: the original stays, and the copy -- skybutler's, holding the original's very bytes
    -- goes, with a manifest line saying so.  The original gone means it finished: nothing to do."""
    source = datastore.full_path(path)
    try:
        original = datastore._read_bytes(path)
    except FileNotFoundError:
        return []
    done = []
    if unlink_if_present(copying(target)):
        done.append(f"removed {copying(target)}, an unfinished copy into the quarantine")
    try:
        with open(target, "rb") as stream:
            same = stream.read() == original
    except FileNotFoundError:
        return done
    if not same:  # not provably a copy of this file: a person decides
        return done
    os.unlink(target)
    directory = target[:-len(os.path.join("files", path)) - 1]
    entry = {"original": datastore.uri_of_path(path), "quarantined_as": os.path.relpath(target, directory),
             "put_back": True,
             "reason": "the repair was killed before it deleted the original: the original stays, its copy here "
                       "was removed", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with open(os.path.join(directory, "manifest.jsonl"), "a") as stream:
        stream.write(json.dumps(entry) + "\n")
    done.append(f"left {source} in place and removed its copy {target}: its move into the quarantine was "
                "killed half-way")
    return done
