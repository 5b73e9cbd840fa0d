"""Recompute on demand: re-create purged datasets by replaying the quanta that made them.

The steps, each finished before the next starts, so a failure leaves nothing half-written:

1. plan: walk the recorded provenance from each target down to datasets that are there
   (stored, or cold: to be staged); every purged (or removed) dataset on the way needs
   the quantum that wrote it replayed.  A dataset with no recorded producer, or purged
   as ``purged-lost``, stops the walk with an error naming the whole chain;
2. check: every task class still imports, the installed task code is the version
   recorded (else refuse, or go on and record a note: ``on_drift``), every calibration a
   quantum read is still the one certified for its observation time (else refuse, go on
   with the recorded one and record a note, or use the one certified today:
   ``on_calibration``), and the expected wait (recorded quantum run times plus the cold
   tier's staging latency) is reported (the checks themselves: :mod:`.recompute_checks`);
3. stage the cold inputs back, then check every recorded config still validates;
4. replay the quanta in order, in memory, with the same task class, recorded config and
   input dataset IDs (calibrations included); verify each re-created dataset: the same
   bytes (checksum of the purged file) for a deterministic task, or -- for a task class
   declaring ``deterministic = False`` -- its extracted metadata within the task's
   ``recompute_tolerance`` (``{"rtol": ..., "atol": ...}``, default rtol 1e-6).  What was
   remade with today's calibration (and everything made from it in the same recompute)
   differs from the original by design, and is not compared with it;
5. store them back (unless asked not to) in one transaction, at their recorded IDs and
   paths, state ``stored`` with a note saying when (and with what drift, or which
   calibration) they were remade.  A quantum replayed with today's calibration has its
   recorded input link pointed at it in the same transaction, so the provenance of the
   stored file says what it was made from (the note keeps the recorded one).

Steps 3-5 hold the locks of every dataset they stage or re-create (:mod:`..datastore.locks`)
and plan again once they have them: of two readers recomputing one dataset at once, the
first does the work and the second waits, then finds it stored.  A writer killed between
publishing a file and committing its row leaves the file at the dataset's recorded path;
the next write-back adopts it if it passes the same verification as a fresh result (the
recorded checksum, or the task's tolerance), instead of refusing to overwrite it.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..datastore.checksums import checksum, verify
from ..errors import (
    CalibrationChangedError,
    RecomputeError,
    RecomputeVerificationError,
    SkybutlerError,
    SoftwareDriftError,
)
from ..faults import crash_point
from ..formats import get_formatter, get_storage_class
from ..models import StoredArtifact
from ..pipeline.task import import_task
from ..provenance.recompute import replay
from ..registry.dataset_state_store import COLD, PURGED, DatasetState
from ..registry.quantum_store import DatasetLink, QuantumRecord
from .cold_tier import RetentionJournal, WaitCallback, busy_notice, locks, log_wait, stage, staging_seconds, write_hot
from .recompute_checks import calibration_changes, check_configs, dataset_label, drift, task_classes

if TYPE_CHECKING:
    from ..butler import Butler

DriftPolicy = Literal["refuse", "note"]
CalibrationPolicy = Literal["refuse", "recorded", "today"]


@dataclass
class RecomputeOptions:
    """How to recompute: store the results back (else only return them) and what to do about
    software drift (``refuse``: raise; ``note``: go on, recording the difference)."""

    store: bool = True
    on_drift: DriftPolicy = "refuse"
    #: A calibration decertified or superseded since the quantum ran: ``refuse``, go on with the
    #: ``recorded`` one (noted), or use the one certified ``today`` (noted, and the quantum's
    #: provenance updated; the result is not compared with the original, which it differs from).
    on_calibration: CalibrationPolicy = "refuse"

    def __post_init__(self) -> None:
        if self.on_drift not in ("refuse", "note"):
            raise SkybutlerError(f"on_drift must be 'refuse' or 'note', not {self.on_drift!r}")
        if self.on_calibration not in ("refuse", "recorded", "today"):
            raise SkybutlerError(f"on_calibration must be 'refuse', 'recorded' or 'today', not "
                                 f"{self.on_calibration!r}")

    @classmethod
    def of(cls, value: bool | RecomputeOptions | None) -> RecomputeOptions | None:
        if value is None or value is False:
            return None
        return cls() if value is True else value


@dataclass
class RecomputeEstimate:
    """What recomputing some datasets takes: quanta to replay (inputs first), cold datasets to
    stage, the expected wait, and any software drift found."""

    targets: list[uuid.UUID]
    quanta: list[QuantumRecord] = field(default_factory=list)
    #: Datasets each quantum's replay re-creates (purged or removed ones), by dataset ID.
    needed: dict[uuid.UUID, QuantumRecord] = field(default_factory=dict)
    #: Cold datasets to stage back first, with their cold copies.
    stage: dict[uuid.UUID, StoredArtifact] = field(default_factory=dict)
    staging_seconds: float = 0.0
    drift: list[str] = field(default_factory=list)
    #: Calibrations the quanta read that were decertified or superseded since, in sentences.
    calibrations: list[str] = field(default_factory=list)
    #: The same, as (quantum ID, recorded dataset ID, {dataset ID certified today: its collection}).
    calibration_changes: list[tuple[uuid.UUID, uuid.UUID, dict[uuid.UUID, str]]] = field(
        default_factory=list, repr=False)
    #: With ``on_calibration='today'``: per quantum, the recorded calibration -> today's it reads.
    swaps: dict[uuid.UUID, dict[uuid.UUID, uuid.UUID]] = field(default_factory=dict, repr=False)
    #: Datasets remade from today's calibration (directly or downstream): not compared with the original.
    unverified: set[uuid.UUID] = field(default_factory=set, repr=False)
    #: Targets already stored (nothing to do for them).
    present: list[uuid.UUID] = field(default_factory=list)
    labels: dict[uuid.UUID, str] = field(default_factory=dict)
    #: States of the registered datasets to re-create (what their purged files were).
    states: dict[uuid.UUID, DatasetState] = field(default_factory=dict, repr=False)

    @property
    def replay_seconds(self) -> float:
        """Time the quanta took when they were recorded."""
        return sum(q.seconds or 0.0 for q in self.quanta)

    @property
    def expected_seconds(self) -> float:
        return self.replay_seconds + self.staging_seconds

    def describe(self) -> str:
        # Quanta counted per task, not listed one by one: a purged coadd may need hundreds.
        per_task = Counter(q.task_label for q in self.quanta)
        tasks = ", ".join(f"{n} {label}" for label, n in per_task.items())
        text = (f"{len(self.quanta)} {'quantum' if len(self.quanta) == 1 else 'quanta'} to replay"
                + (f" ({tasks})" if tasks else "") + f"; expected wait about {self.expected_seconds:.1f} s")
        if self.stage:
            text += (f" (including {self.staging_seconds:.1f} s to stage {len(self.stage)} dataset(s) "
                     "from the cold tier)")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"targets": [str(t) for t in self.targets], "present": [str(t) for t in self.present],
                "quanta": [{"task": q.task_label, "data_id": q.data_id, "quantum": str(q.quantum_id),
                            "recorded_seconds": q.seconds} for q in self.quanta],
                "recompute": [self.labels.get(i, str(i)) for i in self.needed],
                "stage": [self.labels.get(i, str(i)) for i in self.stage],
                "replay_seconds": round(self.replay_seconds, 3), "staging_seconds": self.staging_seconds,
                "expected_seconds": round(self.expected_seconds, 3), "drift": self.drift,
                "calibrations": self.calibrations}


@dataclass
class RecomputeResult:
    """Recomputed datasets: objects and formatted bytes by ID, how each was verified, notes."""

    estimate: RecomputeEstimate
    objects: dict[uuid.UUID, Any] = field(default_factory=dict)
    data: dict[uuid.UUID, tuple[str, bytes]] = field(default_factory=dict)
    verified: dict[uuid.UUID, str] = field(default_factory=dict)
    stored: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class _Planner:
    """Walks provenance from targets to what is there; see step 1 of the module docstring."""

    def __init__(self, butler: Butler):
        self.butler = butler
        self.store = butler.provenance.store
        self.estimate = RecomputeEstimate([])
        self._resolved: set[uuid.UUID] = set()
        self._done: set[uuid.UUID] = set()
        self.states: dict[uuid.UUID, DatasetState] = {}

    def label_of(self, dataset_id: uuid.UUID) -> str:
        refs = self.butler.registry.refs_by_id([dataset_id])
        if refs:
            return dataset_label(refs[0].dataset_type.name, refs[0].data_id.required, dataset_id)
        made = self.store.producers([dataset_id]).get(dataset_id)
        link = next((o for o in made.outputs if o.dataset_id == dataset_id), None) if made else None
        return dataset_label(link.dataset_type, link.data_id, dataset_id) if link else f"dataset {dataset_id}"

    def need(self, dataset_id: uuid.UUID, label: str, chain: tuple[str, ...]) -> None:
        if dataset_id in self._resolved:
            return
        registry = self.butler.registry
        state = registry.states.get([dataset_id]).get(dataset_id)
        where = " <- ".join((*chain, label))
        if state is not None and state.state not in (COLD, *PURGED) and registry.datasets.artifacts([dataset_id]):
            self._resolved.add(dataset_id)
            return
        if state is not None and state.state == COLD and state.artifact is not None:
            self.estimate.stage[dataset_id] = state.artifact
            self.estimate.labels[dataset_id] = label
            self._resolved.add(dataset_id)
            return
        quantum = self.store.producers([dataset_id]).get(dataset_id)
        if quantum is None:
            what = ("is gone from the repository" if state is None else
                    f"was purged ({state.state})" if state.state in PURGED else "has no stored file")
            raise RecomputeError(f"cannot recompute {where}: it {what} and no recorded quantum made it "
                                 "(ingested or put directly), so it cannot be recomputed")
        if quantum.status != "succeeded":
            raise RecomputeError(f"cannot recompute {where}: the quantum that made it ({quantum.quantum_id}) has "
                                 f"status {quantum.status}")
        if label in chain:
            raise RecomputeError(f"cannot recompute {where}: its recorded provenance is circular")
        if state is not None:
            self.states[dataset_id] = state
        self.estimate.needed[dataset_id] = quantum
        self.estimate.labels[dataset_id] = label
        self._resolved.add(dataset_id)
        if quantum.quantum_id in self._done:
            return
        for link in quantum.inputs:
            kind = "calibration" if link.prerequisite else "input"
            what = f"{dataset_label(link.dataset_type, link.data_id, link.dataset_id)} ({kind} {link.connection!r} of " \
                   f"task {quantum.task_label!r})"
            if link.dataset_id is None:
                raise RecomputeError(f"cannot recompute {where}: {what} was recorded without a dataset ID")
            self.need(link.dataset_id, what, (*chain, label))
        if quantum.config_dataset_id is None:
            raise RecomputeError(f"cannot recompute {where}: task {quantum.task_label!r} has no recorded config")
        self.need(quantum.config_dataset_id, f"config {quantum.config_dataset_id} of task {quantum.task_label!r}",
                  (*chain, label))
        self._done.add(quantum.quantum_id)
        self.estimate.quanta.append(quantum)


def estimate(butler: Butler, ids: Iterable[uuid.UUID]) -> RecomputeEstimate:
    """Plan the recompute of datasets (steps 1-2 without side effects): raises
    :class:`RecomputeError` naming the missing link when one cannot be recomputed."""
    planner = _Planner(butler)
    targets = list(dict.fromkeys(ids))
    planner.estimate.targets = targets
    for target in targets:
        planner.need(target, planner.label_of(target), ())
        if target not in planner.estimate.needed and target not in planner.estimate.stage:
            planner.estimate.present.append(target)
    est = planner.estimate
    est.states = planner.states
    est.staging_seconds = staging_seconds(butler, len(est.stage))
    classes = task_classes(est)
    est.drift = [d for q in est.quanta if (d := drift(butler, q, classes[q.quantum_id])) is not None]
    changes = calibration_changes(butler, est.quanta)
    est.calibrations = [sentence for sentence, _ in changes]
    est.calibration_changes = [change for _, change in changes]
    return est


def use_today(est: RecomputeEstimate) -> None:
    """Make the plan replay each quantum whose calibration changed with the one certified today
    (``on_calibration='today'``), and mark what that remakes, directly or downstream, as not
    comparable with the original.  Refused, naming it, where nothing is certified today (a
    decertified calibration) or several CALIBRATION collections certify different ones."""
    for (quantum_id, recorded, today), sentence in zip(est.calibration_changes, est.calibrations):
        if len(today) != 1:
            why = "nothing is certified for its observation time now" if not today else \
                "several CALIBRATION collections certify one for its observation time: which is today's is ambiguous"
            raise CalibrationChangedError(f"cannot recompute with today's calibration: {sentence} -- {why}; "
                                          "recompute with on_calibration='recorded' to use the recorded one")
        est.swaps.setdefault(quantum_id, {})[recorded] = next(iter(today))
    if not est.swaps:
        return
    replaced = {}
    for n, q in enumerate(est.quanta):
        swaps = est.swaps.get(q.quantum_id, {})
        if swaps:
            q = est.quanta[n] = dataclasses.replace(q, inputs=[dataclasses.replace(
                link, dataset_id=swaps.get(link.dataset_id, link.dataset_id)) for link in q.inputs])
            replaced[q.quantum_id] = q
        if swaps or any(link.dataset_id in est.unverified for link in q.inputs):
            est.unverified.update(o.dataset_id for o in q.outputs if o.dataset_id is not None)
    est.needed = {i: replaced.get(q.quantum_id, q) for i, q in est.needed.items()}


def _format(obj: Any, formatter_name: str) -> bytes:
    buffer = io.BytesIO()
    get_formatter(formatter_name).write(obj, buffer)
    return buffer.getvalue()


def _close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=atol) or (math.isnan(a) and math.isnan(b))
    return a == b


def _verify(butler: Butler, dataset_id: uuid.UUID, label: str, obj: Any, data: bytes, storage_class: Any,
            state: DatasetState | None, quantum: QuantumRecord, task_class: type) -> str:
    """How a recomputed dataset matched the purged one; raises if it does not."""
    if getattr(task_class, "deterministic", True):
        recorded = state.artifact.checksum if state is not None and state.artifact is not None else None
        if recorded is None:
            return "unverified: no checksum of the original was recorded"
        if not verify(data, recorded):
            got = checksum(data, recorded.split(":", 1)[0])
            raise RecomputeVerificationError(
                f"recomputed {label} differs from the original: checksum {got}, recorded {recorded}; task "
                f"{quantum.task_label!r} ({quantum.task_class}) is taken as deterministic -- if it is not, give "
                "its class deterministic = False and a recompute_tolerance")
        return "bit-identical"
    tolerance = {"rtol": 1e-6, "atol": 0.0, **getattr(task_class, "recompute_tolerance", {})}
    recorded_facts = butler.registry.metadata.get(dataset_id, storage_class.name) if state is not None else {}
    if not recorded_facts:
        return "unverified: the task is not deterministic and no metadata of the original was recorded"
    new = storage_class.extract_metadata(obj)
    bad = [f"{k}: {recorded_facts[k]!r} -> {new.get(k)!r}" for k in storage_class.metadata_fields
           if k in recorded_facts and not _close(recorded_facts[k], new.get(k), tolerance["rtol"], tolerance["atol"])]
    if bad:
        raise RecomputeVerificationError(f"recomputed {label} is outside the tolerance of task {quantum.task_label!r} "
                                         f"({tolerance}): {'; '.join(bad)}")
    return f"within tolerance (rtol {tolerance['rtol']:g}, atol {tolerance['atol']:g})"


def replay_and_verify(butler: Butler, estimate: RecomputeEstimate, quanta: Sequence[QuantumRecord],
                      classes: Mapping[uuid.UUID, type], result: RecomputeResult,
                      progress: Callable[[int, int], None] | None = None) -> None:
    """Replay ``quanta`` in order (in memory) and verify what each re-creates, into ``result``;
    ``progress(done, total)`` is told the quanta replayed so far."""
    states = estimate.states
    for done, q in enumerate(quanta):
        if progress is not None:
            progress(done, len(quanta))
        try:
            made = replay(butler, q, result.objects)
        except SkybutlerError as err:
            raise RecomputeError(f"replaying task {q.task_label!r} quantum {q.data_id} failed: {err}") from None
        except Exception as err:
            raise RecomputeError(f"replaying task {q.task_label!r} quantum {q.data_id} failed: "
                                 f"{type(err).__name__}: {err}") from err
        for link in q.outputs:
            if link.dataset_id not in estimate.needed:
                continue
            obj = made[link.dataset_id]
            storage_class = get_storage_class(butler.get_dataset_type(link.dataset_type).storage_class)
            state = states.get(link.dataset_id)
            formatter = state.artifact.formatter if state is not None and state.artifact is not None \
                else storage_class.default_formatter
            data = _format(storage_class.check(obj), formatter)
            label = estimate.labels.get(link.dataset_id, link.dataset_type)
            result.verified[link.dataset_id] = (
                "remade with today's calibration: not compared with the original" if link.dataset_id in
                estimate.unverified else _verify(butler, link.dataset_id, label, obj, data, storage_class, state, q,
                                                 classes[q.quantum_id]))
            result.objects[link.dataset_id] = obj
            result.data[link.dataset_id] = (formatter, data)
    if progress is not None:
        progress(len(quanta), len(quanta))


def store_back(butler: Butler, estimate: RecomputeEstimate, result: RecomputeResult, ids: Iterable[uuid.UUID],
               note: str) -> None:
    """Put recomputed datasets back, files and rows together (one transaction): a purged one at its
    recorded path with state ``stored``; a removed one registered again under its recorded ID.
    A dataset stored meanwhile (by another process) is left as it is."""
    ids = list(ids)
    present = set(butler.registry.datasets.artifacts(ids))
    ids = [i for i in ids if i not in present]
    registered = {r.id: r for r in butler.registry.refs_by_id(ids)}
    states = estimate.states
    published: list[StoredArtifact] = []
    journal = RetentionJournal(butler)
    todo = []
    for dataset_id in ids:
        ref = registered.get(dataset_id)
        if ref is None:
            continue
        formatter, data = result.data[dataset_id]
        state = states.get(dataset_id)
        path = state.artifact.path if state is not None and state.artifact is not None else \
            butler.datastore.relative_path(ref, get_formatter(formatter).extension)
        artifact = StoredArtifact(path=path, formatter=formatter, size=len(data),
                                  checksum=checksum(data, butler.datastore.checksum_algorithm))
        todo.append((dataset_id, artifact, data, state, journal.restore(dataset_id, artifact, checksum(data, "xxh3"))))
    with journal:
        try:
            with butler.transaction():
                pairs = []
                for dataset_id, artifact, data, state, staged in todo:
                    artifact = write_hot(butler, artifact, data, _acceptable(butler, estimate, dataset_id,
                                                                             artifact.formatter, state), staged)
                    published.append(artifact)
                    pairs.append((dataset_id, artifact))
                if pairs:
                    butler.registry.states.set_stored(pairs, note)
                for quantum_id, swaps in estimate.swaps.items():
                    butler.provenance.store.replace_inputs(quantum_id, swaps)
                for dataset_id in ids:
                    if dataset_id in registered:
                        continue
                    link = _output_link(estimate.needed[dataset_id], dataset_id)
                    butler.put_many(link.dataset_type, [(result.objects[dataset_id], link.data_id)],
                                    run=estimate.needed[dataset_id].run, ids=[dataset_id])
        except BaseException:
            butler.datastore.remove(published)
            raise
        crash_point("registry-committed")
    result.stored = True


def _acceptable(butler: Butler, estimate: RecomputeEstimate, dataset_id: uuid.UUID, formatter: str,
                state: DatasetState | None) -> Any:
    """Whether a file found at a dataset's path (left by an interrupted write-back) is as good as
    a fresh result: it passes the check a recomputed dataset passes (see :func:`_verify`)."""
    def accept(existing: bytes) -> bool:
        quantum = estimate.needed[dataset_id]
        task_class = import_task(quantum.task_class, quantum.task_label)
        if getattr(task_class, "deterministic", True):
            return False  # only the recorded checksum (checked by write_hot) will do
        link = _output_link(quantum, dataset_id)
        storage_class = get_storage_class(butler.get_dataset_type(link.dataset_type).storage_class)
        try:
            obj = get_formatter(formatter).read(io.BytesIO(existing))
            _verify(butler, dataset_id, link.dataset_type, obj, existing, storage_class, state, quantum, task_class)
        except Exception:  # noqa: BLE001 - unreadable or outside the tolerance: not adopted
            return False
        return True

    return accept


def _output_link(quantum: QuantumRecord, dataset_id: uuid.UUID) -> DatasetLink:
    return next(o for o in quantum.outputs if o.dataset_id == dataset_id)


def prepare(butler: Butler, ids: Iterable[uuid.UUID], options: RecomputeOptions,
            on_wait: WaitCallback | None = None, est: RecomputeEstimate | None = None
            ) -> tuple[RecomputeEstimate, dict[uuid.UUID, type], list[str]]:
    """Steps 1-3: plan (unless ``est`` is the plan), check drift, tell the expected wait, stage cold
    inputs, check configs; returns the estimate, the task classes by quantum ID and the drift notes."""
    est = est if est is not None else estimate(butler, ids)
    if est.drift and options.on_drift == "refuse":
        raise SoftwareDriftError("installed task code differs from the recorded version: " + "; ".join(est.drift)
                                 + " (recompute with on_drift='note' to go on and record it)")
    if est.calibrations and options.on_calibration == "refuse":
        raise CalibrationChangedError("a calibration the recorded quanta read has changed since: "
                                      + "; ".join(est.calibrations) + " (recompute with on_calibration='recorded' "
                                      "to re-create it with the recorded calibration, noted)")
    if est.calibrations and options.on_calibration == "today":
        use_today(est)
    if est.quanta:
        (on_wait or log_wait)(f"recomputing {len(est.needed)} dataset(s): {est.describe()}", est.expected_seconds)
    if est.stage:
        stage(butler, list(est.stage), on_wait=on_wait)
    classes = task_classes(est)
    check_configs(butler, est, classes)
    used = "today's calibration used instead" if est.swaps else "recorded calibration used"
    return est, classes, [f"software drift: {d}" for d in est.drift] + \
        [f"{used}: {c}" for c in est.calibrations]


def recompute(butler: Butler, ids: Iterable[uuid.UUID], options: RecomputeOptions | None = None,
              on_wait: WaitCallback | None = None,
              progress: Callable[[int, int], None] | None = None) -> RecomputeResult:
    """Recompute datasets (and any purged inputs they need) in this process, all or nothing, holding
    their locks; see the module docstring for the steps.  ``progress(done, total)``: quanta replayed."""
    options = options or RecomputeOptions()
    start = time.perf_counter()
    ids = list(dict.fromkeys(ids))
    wanted = set(ids)
    for _ in range(_PLAN_ATTEMPTS):
        first = estimate(butler, ids)
        wanted |= set(first.needed) | set(first.stage)
        notice = busy_notice(on_wait, "re-creating or staging some of these datasets", first.expected_seconds)
        with locks(butler).hold(wanted, notice):
            est = estimate(butler, ids)  # again: another process may have done some of it meanwhile
            if not (set(est.needed) | set(est.stage)) <= wanted:
                continue  # more to lock than planned (an input purged meanwhile): plan again
            est, classes, notes = prepare(butler, ids, options, on_wait, est)
            result = RecomputeResult(est, notes=notes)
            replay_and_verify(butler, est, est.quanta, classes, result, progress)
            if options.store and est.needed:
                store_back(butler, est, result, est.needed, recompute_note(notes))
            result.seconds = time.perf_counter() - start
            return result
    raise RecomputeError(f"the provenance of {len(ids)} dataset(s) kept changing while they were being locked "
                         "(purged or recomputed by other processes): try again")


#: How many times a recompute plans again when what it must lock grew while it waited.
_PLAN_ATTEMPTS = 3


def recompute_note(notes: Sequence[str]) -> str:
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return "; ".join([f"recomputed {when} from recorded provenance", *notes])


def read_recomputed(result: RecomputeResult, dataset_id: uuid.UUID, component: str | None,
                    parameters: Mapping[str, Any] | None) -> Any:
    """A recomputed dataset that was not stored, read from its formatted bytes (components and
    read parameters work as on a stored file)."""
    if component is None and not parameters:
        return result.objects[dataset_id]
    formatter, data = result.data[dataset_id]
    return get_formatter(formatter).read(io.BytesIO(data), component=component, parameters=parameters)
