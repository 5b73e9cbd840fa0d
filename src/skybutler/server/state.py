"""What a running server holds: open butlers of its repository, lent one request at a
time, and the access rules of that repository.

A :class:`~skybutler.butler.Butler` keeps per-thread transaction state, so each request
borrows one of its own from a small pool; they all open the same repository, so a
change any of them (or any other process) commits is seen by the next request of any
client, with no restart.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..access import Access
from ..butler import Butler


@dataclass
class ServerSettings:
    """Limits and choices of one server."""

    #: the most bytes a request body may hold (413 beyond)
    max_request_bytes: int = 256 * 1024 * 1024
    #: idle butlers kept open between requests
    pool_size: int = 8
    #: queries one user may run at once; more wait in a queue (429 after ``queue_timeout`` s)
    user_concurrency: int = 4
    queue_timeout: float = 30.0
    #: seconds a query's statements may run on the server (the time its answer waits for a slow
    #: client to read it does not count) before it is stopped with a QueryTimeoutError
    query_timeout: float = 600.0
    #: hand out pre-signed URLs (S3 datastores) valid this many seconds; 0: stream through the server
    presign_seconds: int = 0
    #: seconds for which the server trusts what it learnt of tokens, users and rules before asking the
    #: registry whether any changed (changes made in another process, such as the admin commands,
    #: apply within this time; 0: checked on every request)
    access_recheck_seconds: float = 1.0
    #: seconds for which a pooled butler trusts the collections and dataset types it knows before
    #: asking whether another process removed one (``Registry.follow_removals``; 0: every request)
    definitions_recheck_seconds: float = 1.0
    #: how often (seconds of ``clock``) the server writes the embargo releases that happened
    #: meanwhile to the audit log
    release_record_seconds: float = 60.0
    #: the clock that token expiry and embargoes are judged by (POSIX seconds; tests freeze it)
    clock: Callable[[], float] = time.time
    #: another way to know the caller: a function of the request's headers returning a user name
    #: (one the repository knows) or None to fall back to bearer tokens; raising AuthenticationError
    #: refuses the request (401).  ``trust_header(name)`` trusts a header an upstream identity proxy
    #: sets; a site verifying OIDC/JWT tokens passes its own function here.
    identify: Callable[[Mapping[str, str]], str | None] | None = None
    #: serve the interactive API page ``/docs`` (Swagger UI, loaded from a third-party CDN) to
    #: signed-in users; off by default (``server/api_docs.py`` says why)
    api_docs: bool = False


def trust_header(name: str) -> Callable[[Mapping[str, str]], str | None]:
    """Take the user's name from the header ``name`` (e.g. ``X-Forwarded-User``), as set by an
    authenticating proxy in front of the server -- which must strip it from clients' requests."""
    return lambda headers: headers.get(name)


class ServerState:
    """A repository opened for serving."""

    def __init__(self, root: str | Path, settings: ServerSettings | None = None):
        self.root = Path(root).absolute()
        self.settings = settings or ServerSettings()
        self._idle: queue.LifoQueue[Butler] = queue.LifoQueue()
        self._lock = threading.Lock()
        first = Butler(self.root)
        self.universe = first.universe
        self.universe_source = first.config.universe
        self.access = Access.of(first, recheck_seconds=self.settings.access_recheck_seconds)
        #: where the server keeps things, longest first: an error message names none of them to a client
        self.private_paths = sorted({str(p).rstrip("/") for p in (first.datastore.root_uri, first.datastore.root,
                                                                  self.root) if p}, key=len, reverse=True)
        self._idle.put(first)
        self._slots: dict[str, threading.Semaphore] = {}
        self._releases_lock = threading.Lock()
        self._releases_recorded = -float("inf")
        self._held = threading.local()

    def public_message(self, message: str) -> str:
        """``message`` with the server's own paths taken out, as a client is told it: a file named as
        the datastore lays it out, the repository's or datastore's root as ``<repository>``."""
        for path in self.private_paths:
            message = message.replace(f"{path}/", "").replace(path, "<repository>")
        return message

    def record_releases(self, now: float) -> None:
        """Write the embargo releases since the last time to the audit log, at most every
        ``release_record_seconds`` (one request does it; the others do not wait for it)."""
        if now - self._releases_recorded < self.settings.release_record_seconds:
            return
        if not self._releases_lock.acquire(blocking=False):
            return
        try:
            from ..embargo import record_releases

            with self.butler() as butler:
                record_releases(butler, int(now * 1e9))
            self._releases_recorded = now
        finally:
            self._releases_lock.release()

    @contextlib.contextmanager
    def butler(self) -> Iterator[Butler]:
        """A butler for the duration of one request: an idle one, or a new one when all are lent
        (so that slow clients holding streams never make others wait); at most ``pool_size``
        are kept once returned.  Inside :meth:`holding` it is the held butler, so that the writes of
        a batch, made by the routes' own code, share one transaction."""
        held = getattr(self._held, "butler", None)
        if held is not None:
            yield held
            return
        try:
            butler = self._idle.get_nowait()
        except queue.Empty:
            butler = Butler(self.root)
        try:
            # a collection or dataset type another process removed
            butler.registry.follow_removals(self.settings.definitions_recheck_seconds)
            yield butler
        finally:
            if self._idle.qsize() < self.settings.pool_size:
                self._idle.put(butler)
            else:
                butler.close()

    @contextlib.contextmanager
    def holding(self, butler: Butler) -> Iterator[None]:
        """Lend ``butler`` to every :meth:`butler` call of this thread while the block runs."""
        self._held.butler = butler
        try:
            yield
        finally:
            self._held.butler = None

    def user_slot(self, user: str) -> threading.Semaphore:
        """The semaphore bounding one user's concurrent queries."""
        with self._lock:
            slot = self._slots.get(user)
            if slot is None:
                slot = self._slots[user] = threading.Semaphore(self.settings.user_concurrency)
            return slot

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
