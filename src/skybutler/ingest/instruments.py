"""Cameras in a repository: registering a description, and finding it again later.

A camera is registered once per repository, by :func:`register_instrument` (from
``Butler.register_instrument`` / ``skybutler register-instrument``, or by
``ingest-raws`` the first time it meets a camera skybutler ships a description of).
Registration writes the camera's own dimension records (instrument, bands,
physical filters, detectors) and stores the description itself as a
``camera_description`` dataset (``Dict``, dimension ``instrument``) in the RUN
``<instrument>/instrument``, so the repository keeps the camera it was given: a
later ingest, visit definition or another process reads the description from the
repository (:func:`load_repository_instruments`), not from whatever the installed
skybutler ships, and the description travels with an export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConflictingDefinitionError, DatasetConflictError
from ..instruments import Instrument, UnknownInstrumentError, get_instrument
from ..instruments import register_instrument as register_in_process

__all__ = ["DESCRIPTION_TYPE", "description_run", "load_repository_instruments", "register_instrument"]

#: The dataset type holding each registered camera's description.
DESCRIPTION_TYPE = "camera_description"


def description_run(name: str) -> str:
    """The RUN holding the description of camera ``name``."""
    return f"{name}/instrument"


def _as_instrument(camera: Instrument | str | Path) -> Instrument:
    """A description from an object, a YAML file, or the name of a known camera."""
    if isinstance(camera, Instrument):
        return camera
    path = Path(camera)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        return Instrument.from_yaml(path, register=False)
    return get_instrument(str(camera))


def register_instrument(butler, camera: Instrument | str | Path) -> tuple[Instrument, bool]:
    """Register a camera in the repository; returns (its description, whether it was new).

    ``camera`` is an :class:`Instrument`, a YAML file describing one, or the name of a
    camera skybutler knows.  Registering the same description again is a no-op;
    a different description of a camera already registered is refused
    (:class:`ConflictingDefinitionError`), and nothing is written.
    """
    instrument = _as_instrument(camera)
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
                f"(differs in: {', '.join(changed)})")
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
                for record in records[element]:
                    butler.sync_record(element, record)
            butler.put(description, DESCRIPTION_TYPE, instrument=instrument.name,
                       run=description_run(instrument.name))
    except DatasetConflictError:
        # Another process registered the camera meanwhile (two first ingests at once): this
        # one's writes are rolled back, and the description it stored is compared as above.
        if _stored_description(butler, instrument.name) is None:
            raise
        return register_instrument(butler, instrument)
    register_in_process(instrument)
    return instrument, True


def load_repository_instruments(butler) -> list[Instrument]:
    """The descriptions stored in the repository, registered in this process (they take
    precedence over skybutler's own of the same name)."""
    found = []
    for record in butler.registry.dimensions.fetch_all("instrument"):
        name = record["instrument"]
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


def _stored_description(butler, name: str) -> dict[str, Any] | None:
    if not any(d.name == DESCRIPTION_TYPE for d in butler.query_dataset_types(DESCRIPTION_TYPE)):
        return None
    run = description_run(name)
    if not butler.collections.exists(run):
        return None
    ref = butler.find_dataset(DESCRIPTION_TYPE, instrument=name, collections=[run])
    return None if ref is None else dict(butler.get(ref))
