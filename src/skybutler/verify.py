"""Consistency check of a repository, and its repair: registry rows against datastore files.

Every write that places files is covered by the write journal until its registry transaction
is over, and an interrupted one is settled on the next open (:mod:`skybutler.recovery`), so a
crash leaves nothing behind.  ``verify`` still compares every artifact record with the files
in the datastore's tree, for what no journal explains: a file deleted behind the butler's back
(a row without its file), a file no row points to (put there by hand, by another program, or
by an older skybutler that crashed), a staging file of a writer not journaled.

Repair (``plan_repair`` then ``repair``) deletes only what it can prove skybutler wrote and
abandoned -- a staging file bearing skybutler's temporary-name pattern whose writer is gone --
and moves everything else it does not explain into the quarantine, with a manifest
(:mod:`skybutler.datastore.quarantine`).  It cannot mend a row whose file is gone or has the
wrong size: those are reported, and the repository stays inconsistent until a person decides.
``butler.yaml`` and the registry's own files are never dataset files.

With a cold tier configured it checks that too (:func:`skybutler.retention.cold_tier.audit`):
every cold dataset's copy is there and intact, and cold files no dataset points to are listed;
repair deletes those skybutler provably abandoned (a killed move, staging or purge) and leaves
the others for a person (reported, so ``verify`` stays inconsistent).  Likewise a hot file at
the recorded path of a purged dataset, or of a cold one whose cold copy is there, with the
recorded checksum, was left by a killed retention write: repair deletes it, not quarantines it
(holding the dataset's lock, so no staging or write-back adopts it meanwhile).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from .butler import Butler
from .config import BOOKKEEPING_DIR, CONFIG_NAME
from .datastore.journal import Intent
from .datastore.quarantine import Quarantine
from .errors import SkybutlerError
from .retention.cold_tier import (
    ColdAudit,
    audit,
    cold_tier,
    leftover_owners,
    locks,
    recorded_owners,
    restore_leftovers,
    staging_copy,
    still_cold_leftover,
)

#: Files at the repository root that belong to the repository itself, not to datasets (they share
#: the datastore's root in repositories made before the datastore had a directory of its own).
REPOSITORY_FILES = (CONFIG_NAME, BOOKKEEPING_DIR, "registry.sqlite3", "registry.sqlite3-wal",
                    "registry.sqlite3-shm", "registry.sqlite3-journal")
#: skybutler's temporary names: ``<final path>.tmp-<32 hex digits>[-<n>]``.
TEMPORARY_NAME = re.compile(r"\.tmp-([0-9a-f]{32})(?:-\d+)?$")
#: A temporary file no journal covers is taken as abandoned once it is this old (seconds): no
#: writer keeps a staged file for an hour; younger ones may belong to a writer still at work.
ABANDONED_AGE = 3600.0
#: A repair asks again whether a client on another host writes at most this often (seconds): a
#: question costs a round trip, and a plan may hold thousands of steps.
FOREIGN_RECHECK_S = 1.0


@dataclass
class VerifyReport:
    """What ``verify`` found."""

    datasets: int = 0
    files: int = 0
    missing_files: list[str] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    size_mismatches: list[str] = field(default_factory=list)
    checksum_mismatches: list[str] = field(default_factory=list)
    #: skybutler's own staging files whose writer is gone (safe to delete)
    abandoned_files: list[str] = field(default_factory=list)
    #: files of writers still at work (not a problem)
    in_flight: list[str] = field(default_factory=list)
    #: what the open of the repository settled from interrupted writes' journals
    recovered: list[str] = field(default_factory=list)
    #: files of purged or cold datasets a killed retention write left (``restore_leftovers``: safe to delete)
    retention_leftovers: list[str] = field(default_factory=list)
    #: The cold tier, when one is configured (see ``retention.cold_tier.ColdAudit``).
    cold: ColdAudit | None = None
    #: write journals of dead writers that cannot be read: never replayed nor deleted (a person decides)
    damaged_journals: list[str] = field(default_factory=list)
    #: clients of a shared registry writing from other hosts: while there is one, every file no row
    #: explains may be one of its writes in flight, so it is listed in ``in_flight`` and left alone
    foreign_writers: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        cold = self.cold is not None and (self.cold.missing or self.cold.mismatches or self.cold.orphans)
        return not (self.missing_files or self.orphan_files or self.size_mismatches or self.checksum_mismatches
                    or self.abandoned_files or self.retention_leftovers or cold or self.damaged_journals)

    def summary(self) -> dict:
        out = {"datasets": self.datasets, "files": self.files, "consistent": self.consistent,
                "missing_files": self.missing_files, "orphan_files": self.orphan_files,
                "size_mismatches": self.size_mismatches, "checksum_mismatches": self.checksum_mismatches,
                "abandoned_files": self.abandoned_files, "retention_leftovers": self.retention_leftovers,
                "in_flight": self.in_flight, "recovered": self.recovered, "damaged_journals": self.damaged_journals,
                "foreign_writers": self.foreign_writers}
        if self.cold is not None:
            out["cold_tier"] = {"copies": self.cold.copies, "missing_copies": self.cold.missing,
                                "mismatches": self.cold.mismatches, "orphan_files": self.cold.orphans,
                                "abandoned_by_skybutler": self.cold.leftovers}
        return out

    @classmethod
    def from_summary(cls, values: dict) -> VerifyReport:
        """A report from its :meth:`summary` (as a server sends it)."""
        fields = {k: values[k] for k in ("datasets", "files", "missing_files", "orphan_files", "size_mismatches",
                                         "checksum_mismatches", "abandoned_files", "retention_leftovers",
                                         "in_flight", "recovered", "damaged_journals")}
        cold = values.get("cold_tier")
        fields["foreign_writers"] = values.get("foreign_writers", [])
        return cls(**fields, cold=None if cold is None else ColdAudit(
            cold["copies"], cold["missing_copies"], cold["mismatches"], cold["orphan_files"],
            cold["abandoned_by_skybutler"]))


@dataclass(frozen=True)
class RepairAction:
    """One step of a repair: ``delete`` a file skybutler abandoned, or ``quarantine`` one."""

    action: str
    path: str
    reason: str


@dataclass
class RepairResult:
    deleted: int = 0
    quarantined: int = 0
    #: the quarantine directory of this repair (None if nothing was quarantined)
    quarantine: str | None = None


def verify(butler: Butler, check_sizes: bool = False, check_checksums: bool = False,
           progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Compare every artifact record with the files in the datastore (after settling any write
    interrupted since the butler was opened, as every open does).

    ``check_checksums`` re-hashes every file (reading it all) and names each whose content
    no longer matches its recorded checksum; ``progress(done, total)`` is told after each
    artifact, for a progress bar."""
    if butler.served_by is not None:
        from .remote.maintenance import remote_verify

        return remote_verify(butler.served_by, check_sizes, check_checksums)
    report = VerifyReport(recovered=list(butler.recovered) + butler.recover())
    artifacts = butler.registry.datasets.all_artifacts()
    _check_files(butler, artifacts, report, check_sizes, check_checksums, progress)
    inside = {a.path for a in artifacts.values() if "://" not in a.path and not a.path.startswith("/")}
    if butler.datastore.journal is not None:
        report.damaged_journals = [f"{path}: {why}" for path, why in sorted(butler.datastore.journal.damaged.items())]
    live = butler.datastore.journal.live() if butler.datastore.journal is not None else []
    live_tokens = {j.token for j in live}
    live_paths = {i.path for j in live for i in j.intents}
    skip = REPOSITORY_FILES if butler.datastore.root_is(butler.root) else ()
    for path in butler.datastore.walk(skip):
        report.files += 1
        if path in inside:
            continue
        temporary = TEMPORARY_NAME.search(path)
        if path in live_paths or (temporary and temporary.group(1) in live_tokens):
            report.in_flight.append(path)
        elif temporary:
            try:
                old = butler.datastore.age(path) > ABANDONED_AGE
            except FileNotFoundError:  # its writer finished meanwhile
                continue
            (report.abandoned_files if old else report.in_flight).append(path)
        else:
            report.orphan_files.append(path)
    report.foreign_writers = _foreign_writers(butler)
    if report.foreign_writers:  # each unexplained file may be another host's write in flight: left alone
        report.in_flight += report.orphan_files + report.abandoned_files
        report.orphan_files, report.abandoned_files = [], []
    if report.orphan_files:
        report.retention_leftovers = restore_leftovers(butler, report.orphan_files)
        report.orphan_files = [p for p in report.orphan_files if p not in set(report.retention_leftovers)]
    if butler.config.retention.cold_tier is not None:
        report.cold = audit(butler, artifacts, check_sizes, check_checksums, ABANDONED_AGE)
        if report.foreign_writers:  # a cold move on another host writes its copies before its rows
            report.in_flight += report.cold.orphans
            report.cold.orphans, report.cold.leftovers = [], []
    return report


