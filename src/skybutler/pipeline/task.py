"""The task API: a task is one short class that declares its connections, its quantum
dimensions and a typed config, and does its work in ``run`` without knowing the butler.

Example -- a per-detector task and a per-visit gather::

    from skybutler.pipeline import Input, Output, PipelineTask, TaskConfig

    class ScaleConfig(TaskConfig):
        factor: float = 2.0

    class ScaleTask(PipelineTask):
        \"\"\"Multiply every metric by a factor.\"\"\"

        dimensions = ("instrument", "visit", "detector")
        inputs = {"metrics": Input(name="metrics", storage_class="Dict",
                                   dimensions=("instrument", "visit", "detector"))}
        outputs = {"scaled": Output(name="scaledMetrics", storage_class="Dict",
                                    dimensions=("instrument", "visit", "detector"))}
        Config = ScaleConfig

        def run(self, metrics):
            return {"scaled": {k: v * self.config.factor for k, v in metrics.items()}}

    class VisitSumTask(PipelineTask):
        dimensions = ("instrument", "visit")
        inputs = {"scaled": Input(name="scaledMetrics", storage_class="Dict",
                                  dimensions=("instrument", "visit", "detector"), multiple=True)}
        outputs = {"summary": Output(name="visitSum", storage_class="Dict", dimensions=("instrument", "visit"))}

        def run(self, scaled):                 # {data ID: object} for a multiple input
            return {"summary": {"n": len(scaled)}}

``run`` gets one keyword argument per input and prerequisite connection (a ``multiple``
one as a ``dict`` from data ID to object, sorted by data ID) and returns a ``dict`` from
output connection name to the object (a ``multiple`` output: a ``dict`` from data ID --
any mapping of dimension values -- to object).  A task whose work depends on where it
runs (a coadd needs its patch's geometry) also declares a ``data_id`` parameter: it
gets the quantum's data ID.  ``self.log`` is a logger whose records
are kept in the quantum's provenance.  The config is plain data (a pydantic model with
``extra='forbid'``): pipelines override its fields in YAML, never with Python code.
"""

from __future__ import annotations

import importlib
import inspect
import keyword
import logging
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from .connections import Connection, Input, Output, PrerequisiteInput
from .errors import PipelineError


class TaskConfig(BaseModel):
    """Base of task configs: typed fields with defaults; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class PipelineTask:
    """Base class of pipeline tasks; see the module docstring for an example."""

    #: Dimensions of one quantum (one execution of ``run``).
    dimensions: ClassVar[tuple[str, ...]] = ()
    inputs: ClassVar[dict[str, Input]] = {}
    prerequisites: ClassVar[dict[str, PrerequisiteInput]] = {}
    outputs: ClassVar[dict[str, Output]] = {}
    Config: ClassVar[type[TaskConfig]] = TaskConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_task_class(cls)

    def __init__(self, config: TaskConfig | None = None, label: str | None = None):
        self.config = config if config is not None else self.Config()
        self.label = label or type(self).__name__
        self.log = logging.getLogger(f"skybutler.task.{self.label}")

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Do the work: inputs by connection name in, outputs by connection name out."""
        raise NotImplementedError(f"{type(self).__name__} does not define run()")

    @classmethod
    def takes_data_id(cls) -> bool:
        """Whether ``run`` takes the quantum's data ID (a parameter named ``data_id``)."""
        return "data_id" in inspect.signature(cls.run).parameters

    @classmethod
    def connections(cls) -> dict[str, Connection]:
        """Every connection by name: inputs, prerequisites, then outputs."""
        return {**cls.inputs, **cls.prerequisites, **cls.outputs}


def check_task_class(cls: type[PipelineTask]) -> None:
    """Refuse a task class whose declarations cannot work, naming the class and connection."""
    where = f"task class {cls.__module__}.{cls.__qualname__}"
    if isinstance(cls.dimensions, str):
        cls.dimensions = (cls.dimensions,)
    cls.dimensions = tuple(cls.dimensions)
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, TaskConfig)):
        raise PipelineError(f"{where}: Config must be a subclass of skybutler.pipeline.TaskConfig")
    seen: dict[str, str] = {}
    for kind, mapping, want in (("inputs", cls.inputs, Input), ("prerequisites", cls.prerequisites,
                                                                  PrerequisiteInput), ("outputs", cls.outputs, Output)):
        if not isinstance(mapping, dict):
            raise PipelineError(f"{where}: {kind} must be a dict of connection name to {want.__name__}")
        for name, conn in mapping.items():
            if not isinstance(conn, want):
                raise PipelineError(f"{where}: {kind}[{name!r}] must be a {want.__name__}, got {type(conn).__name__}")
            if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_") or name == "data_id":
                raise PipelineError(f"{where}: connection name {name!r} is not a usable keyword argument name")
            if name in seen:
                raise PipelineError(f"{where}: connection name {name!r} is used by both {seen[name]} and {kind}")
            seen[name] = kind
    if cls.run is not PipelineTask.run:
        params = inspect.signature(cls.run).parameters
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        wanted = list(cls.inputs) + list(cls.prerequisites)
        missing = [n for n in wanted if n not in params and not takes_all]
        if missing:
            raise PipelineError(f"{where}: run() does not accept the input connection(s) {', '.join(missing)}")


def import_task(path: str, label: str = "?") -> type[PipelineTask]:
    """The task class at a dotted import path (``package.module.ClassName``)."""
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise PipelineError(f"task {label!r}: {path!r} is not a dotted import path (package.module.Class)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        from ..extras import EXTRAS

        extra = EXTRAS.get((err.name or "").split(".")[0])
        hint = f" (pip install 'skybutler[{extra[1]}]')" if extra else ""
        raise PipelineError(f"task {label!r}: cannot import module {module_name!r}: {err}{hint}") from None
    except PipelineError as err:
        raise PipelineError(f"task {label!r}: {err}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise PipelineError(f"task {label!r}: module {module_name!r} has no attribute {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, PipelineTask)):
        raise PipelineError(f"task {label!r}: {path} is not a skybutler.pipeline.PipelineTask subclass")
    return cls


def task_path(cls: type) -> str:
    """The dotted import path of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"
