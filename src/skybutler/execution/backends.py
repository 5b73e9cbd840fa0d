"""Where quanta run: in this process, in a local process pool, or on a Dask cluster.

A backend submits ``run_quantum(job, payload)`` calls and reports finished ones as
``(index, result dict or exception)``.  An exception means the worker could not
report at all -- its process died -- as quantum failures are results.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import uuid
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..pipeline.errors import ExecutionError
from ..process_pools import process_pool
from .job import JobSpec
from .quantum_runner import close_states, run_quantum, state_for


class WorkerDied(Exception):
    """The process running a quantum died without reporting (killed, out of memory, os._exit).

    The scheduler retries such a quantum once, alone, so that only a quantum that kills
    its worker by itself is failed, not the others that shared the worker with it.
    """


Finished = list[tuple[int, Any]]


class Backend:
    """Interface of the execution backends."""

    #: How many quanta may be submitted and not yet finished.
    capacity: int = 1

    def start(self, job: JobSpec) -> None: ...

    def submit(self, index: int, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def wait(self) -> Finished:
        """Block until at least one submitted quantum finishes; return all that have."""
        raise NotImplementedError

    def close(self) -> None: ...


class InlineBackend(Backend):
    """Run each quantum in this process, one at a time (debuggable, no pickling)."""

    def start(self, job: JobSpec) -> None:
        self.job = job
        self.done: Finished = []

    def submit(self, index: int, payload: dict[str, Any]) -> None:
        self.done.append((index, run_quantum(self.job, payload)))

    def wait(self) -> Finished:
        done, self.done = self.done, []
        return done

    def close(self) -> None:
        close_states()


def _init_worker(job: JobSpec) -> None:
    global _JOB
    _JOB = job
    state_for(job)  # open the Butler and make the tasks once, before the first quantum


def _pool_run(payload: dict[str, Any]) -> dict[str, Any]:
    return run_quantum(_JOB, payload)


_JOB: JobSpec | None = None


class PoolBackend(Backend):
    """A local ``ProcessPoolExecutor``; every worker opens its own Butler once.

    If a worker dies, the pool breaks and every quantum in flight is lost: those are
    handed back as :class:`WorkerDied`, and the scheduler retries them one at a time
    in a fresh pool, so only the quantum that kills its worker is failed.
    """

    def __init__(self, jobs: int, start_method: str = "forkserver"):
        self.jobs = max(1, jobs)
        self.capacity = self.jobs * 2
        self.start_method = start_method
        self.pool: cf.ProcessPoolExecutor | None = None
        self.futures: dict[cf.Future, int] = {}

    def start(self, job: JobSpec) -> None:
        self.job = job
        self._new_pool()

    def _new_pool(self) -> None:
        if self.start_method == "forkserver":
            # the workers' code, and the module of the butler each opens, imported once by the server
            multiprocessing.get_context("forkserver").set_forkserver_preload(
                ["skybutler.execution.quantum_runner", self.job.opener.__module__])
        self.pool = process_pool(self.jobs, self.start_method, _init_worker, (self.job,))

    def submit(self, index: int, payload: dict[str, Any]) -> None:
        assert self.pool is not None
        self.futures[self.pool.submit(_pool_run, payload)] = index

    def wait(self) -> Finished:
        done, _ = cf.wait(list(self.futures), return_when=cf.FIRST_COMPLETED)
        out: Finished = []
        broken = False
        for future in done:
            index = self.futures.pop(future)
            try:
                out.append((index, future.result()))
            except BrokenProcessPool:
                broken = True
                out.append((index, WorkerDied("the worker process died while running it")))
        if broken:
            for future, index in list(self.futures.items()):
                finished = future.done() and not future.cancelled() and future.exception() is None
                out.append((index, future.result() if finished else
                            WorkerDied("a worker process died while it was queued or running")))
            self.futures.clear()
            assert self.pool is not None
            self.pool.shutdown(wait=False, cancel_futures=True)
            self._new_pool()
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class DaskBackend(Backend):
    """A Dask ``distributed`` cluster: a given ``Client``, a scheduler address, or a new
    ``LocalCluster`` of ``jobs`` single-threaded worker processes.

    Each worker opens the repository by its path, as the client sees it: on a real cluster
    the repository directory (its config) must be on a file system the workers share, and
    its registry and datastore reachable from them (PostgreSQL and S3 are, by design).
    """

    def __init__(self, jobs: int = 2, scheduler: str | None = None, client: Any = None):
        try:
            import distributed
        except ImportError:
            raise ExecutionError("the dask executor needs 'dask' and 'distributed' "
                                 "(pip install 'skybutler[dask]')") from None
        self._distributed = distributed
        self.jobs = max(1, jobs)
        self.scheduler = scheduler
        self.client = client
        self._own: list[Any] = []
        self.futures: dict[Any, int] = {}
        self.capacity = 100_000

    def start(self, job: JobSpec) -> None:
        d = self._distributed
        if self.client is None:
            if self.scheduler:
                self.client = d.Client(self.scheduler)
            else:
                cluster = d.LocalCluster(n_workers=self.jobs, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
                self._own.append(cluster)
                self.client = d.Client(cluster)
            self._own.insert(0, self.client)
        self.job = job  # sent with every task: scattered data would be lost with a dying worker
        self.completed = d.as_completed()

    def submit(self, index: int, payload: dict[str, Any]) -> None:
        # A new key for every attempt: Dask hands back the existing future of a key it still
        # knows, so a retry under an old key could return the old attempt's error unrun.
        future = self.client.submit(run_quantum, self.job, payload, pure=False,
                                    key=f"quantum-{payload['task']}-{index}-{uuid.uuid4().hex}")
        self.futures[future] = index
        self.completed.add(future)

    def wait(self) -> Finished:
        out: Finished = []
        batch = [next(self.completed)]
        batch += [f for f in self.completed.next_batch(block=False)] if self.completed.count() else []
        for future in batch:
            index = self.futures.pop(future)
            try:
                out.append((index, future.result()))
            except self._distributed.KilledWorker:
                # Dask also counts the deaths of a worker against the other quanta queued on it,
                # so one quantum that kills its worker can take others with it: the scheduler
                # retries each alone, and only the culprit dies again.
                out.append((index, WorkerDied("its worker process died on every attempt Dask allowed "
                                              "(distributed.scheduler.allowed-failures)")))
            except Exception as err:  # noqa: BLE001 - lost connections etc. fail the quantum
                out.append((index, WorkerDied(f"{type(err).__name__}: {err}")))
        return out

    def close(self) -> None:
        for obj in self._own:
            obj.close()
        self._own.clear()


def make_backend(kind: str, jobs: int = 1, dask_scheduler: str | None = None, client: Any = None) -> Backend:
    """The backend for ``kind`` (inline, pool or dask)."""
    if kind == "inline":
        return InlineBackend()
    if kind == "pool":
        return PoolBackend(jobs)
    if kind == "dask":
        return DaskBackend(jobs, dask_scheduler, client)
    raise ExecutionError(f"unknown executor {kind!r}; use inline, pool or dask")
