"""The cold tier: a second place for dataset files, slow to read back (a tape stand-in).

Moving a dataset there copies its file (checksum verified) to the same relative path
under the cold root, records the copy in ``dataset_state`` and drops the hot record in
one registry transaction, then deletes the hot file.  Reading a cold dataset stages it
back: the caller is told the expected wait, the configured ``staging_latency`` passes
(a sleep: one per stage request, however many datasets it holds -- a tape recall of
the batch), the bytes are copied into the hot datastore at their old path, verified,
recorded, and the cold copy is removed: the dataset is ``stored`` again.

Both hold the datasets' locks (:mod:`..datastore.locks`) and read the datasets' states
again once they have them, so two readers staging one dataset at once stage it once: the
second waits and finds it stored.  Both journal their files first (:class:`RetentionJournal`),
so a process killed at any point leaves nothing the next open does not settle: a hot file
written back without its row, or a cold copy no state points to, is deleted (it holds the
bytes the journal recorded), one still needed is kept.  A leftover of a writer that kept no
journal (an older skybutler) is adopted by the next staging or recompute when its checksum is
the recorded one, and ``verify`` tells it apart from strangers.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..datastore.checksums import verify
from ..datastore.journal import Intent, Journal
from ..datastore.locks import DatasetLocks
from ..errors import ChecksumMismatchError, DatastoreError, SkybutlerError
from ..faults import crash_point
from ..models import StoredArtifact
from ..registry.dataset_state_store import COLD, PURGED, DatasetState
from ..shared_files import refuse_shared
from .policy import ColdTierConfig

if TYPE_CHECKING:
    from ..butler import Butler

log = logging.getLogger("skybutler.retention")

#: Called with a message for the user and the expected wait in seconds.
WaitCallback = Callable[[str, float], None]


def log_wait(message: str, seconds: float) -> None:
    """The default wait notice: a warning on the ``skybutler.retention`` logger."""
    log.warning(message)


def is_external(artifact: StoredArtifact) -> bool:
    """A direct-ingested file outside the datastore: retention leaves it alone."""
    return "://" in artifact.path or artifact.path.startswith("/")


class ColdTier:
    """Files under a cold root (a directory or any fsspec URL) at the hot datastore's relative paths."""

    def __init__(self, config: ColdTierConfig, repo_root: Path):
        uri = config.uri
        if "://" not in uri and not os.path.isabs(uri):
            uri = str(repo_root / uri)
        self.uri = uri
        self.latency = config.staging_latency
        self.fs, root = fsspec.core.url_to_fs(uri)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = os.path.abspath(root) if self.local else root.rstrip("/")

    def full_path(self, path: str) -> str:
        return f"{self.root}/{path}"

    def staged_name(self, path: str, token: str) -> str | None:
        """The temporary name a copy of batch ``token`` is written under (None on an object store)."""
        return f"{self.full_path(path)}.tmp-{token}" if self.local else None

    def write(self, path: str, data: bytes, staged: str | None = None) -> None:
        """Write a file atomically (temporary name, then rename; one PUT on an object store)."""
        full = self.full_path(path)
        if self.local:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            staged = staged or f"{full}.tmp-{uuid.uuid4().hex}"
            with open(staged, "wb") as stream:
                stream.write(data)
            os.replace(staged, full)
        else:
            self.fs.pipe_file(full, data)

    def read(self, path: str) -> bytes:
        try:
            return self.fs.cat_file(self.full_path(path))
        except FileNotFoundError:
            raise DatastoreError(f"cold copy {self.full_path(path)} is missing") from None

    def remove(self, paths: Iterable[str]) -> None:
        for path in paths:
            try:
                self.fs.rm_file(self.full_path(path))
            except FileNotFoundError:
                pass

    def exists(self, path: str) -> bool:
        return self.fs.exists(self.full_path(path))

    def walk(self) -> Iterable[str]:
        """Relative paths of every file in the cold tier (for ``verify``)."""
        if not self.fs.exists(self.root):
            return []
        return [full[len(self.root):].lstrip("/") for full in self.fs.find(self.root)]


