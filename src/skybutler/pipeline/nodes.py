"""The objects of a quantum graph a caller handles: a quantum and the datasets it names."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from ..dimensions import DataCoordinate


@dataclass(slots=True)
class DatasetNode:
    """One dataset of a quantum: known by ID if it exists, else by its producing quantum."""

    dataset_type: str
    data_id: DataCoordinate
    id: uuid.UUID | None = None
    producer: int | None = None


@dataclass(slots=True)
class QuantumNode:
    """One execution of one task on one data ID."""

    index: int
    task: str
    data_id: DataCoordinate
    inputs: dict[str, list[DatasetNode]] = field(default_factory=dict)
    prerequisites: dict[str, list[DatasetNode]] = field(default_factory=dict)
    outputs: dict[str, list[DatasetNode]] = field(default_factory=dict)
    #: IDs of outputs already in the output RUN, removed before the quantum writes (clobber).
    clobber: list[uuid.UUID] = field(default_factory=list)

    def dependencies(self) -> set[int]:
        """Indices of the quanta whose outputs this one reads."""
        return {n.producer for nodes in self.inputs.values() for n in nodes if n.producer is not None}

    def describe(self) -> str:
        return f"{self.task}@{dict(self.data_id.required)}"
