"""``butler.retention``: dataset states, retention passes, the cold tier and recompute on demand.

::

    report = butler.retention.apply(now="2026-04-01", dry_run=True)   # what the policies would do
    butler.retention.state(ref)                  # 'stored', 'cold', 'purged-recomputable', 'purged-lost'
    butler.retention.purge([ref])                # refuses an unrecomputable one unless force=True
    butler.retention.move_to_cold([ref]); butler.retention.stage([ref])
    est = butler.retention.estimate([ref])       # quanta to replay, staging, expected wait, drift
    report = butler.retention.recompute(refs, executor="pool", jobs=4)
    obj = butler.get(ref, recompute=True)        # a purged dataset, replayed from its provenance
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..errors import DatasetNotFoundError
from ..models import DatasetRef, dataset_id_of
from ..registry.dataset_state_store import COLD, PURGED, DatasetState
from . import apply as _apply
from .cold_tier import WaitCallback, move_to_cold, stage
from .policy import DAY_NS

if TYPE_CHECKING:  # recompute (and the pipeline code it replays with) is imported on first use
    from ..butler import Butler
    from .executor import RecomputeReport
    from .ondemand import RecomputeEstimate, RecomputeOptions

Target = DatasetRef | uuid.UUID | str


class Retention:
    """Retention and recompute for one butler (made on first use of ``butler.retention``)."""

    def __init__(self, butler: Butler):
        self.butler = butler
        self._touched: dict[uuid.UUID, int] = {}

    # -- states ---------------------------------------------------------------

    def state(self, target: Target) -> DatasetState:
        dataset_id = dataset_id_of(target)
        found = self.butler.registry.states.get([dataset_id]).get(dataset_id)
        if found is None:
            raise DatasetNotFoundError(f"dataset {dataset_id} is not registered in this repository")
        return found

    def states(self, targets: Iterable[Target]) -> dict[uuid.UUID, str]:
        return {i: s.state for i, s in self.butler.registry.states.get([dataset_id_of(t) for t in targets]).items()}

    def status(self) -> list[dict[str, Any]]:
        """Datasets and bytes per dataset type and state (stored, cold, purged-recomputable,
        purged-lost), one row each, sorted."""
        from collections import Counter

        count: Counter = Counter()
        size: Counter = Counter()
        for i in self.butler.registry.states.infos():
            count[(i.dataset_type, i.state)] += 1
            size[(i.dataset_type, i.state)] += i.size
        return [{"dataset_type": t, "state": s, "datasets": n, "bytes": size[(t, s)]}
                for (t, s), n in sorted(count.items())]

    def record_access(self, dataset_id: uuid.UUID) -> None:
        """Note a read for ``after: last_access`` policies: at most one write per dataset a day."""
        now = time.time_ns()
        if now - self._touched.get(dataset_id, 0) < DAY_NS:
            return
        self._touched[dataset_id] = now
        self.butler.registry.states.touch([dataset_id], now, DAY_NS)

    # -- retention ------------------------------------------------------------

    def apply(self, now: str | datetime.datetime | None = None, dry_run: bool = False,
              force: bool = False, progress: Callable[[int, int | None], None] | None = None
              ) -> _apply.RetentionReport:
        """Apply the repository's retention policies at ``now`` (default: the current time);
        ``progress(done, total)`` is told the datasets moved or purged so far."""
        return _apply.run(self.butler, now, dry_run=dry_run, force=force, progress=progress)

    def purge(self, targets: Iterable[Target], force: bool = False, dry_run: bool = False
              ) -> _apply.RetentionReport:
        """Purge these datasets' files, keeping everything else; one that could not be recomputed
        is refused (listed in ``report.refused``) unless ``force``."""
        report = _apply.plan(self.butler, force=force, only=[dataset_id_of(t) for t in targets], action="purge")
        return report if dry_run else _apply.apply(self.butler, report)

    def move_to_cold(self, targets: Iterable[Target]) -> tuple[list[uuid.UUID], int]:
        """Move these datasets' files to the cold tier; returns (moved IDs, bytes moved)."""
        return move_to_cold(self.butler, [dataset_id_of(t) for t in targets])

    def stage(self, targets: Iterable[Target], on_wait: WaitCallback | None = None) -> list[uuid.UUID]:
        """Bring cold datasets back to the hot datastore (telling ``on_wait`` the expected wait)."""
        return list(stage(self.butler, [dataset_id_of(t) for t in targets], on_wait or self.butler.on_wait))

    # -- recompute ------------------------------------------------------------

    def estimate(self, targets: Iterable[Target]) -> RecomputeEstimate:
        """What recomputing these datasets would take: quanta, staging, expected wait, drift."""
        from .ondemand import estimate

        return estimate(self.butler, [dataset_id_of(t) for t in targets])

    def recompute(self, targets: Iterable[Target], options: RecomputeOptions | None = None, *,
                  executor: str = "inline", jobs: int = 2, on_wait: WaitCallback | None = None,
                  dask_scheduler: str | None = None,
                  progress: Callable[[int, int | None], None] | None = None) -> RecomputeReport:
        """Recompute purged datasets (and purged inputs they need) as a graph of recorded quanta;
        ``progress(done, total)`` is told the quanta replayed so far."""
        from .executor import recompute_many

        return recompute_many(self.butler, [dataset_id_of(t) for t in targets], options, executor, jobs,
                              on_wait or self.butler.on_wait, dask_scheduler, progress)

    def read_missing(self, ref: DatasetRef, options: RecomputeOptions | None, component: str | None,
                     parameters: Any) -> Any:
        """``butler.get`` of a dataset without a hot file: stage it if cold, recompute it if purged
        (and allowed), else say why it cannot be read."""
        butler = self.butler
        if butler.registry.datasets.artifacts([ref.id]):  # staged or recomputed meanwhile
            return self._read_stored(ref, component, parameters)
        state = butler.registry.states.get([ref.id]).get(ref.id)
        if state is not None and state.state == COLD:
            stage(butler, [ref.id], butler.on_wait)  # or wait for another process staging it
            return self._read_stored(ref, component, parameters)
        what = f"was purged ({state.state})" if state is not None and state.state in PURGED else \
            "has no stored file"
        if options is None:
            raise DatasetNotFoundError(f"dataset {ref} {what}; pass recompute=True (or open the Butler with "
                                       "recompute=True) to re-create it from its provenance")
        from .ondemand import read_recomputed, recompute

        result = recompute(butler, [ref.id], options, butler.on_wait)
        if result.stored or ref.id not in result.objects:  # stored by this call, or by another process
            return self._read_stored(ref, component, parameters)
        return read_recomputed(result, ref.id, component, parameters)

    def _read_stored(self, ref: DatasetRef, component: str | None, parameters: Any) -> Any:
        artifact = self.butler.registry.datasets.artifacts([ref.id]).get(ref.id)
        if artifact is None:  # purged or moved again meanwhile
            state = self.butler.registry.states.get([ref.id]).get(ref.id)
            raise DatasetNotFoundError(f"dataset {ref} was {state.state if state else 'removed'} again while "
                                       "it was being read: read it again")
        return self.butler.datastore.read(artifact, component=component, parameters=parameters)