def cold_tier(butler: Butler) -> ColdTier:
    config = butler.config.retention.cold_tier
    if config is None:
        raise SkybutlerError("this repository has no cold tier: add retention.cold_tier.uri to butler.yaml")
    tier = ColdTier(config, butler.root)
    hot = butler.datastore

    def inside(path: str, directory: str) -> bool:
        return path == directory or path.startswith(directory.rstrip("/") + "/")

    if tier.local == hot.local and inside(tier.root, hot.root):
        # 'skybutler verify --fix' would take the cold copies for orphan files and delete them.
        raise SkybutlerError(f"the cold tier {tier.uri} is inside the datastore root {hot.root_uri}: "
                             "put it elsewhere (retention.cold_tier.uri in butler.yaml)")
    if tier.local and (inside(str(butler.root), tier.root) or (hot.local and inside(hot.root, tier.root))
                       or inside(tier.root, str(butler.root / ".skybutler"))):
        # its walk would list the repository's own files (butler.yaml, the registry, the datastore) as
        # cold files without rows, and cold copies would land among them
        raise SkybutlerError(f"the cold tier {tier.uri} holds the repository or its datastore (or is inside "
                             "its .skybutler directory): put it in a directory of its own "
                             "(retention.cold_tier.uri in butler.yaml)")
    return tier


def read_hot(butler: Butler, artifact: StoredArtifact) -> bytes:
    """The bytes of a hot artifact, checked against its recorded checksum."""
    datastore = butler.datastore
    try:
        data = datastore.fs.cat_file(datastore.full_path(artifact.path))
    except FileNotFoundError:
        raise DatastoreError(f"artifact {datastore.full_path(artifact.path)} is missing from the datastore") from None
    if not verify(data, artifact.checksum):
        raise ChecksumMismatchError(f"{artifact.path} does not match its recorded checksum {artifact.checksum}")
    return data


def locks(butler: Butler) -> DatasetLocks:
    """The repository's dataset locks (held while a dataset's file is moved, staged or re-created)."""
    return DatasetLocks(butler.root)


def busy_notice(on_wait: WaitCallback | None, what: str, seconds: float = 0.0) -> Callable[[], None]:
    """What a writer that must wait for another one's lock tells the user."""
    return lambda: (on_wait or log_wait)(f"another writer is {what}: waiting for it to finish", seconds)


def write_hot(butler: Butler, artifact: StoredArtifact, data: bytes, accept: Callable[[bytes], bool] | None = None,
              staged: str | None = None) -> StoredArtifact:
    """Publish bytes at an artifact's path in the hot datastore (atomic, never overwriting; staged
    under ``staged``, the name the journal recorded); a file left there by an interrupted writer of
    the same dataset is kept if it has the recorded checksum (or if ``accept`` takes it).  Returns
    the artifact as placed."""
    def same(existing: bytes) -> bool:
        return (artifact.checksum is not None and verify(existing, artifact.checksum)) or \
            (accept is not None and accept(existing))

    return butler.datastore.write_or_adopt(artifact, data, same, staged)


