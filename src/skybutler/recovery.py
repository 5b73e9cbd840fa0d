"""Crash recovery: replay the write journals of writers that died.

Every write that places files in the datastore (put, put_many, ingest in every transfer mode,
import) first records its intents in the write journal and holds the journal's lock until
its registry transaction is over (see :mod:`skybutler.datastore.journal`).  A journal whose
lock can be taken is a dead writer's.  For each of its intents this module asks the registry
whether the dataset was committed at that path, and whether another dataset or a live writer
holds the path; the datastore then settles the files (:mod:`skybutler.datastore.rollback`):
a committed write keeps its file; an uncommitted one is taken back out, a moved user's file
back where it came from.  Then the journal is deleted.

``Butler`` runs this on every open (one directory listing when there is nothing to do), and
``verify --fix`` runs it too, so an interrupted command leaves nothing behind once the next
command opens the repository.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import TYPE_CHECKING

from .datastore.rollback import settle_intent
from .faults import crash_point

if TYPE_CHECKING:
    from .butler import Butler

log = logging.getLogger("skybutler.recovery")


def recover(butler: Butler) -> list[str]:
    """Settle every abandoned journal; returns what was done (one line per action)."""
    journal = butler.datastore.journal
    if journal is None or not journal.has_entries():
        return []
    done: list[str] = []
    live_paths: set[str] | None = None
    for record in journal.abandoned():
        try:
            ids = [uuid.UUID(i.dataset_id) for i in record.intents]
            rows = butler.registry.datasets.artifacts(ids)
            committed = [rows.get(i) is not None and rows[i].path == intent.path
                         for i, intent in zip(ids, record.intents)]
            open_paths = [intent.path for intent, c in zip(record.intents, committed) if not c]
            if live_paths is None:
                live_paths = {i.path for j in journal.live() for i in j.intents}
            claimed = butler.registry.datasets.paths_in_use(open_paths) | (live_paths & set(open_paths))
            for intent, is_committed in zip(record.intents, committed):
                done += settle_intent(butler.datastore, intent, is_committed, intent.path in claimed)
                crash_point("intent-settled")  # settling again is harmless: what is done is done
        except Exception as err:  # leave the journal for a later open or verify --fix to finish
            log.warning("could not settle the interrupted write recorded in %s: %s", record.path, err)
            journal.release(record)
            continue
        journal.end(record)
        done.append(f"settled the interrupted write of {len(record.intents)} file(s) (pid "
                    f"{record.header.get('pid')}) recorded in {os.path.basename(record.path)}")
    for line in done:
        log.info("%s", line)
    return done
