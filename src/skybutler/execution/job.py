"""What every worker needs to run quanta of one graph, as picklable data (and a class, by its name)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..pipeline.graph import DatasetNode, QuantumGraph, QuantumNode


@dataclass(frozen=True)
class JobSpec:
    """The repository (a path or a server's URL), output RUN and tasks of one execution (sent
    once to each worker)."""

    repo: str
    run: str
    input_collections: tuple[str, ...]
    pipeline: dict[str, Any]
    task_dimensions: dict[str, tuple[str, ...]]
    dataset_types: dict[str, tuple[str, ...]]
    #: What a worker opens its own butler with, ``opener(repo, collections=..., token=...)``: the
    #: class of the butler that made the job (pickled by its name), so that this part need not import it.
    opener: Callable[..., Any] = field(repr=False)
    config_ids: dict[str, str] = field(default_factory=dict)
    #: Lines of each quantum's log kept in its provenance record.
    log_lines: int = 200
    #: The bearer token of a repository given as a server URL (the workers write as its user).
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_graph(cls, butler: Any, graph: QuantumGraph, config_ids: dict[str, uuid.UUID]) -> JobSpec:
        """The job of running ``graph`` with workers opening ``butler``'s repository as it did."""
        return cls(repo=str(butler.root), token=butler.token, opener=type(butler), run=graph.output_run,
                   input_collections=tuple(graph.input_collections),
                   pipeline=graph.pipeline.to_dict(),
                   task_dimensions={t.label: tuple(t.dimensions) for t in graph.pipeline.sorted_tasks()},
                   dataset_types={n: tuple(d.dimensions) for n, d in graph.dataset_types.items()},
                   config_ids={k: str(v) for k, v in config_ids.items()})


def _nodes(nodes: dict[str, list[DatasetNode]]) -> dict[str, list[list[Any]]]:
    return {k: [[n.dataset_type, list(n.data_id.required_values), None if n.id is None else str(n.id)]
                for n in v] for k, v in nodes.items()}


def quantum_payload(q: QuantumNode) -> dict[str, Any]:
    """A quantum as small plain data for a worker (data IDs as value lists)."""
    return {"index": q.index, "task": q.task, "data_id": list(q.data_id.required_values),
            "inputs": _nodes(q.inputs), "prerequisites": _nodes(q.prerequisites), "outputs": _nodes(q.outputs),
            "clobber": [str(i) for i in q.clobber]}
