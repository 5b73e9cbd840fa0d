"""Bringing data in through the facade: raws, cameras, visits and sky maps.

:class:`IngestMethods` is a base of :class:`~skybutler.Butler`.  Each method is ``@served``:
a local butler runs the part in ``ingest/`` on its own repository, a butler opened on a server
URL hands the same call to its transport (``remote/ingest.py``).  The functions of
:mod:`skybutler.ingest` (``ingest_raws(butler, ...)``, ...) call these, so the part never asks
where its butler lives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .remote.served import served as _served

if TYPE_CHECKING:
    from .ingest.raws import IngestResult
    from .ingest.skymaps import RingsSkyMap
    from .ingest.visits import VisitResult
    from .instruments import Instrument


class IngestMethods:
    """``ingest_raws``, ``define_visits``, ``register_skymap`` (a base of :class:`~skybutler.Butler`)."""

    _remote: Any

    @_served
    def ingest_raws(self, paths_or_dirs: Iterable[str | Path] | str | Path, *, transfer: str = "auto",
                    run: str | None = None, processes: int | None = None, batch_size: int | None = None,
                    progress: Callable[[str], None] | None = None) -> IngestResult:
        """Ingest raw files (and those under directories); see :func:`skybutler.ingest.ingest_raws`."""
        from .ingest.raws import read_and_store_raws

        return read_and_store_raws(self, paths_or_dirs, transfer=transfer, run=run, processes=processes,
                                   batch_size=batch_size, progress=progress)

    @_served
    def _raw_transfer(self, transfer: str) -> str:
        """The transfer raws are ingested with: ``transfer`` itself here; through a server, the upload
        it means (or a refusal of one the server cannot do, before any file is read)."""
        return transfer

    @_served
    def _watch_scope(self, directory: str) -> str:
        """What one watcher of ``directory`` holds to itself, and where its lock lives: here the
        ``"repository"``; through a server, whose repository cannot be locked from here, the
        watched ``"directory"`` (and an object-store prefix is refused there)."""
        return "repository"

    @_served
    def _register_camera(self, instrument: Instrument, update: bool) -> tuple[Instrument, Any]:
        """Register (or ``update``) a camera; see :func:`skybutler.ingest.register_instrument`."""
        from .ingest.instruments import register_camera, update_camera

        return update_camera(self, instrument) if update else register_camera(self, instrument)

    @_served
    def define_visits(self, *, instrument: str | None = None, exposures: Iterable[int] | None = None,
                      where: str | None = None, observation_types: Sequence[str] | None = None) -> VisitResult:
        """Define a visit for each science exposure not yet in one; see :func:`skybutler.ingest.define_visits`."""
        from .ingest.visits import VISIT_OBSERVATION_TYPES, make_visits

        return make_visits(self, instrument=instrument, exposures=exposures, where=where,
                           observation_types=VISIT_OBSERVATION_TYPES if observation_types is None
                           else observation_types)

    @_served
    def register_skymap(self, name: str, kind: str = "rings", *, progress: Callable[[int, int], None] | None = None,
                        **config: Any) -> tuple[RingsSkyMap, bool]:
        """Register a sky map's records and ``skyMap`` dataset; see :func:`skybutler.ingest.register_skymap`."""
        from .ingest.skymaps import write_skymap

        return write_skymap(self, name, kind, progress=progress, **config)
