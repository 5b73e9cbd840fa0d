"""Cameras in a repository: registering a description, and finding it again later.

A camera is registered once per repository, by :func:`register_instrument` (from
``Butler.register_instrument`` / ``skybutler register-instrument``, or by
``ingest-raws`` the first time it meets a camera skybutler ships a description of).
Registration writes the camera's own dimension records (instrument, bands,
physical filters, detectors) and stores the description itself as a
``camera_description`` dataset (``Dict``, dimension ``instrument``) in the RUN
``<instrument>/instrument`` (and, after each :func:`update_instrument`, the newer one in
``<instrument>/instrument/v2``, ...), so the repository keeps the camera it was given: a
later ingest, visit definition or another process reads the description from the
repository (:func:`load_repository_instruments`), not from whatever the installed
skybutler ships, and the description travels with an export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import (
    ConflictingDefinitionError,
    DatasetConflictError,
    DimensionRecordError,
)
from ..instruments import Instrument, UnknownInstrumentError, get_instrument
from ..instruments import register_instrument as register_in_process
from ..instruments.instrument import camera_name, shipped_instrument

__all__ = ["DESCRIPTION_TYPE", "description_run", "instrument_names", "load_repository_instruments",
           "register_camera", "register_instrument", "update_camera", "update_instrument"]

#: The dataset type holding each registered camera's description.
DESCRIPTION_TYPE = "camera_description"


def description_run(name: str) -> str:
    """The RUN holding the description of camera ``name``."""
    return f"{name}/instrument"


def _as_instrument(camera: Instrument | str | Path, shipped: bool = False) -> Instrument:
    """A description from an object, a YAML file, or the name of a known camera (``shipped``: the
    description skybutler ships, not one this process took from a repository since)."""
    if isinstance(camera, Instrument):
        return camera
    path = Path(camera)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        return Instrument.from_yaml(path, register=False)
    name = camera_name(str(camera))
    return shipped_instrument(name) if shipped else get_instrument(name)


def register_instrument(butler, camera: Instrument | str | Path) -> tuple[Instrument, bool]:
    """Register a camera in the repository; returns (its description, whether it was new).

    ``camera`` is an :class:`Instrument`, a YAML file describing one, or the name of a
    camera skybutler knows.  Registering the same description again is a no-op;
    a different description of a camera already registered is refused
    (:class:`ConflictingDefinitionError`), and nothing is written.  Through ``Butler`` (through a
    server, the server registers it, with :func:`register_camera`).
    """
    return butler._register_camera(_as_instrument(camera), False)


def register_camera(butler, instrument: Instrument) -> tuple[Instrument, bool]:
    """:func:`register_instrument` in the repository ``butler`` opened itself."""
    description = instrument.to_dict()
    stored = _stored_description(butler, instrument.name)
    if stored is not None:
        # Read back through the model, so a description stored by an older skybutler (without
        # fields added since, which take their defaults) compares equal to the same camera today.
        stored = Instrument.from_dict(stored, source=f"{DESCRIPTION_TYPE} of {instrument.name}").to_dict()
        if stored != description:
            changed = sorted(k for k in set(stored) | set(description) if stored.get(k) != description.get(k))
            raise ConflictingDefinitionError(
                f"camera {instrument.name!r} is registered with a different description "
                f"(differs in: {', '.join(changed)}; to replace it: register-instrument --update)")
        register_in_process(instrument)
        return instrument, False
    records = instrument.dimension_records()
    # The type (and its tables) first, outside the transaction: on PostgreSQL, creating a table
    # whose foreign key points at ``instrument`` after inserting an instrument row deadlocks with
    # a second registration waiting on that row.
    butler.register_dataset_type(DESCRIPTION_TYPE, ["instrument"], "Dict")
    try:
        with butler.transaction():
            for element in ("instrument", "band", "physical_filter", "detector"):
                _sync_all(butler, element, records[element])
            butler.put(description, DESCRIPTION_TYPE, instrument=instrument.name,
                       run=description_run(instrument.name))
    except DatasetConflictError:
        # Another process registered the camera meanwhile (two first ingests at once): this
        # one's writes are rolled back, and the description it stored is compared as above.
        if _stored_description(butler, instrument.name) is None:
            raise
        return register_camera(butler, instrument)
    register_in_process(instrument)
    return instrument, True


def _sync_all(butler, element: str, records: list[dict[str, Any]]) -> None:
    """Sync an element's records: all inserted in one statement (a new camera's hundreds of detectors),
    or, if some exist already, synced one by one (an identical one is kept, a different one refused)."""
    try:
        butler.insert_records(element, records)
    except DimensionRecordError:  # the failed statement is undone alone (a savepoint); the transaction goes on
        for record in records:
            butler.sync_record(element, record)


def update_instrument(butler, camera: Instrument | str | Path) -> tuple[Instrument, list[str]]:
    """Replace the stored description of a registered camera, and its records, by ``camera``; returns
    (the description, the fields that changed: empty if none did).  A camera not yet registered is
    registered.

    One transaction: the instrument, band, physical-filter and detector records are updated and
    the description dataset replaced, or nothing is.  A change that would contradict what the
    repository holds is refused (:class:`ConflictingDefinitionError`, naming each): a detector or
    physical filter removed, a physical filter that exposures or visits use moved to another band,
    ``visit_max``/``exposure_max`` below an ID in use.  Visits defined earlier keep their regions.
    Through ``Butler``, as :func:`register_instrument`.
    """
    return butler._register_camera(_as_instrument(camera, shipped=True), True)


def update_camera(butler, instrument: Instrument) -> tuple[Instrument, list[str]]:
    """:func:`update_instrument` in the repository ``butler`` opened itself."""
    stored = _stored_description(butler, instrument.name)
    if stored is None:
        instrument, _ = register_camera(butler, instrument)
        return instrument, ["registered"]
    old = Instrument.from_dict(stored, source=f"{DESCRIPTION_TYPE} of {instrument.name}")
    before, after = old.to_dict(), instrument.to_dict()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if not changed:
        register_in_process(instrument)
        return instrument, []
    problems = _contradictions(butler, old, instrument)
    if problems:
        raise ConflictingDefinitionError(f"cannot update camera {instrument.name!r}: {'; '.join(problems)} "
                                         "(nothing was changed)")
    records = instrument.dimension_records()
    version = len(_description_runs(butler, instrument.name)) + 1
    with butler.transaction():
        for element in ("instrument", "band", "physical_filter", "detector"):
            for record in records[element]:
                butler.sync_record(element, record, update=True)
        butler.put(after, DESCRIPTION_TYPE, instrument=instrument.name,
                   run=f"{description_run(instrument.name)}/v{version}")
    register_in_process(instrument)
    return instrument, changed


def _description_runs(butler, name: str) -> list[str]:
    """The RUNs holding camera ``name``'s descriptions, oldest first: the one registered, then one
    per update (``<name>/instrument/v2``, ``v3``, ...; earlier descriptions are kept, as history)."""
    first = description_run(name)
    if not butler.collections.exists(first):
        return []
    prefix = f"{first}/v"
    updates = [c.name for c in butler.collections.query(f"{prefix}*") if c.name[len(prefix):].isdigit()]
    return [first, *sorted(updates, key=lambda n: int(n[len(prefix):]))]


def _contradictions(butler, old: Instrument, new: Instrument) -> list[str]:
    """What replacing ``old`` by ``new`` would contradict in the repository, one sentence each."""
    problems = []
    gone = sorted({d.id for d in old.detectors} - {d.id for d in new.detectors})
    if gone:
        names = ", ".join(f"{i} ({old.detector(i).full_name})" for i in gone)
        problems.append(f"it removes detector(s) {names}, which the repository has records of")
    dropped = sorted(set(old.filters) - set(new.filters))
    if dropped:
        problems.append(f"it removes physical filter(s) {', '.join(dropped)}, which the repository has records of")
    moved = {f: (b, new.filters[f]) for f, b in old.filters.items() if f in new.filters and new.filters[f] != b}
    in_use: dict[str, int] = {}
    max_ids = {"exposure": 0, "visit": 0}
    for element in ("exposure", "visit"):
        for record in butler.registry.dimensions.fetch_all(element):
            if record["instrument"] != old.name:
                continue
            max_ids[element] = max(max_ids[element], record[element])
            if record["physical_filter"] in moved:
                in_use[record["physical_filter"]] = in_use.get(record["physical_filter"], 0) + 1
    for name, count in sorted(in_use.items()):
        problems.append(f"it moves physical filter {name} from band {moved[name][0]!r} to {moved[name][1]!r}, "
                        f"and {count} exposure/visit record(s) use it")
    for element, bound in (("exposure", new.exposure_max), ("visit", new.visit_max)):
        if max_ids[element] and max_ids[element] >= bound:
            problems.append(f"its {element}_max {bound} is not above {element} {max_ids[element]}, "
                            "which the repository holds")
    return problems


def load_repository_instruments(butler) -> list[Instrument]:
    """The descriptions stored in the repository, registered in this process (they take
    precedence over skybutler's own of the same name)."""
    found = []
    for name in sorted(instrument_names(butler)):
        stored = _stored_description(butler, name)
        if stored is None:
            continue
        try:
            current = get_instrument(name)
        except UnknownInstrumentError:
            current = None
        described = Instrument.from_dict(stored, source=f"{DESCRIPTION_TYPE} of {name}")
        if current is not None and current.to_dict() == described.to_dict():
            found.append(current)  # the same description (SimCam's own class, say): keep it
        else:
            found.append(register_in_process(described))
    return found


def instrument_names(butler) -> set[str]:
    """The names of the cameras the repository has records of."""
    return {r["instrument"] for r in butler.query_dimension_records("instrument")}


def _stored_description(butler, name: str) -> dict[str, Any] | None:
    if not any(d.name == DESCRIPTION_TYPE for d in butler.query_dataset_types(DESCRIPTION_TYPE)):
        return None
    runs = _description_runs(butler, name)
    if not runs:
        return None
    ref = butler.find_dataset(DESCRIPTION_TYPE, instrument=name, collections=runs[::-1])  # the newest
    return None if ref is None else dict(butler.get(ref))
