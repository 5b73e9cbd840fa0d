"""Process pools whose workers die with the process that made them.

A ``ProcessPoolExecutor`` worker whose parent is killed (``kill -9``, out of memory)
is not told: it is reparented to PID 1 and goes on running its task, writing into the
repository, or waits on its call queue for minutes.  :func:`process_pool` makes pools
whose workers end as soon as their parent does, by two means:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in the worker: the kernel kills it
  when the process that forked it ends (for a forkserver pool that is the fork server,
  which itself ends when the process using it does);
- everywhere, a watchdog thread in the worker that looks every half second whether the
  process that made the pool is still there (and whether the worker's own parent
  changed); if not, the worker ends at once with ``os._exit``.

A worker killed this way leaves what any killed writer leaves: rows and files that the
next writer or ``skybutler verify`` recognise (see docs/architecture.md, "Crashes").
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

#: Seconds between two looks of the watchdog at the parent.
WATCH_INTERVAL = 0.5

_PR_SET_PDEATHSIG = 1


def process_pool(max_workers: int, start_method: str | None = None, initializer: Callable[..., Any] | None = None,
                 initargs: tuple[Any, ...] = ()) -> cf.ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``max_workers`` processes (``start_method``: fork, forkserver,
    spawn, or the platform's default) that end with this process; ``initializer(*initargs)`` runs
    in each worker after it is tied to this process."""
    ctx = multiprocessing.get_context(start_method)
    return cf.ProcessPoolExecutor(max_workers, mp_context=ctx, initializer=_start_worker,
                                  initargs=(os.getpid(), initializer, initargs))


def _start_worker(owner: int, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    die_with(owner)
    if initializer is not None:
        initializer(*initargs)


def die_with(owner: int) -> None:
    """End this process as soon as process ``owner`` (or this process's current parent) ends."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        _set_parent_death_signal(signal.SIGKILL)
    if not _alive(owner) or os.getppid() != parent:  # it ended before the signal was asked for
        os._exit(1)
    threading.Thread(target=_watch, args=(owner, parent), name="skybutler-parent-watch", daemon=True).start()


def _set_parent_death_signal(sig: int) -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl here: the watchdog alone is enough
        pass


def _alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a zombie, dead but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # there, but someone else's
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            state = stream.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc here
        return True
    return state not in (b"Z", b"X")


def _watch(owner: int, parent: int) -> None:
    while _alive(owner) and os.getppid() == parent:
        time.sleep(WATCH_INTERVAL)
    os._exit(1)