def _foreign_writers(butler: Butler) -> list[str]:
    """The clients writing this repository from other hosts (a shared registry tells; see
    ``registry.writer_presence``): their journals are on their hosts, out of this one's sight."""
    return butler.writers.others() if butler.writers is not None else []


def verify_datasets(butler: Butler, keep: Callable[[list], set], check_sizes: bool = False,
                    check_checksums: bool = False) -> VerifyReport:
    """The part of :func:`verify` about the datasets ``keep`` picks from the IDs of every stored
    one: their files present (and of their size, and checksum).  Nothing else is looked at -- no
    walk of the datastore's tree, whose files no dataset explains belong to nobody in particular
    -- so that it suits a user who may see only some datasets (a server's non-administrator)."""
    artifacts = butler.registry.datasets.all_artifacts()
    kept = keep(list(artifacts))
    report = VerifyReport()
    _check_files(butler, {i: a for i, a in artifacts.items() if i in kept}, report, check_sizes, check_checksums)
    return report


def _check_files(butler: Butler, artifacts: dict, report: VerifyReport, check_sizes: bool, check_checksums: bool,
                 progress: Callable[[int, int], None] | None = None) -> None:
    """Each artifact's file there, and (if asked) of its recorded size and checksum."""
    report.datasets = len(artifacts)
    for done, (dataset_id, artifact) in enumerate(artifacts.items(), 1):
        if not butler.datastore.exists(artifact):
            report.missing_files.append(f"{artifact.path} (dataset {dataset_id})")
        elif check_sizes and butler.datastore.size(artifact) != artifact.size:
            report.size_mismatches.append(artifact.path)
        elif check_checksums and not butler.datastore.checksum_matches(artifact):
            report.checksum_mismatches.append(f"{artifact.path} (dataset {dataset_id})")
        if progress is not None:
            progress(done, len(artifacts))


