"""The errors of pipelines, quantum graphs and their execution."""

from __future__ import annotations

from ..errors import SkybutlerError


class PipelineError(SkybutlerError):
    """A task class, pipeline YAML, task config or quantum graph is invalid; the message
    names the task label and, where there is one, the connection or config field."""


class QuantumGraphError(PipelineError):
    """A quantum graph cannot be built (or loaded) as asked: e.g. outputs would be clobbered."""


class ExecutionError(PipelineError):
    """Running a quantum graph could not start or was refused (failed quanta are recorded, not raised)."""
