"""``butler.retention`` of a butler opened on a server URL: the states of datasets (any user,
for the datasets they may see), recomputing purged datasets (its estimate too) into the RUNs
the caller may write, and, for a repository administrator, applying the policies, purging,
the cold tier and the per-type status, done by the server.  A call naming more datasets than
one request may list goes as its parts in one request, which the server joins back into the
one call (``batch.call_in_parts``): as atomic as the local call."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..models import DatasetRef
from . import wire
from .batch import call_in_parts

if TYPE_CHECKING:
    from ..retention.apply import RetentionReport
    from ..retention.executor import RecomputeReport
    from ..retention.ondemand import RecomputeEstimate, RecomputeOptions
    from .client import RemoteTransport


def _ids(targets: Iterable[DatasetRef | uuid.UUID | str]) -> list[str]:
    return [str(t.id if isinstance(t, DatasetRef) else t) for t in targets]


def _report(values: dict[str, Any]) -> RetentionReport:
    """A retention report from its ``to_dict`` form."""
    from ..retention.apply import RetentionAction, RetentionReport

    def action(row: dict[str, Any]) -> RetentionAction:
        return RetentionAction(uuid.UUID(row["id"]), row["dataset_type"], row["run"], row["data_id"], row["state"],
                               row["action"], row["bytes"], row["age_days"], row["policy"], row["new_state"],
                               row["refused"] or "")

    return RetentionReport(datetime.datetime.fromisoformat(values["now"]), values["dry_run"], values["force"],
                           [action(r) for r in values["actions"]], [action(r) for r in values["refused_actions"]],
                           [uuid.UUID(i) for i in values["lost"]])


def _estimate(values: dict[str, Any]) -> RecomputeEstimate:
    """A recompute estimate from the server's form of it (quanta without their logs)."""
    from ..models import StoredArtifact
    from ..retention.ondemand import RecomputeEstimate
    from .provenance import _record

    quanta = [_record(q) for q in values["quanta"]]
    by_id = {str(q.quantum_id): q for q in quanta}
    return RecomputeEstimate(
        [uuid.UUID(i) for i in values["targets"]], quanta,
        {uuid.UUID(i): by_id[q] for i, q in values["needed"].items()},
        {uuid.UUID(i): StoredArtifact(*a) for i, a in values["stage"].items()},
        values["staging_seconds"], values["drift"], values["calibrations"],
        present=[uuid.UUID(i) for i in values["present"]], labels={uuid.UUID(i): v for i, v in values["labels"].items()})


class RemoteRetention:
    def __init__(self, transport: RemoteTransport):
        self._t = transport

    def states(self, targets: Iterable[DatasetRef | uuid.UUID | str]) -> dict[uuid.UUID, str]:
        """The state (stored, cold, purged-recomputable, purged-lost) of each dataset the caller may see."""
        from .batch import chunks

        return {uuid.UUID(k): v for part in chunks(_ids(targets), self._t.max_ids)
                for k, v in self._t.post_json("datasets/states", {"ids": part}).items()}

    def apply(self, now: str | datetime.datetime | None = None, dry_run: bool = False, force: bool = False,
              progress: Any = None) -> RetentionReport:
        """Have the server apply its retention policies (administrators only)."""
        when = now.isoformat() if isinstance(now, datetime.datetime) else now
        return _report(self._t.post_json("retention/apply", {"now": when, "dry_run": dry_run, "force": force}))

    def purge(self, targets: Iterable[DatasetRef | uuid.UUID | str], force: bool = False,
              dry_run: bool = False) -> RetentionReport:
        return _report(call_in_parts(self._t, "retention/purge", {"force": force, "dry_run": dry_run}, _ids(targets)))

    def move_to_cold(self, targets: Iterable[DatasetRef | uuid.UUID | str]) -> tuple[list[uuid.UUID], int]:
        found = call_in_parts(self._t, "retention/move_to_cold", {}, _ids(targets))
        return [uuid.UUID(i) for i in found["moved"]], found["bytes"]

    def stage(self, targets: Iterable[DatasetRef | uuid.UUID | str], on_wait: Any = None) -> list[uuid.UUID]:
        return [uuid.UUID(i) for i in call_in_parts(self._t, "retention/stage", {}, _ids(targets))]

    def estimate(self, targets: Iterable[DatasetRef | uuid.UUID | str]) -> RecomputeEstimate:
        """What recomputing these datasets would take (refused unless the caller may write every
        RUN it would write into)."""
        return _estimate(call_in_parts(self._t, "retention/estimate", {}, _ids(targets)))

    def recompute(self, targets: Iterable[DatasetRef | uuid.UUID | str], options: RecomputeOptions | None = None, *,
                  executor: str = "inline", jobs: int = 2, on_wait: Any = None, dask_scheduler: str | None = None,
                  progress: Any = None) -> RecomputeReport:
        """Have the server recompute purged datasets (it replays the quanta itself, inline, and
        stores what they re-create: ``store=False`` and other executors are not for a client)."""
        from ..errors import SkybutlerError
        from ..retention.executor import RecomputeReport

        if executor != "inline" or dask_scheduler is not None:
            raise SkybutlerError("a server replays the quanta itself: leave out the executor (--executor)")
        if options is not None and not options.store:
            raise SkybutlerError("a server stores what it recomputes: store=False (--no-store) is not available "
                                 "through a server")
        body = {} if options is None else {"on_drift": options.on_drift, "on_calibration": options.on_calibration}
        done = call_in_parts(self._t, "retention/recompute", body, _ids(targets))
        return RecomputeReport(_estimate(done["estimate"]), done["executor"], wire.decode(done["succeeded"]),
                               wire.decode(done["failed"]), wire.decode(done["blocked"]),
                               {uuid.UUID(i): how for i, how in done["verified"].items()}, done["notes"],
                               done["seconds"])

    def status(self) -> list[dict[str, Any]]:
        return self._t.get_json("retention/status")

    def __getattr__(self, name: str) -> Any:
        from ..errors import SkybutlerError

        raise SkybutlerError(f"retention.{name} is not available through a server ({self._t.url})")
