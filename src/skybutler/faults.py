"""Named step boundaries of the write paths, at which a fault-injection test makes this process die.

``SKYBUTLER_CRASH_AT=<step>[:<n>]`` in a process's environment makes it kill itself with SIGKILL
(no clean-up of any kind, like ``kill -9`` or a power cut of the process) the ``n``-th time (default
the first) it reaches ``<step>``.  Unset, a step costs one comparison.  The steps:

- ``journal-written``: a batch's intents are in the write journal, no file touched yet
- ``journal-appended``: a later write inside an enclosing ``butler.transaction()`` added its intents to the
  transaction's journal, no file of it touched yet
- ``file-staged``: one more file of a put batch (or of a staging or recompute write-back) is staged
  under its temporary name
- ``file-placed``: one more ingested file is at its final path (moved, copied or linked), or one more
  file of a staging or recompute write-back
- ``files-published``: a put batch's files are at their final paths, the registry not yet committed
- ``copy-half-sent``: a PostgreSQL ``COPY`` of a bulk write (put_many, ingest) has been given half
  its rows, the statement not yet ended
- ``registry-committed``: the registry transaction of a write (or a removal, purge, cold move,
  staging or write-back) committed, its journal not yet ended
- ``sql-committed``: an outermost registry transaction (of any write, or of an open that writes)
  committed: killing a registry-only command at its n-th commit tells whether it is one transaction
- ``transaction-committed``: an enclosing ``butler.transaction()`` committed, its writes' journal not yet
  settled
- ``quarantine-copied``: ``verify --fix`` copied one more file into the quarantine (an object store's, or
  one on another device), its original not yet deleted
- ``file-quarantined``: ``verify --fix`` moved one more file into the quarantine
- ``intent-settled``: recovery settled one more intent of a crashed writer's journal
- ``catalog-rows-loaded``: a catalog load inserted one more dataset's rows (and bookkeeping row) into the
  target database, not yet committed
- ``catalog-dataset-committed``: a catalog load committed one more dataset
- ``publication-partition``: a HATS publication wrote one more partition into its hidden new version
- ``publication-staged``: a HATS publication's new version is complete on disk, not yet visible
- ``publication-swapped``: the new version is visible, the old one not yet deleted
- ``scratch-journaled``: a copy out into a person's directory (export, retrieve-artifacts) journaled one
  more scratch file or directory, not yet made
- ``scratch-made``: it made one more (empty) and journaled its inode
- ``scratch-filled``: one more scratch file holds its bytes (a download in pieces: one more piece)
"""

from __future__ import annotations

import os
import signal

_passes: dict[str, int] = {}


def crash_point(step: str) -> None:
    """Die here if the environment asks for it (see the module doc)."""
    spec = os.environ.get("SKYBUTLER_CRASH_AT")
    if not spec or spec.partition(":")[0] != step:
        return
    _passes[spec] = passes = _passes.get(spec, 0) + 1
    if passes >= int(spec.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)
