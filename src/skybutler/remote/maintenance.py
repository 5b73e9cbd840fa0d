"""``verify`` and its repair for a butler opened on a server URL: the server checks its own
registry against its own files (every file for an administrator; for anyone else, the files
of the datasets they may see) and carries out a repair only for an administrator."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..verify import RepairAction, RepairResult, VerifyReport
    from .client import RemoteTransport


def remote_verify(transport: RemoteTransport, check_sizes: bool, check_checksums: bool) -> VerifyReport:
    from ..verify import VerifyReport

    return VerifyReport.from_summary(transport.post_json("verify", {"sizes": check_sizes,
                                                                    "checksums": check_checksums}))


def remote_repair(transport: RemoteTransport, plan: list[RepairAction]) -> RepairResult:
    from ..verify import RepairResult

    done = transport.post_json("verify/repair", {"plan": [{"action": a.action, "path": a.path} for a in plan]})
    return RepairResult(done["deleted"], done["quarantined"], done["quarantine"])
