"""The parts of the Butler made on first use -- provenance, retention and access -- each the
local one or, for a butler opened on a server URL, the one that sends its calls there.

:class:`PartMethods` is a base of :class:`~skybutler.Butler`; the local parts live in
``provenance/``, ``retention/`` and ``administration.py``, the remote ones in ``remote/``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .administration import Administration
    from .provenance import Provenance
    from .retention import Retention


class PartMethods:
    """``provenance``, ``retention`` and ``access`` (a base of :class:`~skybutler.Butler`)."""

    _remote: Any

    @functools.cached_property
    def provenance(self) -> Provenance:
        """Lineage of pipeline outputs: ``producer(ref)``, ``consumers(ref)``, ``tree(ref)`` (made on first use)."""
        if self._remote is not None:
            from .remote.provenance import RemoteProvenance

            return RemoteProvenance(self._remote)
        from .provenance import Provenance

        return Provenance(self)

    @functools.cached_property
    def retention(self) -> Retention:
        """Dataset states, retention policies, the cold tier and recompute on demand (made on first use)."""
        if self._remote is not None:
            from .remote.retention import RemoteRetention

            return RemoteRetention(self._remote)
        from .retention.facade import Retention

        return Retention(self)

    @functools.cached_property
    def access(self) -> Administration:
        """Users, groups, tokens, collection and embargo rules, quotas and the audit log of the
        repository as served (through a server: under the caller's rights there)."""
        if self._remote is not None:
            from .remote.administration import RemoteAdministration

            return RemoteAdministration(self._remote)
        from .administration import Administration

        return Administration(self)