def plan_repair(report: VerifyReport) -> list[RepairAction]:
    """What ``repair`` would do about a report: delete abandoned staging files, quarantine orphans."""
    plan = [RepairAction("delete", p, "a staging file of skybutler's whose writer is gone")
            for p in report.abandoned_files]
    plan += [RepairAction("quarantine", p, "no dataset of this repository is recorded at this path")
             for p in report.orphan_files]
    plan += [RepairAction("delete-leftover", p, "the file of a purged or cold dataset, with its recorded checksum: "
                          "left by a killed purge, cold move, staging or recompute") for p in report.retention_leftovers]
    if report.cold is not None:
        plan += [RepairAction("delete-cold", p, "a cold-tier file skybutler abandoned (a killed move, staging or "
                              "purge)") for p in report.cold.leftovers]
    return plan


def repair(butler: Butler, plan: list[RepairAction]) -> RepairResult:
    """Carry out a plan (after the user has seen it): nothing is deleted that is not skybutler's own.
    Through a server, it carries out the steps of the plan that a fresh ``verify`` there plans too."""
    if butler.served_by is not None:
        from .remote.maintenance import remote_repair

        return remote_repair(butler.served_by, plan)
    result = RepairResult()
    quarantine = Quarantine(str(butler.root / BOOKKEEPING_DIR / "quarantine"))
    owners: dict[str, uuid.UUID] | None = None  # of the cold copies to delete, found once
    checked = -FOREIGN_RECHECK_S
    for step in plan:
        if time.monotonic() - checked >= FOREIGN_RECHECK_S:  # the proof taken again as the repair goes
            if _foreign_writers(butler):  # a writer on another host began since the plan: its files may be there
                break
            checked = time.monotonic()
        if step.action == "delete":
            if not TEMPORARY_NAME.search(step.path):  # the one proof that makes deletion safe
                raise SkybutlerError(f"refusing to delete {step.path}: not a skybutler staging file")
            result.deleted += butler.datastore.remove_paths([step.path])
        elif step.action == "delete-leftover":
            result.deleted += _delete_leftover(butler, step.path)
        elif step.action == "delete-cold":
            if not staging_copy(step.path):
                owners = recorded_owners(butler) if owners is None else owners
                result.deleted += _delete_cold(butler, step.path, owners.get(step.path))
                continue
            cold_tier(butler).remove([step.path])  # a killed copy's staging name, an hour old
            result.deleted += 1
        elif step.action == "quarantine":
            result.quarantined += _quarantine(butler, quarantine, step)
    result.quarantine = quarantine.directory if result.quarantined else None
    return result


