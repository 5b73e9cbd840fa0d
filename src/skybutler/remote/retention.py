"""``butler.retention`` of a butler opened on a server URL: the states of datasets (any user,
for the datasets they may see) and, for a repository administrator, applying the policies,
purging, the cold tier and the per-type status, done by the server."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..models import DatasetRef

if TYPE_CHECKING:
    from ..retention.apply import RetentionReport
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


class RemoteRetention:
    def __init__(self, transport: RemoteTransport):
        self._t = transport

    def states(self, targets: Iterable[DatasetRef | uuid.UUID | str]) -> dict[uuid.UUID, str]:
        """The state (stored, cold, purged-recomputable, purged-lost) of each dataset the caller may see."""
        found = self._t.post_json("datasets/states", {"ids": _ids(targets)})
        return {uuid.UUID(k): v for k, v in found.items()}

    def apply(self, now: str | datetime.datetime | None = None, dry_run: bool = False, force: bool = False,
              progress: Any = None) -> RetentionReport:
        """Have the server apply its retention policies (administrators only)."""
        when = now.isoformat() if isinstance(now, datetime.datetime) else now
        return _report(self._t.post_json("retention/apply", {"now": when, "dry_run": dry_run, "force": force}))

    def purge(self, targets: Iterable[DatasetRef | uuid.UUID | str], force: bool = False,
              dry_run: bool = False) -> RetentionReport:
        return _report(self._t.post_json("retention/purge", {"ids": _ids(targets), "force": force,
                                                             "dry_run": dry_run}))

    def move_to_cold(self, targets: Iterable[DatasetRef | uuid.UUID | str]) -> tuple[list[uuid.UUID], int]:
        found = self._t.post_json("retention/move_to_cold", {"ids": _ids(targets)})
        return [uuid.UUID(i) for i in found["moved"]], found["bytes"]

    def stage(self, targets: Iterable[DatasetRef | uuid.UUID | str], on_wait: Any = None) -> list[uuid.UUID]:
        return [uuid.UUID(i) for i in self._t.post_json("retention/stage", {"ids": _ids(targets)})]

    def status(self) -> list[dict[str, Any]]:
        return self._t.get_json("retention/status")

    def __getattr__(self, name: str) -> Any:
        from ..errors import SkybutlerError

        raise SkybutlerError(f"retention.{name} is not available through a server ({self._t.url})")
