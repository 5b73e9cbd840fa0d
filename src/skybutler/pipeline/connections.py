"""Connections: the datasets a task reads and writes, declared on the task class.

A connection names a dataset type with its storage class and dimensions, and says
whether the task takes one dataset or many (``multiple``).  A single connection's
data ID must be fixed by the quantum's data ID (its dimensions lie within the
quantum's); a ``multiple`` one may have more dimensions (a gather of per-detector
inputs into a per-visit quantum, or per-patch inputs of a coadd found by a spatial
join) and the task gets or returns a ``dict`` keyed by data ID.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator


class Connection(BaseModel):
    """One dataset a task reads or writes."""

    model_config = ConfigDict(frozen=True)

    name: str
    storage_class: str
    dimensions: tuple[str, ...] = ()
    multiple: bool = False
    doc: str = ""

    @field_validator("dimensions", mode="before")
    @classmethod
    def _tuple(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value


class Input(Connection):
    """A dataset the task reads: produced by an earlier task or already in the input collections."""


class Output(Connection):
    """A dataset the task writes into the output RUN."""


class PrerequisiteInput(Connection):
    """A dataset that must already exist in the input collections (never produced by the
    pipeline), such as a calibration: with ``is_calibration`` it is found in CALIBRATION
    collections by the observation time (visit or exposure timespan) of the quantum."""

    is_calibration: bool = False
    lookup: Literal["data_id", "timespan"] = "data_id"

    def model_post_init(self, _context: object) -> None:
        if self.is_calibration and self.lookup != "timespan":
            object.__setattr__(self, "lookup", "timespan")