def _delete_leftover(butler: Butler, path: str) -> int:
    """Delete a purged or cold dataset's hot file a killed retention write left; 1 if deleted.

    The proof is taken again holding the dataset's lock, as every staging, cold move and
    recompute write-back holds it: one of those at work now could adopt the file (it has the
    recorded checksum) and make the dataset hot again, so the repair leaves the file for a later
    run rather than wait; and once the repair holds the lock, none adopts it before it is gone."""
    owner = leftover_owners(butler, [path]).get(path)
    if owner is None:
        raise SkybutlerError(f"refusing to delete {path}: not a purged or cold dataset's file")
    with locks(butler).try_hold([owner]) as held:
        if not held or path not in leftover_owners(butler, [path]):  # the proof, taken again under the lock
            return 0
        return butler.datastore.remove_paths([path])


def _delete_cold(butler: Butler, path: str, owner: uuid.UUID | None) -> int:
    """Delete a copy in the cold tier of a hot or purged dataset's file (a killed cold move's, or a
    staging's); 1 if deleted.  Taken again holding the dataset's lock (every cold move holds it):
    a dataset moved to the cold tier since the plan was made may have taken that copy as its
    only one.  A copy whose dataset is busy, or no longer provably a leftover, stays."""
    if owner is None:
        return 0
    with locks(butler).try_hold([owner]) as held:
        if not held or not still_cold_leftover(butler, path, owner):
            return 0
        cold_tier(butler).remove([path])
        return 1


def _quarantine(butler: Butler, quarantine: Quarantine, step: RepairAction) -> int:
    """Move one file into the quarantine unless it is claimed by now; 1 if it was moved.

    The move is journaled first and the proof taken after: a writer adopting a leftover of its
    own bytes journals its intent before it looks for other writers' (``Writes._claimed_paths``),
    so of the two, one sees the other -- the writer leaves the file, or the repair does.  A repair
    killed half-way (an object store's copy made, its original not yet deleted) is settled by the
    next open: the original stays (``quarantine.settle_move``)."""
    intent = Intent(str(uuid.UUID(int=0)), step.path, "quarantine", source=quarantine.target(step.path))
    journal = butler.datastore.begin_journal([intent], token=uuid.uuid4().hex)
    try:
        if _claimed_now(butler, step.path):  # a writer placed or adopted it after the plan was made: its own
            return 0
        try:
            quarantine.take(butler.datastore, step.path, step.reason)
        except FileNotFoundError:
            return 0
        return 1
    finally:
        butler.datastore.end_journal(journal)


def _claimed_now(butler: Butler, path: str) -> bool:
    """Whether a live writer's journal names ``path`` or a dataset is recorded there by now: the
    proof that a file is nobody's, taken again just before it is set aside (a put places its file
    before its rows commit, so a plan made a moment earlier may list a live writer's file; a put
    retried with ``adopt_leftovers`` may take a leftover of its bytes as its own)."""
    journal = butler.datastore.journal
    if journal is not None and any(i.path == path for j in journal.live() for i in j.intents):
        return True
    return bool(butler.registry.datasets.paths_in_use([path]))
