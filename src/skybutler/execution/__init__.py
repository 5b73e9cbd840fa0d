"""Executing quantum graphs: in-process, in a local process pool, or on a Dask cluster,
with failures recorded as provenance and runs that can be resumed."""

from .backends import Backend, DaskBackend, InlineBackend, PoolBackend, WorkerDied
from .executor import EXECUTORS, build_graph, execute_graph, new_run_name, plan_output_run, prepare_run, run_pipeline
from .scheduler import ExecutionReport

__all__ = ["EXECUTORS", "Backend", "DaskBackend", "ExecutionReport", "InlineBackend", "PoolBackend", "WorkerDied",
           "build_graph", "execute_graph", "new_run_name", "plan_output_run", "prepare_run", "run_pipeline"]
