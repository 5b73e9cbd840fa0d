"""Running pipelines: choose the output RUN, build the graph, prepare the repository, execute.

Output collections: ``-o OUTPUT`` names a CHAINED collection, "the current best", and
each run writes into a new RUN ``OUTPUT/<UTC timestamp>`` that is put first in the
chain, followed by the runs before it and the input collections -- so every run stays
queryable and re-runs never overwrite anything.  ``resume`` goes on in the newest RUN
of the chain (skipping quanta whose outputs are there, re-running failed and blocked
ones); ``skip_existing`` starts a new RUN but skips quanta whose outputs already exist
anywhere in OUTPUT.  ``incremental`` starts a new RUN with only the quanta whose recorded
inputs differ from today's, and new ones (:mod:`.incremental`); one that finds nothing to do
writes nothing.  ``output_run`` names the RUN explicitly; outputs already in it are refused
unless skipped or ``clobber``-ed.

The config of every task is stored in the RUN as the ``<label>_config`` (Dict) dataset;
resuming with a different config is refused.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..models import CollectionType
from ..pipeline.builder import QuantumGraphBuilder
from ..pipeline.errors import ExecutionError
from ..pipeline.graph import QuantumGraph
from ..pipeline.pipeline import Pipeline
from ..provenance.staleness import CALIBRATION_CHOICES, CalibrationChoice
from .backends import make_backend
from .incremental import incremental_graph
from .job import JobSpec
from .progress import ProgressReporter
from .scheduler import ExecutionReport, Scheduler

if TYPE_CHECKING:
    from ..butler import Butler

EXECUTORS = ("inline", "pool", "dask")


def new_run_name(output: str) -> str:
    """``OUTPUT/<UTC timestamp to the millisecond>``."""
    now = datetime.datetime.now(datetime.UTC)
    return f"{output}/{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z"


def plan_output_run(butler: Butler, output: str | None, output_run: str | None = None, resume: bool = False) -> str:
    """The RUN this execution writes to (see the module docstring)."""
    if output is not None and butler.collections.exists(output):
        kind = butler.collections.info(output).type
        if kind is not CollectionType.CHAINED:
            raise ExecutionError(f"output collection {output!r} exists as a {kind.value} collection; -o names a "
                                 "CHAINED collection (use --output-run to write into an existing RUN)")
    if output_run is not None:
        return output_run
    if output is None:
        raise ExecutionError("name an output collection (-o OUTPUT) or an output RUN (--output-run)")
    if resume:
        chain = butler.collections.get_chain(output) if butler.collections.exists(output) else ()
        runs = [c for c in chain if c.startswith(output + "/")
                and butler.collections.info(c).type is CollectionType.RUN]
        if not runs:
            raise ExecutionError(f"nothing to resume: {output!r} has no earlier run")
        return runs[0]
    return new_run_name(output)


def build_graph(butler: Butler, pipeline: Pipeline, inputs: Sequence[str], output: str | None = None, *,
                output_run: str | None = None, where: str = "", bind: Mapping[str, Any] | None = None,
                data_id: Mapping[str, Any] | None = None, resume: bool = False, skip_existing: bool = False,
                clobber: bool = False, incremental: bool = False, calibrations: CalibrationChoice = "refuse",
                software: bool = False, config: bool = True) -> QuantumGraph:
    """The quantum graph of one execution: its RUN chosen, existing outputs skipped as asked;
    ``incremental``: only what is new or stale in OUTPUT (``calibrations``, ``software`` and
    ``config=False``, a changed config alone redoing nothing: see :mod:`.incremental`)."""
    if incremental:
        if output is None or resume or skip_existing or output_run is not None:
            raise ExecutionError("an incremental run needs -o OUTPUT (the chain it brings up to date) and no "
                                 "--resume, --skip-existing or --output-run")
        if calibrations not in CALIBRATION_CHOICES:
            raise ExecutionError(f"calibrations must be one of {', '.join(CALIBRATION_CHOICES)}, not "
                                 f"{calibrations!r}")
        graph = QuantumGraphBuilder(butler, pipeline, inputs, plan_output_run(butler, output), output=output,
                                    where=where, bind=bind, data_id=data_id).build()
        return incremental_graph(butler, graph, output, calibrations=calibrations, software=software, config=config)
    if not config:
        raise ExecutionError("config=False (ignore changed configs) goes with incremental=True")
    run = plan_output_run(butler, output, output_run, resume)
    skip_in = []
    if skip_existing and output is not None and butler.collections.exists(output):
        inputs_flat = set(butler.collections.flatten(list(inputs)))  # outputs of OUTPUT's runs only
        skip_in += [c for c in butler.collections.flatten(output) if c not in inputs_flat]
    if resume or skip_existing:
        skip_in.append(run)
    return QuantumGraphBuilder(butler, pipeline, inputs, run, output=output, where=where, bind=bind,
                               data_id=data_id, skip_existing_in=skip_in, clobber=clobber).build()


def prepare_run(butler: Butler, graph: QuantumGraph) -> dict[str, uuid.UUID]:
    """Register the output RUN, chain and dataset types, store (or check) every task's
    config; returns the config dataset ID per task label.  Configs already in the RUN are
    compared first, so a refused resume writes nothing; the writes then go in one transaction
    (through a server, one batch)."""
    store = butler.provenance.store
    store.ensure()
    run = graph.output_run
    tdefs = graph.pipeline.sorted_tasks()
    ids: dict[str, uuid.UUID] = {}
    missing = []
    registered = {d.name for d in butler.query_dataset_types()} if butler.collections.exists(run) else set()
    for tdef in tdefs:  # compare every stored config before writing anything
        wanted = tdef.config.model_dump(mode="json")
        ref = butler.find_dataset(tdef.config_dataset_type, {}, collections=[run]) \
            if tdef.config_dataset_type in registered else None
        if ref is None:
            missing.append((tdef, wanted))
            continue
        stored = butler.get(ref)
        if stored != wanted:
            diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise ExecutionError(
                f"task {tdef.label!r}: config differs from the one stored in RUN {run!r} (field(s) "
                f"{', '.join(diff)}); start a new run instead of resuming")
        ids[tdef.label] = ref.id
    with butler.transaction():
        for tdef in tdefs:
            for conn in tdef.outputs.values():
                dtype = graph.dataset_types[conn.name]
                butler.register_dataset_type(dtype.name, dtype.dimensions, dtype.storage_class,
                                             is_calibration=dtype.is_calibration)
            butler.register_dataset_type(tdef.config_dataset_type, [], "Dict")
        butler.collections.register(run, CollectionType.RUN)
        if graph.output is not None:
            old = list(butler.collections.get_chain(graph.output)) if butler.collections.exists(graph.output) else []
            if not butler.collections.exists(graph.output):
                butler.collections.register(graph.output, CollectionType.CHAINED)
            known = set(butler.collections.flatten(old)) if old else set()
            children = [run] + [c for c in old if c != run] + [c for c in graph.input_collections
                                                               if c not in known and c not in old]
            butler.collections.set_chain(graph.output, list(dict.fromkeys(children)))
        for tdef, wanted in missing:
            ids[tdef.label] = butler.put(wanted, tdef.config_dataset_type, {}, run=run).id
    return ids


def execute_graph(butler: Butler, graph: QuantumGraph, executor: str = "inline", jobs: int = 1, *,
                  dask_scheduler: str | None = None, client: Any = None, progress: bool = False) -> ExecutionReport:
    """Run every quantum of ``graph``; failures are recorded and reported, not raised."""
    if executor not in EXECUTORS:
        raise ExecutionError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    if not graph.quanta and graph.unchanged:  # an incremental run with nothing to do: no RUN either
        return ExecutionReport("", graph.output, 0, skipped=dict(graph.skipped), unchanged=dict(graph.unchanged),
                               notes=list(graph.notes))
    config_ids = prepare_run(butler, graph)
    job = JobSpec.from_graph(butler, graph, config_ids)
    backend = make_backend(executor, jobs, dask_scheduler, client)
    reporter = ProgressReporter(len(graph), enabled=progress)
    return Scheduler(graph, job, backend, butler.provenance.store, reporter).run()


def run_pipeline(butler: Butler, pipeline: Pipeline, inputs: Sequence[str], output: str | None = None, *,
                 output_run: str | None = None, where: str = "", bind: Mapping[str, Any] | None = None,
                 data_id: Mapping[str, Any] | None = None, executor: str = "inline", jobs: int = 1,
                 dask_scheduler: str | None = None, client: Any = None, resume: bool = False,
                 skip_existing: bool = False, clobber: bool = False, progress: bool = False,
                 incremental: bool = False, calibrations: CalibrationChoice = "refuse",
                 software: bool = False, config: bool = True) -> ExecutionReport:
    """Build the graph of ``pipeline`` over ``inputs`` and run it (see the module docstring)."""
    graph = build_graph(butler, pipeline, inputs, output, output_run=output_run, where=where, bind=bind,
                        data_id=data_id, resume=resume, skip_existing=skip_existing, clobber=clobber,
                        incremental=incremental, calibrations=calibrations, software=software, config=config)
    return execute_graph(butler, graph, executor, jobs, dask_scheduler=dask_scheduler, client=client,
                         progress=progress)
