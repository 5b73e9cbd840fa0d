"""Pipelines run through a server: ``qgraph`` and ``run`` given a URL build the graph from the
server's answers and run the tasks on the client's machine, reading and writing through the
remote butler, each quantum's outputs and provenance one batch.  The oracle is the same run on a
twin repository opened by its path: the same graph, the same outputs, the same provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pipeline_helpers import TASKS, add_bias, add_skymap, put_metrics, write_pipeline
from server_helpers import running_server
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.execution import run_pipeline
from skybutler.pipeline import Pipeline
from skybutler.verify import verify

pytest.importorskip("fastapi")

INPUTS = "run/a,calib"
OUTPUTS = ("metricsA", "visitSummary", "patchCount")


@pytest.fixture(params=["sqlite"])
def stack(request) -> str:
    """SQLite: what travels is the same on every stack (the server's routes are tested on both)."""
    return request.param


def _fill(butler) -> None:
    put_metrics(butler, visits=[1, 2, 3])
    add_bias(butler)
    add_skymap(butler)


@pytest.fixture
def twins(make_butler, tmp_path):
    """Two repositories with the same contents: one run locally (the oracle), one served; users
    alice (reads everything, owns u/alice/) and carol (reads everything, writes nothing)."""
    local, served = make_butler("local"), make_butler("served")
    for b in (local, served):
        from conftest import populate

        populate(b)
        b.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        _fill(b)
    access = Access(served.registry.access)
    for name in ("alice", "carol"):
        access.add_user(name)
        access.grant("user", name, "*", "read")
    tokens = {name: access.create_token(name) for name in ("alice", "carol")}
    path = write_pipeline(tmp_path / "p.yaml", {"a": f"{TASKS}.CalibratedScaleTask",
                                                "b": f"{TASKS}.VisitSummaryTask", "c": f"{TASKS}.PatchCountTask"})
    with running_server(served.root, access_recheck_seconds=0) as url:
        yield local, served, url, tokens, path


def _cli(token: str, *args: str):
    return CliRunner(env={"SKYBUTLER_TOKEN": token}).invoke(cli, list(args))


def _outputs(butler, collection: str) -> dict:
    return {name: {tuple(sorted(ref.data_id.required.items())): butler.get(ref)
                   for ref in butler.query_datasets(name, collections=[collection])} for name in OUTPUTS}


def _provenance(butler, run: str) -> list:
    """The recorded quanta of a RUN as comparable values: what each read and wrote, by type and
    data ID (dataset IDs differ between the twins), and its config and environment."""
    def links(side):
        return sorted((link.dataset_type, link.connection, json.dumps(link.data_id, sort_keys=True),
                       link.prerequisite) for link in side)

    out = []
    for q in butler.provenance.quanta(run=run):
        assert all(link.dataset_id is not None and butler.registry.refs_by_id([link.dataset_id])
                   for link in (*q.inputs, *q.outputs)), "a link to a dataset this repository does not hold"
        out.append((q.task_label, q.task_class, json.dumps(q.data_id, sort_keys=True), q.status,
                    q.config_dataset_id is not None, q.env_id, links(q.inputs), links(q.outputs)))
    return sorted(out)


def test_qgraph_and_run_on_a_url_match_the_local_run(twins):
    local, served, url, tokens, path = twins
    built = _cli(tokens["alice"], "qgraph", path, "-b", url, "-i", INPUTS, "-o", "u/alice/out", "--json")
    assert built.exit_code == 0, built.output
    expected = json.loads(CliRunner().invoke(cli, ["qgraph", path, "-b", str(local.root), "-i", INPUTS,
                                                   "-o", "u/alice/out", "--json"]).stdout)
    got = json.loads(built.stdout)
    for summary in (got, expected):
        summary.pop("output_run")
    assert got == expected and got["quanta"] > 0
    assert served.collections.query("u/alice/*") == []  # a graph writes nothing

    ran = _cli(tokens["alice"], "run", path, "-b", url, "-i", INPUTS, "-o", "u/alice/out", "--json")
    assert ran.exit_code == 0, ran.output
    report = run_pipeline(local, Pipeline.from_yaml(path), INPUTS.split(","), "u/alice/out")
    assert report.ok and json.loads(ran.stdout)["succeeded"] == report.summary()["succeeded"]
    assert _outputs(served, "u/alice/out") == _outputs(local, "u/alice/out")
    run = json.loads(ran.stdout)["run"]
    assert run.startswith("u/alice/out/") and served.collections.get_chain("u/alice/out")[0] == run
    assert _provenance(served, run) == _provenance(local, report.run)
    assert verify(served).consistent
    # the same through the Python API, with the token given, a second run in front of the chain
    from skybutler import Butler

    again = run_pipeline(Butler(url, token=tokens["alice"]), Pipeline.from_yaml(path), INPUTS.split(","),
                         "u/alice/out")
    assert again.ok and served.collections.get_chain("u/alice/out")[0] == again.run != run
    assert _provenance(served, again.run) == _provenance(local, report.run)


def test_a_run_into_a_collection_the_user_may_not_write_writes_nothing(twins):
    _, served, url, tokens, path = twins
    before = (sorted(c.name for c in served.collections.query("*")),
              sorted(t.name for t in served.query_dataset_types()))
    refused = _cli(tokens["carol"], "run", path, "-b", url, "-i", INPUTS, "-o", "out")
    assert refused.exit_code == 1 and "may not write to collection" in refused.stderr, refused.output
    assert len(refused.stderr.strip().splitlines()) == 1
    assert (sorted(c.name for c in served.collections.query("*")),
            sorted(t.name for t in served.query_dataset_types())) == before
    assert served.provenance.quanta() == []
    refused = _cli(tokens["carol"], "run", path, "-b", url, "-i", INPUTS, "--output-run", "u/alice/mine")
    assert refused.exit_code == 1 and "may not write to collection 'u/alice/mine'" in refused.stderr


def test_a_client_dying_mid_run_leaves_complete_quanta_only(twins, tmp_path):
    """The client process dies inside a task (the server sees it disconnect): what it wrote is
    whole quanta, each with its outputs and its provenance, and verify finds the repository clean."""
    _, served, url, tokens, _ = twins
    dying = write_pipeline(tmp_path / "dying.yaml", {
        "a": {"class": f"{TASKS}.CalibratedScaleTask", "config": {"crash_on": [{"visit": 2, "detector": 2}]}},
        "b": f"{TASKS}.VisitSummaryTask"})
    env = {**os.environ, "SKYBUTLER_TOKEN": tokens["alice"],
           "PYTHONPATH": os.pathsep.join([os.path.join(os.path.dirname(__file__), "..", "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "skybutler.cli", "run", dying, "-b", url, "-i", INPUTS,
                           "-o", "u/alice/out", "--no-progress"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 17, done.stderr
    run = served.collections.get_chain("u/alice/out")[0]
    quanta = served.provenance.quanta(run=run)
    assert quanta and all(q.status == "succeeded" for q in quanta)
    written = {ref.id for name in ("metricsA", "visitSummary")
               for ref in served.query_datasets(name, collections=[run])}
    assert written == {link.dataset_id for q in quanta for link in q.outputs}
    assert verify(served).consistent


def test_recording_quanta_checks_the_run_and_every_dataset_named(twins):
    """The record route on its own: into a RUN the caller may write, naming only datasets they may
    see (a hidden one answers as a missing one), outputs of the quantum's own RUN, once."""
    import uuid

    from skybutler import Butler
    from skybutler.errors import DatasetNotFoundError, PermissionDeniedError, SkybutlerError
    from skybutler.registry.quantum_store import DatasetLink, QuantumRecord

    _, served, url, tokens, _ = twins
    served.collections.register("private/x", "run")
    hidden = served.put({"x": 1}, "metrics", {"instrument": "Cam", "visit": 1, "detector": 0}, run="private/x")
    alice = Butler(url, token=tokens["alice"])
    mine = alice.put({"x": 2}, "metrics", {"instrument": "Cam", "visit": 1, "detector": 0}, run="u/alice/r")
    theirs = served.find_dataset("metrics", instrument="Cam", visit=1, detector=0, collections="run/a")

    def record(run, inputs=(), outputs=()):
        return QuantumRecord(uuid.uuid4(), run, "a", f"{TASKS}.ScaleTask", {"instrument": "Cam"}, "succeeded",
                             inputs=[DatasetLink(i, "metrics", "metrics", {}) for i in inputs],
                             outputs=[DatasetLink(i, "metrics", "scaled", {}) for i in outputs])

    store = alice.provenance.store
    with pytest.raises(PermissionDeniedError, match="may not write to collection 'run/a'"):
        store.insert([record("run/a", [theirs.id])])
    with pytest.raises(SkybutlerError, match="another RUN"):
        store.insert([record("u/alice/r", [theirs.id], [theirs.id])])
    assert served.provenance.quanta() == []
    done = record("u/alice/r", [theirs.id], [mine.id])
    store.insert([done])
    with pytest.raises(SkybutlerError, match="already recorded"):
        store.insert([done])
    assert [q.quantum_id for q in served.provenance.quanta()] == [done.quantum_id]
    access = Access(served.registry.access)
    access.add_user("dora")  # may write alice's area, read only run/a: private/x is hidden from her
    access.grant("user", "dora", "u/alice/*", "write")
    access.grant("user", "dora", "run/a", "read")
    dora = Butler(url, token=access.create_token("dora"))
    for ident in (hidden.id, uuid.uuid4()):  # hidden and missing: the same answer
        with pytest.raises(DatasetNotFoundError, match=f"no dataset with ID {ident}"):
            dora.provenance.store.insert([record("u/alice/r", [theirs.id, ident])])
    assert len(served.provenance.quanta()) == 1
