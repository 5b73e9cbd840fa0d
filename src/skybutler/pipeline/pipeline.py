"""Pipelines: labelled tasks with config overrides and named subsets, read from YAML,
validated as a whole (and against a repository) before any graph is built.

The YAML form::

    description: Process single visits, then summarize them.
    tasks:
      scale:
        class: mypackage.tasks.ScaleTask
        config: {factor: 3.0}
        connections: {scaled: scaledMetricsV2}   # optional: rename a connection's dataset type
      visitSum: mypackage.tasks.VisitSumTask      # a class path alone takes the default config
    subsets:
      step1: [scale]
      step2: {subset: [visitSum], description: Per-visit summaries.}

``Pipeline.from_yaml("p.yaml#step1")`` selects a subset (labels or subset names, comma-separated).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic
import yaml

from ..dimensions import DimensionUniverse
from ..errors import SkybutlerError
from .connections import Connection, PrerequisiteInput
from .errors import PipelineError
from .task import PipelineTask, TaskConfig, import_task, task_path

if TYPE_CHECKING:
    from ..butler import Butler

_TOP_KEYS = {"description", "tasks", "subsets"}
_TASK_KEYS = {"class", "config", "connections"}


def config_error(label: str, err: pydantic.ValidationError) -> PipelineError:
    """A pydantic error as one message naming the task label and each bad field."""
    parts = []
    for e in err.errors():
        name = ".".join(str(p) for p in e["loc"]) or "config"
        given = f" (got {e['input']!r})" if e.get("type") != "missing" and "input" in e else ""
        parts.append(f"field {name!r}: {e['msg']}{given}")
    return PipelineError(f"task {label!r} config: " + "; ".join(parts))


def make_config(label: str, cls: type[PipelineTask], overrides: Mapping[str, Any] | TaskConfig | None) -> TaskConfig:
    """The task's config with ``overrides`` applied and validated."""
    if isinstance(overrides, TaskConfig):
        overrides = overrides.model_dump()
    if overrides is not None and not isinstance(overrides, Mapping):
        raise PipelineError(f"task {label!r}: config must be a mapping of field to value, got {overrides!r}")
    try:
        return cls.Config.model_validate(dict(overrides or {}))
    except pydantic.ValidationError as err:
        raise config_error(label, err) from None


@dataclass
class TaskDef:
    """One labelled task of a pipeline: its class, validated config and resolved connections."""

    label: str
    task_class: type[PipelineTask]
    config: TaskConfig
    renames: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.renames) - set(self.task_class.connections())
        if unknown:
            raise PipelineError(f"task {self.label!r}: connections has unknown name(s) {', '.join(sorted(unknown))}; "
                                f"the task's connections are {', '.join(self.task_class.connections())}")

    def _resolve(self, mapping: Mapping[str, Connection]) -> dict[str, Connection]:
        return {k: c.model_copy(update={"name": self.renames[k]}) if k in self.renames else c
                for k, c in mapping.items()}

    @property
    def class_path(self) -> str:
        return task_path(self.task_class)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return self.task_class.dimensions

    @functools.cached_property
    def inputs(self) -> dict[str, Connection]:
        return self._resolve(self.task_class.inputs)

    @functools.cached_property
    def prerequisites(self) -> dict[str, PrerequisiteInput]:
        return self._resolve(self.task_class.prerequisites)  # type: ignore[return-value]

    @functools.cached_property
    def outputs(self) -> dict[str, Connection]:
        return self._resolve(self.task_class.outputs)

    @property
    def config_dataset_type(self) -> str:
        return f"{self.label}_config"

    def make_task(self) -> PipelineTask:
        return self.task_class(config=self.config.model_copy(deep=True), label=self.label)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"class": self.class_path, "config": self.config.model_dump(mode="json")}
        if self.renames:
            out["connections"] = dict(self.renames)
        return out


