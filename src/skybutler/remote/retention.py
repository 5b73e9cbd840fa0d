"""``butler.retention`` of a butler opened on a server URL: the states of datasets (the
server applies retention; policies, purges and the cold tier are administered there)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..models import DatasetRef

if TYPE_CHECKING:
    from .client import RemoteTransport


class RemoteRetention:
    def __init__(self, transport: RemoteTransport):
        self._t = transport

    def states(self, targets: Iterable[DatasetRef | uuid.UUID | str]) -> dict[uuid.UUID, str]:
        """The state (stored, cold, purged-recomputable, purged-lost) of each dataset the caller may see."""
        ids = [str(t.id if isinstance(t, DatasetRef) else t) for t in targets]
        found = self._t.post_json("datasets/states", {"ids": ids})
        return {uuid.UUID(k): v for k, v in found.items()}

    def __getattr__(self, name: str) -> Any:
        from ..errors import SkybutlerError

        raise SkybutlerError(f"retention.{name} is administered on the server, not through {self._t.url}")
