"""Consistency check of a repository: registry rows against datastore files.

A put publishes its file just before the registry commits, so a process killed
in between can leave a file no row points to; a file deleted behind the
butler's back leaves a row without its file.  ``verify`` reports both (and
staged temporary files), and ``fix`` deletes the orphan files.  With a cold tier
configured it checks that too: every cold dataset's copy is there (a missing one is
reported), and files no cold dataset points to are listed; ``fix`` removes those of
them skybutler provably abandoned (a killed move, staging or purge).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .butler import Butler
from .config import CONFIG_NAME
from .retention.cold_tier import ColdAudit, audit, cold_tier

#: Files at the repository root that belong to the repository itself, not to datasets.
_REPOSITORY_FILES = (CONFIG_NAME, "registry.sqlite3", "registry.sqlite3-wal", "registry.sqlite3-shm",
                     "registry.sqlite3-journal")


#: The repository's own bookkeeping (dataset locks), under the repository root.
_BOOKKEEPING = ".skybutler/"


@dataclass
class VerifyReport:
    """What ``verify`` found."""

    datasets: int = 0
    files: int = 0
    missing_files: list[str] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    size_mismatches: list[str] = field(default_factory=list)
    checksum_mismatches: list[str] = field(default_factory=list)
    #: The cold tier, when one is configured (see ``retention.cold_tier.ColdAudit``).
    cold: ColdAudit | None = None

    @property
    def consistent(self) -> bool:
        cold = self.cold is not None and (self.cold.missing or self.cold.mismatches or self.cold.orphans)
        return not (self.missing_files or self.orphan_files or self.size_mismatches or self.checksum_mismatches
                    or cold)

    def summary(self) -> dict:
        out = {"datasets": self.datasets, "files": self.files, "consistent": self.consistent,
               "missing_files": self.missing_files, "orphan_files": self.orphan_files,
               "size_mismatches": self.size_mismatches, "checksum_mismatches": self.checksum_mismatches}
        if self.cold is not None:
            out["cold_tier"] = {"copies": self.cold.copies, "missing_copies": self.cold.missing,
                                "mismatches": self.cold.mismatches, "orphan_files": self.cold.orphans,
                                "abandoned_by_skybutler": self.cold.leftovers}
        return out


def verify(butler: Butler, check_sizes: bool = False, check_checksums: bool = False,
           progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Compare every artifact record with the files in the datastore.

    ``check_checksums`` re-hashes every file (reading it all) and names each whose content
    no longer matches its recorded checksum; ``progress(done, total)`` is told after each
    artifact, for a progress bar."""
    report = VerifyReport()
    artifacts = butler.registry.datasets.all_artifacts()
    report.datasets = len(artifacts)
    inside = {a.path for a in artifacts.values() if "://" not in a.path and not a.path.startswith("/")}
    for done, (dataset_id, artifact) in enumerate(artifacts.items(), 1):
        if not butler.datastore.exists(artifact):
            report.missing_files.append(f"{artifact.path} (dataset {dataset_id})")
        elif check_sizes and butler.datastore.size(artifact) != artifact.size:
            report.size_mismatches.append(artifact.path)
        elif check_checksums and not butler.datastore.checksum_matches(artifact):
            report.checksum_mismatches.append(f"{artifact.path} (dataset {dataset_id})")
        if progress is not None:
            progress(done, len(artifacts))
    legacy_layout = butler.datastore.root_is(butler.root)  # files at the repository root, beside butler.yaml
    for path in butler.datastore.walk():
        if legacy_layout and (path in _REPOSITORY_FILES or path.startswith(_BOOKKEEPING)):
            continue
        report.files += 1
        if path in inside:
            continue
        report.orphan_files.append(path)
    if butler.config.retention.cold_tier is not None:
        report.cold = audit(butler, artifacts, check_sizes, check_checksums)
    return report


def remove_orphans(butler: Butler, report: VerifyReport) -> int:
    """Delete the orphan files a report found, and the cold-tier files skybutler provably
    abandoned; returns how many were removed."""
    removed = butler.datastore.remove_paths(report.orphan_files)
    if report.cold is not None and report.cold.leftovers:
        cold_tier(butler).remove(report.cold.leftovers)
        removed += len(report.cold.leftovers)
    return removed
