"""Crash recovery: replay the write journals of writers that died.

Every write that places or deletes files in the datastore (put, put_many, ingest in every
transfer mode, import, removal, the retention writes: staging, recompute write-back, cold
move, purge; and a repair's quarantine move) first records its intents in the write journal and holds the journal's lock until
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

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .config import BOOKKEEPING_DIR, PUBLICATIONS_DIR
from .datastore.quarantine import settle_move
from .datastore.rollback import settle_intent
from .datastore.uploads import remove_abandoned
from .faults import crash_point

if TYPE_CHECKING:
    from .butler import Butler

log = logging.getLogger("skybutler.recovery")


def recover(butler: Butler) -> list[str]:
    """Settle every abandoned journal; returns what was done (one line per action)."""
    journal = butler.datastore.journal
    if journal is None or not journal.has_entries():
        return _remove_scratch(butler)
    done: list[str] = []
    unsettled = 0
    live_paths = {i.path for j in journal.live() for i in j.intents}
    for record in journal.abandoned():
        ids = [uuid.UUID(i.dataset_id) for i in record.intents]
        # A retention write's journal is replayed holding its datasets' locks (as its writer did), so
        # no live staging, move or recompute changes their states meanwhile; if one is at work on
        # them, the journal waits for a later open.
        with _dataset_locks(butler, ids, record.header.get("dataset_locks", False)) as held:
            if not held:
                journal.release(record)
                unsettled += 1
                continue
            settled = _settle(butler, journal, record, ids, live_paths, done)
        if not settled:
            unsettled += 1
            continue
        journal.end(record)
        done.append(f"settled the interrupted write of {len(record.intents)} file(s) (pid "
                    f"{record.header.get('pid')}) recorded in {os.path.basename(record.path)}")
    if not unsettled:  # a journal left for later may yet move files back into a scratch directory
        done += _remove_scratch(butler)
    for line in done:
        log.info("%s", line)
    return done


def _remove_scratch(butler: Butler) -> list[str]:
    """Remove the scratch directories (uploads, a zip's members) and the unfinished versions of a
    server's publications of processes that died."""
    done = [f"removed the scratch directory {path} of a process that died"
            for path in remove_abandoned(butler.root / BOOKKEEPING_DIR / "uploads")]
    publications = butler.root / PUBLICATIONS_DIR
    if publications.is_dir():
        from .catalogs.hats_files import remove_abandoned_versions

        done += [f"removed the unfinished publication {path} of a publisher that died"
                 for path in remove_abandoned_versions(publications)]
    return done


@contextlib.contextmanager
def _dataset_locks(butler: Butler, ids: list[uuid.UUID], wanted: bool) -> Iterator[bool]:
    if not wanted:
        yield True
        return
    from .retention.cold_tier import locks

    with locks(butler).try_hold(ids) as held:
        yield held


def _settle(butler: Butler, journal, record, ids: list[uuid.UUID], live_paths: set[str],
            done: list[str]) -> bool:
    """Settle every intent of one dead writer's journal; False (journal released) if that failed."""
    try:
        rows = butler.registry.datasets.artifacts(ids)
        committed = [rows.get(i) is not None and rows[i].path == intent.path
                     for i, intent in zip(ids, record.intents)]
        open_paths = [intent.path for intent, c in zip(record.intents, committed) if not c]
        claimed = butler.registry.datasets.paths_in_use(open_paths) | (live_paths & set(open_paths))
        states = {}
        if any(i.kind == "cold-copy" for i in record.intents):
            from .retention.cold_tier import settle_cold_copy

            states = butler.registry.states.get(ids)
        for dataset_id, intent, is_committed in zip(ids, record.intents, committed):
            if intent.kind == "cold-copy":
                done += settle_cold_copy(butler, intent, states.get(dataset_id))
            elif intent.kind == "quarantine":  # a repair's move (``source``: where it was going)
                done += settle_move(butler.datastore, intent.path, intent.source)
            else:
                done += settle_intent(butler.datastore, intent, is_committed, intent.path in claimed)
            crash_point("intent-settled")  # settling again is harmless: what is done is done
    except Exception as err:  # leave the journal for a later open or verify --fix to finish
        log.warning("could not settle the interrupted write recorded in %s: %s", record.path, err)
        journal.release(record)
        return False
    return True
