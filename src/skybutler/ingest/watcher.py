"""Watching a directory or an object-store prefix: raw files are ingested as they land,
visits defined, and an incremental run brings the output chain up to date (``skybutler watch``).

- **Only complete files.**  Where the kernel has inotify (Linux) the watcher learns of files
  from its events (through ``watchdog``), with no polling of the directory: a file is ready
  once its writer closed it (close-after-write) or it was renamed into the directory, and
  its size and modification time then stay the same for ``settle`` seconds.  A file still
  open for writing is never taken, however long its writer pauses.  Files already there at
  start, or seen without inotify, are taken once their size and time have been stable for
  ``settle`` seconds (and a truncated raw fails ingest's own check).
- **Cycles.**  Every ``every`` seconds the ready files are ingested (moved into the
  repository by default, so the directory holds only what is still to do), visits defined,
  and, if anything was ingested -- or once at start, to finish what a killed watcher left --
  the pipeline is run incrementally into the output chain.
- **An object-store prefix** (``s3://bucket/incoming``) has no inotify and no half-written
  objects: it is listed each cycle, and each new raw object is fetched to a staging
  directory in the repository's bookkeeping directory, ingested from there, and deleted
  from the store once its ingest committed (``transfer='copy'`` keeps it, remembered by
  its ETag in a state file of the repository's bookkeeping directory, so a restart neither
  fetches nor ingests it again; see :mod:`..datastore.remote_prefix`).
- **Failures** are logged and the file left in place; it is tried again only once it changes.
- **Restart** resumes: successful files have left the directory, raws have deterministic
  dataset IDs (a file ingested twice is "already ingested"), and the incremental run redoes
  nothing that is current.  A killed ingest or run is settled by the write journals on the
  next open of the repository.
- **One watcher per repository**, held by a lock (:class:`..datastore.locks.RepositoryLock`).
- **Through a server** (a butler opened on a URL) the raws are uploaded (transfer copy or move,
  ``remote/ingest.py``), the server defines the visits, and the pipeline runs here, reading and
  writing through the server as ``run`` does.  The lock is then one watcher per directory (in
  the directory's ``.skybutler/locks``): the server's repository cannot be locked from here.
  An object-store prefix is watched on the server's machine only (its staging and state live
  in the repository's bookkeeping directory).
- **Stop** with SIGINT or SIGTERM: the current step finishes, then the watcher exits.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import BOOKKEEPING_DIR
from ..datastore.locks import RepositoryLock
from ..errors import SkybutlerError
from ..extras import require
from .raws import RAW_SUFFIXES, find_raw_files, ingest_raws
from .visits import define_visits

if TYPE_CHECKING:
    from ..butler import Butler
    from ..datastore.remote_prefix import RemotePrefix
    from ..pipeline import Pipeline


class WatcherLockedError(SkybutlerError):
    """Another watcher holds the repository."""


@dataclass
class _Seen:
    """What the watcher knows of one file in the directory."""

    signature: tuple[int, int] | None = None  # (size, mtime ns) when last looked at
    stable_since: float = 0.0
    closed: bool = False  # closed after writing (or renamed in) since its last change
    open_writes: bool = False  # changed by a writer that has not closed it yet


@dataclass
class CycleReport:
    """What one cycle did."""

    ingested: int = 0
    already: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    visits: int = 0
    run: Any = None  # the ExecutionReport of the incremental run, if one ran


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _is_raw(path: str) -> bool:
    name = os.path.basename(path)
    return name.lower().endswith(RAW_SUFFIXES) and not name.startswith(".")


class Watcher:
    """Ingests raws landing in ``directory`` (a local directory, or a URL such as
    ``s3://bucket/incoming``) and processes them incrementally; see the module doc."""

    def __init__(self, butler: Butler, directory: str | Path, pipeline: Pipeline, inputs: Sequence[str],
                 output: str, *, where: str = "", every: float = 30.0, settle: float = 2.0, transfer: str = "move",
                 executor: str = "inline", jobs: int = 1, calibrations: str = "refuse",
                 say: Callable[[str], None] | None = None):
        self.butler = butler
        self.remote: RemotePrefix | None = None
        #: What one watcher holds to itself: the "repository", or through a server the "directory"
        #: (a prefix it cannot watch is refused here, before anything else).
        self.scope = butler._watch_scope(str(directory))
        butler._raw_transfer(transfer)  # through a server raws are uploaded: copy or move, refused here if not
        if "://" in str(directory):
            from ..datastore.remote_prefix import RemotePrefix

            if transfer not in ("move", "copy"):
                raise SkybutlerError(f"files under {directory} are fetched: their transfer is move (deleted from "
                                     f"the store once ingested) or copy (kept), not {transfer}")
            bookkeeping = Path(butler.root) / BOOKKEEPING_DIR
            self.remote = RemotePrefix(str(directory).rstrip("/"), bookkeeping / "watch",
                                       bookkeeping / "watch-copied")
            self.directory: Path | str = self.remote.uri
        else:
            self.directory = Path(directory).absolute()
            if not self.directory.is_dir():
                raise SkybutlerError(f"{self.directory} is not a directory")
        self.pipeline = pipeline
        self.inputs = list(inputs)
        self.output = output
        self.where = where
        self.every = every
        self.settle = settle
        self.transfer = transfer
        self.executor = executor
        self.jobs = jobs
        self.calibrations = calibrations
        self._say = say or (lambda _msg: None)
        self._lock = RepositoryLock(butler.root if self.scope == "repository" else self.directory, "watch")
        self._seen: dict[str, _Seen] = {}
        self._failed: dict[str, Any] = {}  # path or key -> its signature when it failed
        self._done: dict[str, Any] = {}  # objects ingested but not deleted (transfer 'move'), by key -> signature
        self._guard = threading.Lock()
        self._observer: Any = None
        self.stop_event = threading.Event()
        self._pending_run = True  # once at start: finish what a previous watcher left

    def say(self, message: str) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._say(f"{now} {message}")

    # -- events (watchdog's thread) -------------------------------------------------------

    def _event(self, kind: str, path: str) -> None:
        if not _is_raw(path):
            return
        with self._guard:
            if kind == "deleted":
                self._seen.pop(path, None)
                return
            seen = self._seen.setdefault(path, _Seen())
            if kind == "modified":
                seen.closed, seen.open_writes = False, True
            elif kind in ("closed", "moved"):
                seen.closed, seen.open_writes = True, False
            elif kind == "created":
                seen.closed, seen.open_writes = False, True
            seen.signature, seen.stable_since = None, 0.0

    def _start_observer(self) -> None:
        require("watchdog", "watching a directory")
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_created(self, event: Any) -> None:
                if not event.is_directory:
                    watcher._event("created", event.src_path)

            def on_modified(self, event: Any) -> None:
                if not event.is_directory:
                    watcher._event("modified", event.src_path)

            def on_closed(self, event: Any) -> None:
                if not event.is_directory:
                    watcher._event("closed", event.src_path)

            def on_moved(self, event: Any) -> None:
                if not event.is_directory:
                    watcher._event("deleted", event.src_path)
                    watcher._event("moved", event.dest_path)

            def on_deleted(self, event: Any) -> None:
                if not event.is_directory:
                    watcher._event("deleted", event.src_path)

        self._observer = Observer()
        self._observer.schedule(Handler(), str(self.directory), recursive=True)
        self._observer.start()

    # -- readiness ------------------------------------------------------------------------

    def ready_files(self, now: float | None = None) -> list[Path]:
        """Files complete enough to ingest now (see the module docstring)."""
        now = time.monotonic() if now is None else now
        out = []
        with self._guard:
            for path, seen in list(self._seen.items()):
                if seen.open_writes:
                    continue  # a writer still has it open
                signature = _signature(Path(path))
                if signature is None:
                    del self._seen[path]
                    continue
                if signature != seen.signature:
                    seen.signature, seen.stable_since = signature, now
                    if self._failed.get(path, ()) != signature:
                        self._failed.pop(path, None)
                if path in self._failed:
                    continue  # failed before and unchanged since
                if now - seen.stable_since >= self.settle or (seen.closed and self.settle <= 0):
                    out.append(Path(path))
        return sorted(out)

    def _fetch_ready(self, staged: dict[str, tuple[str, Any]], report: CycleReport) -> list[Path]:
        """Fetch the raw objects listed under the prefix that are new (or changed since they
        failed) into the staging directory; fills ``staged`` and returns the local files."""
        remote = self.remote
        assert remote is not None
        out = []
        listing = remote.listing()
        remote.copied.keep_only(listing)
        for key, signature in sorted(listing.items()):
            if not _is_raw(key) or self._failed.get(key) == signature or self._done.get(key) == signature \
                    or remote.copied.has(key, signature):
                continue
            try:
                path = remote.fetch(key)
            except Exception as err:  # noqa: BLE001 - a network or store error: reported, tried when it changes
                self._failed[key] = signature
                report.failed.append((remote.url(key), f"cannot fetch it: {type(err).__name__}: {err}"))
                self.say(f"FAILED {remote.url(key)}: cannot fetch it: {err} (left in place)")
                continue
            staged[str(path)] = (key, signature)
            out.append(path)
        return out

    def _settle_objects(self, staged: dict[str, tuple[str, Any]], failed: set[str]) -> None:
        """After an ingest of fetched objects committed: delete the sources of what came in
        (transfer 'move') or remember them (copy); staged files that stayed are discarded."""
        remote = self.remote
        assert remote is not None
        copied = {}
        for path, (key, signature) in staged.items():
            remote.discard(Path(path))
            if path in failed:
                continue
            if self.transfer == "move":
                try:
                    remote.remove(key)
                except Exception as err:  # noqa: BLE001 - next time it is fetched and found already ingested
                    self.say(f"ingested {remote.url(key)} but could not delete it ({err}): it stays")
                    self._done[key] = signature
            else:
                copied[key] = signature
        remote.copied.add(copied)

    def _settling(self) -> bool:
        """Whether some closed file waits only for its settle time (then look again sooner)."""
        if self.remote is not None:
            return False  # an object is whole once listed
        with self._guard:
            return any(not s.open_writes and p not in self._failed for p, s in self._seen.items())

    # -- the loop -------------------------------------------------------------------------

    def _hold(self) -> None:
        me = f"pid {os.getpid()} since {datetime.datetime.now(datetime.UTC):%Y-%m-%dT%H:%M:%SZ} watching " \
             f"{self.directory}"
        holder = self._lock.acquire(me)
        if holder is not None:
            where = self.butler.root if self.scope == "repository" else self.directory
            raise WatcherLockedError(f"another watcher already runs on {where} ({holder}); stop it "
                                     f"first: one watcher per {self.scope}")

    def run(self) -> None:
        """Watch until :attr:`stop_event` is set (by SIGINT/SIGTERM in the CLI)."""
        if self.remote is not None:
            self.remote.check()
        self._hold()
        try:
            if self.remote is not None:
                self.remote.reset_staging()  # a killed watcher's downloads: fetched again
                self.say(f"watching {self.directory} (listed every {self.every:g} s)")
            else:
                self._start_observer()
                for path in find_raw_files([self.directory]):  # files already there: stable for `settle` first
                    self._seen.setdefault(str(path), _Seen())
                self.say(f"watching {self.directory} every {self.every:g} s; {len(self._seen)} file(s) already "
                         "there")
                self.ready_files()
            while not self.stop_event.is_set():
                self.cycle()
                self.stop_event.wait(min(self.every, self.settle) if self._settling() else self.every)
        finally:
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout=5)
            self._lock.release()
            self.say("stopped")

    def cycle(self) -> CycleReport:
        """Ingest what is ready, define visits, run incrementally if anything new came in."""
        from ..execution import run_pipeline

        report = CycleReport()
        staged: dict[str, tuple[str, Any]] = {}  # staged path -> (object key, signature)
        ready = self._fetch_ready(staged, report) if self.remote is not None else self.ready_files()
        if ready:
            result = ingest_raws(self.butler, ready, transfer="move" if staged else self.transfer, processes=1)
            report.ingested, report.already = len(result.refs), len(result.already_ingested)
            for failure in result.failures:
                key, signature = staged.get(failure.path, (None, None))
                if key is None:
                    self._failed[failure.path] = _signature(Path(failure.path))
                else:
                    self._failed[key] = signature
                where = failure.path if key is None else self.remote.url(key)  # type: ignore[union-attr]
                report.failed.append((where, failure.reason))
                self.say(f"FAILED {where}: {failure.reason} (left in place)")
            if staged:
                self._settle_objects(staged, {f.path for f in result.failures})
            elif self.transfer != "move":
                with self._guard:  # not moved away: forget them so they are not taken again
                    for path, _ in result.already_ingested:
                        self._seen.pop(path, None)
                    for ref_path in {str(p) for p in ready} - set(self._failed):
                        self._seen.pop(ref_path, None)
            self.say(f"ingested {report.ingested} raw(s), {report.already} already ingested, "
                     f"{len(report.failed)} failed")
            if report.ingested:
                self._pending_run = True
        if report.ingested or (self._pending_run and self.butler.query_dataset_types("raw")):
            visits = define_visits(self.butler)  # also at start: a killed watcher may have ingested without them
            report.visits = len(visits.defined)
            if visits.defined or report.ingested:
                self.say(f"visits: {visits.summary()}")
        missing = [c for c in self.inputs if not self.butler.collections.exists(c)]
        if self._pending_run and missing:
            self.say(f"nothing to process yet: no collection {', '.join(map(repr, missing))}")
            self._pending_run = False
        if self._pending_run and not self.stop_event.is_set():
            try:
                run = run_pipeline(self.butler, self.pipeline, self.inputs, self.output, where=self.where,
                                   executor=self.executor, jobs=self.jobs, incremental=True,
                                   calibrations=self.calibrations)  # type: ignore[arg-type]
            except SkybutlerError as err:
                self.say(f"run refused: {err}")
            else:
                report.run = run
                self.say(run.describe())
                for note in run.notes:
                    self.say(note)
                for failure in run.failed[:10]:
                    self.say(f"FAILED quantum {failure['task']} {failure['data_id']}: {failure['error']}")
            self._pending_run = False
        return report