class RetentionJournal:
    """The write journal of one retention write (staging, recompute write-back, cold move, purge).

    Like every write that touches the datastore, a retention write journals its files before it
    touches any, and holds its datasets' locks until its journal ends (so whoever replays a dead
    writer's journal takes the same locks, and reads settled states).  Intents: ``restore`` (a
    file written back at a dataset's hot path: kept if the dataset is stored there, else deleted
    when it holds these bytes), ``remove`` (a hot file about to be deleted after its rows went:
    kept while a row points to it, else deleted when it has the recorded checksum) and
    ``cold-copy`` (a file in the cold tier: kept while the dataset is cold there, else deleted
    when it has the recorded checksum).  See :func:`settle_cold_copy` and
    :mod:`skybutler.datastore.rollback`.
    """

    def __init__(self, butler: Butler, tier: ColdTier | None = None):
        self.butler = butler
        self.tier = tier
        self.token = uuid.uuid4().hex
        self.intents: list[Intent] = []
        self.journal: Journal | None = None

    def restore(self, dataset_id: uuid.UUID, artifact: StoredArtifact, digest: str | None) -> str | None:
        """A file with checksum ``digest`` about to be written back at ``artifact.path``; returns
        its staged name."""
        staged = self.butler.datastore.staged_name(artifact.path, self.token, len(self.intents))
        self.intents.append(Intent(str(dataset_id), artifact.path, "restore", staged=staged, checksum=digest))
        return staged

    def remove(self, dataset_id: uuid.UUID, artifact: StoredArtifact) -> None:
        """A hot file to be deleted once the dataset's row is gone."""
        if not is_external(artifact) and artifact.path:
            self.intents.append(Intent(str(dataset_id), artifact.path, "remove", checksum=artifact.checksum))

    def cold_copy(self, dataset_id: uuid.UUID, artifact: StoredArtifact) -> str | None:
        """A cold copy about to be written or deleted; returns the name to stage a new copy under."""
        staged = self.tier.staged_name(artifact.path, self.token) if self.tier is not None else None
        self.intents.append(Intent(str(dataset_id), artifact.path, "cold-copy", staged=staged,
                                   checksum=artifact.checksum))
        return staged

    def __enter__(self) -> RetentionJournal:
        self.journal = self.butler.datastore.begin_journal(self.intents, self.token, dataset_locks=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.butler.datastore.end_journal(self.journal)


def settle_cold_copy(butler: Butler, intent: Intent, state: DatasetState | None) -> list[str]:
    """Put one ``cold-copy`` intent of a dead retention writer right (its datasets' locks held):
    its staging file goes; the copy stays while the dataset is cold at that path, and otherwise
    goes if it has the recorded checksum (the dataset is stored hot again, purged, or was never
    moved); anything else stays for ``verify``."""
    if butler.config.retention.cold_tier is None:
        return []
    tier = cold_tier(butler)
    done = []
    if intent.staged and tier.local:
        try:
            os.unlink(intent.staged)
            done.append(f"removed cold staging file {intent.staged}")
        except FileNotFoundError:
            pass
    if state is not None and state.state == COLD and state.artifact is not None and \
            state.artifact.path == intent.path:
        return done
    full = tier.full_path(intent.path)
    try:
        data = tier.fs.cat_file(full)
    except FileNotFoundError:
        return done
    if intent.checksum is None or not verify(data, intent.checksum):
        return done
    tier.remove([intent.path])
    why = state.state if state is not None else "removed"
    done.append(f"removed cold copy {full} (dataset {intent.dataset_id} is {why}, not cold there)")
    return done


def move_to_cold(butler: Butler, ids: Sequence[uuid.UUID], progress: Callable[[int, int | None], None] | None = None
                 ) -> tuple[list[uuid.UUID], int]:
    """Move the hot files of datasets to the cold tier; returns (moved IDs, bytes freed in the hot
    datastore).  Datasets without a hot file, or whose file lives outside the datastore, are skipped.
    ``progress(done, total)`` is told each file copied."""
    tier = cold_tier(butler)
    with locks(butler).hold(ids, busy_notice(butler.on_wait, "staging or re-creating these datasets")):
        artifacts = butler.registry.datasets.artifacts(ids)
        refuse_shared(artifacts, "moving to the cold tier")
        todo = [(i, artifacts[i]) for i in ids if i in artifacts and not is_external(artifacts[i])]
        journal = RetentionJournal(butler, tier)
        staged = [journal.cold_copy(i, a) for i, a in todo]
        for i, a in todo:
            journal.remove(i, a)
        with journal:
            copied: list[tuple[uuid.UUID, StoredArtifact]] = []
            try:
                for (dataset_id, artifact), name in zip(todo, staged):
                    tier.write(artifact.path, read_hot(butler, artifact), name)
                    copied.append((dataset_id, artifact))
                    if progress is not None:
                        progress(len(copied), len(todo))
                butler.registry.states.set_cold(copied)
            except BaseException:
                tier.remove(a.path for _, a in copied)
                raise
            crash_point("registry-committed")
            failed = butler.datastore.remove(a for _, a in copied)
    if failed:
        log.warning("moved to the cold tier but could not delete the hot file(s): %s", ", ".join(failed))
    return [i for i, _ in copied], sum(a.size for _, a in copied)


def stage(butler: Butler, ids: Sequence[uuid.UUID], on_wait: WaitCallback | None = None
          ) -> dict[uuid.UUID, StoredArtifact]:
    """Bring cold datasets back into the hot datastore (state ``stored`` again); returns their hot
    artifacts.  The caller is told the expected wait first; IDs that are not cold are ignored
    (one staged by another process meanwhile included: this call waits for it to finish)."""
    if not any(s.state == COLD for s in butler.registry.states.get(ids).values()):
        return {}
    tier = cold_tier(butler)
    with locks(butler).hold(ids, busy_notice(on_wait, "staging these datasets", tier.latency)):
        states = butler.registry.states.get(ids)  # again: another process may have staged them
        cold = [(i, s.artifact) for i, s in states.items() if s.state == COLD and s.artifact is not None]
        if not cold:
            return {}
        size = sum(a.size for _, a in cold)
        (on_wait or log_wait)(f"staging {len(cold)} dataset(s) ({size / 1e6:.1f} MB) from the cold tier "
                              f"{tier.uri}: expected wait about {tier.latency:.1f} s", tier.latency)
        time.sleep(tier.latency)
        journal = RetentionJournal(butler, tier)
        staged = [journal.restore(i, a, a.checksum) for i, a in cold]
        for dataset_id, artifact in cold:
            journal.cold_copy(dataset_id, artifact)
        with journal:
            placed: list[tuple[uuid.UUID, StoredArtifact]] = []
            try:
                for (dataset_id, artifact), name in zip(cold, staged):
                    data = tier.read(artifact.path)
                    if not verify(data, artifact.checksum):
                        raise ChecksumMismatchError(f"cold copy of {artifact.path} does not match its recorded "
                                                    "checksum")
                    placed.append((dataset_id, write_hot(butler, artifact, data, staged=name)))
                butler.registry.states.set_stored(placed)
            except BaseException:
                butler.datastore.remove(a for _, a in placed)
                raise
            crash_point("registry-committed")
            tier.remove(a.path for _, a in cold)
    return dict(placed)


#: A cold copy being written (``ColdTier.write``): killed before its rename, it stays under this name.
_STAGING_NAME = re.compile(r"\.tmp-[0-9a-f]{32}$")


@dataclass
class ColdAudit:
    """What ``verify`` finds in the cold tier."""

    copies: int = 0
    #: Cold datasets whose cold copy is gone (their bytes are lost unless recomputable).
    missing: list[str] = field(default_factory=list)
    #: Cold copies whose size (or, when asked, checksum) is not the recorded one.
    mismatches: list[str] = field(default_factory=list)
    #: Files in the cold tier that no cold dataset points to.
    orphans: list[str] = field(default_factory=list)
    #: The orphans skybutler provably wrote and abandoned (a killed move, staging or purge): a
    #: partial copy under a staging name, or a copy of a file the registry records elsewhere
    #: (a hot file again, or a purged one) with the same checksum.  ``verify --fix`` removes these.
    leftovers: list[str] = field(default_factory=list)


def audit(butler: Butler, hot: Mapping[uuid.UUID, StoredArtifact], check_sizes: bool = False,
          check_checksums: bool = False, abandoned_age: float = 3600.0) -> ColdAudit:
    """Compare the cold datasets' records with the files in the cold tier (``hot``: every hot
    artifact, by dataset ID).  A copy still being written (a staging name younger than
    ``abandoned_age`` seconds) is left out: its move may be at work."""
    tier = cold_tier(butler)
    report = ColdAudit()
    states = butler.registry.states.in_states([COLD, *PURGED])
    cold = {i: s.artifact for i, s in states.items() if s.state == COLD and s.artifact is not None}
    report.copies = len(cold)
    for dataset_id, artifact in cold.items():
        if not tier.exists(artifact.path):
            report.missing.append(f"{tier.full_path(artifact.path)} (dataset {dataset_id})")
        elif check_sizes and tier.fs.size(tier.full_path(artifact.path)) != artifact.size:
            report.mismatches.append(f"{tier.full_path(artifact.path)} (size)")
        elif check_checksums and not verify(tier.read(artifact.path), artifact.checksum):
            report.mismatches.append(f"{tier.full_path(artifact.path)} (checksum)")
    referenced = {a.path for a in cold.values()}
    recorded = {a.path: a.checksum for a in hot.values()}
    recorded.update({s.artifact.path: s.artifact.checksum for s in states.values()
                     if s.state in PURGED and s.artifact is not None and s.artifact.path})
    for path in tier.walk():
        if path in referenced:
            continue
        staging = _STAGING_NAME.search(path)
        if staging and time.time() - tier.fs.modified(tier.full_path(path)).timestamp() < abandoned_age:
            continue
        report.orphans.append(path)
        if staging or (path in recorded and recorded[path] is not None and verify(tier.read(path), recorded[path])):
            report.leftovers.append(path)
    return report


def staging_copy(path: str) -> bool:
    """Whether a cold-tier path is a copy's temporary name (``<path>.tmp-<token>``)."""
    return bool(_STAGING_NAME.search(path))


def recorded_owners(butler: Butler) -> dict[str, uuid.UUID]:
    """The dataset each recorded path (hot, or of a purged dataset) is the file of: whose copies in
    the cold tier :func:`audit` takes for leftovers, and whose lock guards their deletion."""
    owners = {a.path: i for i, a in butler.registry.datasets.all_artifacts().items()}
    owners.update({s.artifact.path: i for i, s in butler.registry.states.in_states(list(PURGED)).items()
                   if s.artifact is not None and s.artifact.path})
    return owners


def still_cold_leftover(butler: Butler, path: str, owner: uuid.UUID) -> bool:
    """Whether the cold-tier file at ``path`` is still a copy of dataset ``owner``'s recorded file
    (hot, or purged) with its checksum, and no cold dataset's copy: the proof of :func:`audit`,
    taken again (holding ``owner``'s lock) just before the file is deleted -- a cold move of the
    dataset since the plan was made takes such a copy as its own."""
    state = butler.registry.states.get([owner]).get(owner)
    if state is None or state.state == COLD:
        return False
    artifact = state.artifact if state.state in PURGED else butler.registry.datasets.artifacts([owner]).get(owner)
    if artifact is None or artifact.path != path or artifact.checksum is None:
        return False
    if any(s.artifact is not None and s.artifact.path == path for s in butler.registry.states.in_states([COLD]).values()):
        return False
    try:
        return verify(cold_tier(butler).read(path), artifact.checksum)
    except (OSError, SkybutlerError):  # gone meanwhile, or unreadable
        return False


def restore_leftovers(butler: Butler, paths: Iterable[str]) -> list[str]:
    """Which of these hot files (no row points to them) a killed purge, cold move, staging or
    recompute write-back left: each is at the recorded path of a purged dataset, or of a cold
    one whose cold copy is there, and has the recorded checksum -- so its content is what a
    purge meant to delete, or is kept in the cold tier.  Deleting them loses nothing."""
    return sorted(leftover_owners(butler, paths))


def leftover_owners(butler: Butler, paths: Iterable[str]) -> dict[str, uuid.UUID]:
    """:func:`restore_leftovers`, each with the ID of the dataset whose recorded path it is (whose
    lock a deletion holds: a staging or write-back adopts such a file)."""
    wanted = set(paths)
    if not wanted:
        return {}
    states = butler.registry.states.in_states([COLD, *PURGED])
    tier = cold_tier(butler) if butler.config.retention.cold_tier is not None else None
    out = {}
    for dataset_id, state in states.items():
        artifact = state.artifact
        if artifact is None or artifact.path not in wanted or artifact.checksum is None:
            continue
        if state.state == COLD and (tier is None or not tier.exists(artifact.path)):
            continue  # the hot file may be the only copy left: not ours to delete
        try:
            if butler.datastore.checksum_matches(artifact):
                out[artifact.path] = dataset_id
        except (OSError, SkybutlerError):  # gone meanwhile, or unreadable
            continue
    return out


def staging_seconds(butler: Butler, n_cold: int) -> float:
    """The expected wait of one stage request (0 with nothing to stage)."""
    config = butler.config.retention.cold_tier
    return config.staging_latency if n_cold and config is not None else 0.0
