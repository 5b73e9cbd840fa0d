"""Pipelines: tasks with declared connections and typed configs, pipelines in YAML,
and quantum graphs built from them with set-based SQL.  See :mod:`.task` for how to
write a task and :mod:`.pipeline` for the YAML form."""

from .builder import QuantumGraphBuilder
from .connections import Connection, Input, Output, PrerequisiteInput
from .errors import ExecutionError, PipelineError, QuantumGraphError
from .graph import DatasetNode, QuantumGraph, QuantumNode
from .pipeline import Pipeline, TaskDef
from .task import PipelineTask, TaskConfig, import_task

__all__ = [
    "Connection", "DatasetNode", "ExecutionError", "Input", "Output", "Pipeline", "PipelineError", "PipelineTask",
    "PrerequisiteInput", "QuantumGraph", "QuantumGraphBuilder", "QuantumGraphError", "QuantumNode", "TaskConfig",
    "TaskDef", "import_task",
]
