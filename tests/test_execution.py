"""Running quantum graphs: every executor, failures, resume, skip-existing, clobber, CLI."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from click.testing import CliRunner

from pipeline_helpers import DETECTORS, TASKS, VD, VISITS, put_metrics, two_tasks, write_pipeline
from skybutler.cli.main import cli
from skybutler.execution import build_graph, execute_graph, run_pipeline
from skybutler.pipeline import ExecutionError, Input, Output, Pipeline, PipelineTask, QuantumGraphError
from skybutler.pipeline.testing import ScaleTask

N_A = len(VISITS) * len(DETECTORS)


@pytest.fixture
def repo(butler):
    put_metrics(butler)
    return butler


def check_outputs(butler, collection: str, visits=VISITS, factor: float = 2.0) -> None:
    for v in visits:
        summary = butler.get("visitSummary", instrument="Cam", visit=v, collections=collection)
        assert summary["n"] == len(DETECTORS) and summary["sums"]["x"] == len(DETECTORS) * factor


class TwoOutputs(PipelineTask):
    """Writes a good Dict and then something that is not one."""

    dimensions = VD
    inputs = {"metrics": Input(name="metrics", storage_class="Dict", dimensions=VD)}
    outputs = {"good": Output(name="goodOut", storage_class="Dict", dimensions=VD),
               "bad": Output(name="badOut", storage_class="Dict", dimensions=VD)}

    def run(self, metrics):
        return {"good": {"ok": 1}, "bad": {"value": object()} if metrics["visit"] == 1 else {"ok": 2}}


# -- the inline executor --------------------------------------------------------------


def test_inline_run_writes_outputs_configs_and_the_output_chain(repo):
    report = run_pipeline(repo, two_tasks(factor=3), ["run/a"], "out")
    assert report.ok and report.succeeded == N_A + len(VISITS)
    check_outputs(repo, "out", factor=3)
    chain = repo.collections.get_chain("out")
    assert chain == (report.run, "run/a") and report.run.startswith("out/")
    assert repo.get("a_config", {}, collections=report.run)["factor"] == 3
    second = run_pipeline(repo, two_tasks(), ["run/a"], "out")
    assert repo.collections.get_chain("out") == (second.run, report.run, "run/a")
    check_outputs(repo, "out", factor=2)  # the newest run comes first


def test_a_columnar_graph_runs_as_its_materialised_copy(repo, monkeypatch):
    """The builder's graph is columns, and the executor makes a quantum's object only when it
    submits it; the same graph with every quantum made up front writes the same outputs."""
    from skybutler.pipeline.columns import TaskQuanta

    lazy = build_graph(repo, two_tasks(), ["run/a"], output_run="lazy/run")
    eager = build_graph(repo, two_tasks(), ["run/a"], output_run="eager/run")
    eager = dataclasses.replace(eager, quanta=list(eager.quanta))
    assert lazy.columnar and not eager.columnar and lazy.quanta == eager.quanta
    for a, b in zip(lazy.dependency_arrays(), eager.dependency_arrays()):
        assert a.tolist() == b.tolist()
    made, at_first_run = [], []
    node, run = TaskQuanta.node, ScaleTask.run

    def counting_node(self, i, datasets):
        made.append(i)
        return node(self, i, datasets)

    def first_run(self, metrics):
        at_first_run.append(len(made)) if not at_first_run else None
        return run(self, metrics)

    monkeypatch.setattr(TaskQuanta, "node", counting_node)
    monkeypatch.setattr(ScaleTask, "run", first_run)
    assert execute_graph(repo, lazy).ok
    assert at_first_run == [1] and len(made) == len(lazy)  # one object made per quantum, as it was submitted
    assert execute_graph(repo, eager).ok
    for name in ("metricsA", "visitSummary"):
        got = {r.data_id.required_values: repo.get(r) for r in repo.query_datasets(name, collections="lazy/run")}
        want = {r.data_id.required_values: repo.get(r) for r in repo.query_datasets(name, collections="eager/run")}
        assert got == want and len(got) == (N_A if name == "metricsA" else len(VISITS))


def test_a_failing_quantum_blocks_only_its_dependents(repo):
    report = run_pipeline(repo, two_tasks(fail_on=[{"visit": 2, "detector": 1}]), ["run/a"], "out")
    assert report.succeeded == N_A - 1 + len(VISITS) - 1
    [failed] = report.failed
    assert failed["task"] == "a" and failed["data_id"] == {"instrument": "Cam", "visit": 2, "detector": 1}
    assert "RuntimeError: injected failure" in failed["error"]
    assert [(b["task"], b["data_id"]["visit"]) for b in report.blocked] == [("b", 2)]
    assert not repo.query_datasets("metricsA", collections=report.run, where="visit = 2 AND detector = 1").any()
    check_outputs(repo, "out", visits=[1, 3, 4, 5, 6])


def test_outputs_of_a_quantum_are_written_all_or_nothing(repo):
    p = Pipeline()
    p.add_task("two", TwoOutputs)
    report = run_pipeline(repo, p, ["run/a"], "out", where="visit IN (1, 2)")
    assert len(report.failed) == len(DETECTORS) and report.succeeded == len(DETECTORS)
    assert "writing output 'bad' (badOut) failed" in report.failed[0]["error"]
    assert {r.data_id["visit"] for r in repo.query_datasets("goodOut", collections="out")} == {2}
    assert not list(repo.root.rglob("goodOut_Cam_1_*")) and list(repo.root.rglob("goodOut_Cam_2_*")) \
        or not list(repo.root.rglob("goodOut_Cam_*"))  # (no local files at all on an object store)


def test_an_input_missing_at_run_time_fails_its_quantum_precisely(repo):
    graph = build_graph(repo, two_tasks(), ["run/a"], "out")
    repo.remove([repo.find_dataset("metrics", instrument="Cam", visit=3, detector=0)])
    report = execute_graph(repo, graph)
    [failed] = report.failed
    assert "task 'a' quantum {'instrument': 'Cam', 'visit': 3, 'detector': 0}: input 'metrics' " \
           "(metrics@{'instrument': 'Cam', 'visit': 3, 'detector': 0}) is missing" in failed["error"]
    assert len(report.blocked) == 1


def test_running_a_graph_again_is_idempotent(repo):
    graph = build_graph(repo, two_tasks(), ["run/a"], "out", where="visit = 1")
    assert execute_graph(repo, graph).ok
    again = execute_graph(repo, graph)  # e.g. a worker died after committing: its retry finds the outputs
    assert again.ok and again.succeeded == len(graph)
    assert len(repo.provenance.quanta(status="succeeded")) == len(graph)
    assert len(list(repo.query_datasets("metricsA", collections="out"))) == len(DETECTORS)


def test_a_file_left_by_a_killed_writer_does_not_block_the_retry(repo):
    graph = build_graph(repo, two_tasks(), ["run/a"], "out", where="visit = 1 AND detector = 0")
    assert execute_graph(repo, graph).ok
    ref = repo.find_dataset("metricsA", instrument="Cam", visit=1, detector=0, collections="out")
    artifact = repo.registry.datasets.artifacts([ref.id])[ref.id]
    with repo.registry.transaction():  # the rows vanish, the file stays: as if killed before commit
        repo.registry.datasets.delete([ref.id])
    assert repo.datastore.exists(artifact)
    report = execute_graph(repo, graph)
    assert report.ok and repo.find_dataset("metricsA", instrument="Cam", visit=1, detector=0, collections="out")



def test_a_strangers_file_at_an_output_path_is_never_deleted(repo):
    graph = build_graph(repo, two_tasks(), ["run/a"], "out", where="visit = 1 AND detector = 0")
    assert execute_graph(repo, graph).ok
    ref = repo.find_dataset("metricsA", instrument="Cam", visit=1, detector=0, collections="out")
    artifact = repo.registry.datasets.artifacts([ref.id])[ref.id]
    with repo.registry.transaction():  # the rows vanish; the file at the path is not what the task writes
        repo.registry.datasets.delete([ref.id])
    fs, path = repo.datastore.fs, repo.datastore.full_path(artifact.path)
    fs.rm(path)
    fs.pipe_file(path, b'{"someone": "else"}')
    report = execute_graph(repo, graph)
    assert not report.ok and "verify" in report.failed[0]["error"]
    assert fs.cat_file(path) == b'{"someone": "else"}'  # not skybutler's to delete: left for verify --fix

def test_resume_reruns_only_what_failed(repo, monkeypatch):
    original = ScaleTask.run

    def flaky(self, metrics):
        if metrics["visit"] == 4:
            raise OSError("disk hiccup")
        return original(self, metrics)

    monkeypatch.setattr(ScaleTask, "run", flaky)
    first = run_pipeline(repo, two_tasks(), ["run/a"], "out")
    assert len(first.failed) == len(DETECTORS) and len(first.blocked) == 1
    monkeypatch.setattr(ScaleTask, "run", original)
    resumed = run_pipeline(repo, two_tasks(), ["run/a"], "out", resume=True)
    assert resumed.run == first.run and resumed.ok
    assert resumed.total == len(DETECTORS) + 1 and resumed.skipped == {"a": N_A - len(DETECTORS),
                                                                        "b": len(VISITS) - 1}
    check_outputs(repo, "out")
    with pytest.raises(ExecutionError, match="task 'a': config differs from the one stored in RUN .*factor"):
        run_pipeline(repo, two_tasks(factor=7), ["run/a"], "out", resume=True)
    p = Pipeline()  # a new task checked (and its config written) before the changed one
    p.add_task("c", ScaleTask, connections={"scaled": "metricsC"})
    p.add_task("a", ScaleTask, {"factor": 7})
    with pytest.raises(ExecutionError, match="task 'a': config differs"):
        run_pipeline(repo, p, ["run/a"], "out", resume=True)
    assert run_pipeline(repo, p.subset(["c"]), ["run/a"], "out", resume=True).ok  # no orphan c_config file


def test_skip_existing_processes_only_new_data(repo):
    repo.register_dataset_type("metricsA", VD, "Dict")  # an input collection's own metricsA do not count
    repo.put_many("metricsA", [({"x": 0}, {"instrument": "Cam", "visit": 6, "detector": d}) for d in DETECTORS])
    first = run_pipeline(repo, two_tasks(), ["run/a"], "out", where="visit <= 3")
    later = run_pipeline(repo, two_tasks(), ["run/a"], "out", skip_existing=True)
    assert later.run != first.run
    assert later.skipped == {"a": 3 * len(DETECTORS), "b": 3} and later.total == 3 * len(DETECTORS) + 3
    check_outputs(repo, "out")
    nothing = run_pipeline(repo, two_tasks(), ["run/a"], "out", skip_existing=True)
    assert nothing.total == 0


def test_an_explicit_output_run_is_not_clobbered_unless_asked(repo):
    run_pipeline(repo, two_tasks(), ["run/a"], output_run="mine", where="visit = 1")
    with pytest.raises(QuantumGraphError, match="would overwrite outputs already in RUN 'mine'.*--clobber"):
        run_pipeline(repo, two_tasks(), ["run/a"], output_run="mine", where="visit = 1")
    report = run_pipeline(repo, two_tasks(), ["run/a"], output_run="mine", where="visit = 1", clobber=True)
    assert report.ok and report.succeeded == len(DETECTORS) + 1
    assert len(list(repo.query_datasets("metricsA", collections="mine"))) == len(DETECTORS)


# -- parallel executors ---------------------------------------------------------------


def test_process_pool(repo):
    report = run_pipeline(repo, two_tasks(fail_on=[{"visit": 5, "detector": 0}]), ["run/a"], "out",
                          executor="pool", jobs=2)
    assert report.succeeded == N_A - 1 + len(VISITS) - 1 and len(report.failed) == 1 and len(report.blocked) == 1
    pids = {q.pid for q in repo.provenance.quanta(status="succeeded")}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # worker processes, each with its own Butler


@pytest.mark.slow
def test_a_killed_pool_worker_fails_only_its_quantum(repo):
    report = run_pipeline(repo, two_tasks(crash_on=[{"visit": 3, "detector": 2}]), ["run/a"], "out",
                          executor="pool", jobs=2)
    [failed] = report.failed
    assert failed["data_id"] == {"instrument": "Cam", "visit": 3, "detector": 2}
    assert "worker process died" in failed["error"]
    assert report.succeeded == N_A - 1 + len(VISITS) - 1
    [row] = repo.provenance.quanta(status="failed")
    assert "worker process died" in row.error


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.slow
def test_dask_local_cluster(repo, dask_client):
    report = run_pipeline(repo, two_tasks(fail_on=[{"visit": 6, "detector": 3}]), ["run/a"], "out",
                          executor="dask", client=dask_client)
    assert report.succeeded == N_A - 1 + len(VISITS) - 1 and len(report.failed) == 1 and len(report.blocked) == 1
    check_outputs(repo, "out", visits=[1, 2, 3, 4, 5])
    pids = {q.pid for q in repo.provenance.quanta(status="succeeded")}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    resumed = run_pipeline(repo, two_tasks(fail_on=[{"visit": 6, "detector": 3}]), ["run/a"], "out",
                           executor="dask", client=dask_client, resume=True)
    assert resumed.total == 2 and len(resumed.failed) == 1


@pytest.fixture(scope="module")
def strict_dask_client():
    """A cluster where a dying worker takes every quantum queued on it with it: Dask retries
    nothing (allowed-failures 0) and sends every ready task to a worker at once (worker
    saturation unbounded).  A loaded machine leads there only sometimes; this, every time."""
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": float("inf")}):
        cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                           dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.slow
def test_a_killed_dask_worker_fails_only_its_quantum(repo, strict_dask_client, monkeypatch):
    from skybutler.execution import DaskBackend, WorkerDied

    kept, died = [], []
    original = DaskBackend.wait

    def wait(self):
        kept.extend(self.futures)  # futures stay referenced past their retry, as a busy process may keep them
        out = original(self)
        died.extend(index for index, result in out if isinstance(result, WorkerDied))
        return out

    monkeypatch.setattr(DaskBackend, "wait", wait)
    report = run_pipeline(repo, two_tasks(crash_on=[{"visit": 2, "detector": 0}]), ["run/a"], "out",
                          executor="dask", client=strict_dask_client)
    assert len(set(died)) > 1  # innocent quanta died with the culprit's worker...
    [failed] = report.failed  # ...and were retried, not failed
    assert failed["data_id"] == {"instrument": "Cam", "visit": 2, "detector": 0}
    assert "died" in failed["error"] and report.succeeded == N_A - 1 + len(VISITS) - 1
    check_outputs(repo, "out", visits=[1, 3, 4, 5, 6])


@pytest.mark.slow
def test_cli_run_on_a_dask_scheduler(repo, tmp_path, dask_client):
    path = write_pipeline(tmp_path / "p.yaml", {"a": f"{TASKS}.ScaleTask", "b": f"{TASKS}.VisitSummaryTask"})
    out = json.loads(cli_run("run", path, "-b", repo.root, "-i", "run/a", "-o", "out", "--executor", "dask",
                             "--dask-scheduler", dask_client.scheduler.address, "--json").stdout)
    assert out["succeeded"] == N_A + len(VISITS)
    check_outputs(repo, "out")


# -- the command line -----------------------------------------------------------------


def cli_run(*args: object, code: int = 0, traceback_shown: bool = False):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    assert traceback_shown or "Traceback" not in result.output
    return result


def test_cli_qgraph_save_show_and_run(repo, tmp_path):
    path = write_pipeline(tmp_path / "p.yaml", {"a": {"class": f"{TASKS}.ScaleTask", "config": {"factor": 4}},
                                                "b": f"{TASKS}.VisitSummaryTask"})
    shown = cli_run("qgraph", path, "-b", repo.root, "-i", "run/a", "-o", "out", "--where", "visit < 3",
                    "--save", tmp_path / "g.qg", "--show")
    assert "10 quanta into RUN out/" in shown.stdout and "first 10 of each task" in shown.stdout
    assert "saved to" in shown.stdout
    out = json.loads(cli_run("run", "-b", repo.root, "-g", tmp_path / "g.qg", "--json").stdout)
    assert out["succeeded"] == 10 and out["failed"] == 0
    out = json.loads(cli_run("run", path, "-b", repo.root, "-i", "run/a", "-o", "out", "--skip-existing",
                             "--no-progress", "--json").stdout)
    assert out["quanta"] == N_A + len(VISITS) - 10 and out["skipped_existing"] == {"a": 8, "b": 2}
    check_outputs(repo, "out", factor=4)


def test_cli_reports_failures_and_bad_input(repo, tmp_path):
    path = write_pipeline(tmp_path / "p.yaml", {"a": {"class": f"{TASKS}.ScaleTask",
                                                      "config": {"fail_on": [{"visit": 1, "detector": 0}]}},
                                                "b": f"{TASKS}.VisitSummaryTask"})
    result = cli_run("run", path, "-b", repo.root, "-i", "run/a", "-o", "out", "--no-progress", code=1)
    assert "28 succeeded, 1 failed, 1 blocked of 30 quanta" in result.stdout and "failed quanta" in result.stdout
    assert "error: 1 quanta failed and 1 were blocked" in result.stderr
    listed = json.loads(cli_run("quanta", repo.root, "--status", "failed", "--log", "--json",
                                traceback_shown=True).stdout)
    assert len(listed) == 1 and "Traceback" in listed[0]["log"]
    bad = write_pipeline(tmp_path / "bad.yaml", {"a": {"class": f"{TASKS}.ScaleTask", "config": {"factor": "x"}}})
    result = cli_run("run", bad, "-b", repo.root, "-i", "run/a", "-o", "out2", code=1)
    assert result.stderr.startswith("error: task 'a' config: field 'factor'")
    result = cli_run("qgraph", path, "-b", repo.root, "-o", "out2", code=1)
    assert "give the input collections with -i" in result.stderr
    result = cli_run("qgraph", path, "-b", repo.root, "-i", "run/a", "-o", "out2", "--save",
                     tmp_path / "no" / "g.qg", code=1)
    assert "cannot write quantum graph" in result.stderr
    (tmp_path / "g.qg").write_text("{}")
    result = cli_run("run", "-b", repo.root, "-g", tmp_path / "g.qg", "-i", "run/a", code=1)
    assert "a saved graph (--graph) already has them" in result.stderr
