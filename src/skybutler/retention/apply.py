"""Applying retention policies: which datasets are due, whether they may be purged, and doing it.

``plan`` looks at every registered dataset once (one SQL statement), picks the
furthest-reaching due action of the policies that match it, and checks that each
dataset to purge could be recomputed from its provenance -- a recorded, succeeded
quantum whose inputs and config are there (stored or cold) or are themselves
recomputable, the datasets purged in the same pass included.  One that could not is
refused unless ``force``; forcing it makes it ``purged-lost`` and turns every purged
dataset that needed it ``purged-lost`` too.

``apply`` does what ``plan`` found: registry rows first (one transaction), then files.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import SkybutlerError
from ..faults import crash_point
from ..models import StoredArtifact
from ..registry.dataset_state_store import COLD, PURGED, PURGED_LOST, PURGED_RECOMPUTABLE, STORED, DatasetInfo
from ..registry.quantum_store import QuantumRecord
from ..shared_files import refuse_shared
from .cold_tier import RetentionJournal, busy_notice, cold_tier, is_external, locks, move_to_cold
from .policy import DAY_NS

if TYPE_CHECKING:
    from ..butler import Butler

#: Told how far applying is: (datasets done, total or None).
Progress = Callable[[int, int | None], None]


@dataclass
class RetentionAction:
    """One dataset a policy acts on (or would, but may not)."""

    dataset_id: uuid.UUID
    dataset_type: str
    run: str
    data_id: dict[str, Any]
    state: str
    action: str  # purge | cold
    size: int
    age_days: float
    policy: str
    #: The state the dataset ends in (purge: recomputable or lost).
    new_state: str = ""
    #: Why it is not done (refused), empty when it is.
    reason: str = ""

    def row(self) -> dict[str, Any]:
        return {"dataset_type": self.dataset_type, "data_id": self.data_id, "run": self.run, "state": self.state,
                "action": self.action, "new_state": self.new_state, "bytes": self.size,
                "age_days": round(self.age_days, 2), "policy": self.policy, "refused": self.reason or None,
                "id": str(self.dataset_id)}


@dataclass
class RetentionReport:
    """What a retention pass did (or, dry run, would do)."""

    now: datetime.datetime
    dry_run: bool
    force: bool
    actions: list[RetentionAction] = field(default_factory=list)
    refused: list[RetentionAction] = field(default_factory=list)
    #: Purged-recomputable datasets that become purged-lost (a forced purge took an input they need).
    lost: list[uuid.UUID] = field(default_factory=list)

    @property
    def purged(self) -> list[RetentionAction]:
        return [a for a in self.actions if a.action == "purge"]

    @property
    def moved(self) -> list[RetentionAction]:
        return [a for a in self.actions if a.action == "cold"]

    @property
    def bytes_freed(self) -> int:
        """Bytes the pass frees in the hot datastore (purged or moved out of it)."""
        return sum(a.size for a in self.actions if a.state == STORED)

    @property
    def bytes_freed_cold(self) -> int:
        return sum(a.size for a in self.purged if a.state == COLD)

    def summary(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "dry_run": self.dry_run, "force": self.force,
                "purged": len(self.purged), "moved_to_cold": len(self.moved), "refused": len(self.refused),
                "made_lost": len(self.lost), "bytes_freed": self.bytes_freed,
                "bytes_freed_cold": self.bytes_freed_cold, "bytes_moved": sum(a.size for a in self.moved)}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "actions": [a.row() for a in self.actions],
                "refused_actions": [a.row() for a in self.refused], "lost": [str(i) for i in self.lost]}


def parse_now(now: str | datetime.datetime | None) -> datetime.datetime:
    """An ISO time (UTC unless it says otherwise), or the current time."""
    if now is None:
        return datetime.datetime.now(datetime.UTC)
    if isinstance(now, str):
        try:
            now = datetime.datetime.fromisoformat(now)
        except ValueError:
            raise SkybutlerError(f"{now!r} is not an ISO date or time (e.g. 2026-03-01T12:00:00)") from None
    return now if now.tzinfo is not None else now.replace(tzinfo=datetime.UTC)


class Recomputability:
    """Whether datasets could be recomputed, given a set about to be purged (memoized)."""

    def __init__(self, butler: Butler, infos: dict[uuid.UUID, DatasetInfo], purging: set[uuid.UUID]):
        self.butler = butler
        self.store = butler.provenance.store
        self.infos = infos
        self.purging = purging
        self._memo: dict[uuid.UUID, str | None] = {}
        self._producers: dict[uuid.UUID, QuantumRecord | None] = {}
        #: Datasets that cannot be recomputed for a reason of their own (not because of an input).
        self.intrinsic: set[uuid.UUID] = set()

    def prefetch(self, ids: Iterable[uuid.UUID]) -> None:
        ids = [i for i in ids if i not in self._producers]
        found = self.store.producers(ids)
        for i in ids:
            self._producers[i] = found.get(i)

    def why_not(self, dataset_id: uuid.UUID) -> str | None:
        """None if the dataset is available or recomputable, else the reason it is not."""
        if dataset_id in self._memo:
            return self._memo[dataset_id]
        info = self.infos.get(dataset_id)
        if info is not None and info.state in (STORED, COLD) and dataset_id not in self.purging:
            return None
        if info is not None and info.state == PURGED_LOST:
            return f"{info.dataset_type} {dataset_id} is purged-lost"
        self._memo[dataset_id] = "its provenance is circular"  # guard while we look
        if dataset_id not in self._producers:
            self.prefetch([dataset_id])
        quantum = self._producers[dataset_id]
        if quantum is None:
            what = info.dataset_type if info else "dataset"
            reason = f"{what} {dataset_id} has no recorded provenance (ingested or put directly)"
        elif quantum.status != "succeeded":
            reason = f"the quantum that made {dataset_id} has status {quantum.status}"
        elif quantum.config_dataset_id is None:
            reason = f"task {quantum.task_label!r} that made {dataset_id} has no recorded config"
        else:
            reason = None
        if reason is not None:
            self.intrinsic.add(dataset_id)
        else:
            self.prefetch([i.dataset_id for i in quantum.inputs if i.dataset_id is not None])
            for link in quantum.inputs:
                sub = ("an input was recorded without an ID" if link.dataset_id is None
                       else self.why_not(link.dataset_id))
                if sub is not None:
                    reason = f"its input {link.dataset_type} {link.dataset_id} cannot be recomputed: {sub}" \
                        if link.dataset_id is not None and "cannot be recomputed" not in sub else sub
                    break
            if reason is None and (sub := self.why_not(quantum.config_dataset_id)) is not None:
                reason = f"the config of task {quantum.task_label!r} is gone: {sub}"
        self._memo[dataset_id] = reason
        return reason


def _age_days(info: DatasetInfo, now_ns: int, after: str) -> float:
    start = max(info.created_ns, info.last_access_ns or 0) if after == "last_access" else info.created_ns
    return (now_ns - start) / DAY_NS


def plan(butler: Butler, now: str | datetime.datetime | None = None, force: bool = False,
         only: Iterable[uuid.UUID] | None = None, action: str | None = None) -> RetentionReport:
    """What the repository's policies want done at ``now``.  ``only``/``action`` instead name the
    datasets and the action directly (``purge``/``cold``), policies aside."""
    when = parse_now(now)
    now_ns = int(when.timestamp() * 1e9)
    report = RetentionReport(when, True, force)
    policies = butler.config.retention.policies
    infos = {i.dataset_id: i for i in butler.registry.states.infos()}
    chosen: list[tuple[DatasetInfo, str, str, float]] = []
    if only is not None:
        for dataset_id in only:
            info = infos.get(dataset_id)
            if info is None:
                raise SkybutlerError(f"dataset {dataset_id} is not registered in this repository")
            if info.state in PURGED or (action == "cold" and info.state == COLD):
                continue
            chosen.append((info, str(action), "asked for", _age_days(info, now_ns, "created")))
    else:
        for info in infos.values():
            if info.state in PURGED:
                continue
            due = [p for p in policies if p.matches(info.dataset_type, info.run)
                   and p.due(info.created_ns, info.last_access_ns, now_ns)]
            policy = next((p for p in due if p.action == "purge"), None)
            if policy is None and info.state == STORED:
                policy = next((p for p in due if p.action == "cold"), None)
            if policy is not None:
                chosen.append((info, policy.action, policy.describe(), _age_days(info, now_ns, policy.after)))
    if not chosen:
        return report
    ids = [info.dataset_id for info, *_ in chosen]
    refs = {r.id: r for r in butler.registry.refs_by_id(ids)}
    hot = butler.registry.datasets.artifacts(ids)
    has_cold = butler.config.retention.cold_tier is not None
    purging = {info.dataset_id for info, act, *_ in chosen if act == "purge"}
    refusals: dict[uuid.UUID, str] = {}
    active = set(purging)
    while True:
        # A dataset refused for itself (no provenance) stays, so one that needs it may be purged
        # after all: drop those and look again, until only datasets that can be purged are left.
        check = Recomputability(butler, infos, active)
        check.prefetch(active)
        found = {i: why for i in active if (why := check.why_not(i)) is not None}
        own = {i for i in found if i in check.intrinsic}
        if force or not found or not own:
            refusals.update(found)
            break
        refusals.update({i: found[i] for i in own})
        active -= own
    for info, act, policy, age in chosen:
        ref = refs.get(info.dataset_id)
        item = RetentionAction(info.dataset_id, info.dataset_type, info.run,
                               dict(ref.data_id.required) if ref else {}, info.state, act, info.size, age, policy)
        artifact = hot.get(info.dataset_id)
        if artifact is not None and is_external(artifact):
            item.reason = "its file is outside the datastore (direct ingest): retention leaves it alone"
        elif act == "cold":
            item.new_state = COLD
            if not has_cold:
                item.reason = "no cold tier is configured (retention.cold_tier in butler.yaml)"
        else:
            why = refusals.get(info.dataset_id)
            item.new_state = PURGED_RECOMPUTABLE if why is None else PURGED_LOST
            if why is not None and not force:
                item.reason = f"cannot be recomputed ({why}); purge it anyway with force=True (skybutler retention apply --force)"
        (report.refused if item.reason else report.actions).append(item)
    if force and any(a.new_state == PURGED_LOST for a in report.actions):
        done = {a.dataset_id for a in report.purged}
        after = Recomputability(butler, infos, done)
        for a in report.purged:
            if a.new_state == PURGED_LOST:
                after._memo[a.dataset_id] = "purged-lost"
        report.lost = [i.dataset_id for i in infos.values()
                       if i.state == PURGED_RECOMPUTABLE and after.why_not(i.dataset_id) is not None]
        for a in report.purged:
            if a.new_state == PURGED_RECOMPUTABLE and after.why_not(a.dataset_id) is not None:
                a.new_state = PURGED_LOST
    return report


def apply(butler: Butler, report: RetentionReport, progress: Progress | None = None) -> RetentionReport:
    """Do what a plan found: move to the cold tier, purge (rows first, then files).
    ``progress(done, total)`` is told the datasets handled so far: each file moved, then the
    purged ones at once (one transaction)."""
    report.dry_run = False
    moved = [a.dataset_id for a in report.moved]
    total = len(moved) + len(report.purged)
    tell = progress or (lambda done, total: None)
    tell(0, total)
    if moved:
        done, _ = move_to_cold(butler, moved, lambda n, _: tell(n, total))
        missing = set(moved) - set(done)
        for a in report.moved:
            if a.dataset_id in missing:
                a.reason = "its file was not in the datastore"
        report.refused += [a for a in report.moved if a.reason]
        report.actions = [a for a in report.actions if not a.reason]
    purged = report.purged
    if purged:
        with locks(butler).hold([a.dataset_id for a in purged],
                                busy_notice(butler.on_wait, "staging or re-creating datasets to purge")):
            _purge(butler, report, purged)
    tell(total, total)
    return report


def _purge(butler: Butler, report: RetentionReport, purged: list[RetentionAction]) -> None:
    """Purge (rows first, then files), holding the datasets' locks; one purged meanwhile by
    another process is left as it is (its state row keeps what its file was).  The datasets a
    forced purge makes impossible to recompute (``report.lost``) are marked in the purge's own
    transaction: a process killed after it never leaves them recomputable, which no later
    ``apply`` would correct."""
    ids = [a.dataset_id for a in purged]
    hot = butler.registry.datasets.artifacts(ids)
    refuse_shared(hot, "purging")
    states = butler.registry.states.get(ids)
    when = report.now.isoformat(timespec="seconds")
    items: list[tuple[uuid.UUID, str, StoredArtifact, str | None]] = []
    cold_paths: list[str] = []
    for a in purged:
        state = states.get(a.dataset_id)
        artifact = hot.get(a.dataset_id)
        if state is None or state.state in PURGED:
            continue
        if artifact is None and state.state == COLD and state.artifact is not None:
            artifact = state.artifact
            cold_paths.append(artifact.path)
        if artifact is None:
            artifact = StoredArtifact(path="", formatter="", size=0)
        forced = " (forced: it cannot be recomputed)" if a.new_state == PURGED_LOST else ""
        items.append((a.dataset_id, a.new_state, artifact, f"purged {when} by policy '{a.policy}'{forced}"))
    tier = cold_tier(butler) if cold_paths else None
    journal = RetentionJournal(butler, tier)
    for dataset_id, _, artifact, _ in items:
        if dataset_id in hot:
            journal.remove(dataset_id, hot[dataset_id])
        elif artifact.path in cold_paths:
            journal.cold_copy(dataset_id, artifact)
    with journal:
        with butler.registry.transaction():
            butler.registry.states.set_purged(items)
            if report.lost:
                butler.registry.states.set_lost(report.lost, f"an input was force-purged on {report.now.isoformat()}")
        crash_point("registry-committed")
        failed = butler.datastore.remove(hot.values())
        if tier is not None:
            tier.remove(cold_paths)
    if failed:
        logging.getLogger("skybutler.retention").warning("purged, but could not delete: %s", ", ".join(failed))


def run(butler: Butler, now: str | datetime.datetime | None = None, dry_run: bool = False,
        force: bool = False, progress: Progress | None = None) -> RetentionReport:
    """Plan the repository's retention policies at ``now`` and, unless ``dry_run``, apply them."""
    report = plan(butler, now, force)
    return report if dry_run else apply(butler, report, progress)