class Pipeline:
    """An ordered set of labelled tasks with named subsets."""

    def __init__(self, description: str = ""):
        self.description = description
        self._tasks: dict[str, TaskDef] = {}
        self.subsets: dict[str, tuple[str, ...]] = {}

    # -- construction ---------------------------------------------------------

    def add_task(self, label: str, task: type[PipelineTask] | str, config: Mapping[str, Any] | None = None,
                 connections: Mapping[str, str] | None = None) -> TaskDef:
        """Add a task by class or import path, with config overrides and dataset-type renames."""
        if not isinstance(label, str) or not label.isidentifier():
            raise PipelineError(f"task label {label!r} must be an identifier (letters, digits, underscores)")
        if label in self._tasks:
            raise PipelineError(f"task label {label!r} is used twice")
        cls = import_task(task, label) if isinstance(task, str) else task
        if not (isinstance(cls, type) and issubclass(cls, PipelineTask)):
            raise PipelineError(f"task {label!r}: {cls!r} is not a PipelineTask subclass")
        if connections is not None and not (isinstance(connections, Mapping)
                                            and all(isinstance(v, str) for v in connections.values())):
            raise PipelineError(f"task {label!r}: connections must map connection names to dataset type names")
        tdef = TaskDef(label, cls, make_config(label, cls, config), dict(connections or {}))
        self._tasks[label] = tdef
        return tdef

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "pipeline") -> Pipeline:
        """Build from the parsed YAML form (see the module docstring)."""
        if not isinstance(data, Mapping):
            raise PipelineError(f"{source}: expected a mapping with 'tasks', got {type(data).__name__}")
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise PipelineError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; allowed: "
                                f"{', '.join(sorted(_TOP_KEYS))}")
        tasks = data.get("tasks")
        if not isinstance(tasks, Mapping) or not tasks:
            raise PipelineError(f"{source}: 'tasks' must be a non-empty mapping of label to task")
        pipeline = cls(str(data.get("description") or ""))
        for label, spec in tasks.items():
            if isinstance(spec, str):
                spec = {"class": spec}
            if not isinstance(spec, Mapping) or "class" not in spec:
                raise PipelineError(f"{source}: task {label!r} needs a 'class' (an import path)")
            bad = set(spec) - _TASK_KEYS
            if bad:
                raise PipelineError(f"{source}: task {label!r} has unknown key(s) {', '.join(sorted(bad))}; "
                                    f"allowed: {', '.join(sorted(_TASK_KEYS))}")
            pipeline.add_task(str(label), str(spec["class"]), spec.get("config"), spec.get("connections"))
        for name, spec in (data.get("subsets") or {}).items():
            labels = spec.get("subset") if isinstance(spec, Mapping) else spec
            if isinstance(labels, str) or not isinstance(labels, list):
                raise PipelineError(f"{source}: subset {name!r} must be a list of task labels")
            if name in pipeline._tasks:
                raise PipelineError(f"{source}: subset {name!r} has the name of a task label")
            pipeline.subsets[str(name)] = tuple(str(x) for x in labels)
        pipeline._expand_labels(list(pipeline.subsets))  # every subset names known labels
        return pipeline

    @classmethod
    def from_yaml(cls, source: str | Path) -> Pipeline:
        """Read a pipeline file; ``FILE#a,b`` keeps only those labels or subsets."""
        text = str(source)
        path, _, selection = text.partition("#")
        try:
            with open(path) as stream:
                data = yaml.safe_load(stream)
        except OSError as err:
            raise PipelineError(f"cannot read pipeline {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise PipelineError(f"pipeline {path} is not valid YAML: {err}") from None
        pipeline = cls.from_dict(data, source=path)
        return pipeline.subset(selection.split(",")) if selection else pipeline

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"description": self.description,
                               "tasks": {label: t.to_dict() for label, t in self._tasks.items()}}
        if self.subsets:
            out["subsets"] = {k: list(v) for k, v in self.subsets.items()}
        return out

    def _expand_labels(self, names: Iterable[str]) -> list[str]:
        labels: list[str] = []
        for name in names:
            name = name.strip()
            if name in self._tasks:
                labels.append(name)
            elif name in self.subsets:
                for label in self.subsets[name]:
                    if label not in self._tasks:
                        raise PipelineError(f"subset {name!r} names unknown task label {label!r}")
                    labels.append(label)
            else:
                raise PipelineError(f"{name!r} is neither a task label nor a subset; labels: "
                                    f"{', '.join(self._tasks)}; subsets: {', '.join(self.subsets) or 'none'}")
        return list(dict.fromkeys(labels))

    def subset(self, names: Iterable[str]) -> Pipeline:
        """A pipeline of the named labels and subsets only."""
        keep = set(self._expand_labels(names))
        out = Pipeline(self.description)
        out._tasks = {k: v for k, v in self._tasks.items() if k in keep}
        out.subsets = {k: v for k, v in self.subsets.items() if set(v) <= keep}
        return out

    # -- structure ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tasks)

    def __getitem__(self, label: str) -> TaskDef:
        try:
            return self._tasks[label]
        except KeyError:
            raise PipelineError(f"no task labelled {label!r}; labels: {', '.join(self._tasks)}") from None

    @property
    def labels(self) -> list[str]:
        return list(self._tasks)

    def producers(self) -> dict[str, str]:
        """Dataset type name -> label of the task that writes it (refuses two writers)."""
        out: dict[str, str] = {}
        for tdef in self._tasks.values():
            for conn_name, conn in {**tdef.outputs}.items():
                if conn.name in out:
                    raise PipelineError(f"dataset type {conn.name!r} is produced by both task {out[conn.name]!r} "
                                        f"and task {tdef.label!r} (connection {conn_name!r})")
                out[conn.name] = tdef.label
        return out

    def sorted_tasks(self) -> list[TaskDef]:
        """Tasks so that every producer comes before its consumers; a cycle is an error."""
        producers = self.producers()
        deps = {t.label: {producers[c.name] for c in t.inputs.values() if c.name in producers}
                for t in self._tasks.values()}
        ordered: list[str] = []
        state: dict[str, int] = {}

        def visit(label: str, path: tuple[str, ...]) -> None:
            if state.get(label) == 2:
                return
            if state.get(label) == 1:
                cycle = path[path.index(label):] + (label,)
                raise PipelineError(f"the pipeline has a cycle: {' -> '.join(cycle)}")
            state[label] = 1
            for dep in sorted(deps[label], key=self.labels.index):
                visit(dep, path + (label,))
            state[label] = 2
            ordered.append(label)

        for label in self._tasks:
            visit(label, ())
        return [self._tasks[label] for label in ordered]

    # -- validation -----------------------------------------------------------

    def validate(self, universe: DimensionUniverse | None = None, butler: Butler | None = None) -> list[TaskDef]:
        """Check the pipeline as a whole (and against a repository when given); returns the
        tasks in execution order.  Raises :class:`PipelineError` naming task and connection."""
        universe = universe or (butler.universe if butler is not None else DimensionUniverse.default())
        ordered = self.sorted_tasks()
        producers = self.producers()
        definitions: dict[str, tuple[str, Connection]] = {}
        for tdef in ordered:
            qgroup = _group(universe, tdef.dimensions, f"task {tdef.label!r} quantum dimensions")
            for kind, mapping in (("input", tdef.inputs), ("prerequisite", tdef.prerequisites),
                                  ("output", tdef.outputs)):
                for cname, conn in mapping.items():
                    where = f"task {tdef.label!r} {kind} {cname!r} ({conn.name})"
                    cgroup = _group(universe, conn.dimensions, where)
                    if not conn.multiple and not set(cgroup.required) <= set(qgroup.names):
                        raise PipelineError(
                            f"{where}: dimensions {cgroup} are not within the quantum dimensions {qgroup} of the "
                            "task; declare multiple=True to take or make several datasets per quantum")
                    _check_same(definitions, conn, where, universe)
                    if kind == "prerequisite":
                        if conn.name in producers:
                            raise PipelineError(f"{where}: a prerequisite must already exist, but task "
                                                f"{producers[conn.name]!r} produces it; make it a plain input")
                        if conn.lookup == "timespan" and not ({"visit", "exposure"} & set(qgroup.names)):
                            raise PipelineError(f"{where}: a calibration is looked up by observation time, but the "
                                                f"quantum dimensions {qgroup} have no visit or exposure")
        if butler is not None:
            self._check_repository(butler, producers, definitions)
        return ordered

    def _check_repository(self, butler: Butler, producers: dict[str, str],
                          definitions: dict[str, tuple[str, Connection]]) -> None:
        registered = {d.name: d for d in butler.query_dataset_types()}
        for name, (where, conn) in definitions.items():
            found = registered.get(name)
            if found is None:
                if name not in producers:
                    raise PipelineError(f"{where}: no task of the pipeline produces {name!r} and it is not a "
                                        "registered dataset type of the repository")
                continue
            if set(butler.universe.group(found.dimensions).required) != \
                    set(butler.universe.group(conn.dimensions).required):
                raise PipelineError(f"{where}: declared with dimensions {tuple(conn.dimensions)}, but the repository "
                                    f"registers {name!r} with dimensions {found.dimensions}")
            if found.storage_class != conn.storage_class:
                raise PipelineError(f"{where}: declared with storage class {conn.storage_class}, but the repository "
                                    f"registers {name!r} as {found.storage_class}")


def _group(universe: DimensionUniverse, dims: Iterable[str], where: str):
    try:
        return universe.group(dims)
    except SkybutlerError as err:
        raise PipelineError(f"{where}: {err}") from None


def _check_same(seen: dict[str, tuple[str, Connection]], conn: Connection, where: str,
                universe: DimensionUniverse) -> None:
    """Every connection naming one dataset type must agree on its dimensions and storage class."""
    if conn.name not in seen:
        seen[conn.name] = (where, conn)
        return
    first_where, first = seen[conn.name]
    if universe.group(first.dimensions) != universe.group(conn.dimensions):
        raise PipelineError(f"{where}: dimensions {tuple(conn.dimensions)} differ from {tuple(first.dimensions)} "
                            f"declared by {first_where}")
    if first.storage_class != conn.storage_class:
        raise PipelineError(f"{where}: storage class {conn.storage_class} differs from {first.storage_class} "
                            f"declared by {first_where}")
