"""Support for code that builds tens of thousands of small objects in one call.

A ``put_many``, an ingest or a large query result creates many short-lived dicts,
tuples and refs, none of them cyclic garbage.  Python's cyclic garbage collector
still runs every few hundred allocations and, as the number of live objects grows,
re-traverses all of them: measured on a 20,000-dataset ``put_many``, about a sixth
of its CPU time.  Reference counting frees these objects whether or not the cyclic
collector runs, so it can be paused for the duration of the batch.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector inside the block (restored as it was on exit)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
