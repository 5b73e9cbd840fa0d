"""Tasks, pipelines and quantum graphs on small real repositories."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipeline_helpers import DETECTORS, TASKS, VD, VISITS, add_bias, add_skymap, put_metrics, two_tasks, write_pipeline
from skybutler.errors import SkybutlerError
from skybutler.execution import build_graph
from skybutler.pipeline import (
    Input,
    Output,
    Pipeline,
    PipelineError,
    PipelineTask,
    QuantumGraph,
    QuantumGraphBuilder,
    QuantumGraphError,
    TaskConfig,
)
from skybutler.pipeline.testing import CalibratedScaleTask, PatchCountTask, ScaleTask, SplitTask, VisitSummaryTask


@pytest.fixture
def repo(butler):
    put_metrics(butler)
    return butler


# -- the task API ----------------------------------------------------------------


def test_a_task_is_one_short_class_and_run_knows_nothing_of_the_butler():
    class AddConfig(TaskConfig):
        offset: int = 1

    class AddTask(PipelineTask):
        dimensions = VD
        inputs = {"m": Input(name="metrics", storage_class="Dict", dimensions=VD)}
        outputs = {"out": Output(name="added", storage_class="Dict", dimensions=VD)}
        Config = AddConfig

        def run(self, m):
            return {"out": {k: v + self.config.offset for k, v in m.items()}}

    task = AddTask(AddTask.Config(offset=2))
    assert task.run(m={"x": 1}) == {"out": {"x": 3}}
    assert list(AddTask.connections()) == ["m", "out"]


def test_task_classes_with_unusable_declarations_are_refused_at_definition():
    with pytest.raises(PipelineError, match="run\\(\\) does not accept the input connection\\(s\\) m"):
        class NoArg(PipelineTask):
            inputs = {"m": Input(name="metrics", storage_class="Dict", dimensions=VD)}

            def run(self):
                return {}
    with pytest.raises(PipelineError, match="connection name 'x' is used by both inputs and outputs"):
        class Twice(PipelineTask):
            inputs = {"x": Input(name="a", storage_class="Dict")}
            outputs = {"x": Output(name="b", storage_class="Dict")}
    with pytest.raises(PipelineError, match="Config must be a subclass"):
        class BadConfig(PipelineTask):
            Config = dict


def test_configs_are_typed_data_with_defaults_and_errors_name_task_and_field():
    p = Pipeline()
    assert p.add_task("a", ScaleTask).config.factor == 2.0
    with pytest.raises(PipelineError, match="task 'b' config: field 'factor': .*number.*got 'abc'"):
        p.add_task("b", ScaleTask, {"factor": "abc"})
    with pytest.raises(PipelineError, match="task 'c' config: field 'nonsense': Extra inputs"):
        p.add_task("c", ScaleTask, {"nonsense": 1})
    assert isinstance(PipelineError("x"), SkybutlerError)


# -- YAML -----------------------------------------------------------------------------


def test_a_yaml_pipeline_with_overrides_renames_and_subsets(tmp_path):
    path = write_pipeline(tmp_path / "p.yaml", {
        "a": {"class": f"{TASKS}.ScaleTask", "config": {"factor": 5}},
        "b": f"{TASKS}.VisitSummaryTask"}, subsets={"first": ["a"], "second": {"subset": ["b"]}})
    p = Pipeline.from_yaml(path)
    assert p.labels == ["a", "b"] and p["a"].config.factor == 5
    assert Pipeline.from_yaml(path + "#first").labels == ["a"]
    assert Pipeline.from_yaml(path + "#second,a").labels == ["a", "b"]
    again = Pipeline.from_dict(p.to_dict())
    assert again["a"].config == p["a"].config and again.subsets == p.subsets


@pytest.mark.parametrize("tasks, message", [
    ({"a": {"class": "no.such.Module"}}, "task 'a': cannot import module 'no.such'"),
    ({"a": {"class": f"{TASKS}.Missing"}}, "has no attribute 'Missing'"),
    ({"a": {"class": "skybutler.Butler"}}, "is not a skybutler.pipeline.PipelineTask subclass"),
    ({"a": {"class": f"{TASKS}.ScaleTask", "config": {"factor": [1]}}}, "task 'a' config: field 'factor'"),
    ({"a": {"class": f"{TASKS}.ScaleTask", "confg": {}}}, "unknown key\\(s\\) confg"),
    ({"a": {"class": f"{TASKS}.ScaleTask", "connections": {"nope": "x"}}}, "connections has unknown name"),
    ({"a-b": f"{TASKS}.ScaleTask"}, "task label 'a-b' must be an identifier"),
])
def test_yaml_errors_are_precise(tmp_path, tasks, message):
    with pytest.raises(PipelineError, match=message):
        Pipeline.from_yaml(write_pipeline(tmp_path / "p.yaml", tasks))


def test_unreadable_pipeline_files(tmp_path):
    with pytest.raises(PipelineError, match="cannot read pipeline"):
        Pipeline.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("tasks: [unclosed")
    with pytest.raises(PipelineError, match="not valid YAML"):
        Pipeline.from_yaml(tmp_path / "bad.yaml")
    path = write_pipeline(tmp_path / "p.yaml", {"a": f"{TASKS}.ScaleTask"}, subsets={"s": ["zzz"]})
    with pytest.raises(PipelineError, match="subset 's' names unknown task label 'zzz'"):
        Pipeline.from_yaml(path)


# -- validation -----------------------------------------------------------------------


def test_a_dataset_type_produced_twice_is_refused():
    p = Pipeline()
    p.add_task("a", ScaleTask)
    p.add_task("a2", ScaleTask)
    with pytest.raises(PipelineError, match="'metricsA' is produced by both task 'a' and task 'a2'"):
        p.validate()
    p2 = Pipeline()
    p2.add_task("a", ScaleTask)
    p2.add_task("a2", ScaleTask, connections={"scaled": "metricsB"})
    p2.validate()


def test_an_input_nobody_produces_must_be_registered(repo):
    with pytest.raises(PipelineError, match="task 'b' input 'scaled' \\(metricsA\\): no task of the pipeline "
                                            "produces 'metricsA' and it is not a registered dataset type"):
        _only_b().validate(butler=repo)


def _only_b() -> Pipeline:
    p = Pipeline()
    p.add_task("b", VisitSummaryTask)
    return p


def test_dimension_and_storage_class_mismatches(repo):
    class Wrong(PipelineTask):
        dimensions = ("instrument", "visit")
        inputs = {"m": Input(name="metrics", storage_class="Dict", dimensions=VD)}

        def run(self, m):
            return {}

    p = Pipeline()
    p.add_task("w", Wrong)
    with pytest.raises(PipelineError, match="task 'w' input 'm' \\(metrics\\): dimensions .* are not within the "
                                            "quantum dimensions .*declare multiple=True"):
        p.validate()
    repo.register_dataset_type("metricsA", ["instrument", "visit"], "Dict")
    with pytest.raises(PipelineError, match="task 'a' output 'scaled' \\(metricsA\\): declared with dimensions "
                                            ".* but the repository registers"):
        two_tasks().validate(butler=repo)


def test_a_cycle_is_refused():
    p = Pipeline()
    p.add_task("a", ScaleTask, connections={"metrics": "loop", "scaled": "metricsA"})
    p.add_task("b", ScaleTask, connections={"metrics": "metricsA", "scaled": "loop"})
    with pytest.raises(PipelineError, match="cycle: a -> b -> a|cycle: b -> a -> b"):
        p.validate()


# -- graph shapes ---------------------------------------------------------------------


def test_per_detector_then_per_visit_gather(repo):
    graph = QuantumGraphBuilder(repo, two_tasks(), ["run/a"], "out/run").build()
    assert graph.counts() == {"a": len(VISITS) * len(DETECTORS), "b": len(VISITS)}
    gather = [q for q in graph if q.task == "b"][0]
    assert len(gather.inputs["scaled"]) == len(DETECTORS)
    assert {n.producer for n in gather.inputs["scaled"]} == gather.dependencies()
    assert all(graph.quanta[i].task == "a" for i in gather.dependencies())
    first = graph.quanta[0]
    assert first.inputs["metrics"][0].id is not None and first.outputs["scaled"][0].id is None


def test_the_where_clause_and_a_handful_of_queries(repo):
    builder = QuantumGraphBuilder(repo, two_tasks(), ["run/a"], "out/run", where="visit IN (2..3) AND band = 'r'")
    graph = builder.build()
    assert graph.counts() == {"a": len(DETECTORS), "b": 1}  # visit 2 is the only r-band one of 2..3
    assert builder.query_count <= 4


def test_one_to_many_outputs(repo):
    p = two_tasks()
    p.add_task("c", SplitTask)
    graph = QuantumGraphBuilder(repo, p, ["run/a"], "out/run", where="visit = 1").build()
    split = [q for q in graph if q.task == "c"][0]
    assert [dict(n.data_id.required)["detector"] for n in split.outputs["shares"]] == list(DETECTORS)


def test_spatial_join_onto_patches(repo):
    add_skymap(repo)
    p = Pipeline()
    p.add_task("a", ScaleTask)
    p.add_task("patches", PatchCountTask)
    graph = QuantumGraphBuilder(repo, p, ["run/a"], "out/run").build()
    patches = {q.data_id["patch"]: {n.data_id["visit"] for n in q.inputs["scaled"]}
               for q in graph if q.task == "patches"}
    assert patches == {0: {1}, 1: {2}}


def test_calibrations_are_found_by_observation_time(repo):
    add_bias(repo)
    p = Pipeline()
    p.add_task("a", CalibratedScaleTask)
    graph = QuantumGraphBuilder(repo, p, ["run/a", "calib"], "out/run").build()
    runs = {r.id: r.run for r in repo.query_datasets("bias", collections=["calib/early", "calib/late"],
                                                         find_first=False)}
    picked = {(q.data_id["visit"], q.data_id["detector"]): runs[q.prerequisites["bias"][0].id] for q in graph}
    assert {v for (v, _), run in picked.items() if run == "calib/early"} == {1, 2, 3}
    assert {v for (v, _), run in picked.items() if run == "calib/late"} == {4, 5, 6}


def test_a_missing_calibration_drops_only_its_quanta(repo):
    add_bias(repo)
    p = Pipeline()
    p.add_task("a", CalibratedScaleTask)
    graph = QuantumGraphBuilder(repo, p, ["run/a", "calib/early"], "out/run").build()  # not the CALIBRATION
    assert len(graph) == len(VISITS) * len(DETECTORS)
    repo.collections.decertify("calib", "bias", None, None)
    graph = QuantumGraphBuilder(repo, p, ["run/a", "calib"], "out/run").build()
    assert len(graph) == 0 and len(graph.dropped) == len(VISITS) * len(DETECTORS)
    assert "no bias (prerequisite 'bias') for {'instrument': 'Cam', 'detector': 0} valid at the observation time" \
        in graph.dropped[0]["reason"]


def test_a_missing_input_leaves_out_its_quantum_only(repo):
    repo.remove([repo.find_dataset("metrics", instrument="Cam", visit=1, detector=2)])
    graph = QuantumGraphBuilder(repo, two_tasks(), ["run/a"], "out/run").build()
    assert graph.counts()["a"] == len(VISITS) * len(DETECTORS) - 1
    assert len([q for q in graph if q.task == "b" and q.data_id["visit"] == 1][0].inputs["scaled"]) == 3


def test_save_and_load(repo, tmp_path):
    add_bias(repo)
    p = Pipeline()
    p.add_task("a", CalibratedScaleTask, {"factor": 4})
    p.add_task("b", VisitSummaryTask)
    graph = QuantumGraphBuilder(repo, p, ["run/a", "calib"], "out/run", output="out", where="visit < 3").build()
    graph.save(tmp_path / "g.qg")
    again = QuantumGraph.load(tmp_path / "g.qg")
    assert again.summary() == graph.summary() and again.quanta == graph.quanta
    assert again.pipeline["a"].config.factor == 4
    (tmp_path / "bad.qg").write_text("{}")
    with pytest.raises(QuantumGraphError, match="not a skybutler quantum graph"):
        QuantumGraph.load(tmp_path / "bad.qg")
    # a graph of quantum objects is written in the version-1 layout, which is still read
    listed = dataclasses.replace(graph, quanta=list(graph.quanta))
    first = graph.first_of_each_task(3)
    assert first == listed.first_of_each_task(3) and [q.task for q in first] == ["a"] * 3 + ["b"] * 2
    listed.save(tmp_path / "v1.qg")
    assert json.loads((tmp_path / "v1.qg").read_text())["version"] == 1
    assert QuantumGraph.load(tmp_path / "v1.qg").quanta == graph.quanta
    # damaged columns fail at load, naming what is wrong, not half-way through a run
    data = json.loads((tmp_path / "g.qg").read_text())
    assert data["version"] == 2
    for damage, why in ((lambda d: d["tasks"][0]["links"]["inputs"]["metrics"]["offsets"].update(int64="AAAA"),
                         "malformed"),
                        (lambda d: d["tasks"][0]["links"]["inputs"]["metrics"]["rows"].update(int64="!"), "malformed"),
                        (lambda d: d["tasks"][0]["values"][0].update(codes="BQAAAA=="), "name no value"),
                        (lambda d: d["datasets"]["metrics"].update(ids="x" * len(d["datasets"]["metrics"]["ids"])),
                         "UUID"),
                        (lambda d: d["tasks"][1].update(start=0), "out of place")):
        broken = json.loads(json.dumps(data))
        damage(broken)
        (tmp_path / "broken.qg").write_text(json.dumps(broken))
        with pytest.raises(QuantumGraphError, match=why):
            QuantumGraph.load(tmp_path / "broken.qg")


def test_existing_outputs_are_skipped_or_refused_or_clobbered(repo):
    p = two_tasks()
    repo.register_dataset_type("metricsA", VD, "Dict")
    repo.put_many("metricsA", [({"x": 0}, {"instrument": "Cam", "visit": 1, "detector": d}) for d in DETECTORS],
                  run="out/run")
    with pytest.raises(QuantumGraphError, match="4 quanta would overwrite outputs already in RUN 'out/run'"):
        QuantumGraphBuilder(repo, p, ["run/a"], "out/run").build()
    skipped = QuantumGraphBuilder(repo, p, ["run/a"], "out/run", skip_existing_in=["out/run"]).build()
    assert skipped.skipped == {"a": 4} and skipped.counts()["a"] == len(VISITS) * len(DETECTORS) - 4
    gather = [q for q in skipped if q.task == "b" and q.data_id["visit"] == 1][0]
    assert all(n.id is not None and n.producer is None for n in gather.inputs["scaled"])
    clobbered = QuantumGraphBuilder(repo, p, ["run/a"], "out/run", clobber=True).build()
    assert sum(len(q.clobber) for q in clobbered) == 4


def test_resume_needs_an_earlier_run(repo):
    with pytest.raises(PipelineError, match="nothing to resume"):
        build_graph(repo, two_tasks(), ["run/a"], "out", resume=True)
    repo.collections.register("plain", "run")
    with pytest.raises(PipelineError, match="'plain' exists as a RUN collection"):
        build_graph(repo, two_tasks(), ["run/a"], "plain")
