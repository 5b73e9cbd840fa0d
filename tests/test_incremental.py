"""Incremental processing: staleness from provenance (against a brute-force recomputation of
each product's inputs in plain Python), task code and config identity, and incremental runs
(against a full re-run)."""

from __future__ import annotations

import json

import pytest
from astropy.time import Time
from click.testing import CliRunner

from conftest import STACKS, built_repository, template_repository, visit_pointing
from pipeline_helpers import DETECTORS, add_bias, add_skymap
from skybutler.cli.main import cli
from skybutler.dimensions import regions
from skybutler.errors import SkybutlerError
from skybutler.execution import build_graph, run_pipeline
from skybutler.pipeline import Pipeline
from skybutler.pipeline.testing import CalibratedScaleTask, PatchCountTask, VisitSummaryTask

INPUTS = ["run/a", "calib"]
#: Visits whose observation starts after the bias switch (see pipeline_helpers.add_bias).
LATE = {4, 5, 6}
#: The bias switch: where the late bias's validity begins.
SWITCH = Time("2025-01-02T00:05:00", scale="tai")


def supersede_bias(butler, detectors=DETECTORS) -> list:
    """Decertify every bias from SWITCH on and certify a newer one (level 3) of ``detectors`` in
    its place; the newer biases' refs."""
    butler.collections.decertify("calib", "bias", SWITCH, None)
    newer = butler.put_many("bias", [({"level": 3}, {"instrument": "Cam", "detector": d}) for d in detectors],
                            run="calib/newer")
    butler.collections.certify("calib", newer, SWITCH, None)
    return newer


def pipeline(b_config=None, **config) -> Pipeline:
    p = Pipeline()
    p.add_task("a", CalibratedScaleTask, config or None)
    p.add_task("b", VisitSummaryTask, b_config)
    p.add_task("c", PatchCountTask)
    return p


def put(butler, pairs):
    return butler.put_many("metrics", [({"visit": v, "detector": d, "x": 1.0},
                                        {"instrument": "Cam", "visit": v, "detector": d}) for v, d in pairs],
                           run="run/a")


# -- the oracle: each product's inputs from the metrics that exist, in plain Python ---------------

def patch_overlaps(pairs):
    """(patch -> the (visit, detector) pairs overlapping it), from the regions add_skymap writes."""
    out = {}
    for p in range(2):
        patch = regions.rectangle(*visit_pointing(p + 1), 2.0, 2.0)
        for v, d in pairs:
            det = regions.rectangle(visit_pointing(v)[0] + 0.4 * (d - 1.5), visit_pointing(v)[1], 0.3, 0.3)
            if patch.overlaps(det):
                out.setdefault(p, set()).add((v, d))
    return out


def expected_inputs(pairs):
    """Per product (type, key): the set of metrics data IDs it is made from."""
    out = {("metricsA", (v, d)): {(v, d)} for v, d in pairs}
    for v in {v for v, _ in pairs}:
        out[("visitSummary", (v,))] = {(vv, d) for vv, d in pairs if vv == v}
    for p, members in patch_overlaps(pairs).items():
        out[("patchCount", (p,))] = members
    return out


def calibration_of(key):
    dtype, values = key
    return {values[0] in LATE} if dtype == "metricsA" else None


def expected_stale(before, after, recalibrated=frozenset()):
    """Products stale after the metrics went from ``before`` to ``after`` (and the bias of the
    visits ``recalibrated`` changed): a product is stale when its input set changed or one of
    its inputs' metricsA was recalibrated; products with no inputs left are stale too."""
    old, new = expected_inputs(before), expected_inputs(after)
    stale = set()
    for key, members in old.items():
        if new.get(key) != members or any(v in recalibrated for v, _ in members):
            stale.add(key)
    return stale


@pytest.fixture(params=["sqlite"])
def stack(request) -> str:
    """SQLite only, but for the tests parametrized with every stack: the SQL of staleness is one
    statement shape on both, which those two exercise (CI time)."""
    return request.param


def _run(butler):
    """Bias, skymap and metrics of visits 1-4 but (2, 3), run into 'out'; those (visit, detector)s."""
    add_bias(butler)
    add_skymap(butler)
    before = {(v, d) for v in (1, 2, 3, 4) for d in DETECTORS} - {(2, 3)}
    put(butler, sorted(before))
    report = run_pipeline(butler, pipeline(), INPUTS, "out")
    assert report.ok
    return frozenset(before)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return template_repository(tmp_path_factory, _run)


@pytest.fixture
def repo(request, stack):
    """The ``butler`` repository after _run: its own copy of the module's on SQLite."""
    return built_repository(request, stack, "template", _run)


def keys_of(products):
    return {(p.dataset_type, tuple(v for k, v in p.data_id.items() if k not in ("instrument", "skymap", "tract")))
            for p in products}


def all_stale(butler, **kwargs):
    out = []
    for name in ("metricsA", "visitSummary", "patchCount"):
        out += butler.provenance.stale(name, ["out"], **kwargs)
    return out


def test_nothing_is_stale_right_after_a_run(repo):
    butler, _ = repo
    assert all_stale(butler) == []
    assert all_stale(butler, config=True, software=True) == []


@pytest.mark.parametrize("stack", STACKS)
def test_added_and_removed_inputs_match_the_brute_force_input_sets(repo):
    butler, before = repo
    put(butler, [(2, 3), (5, 0), (5, 1)])
    gone = butler.find_dataset("metrics", instrument="Cam", visit=3, detector=1, collections="run/a")
    butler.remove([gone])
    after = (before | {(2, 3), (5, 0), (5, 1)}) - {(3, 1)}
    found = all_stale(butler)
    assert keys_of(found) == expected_stale(before, after)
    by_key = {k: p for k, p in zip([next(iter(keys_of([p]))) for p in found], found)}
    summary2 = by_key[("visitSummary", (2,))]
    assert summary2.added == ["metricsA@{visit: 2, detector: 3}"] and summary2.removed == []
    summary3 = by_key[("visitSummary", (3,))]
    assert summary3.removed == ["metricsA@{visit: 3, detector: 1}"] and summary3.added == []
    orphan = by_key[("metricsA", (3, 1))]
    assert "no inputs today" in orphan.reasons[0]
    assert all(p.run.startswith("out/") for p in found)


def test_a_superseded_calibration_makes_its_products_and_everything_below_stale(repo):
    butler, before = repo
    supersede_bias(butler)
    found = all_stale(butler)
    assert keys_of(found) == expected_stale(before, before, recalibrated=LATE)
    scaled = [p for p in found if p.dataset_type == "metricsA"]
    assert all("calibration bias@{detector: " in p.reasons[0] and "superseded" in p.reasons[0] for p in scaled)
    # decertified with nothing in its place: the products cannot be made today
    butler.collections.decertify("calib", "bias", SWITCH, None)
    orphans = butler.provenance.stale("metricsA", ["out"])
    assert {p.data_id["visit"] for p in orphans} == {4}
    assert all("calibration decertified or missing: no bias" in p.reasons[0] for p in orphans)


def test_config_and_code_identity(repo, monkeypatch):
    butler, _ = repo
    changed = pipeline(factor=3.0)
    assert butler.provenance.stale("metricsA", ["out"], pipeline=changed, config=False) == []
    found = butler.provenance.stale("metricsA", ["out"], pipeline=changed)
    assert len(found) == 16 - 1 and all(p.reasons == ["config changed"] for p in found)
    # A different content hash of the task's code is a code change; the YAML form of the same
    # pipeline (classes and config unchanged) is not.
    import skybutler.provenance.staleness as staleness

    monkeypatch.setattr(staleness, "code_hash", lambda cls: "0" * 64)
    found = butler.provenance.stale("metricsA", ["out"], software=True)
    assert found and all(p.reasons == ["task code changed"] for p in found)
    monkeypatch.undo()
    same = Pipeline.from_dict(pipeline().to_dict())
    assert butler.provenance.stale("patchCount", ["out"], pipeline=same, config=True, software=True) == []


def test_stale_lists_the_products_of_exactly_the_quanta_an_incremental_run_redoes(repo):
    """One definition: with the same pipeline, the products ``stale`` lists (every type, as sets)
    are those the incremental run remakes, for a config change, an added and a removed input
    and a superseded calibration; and neither counts a config change when told not to."""
    butler, before = repo
    put(butler, [(2, 3)])
    butler.remove([butler.find_dataset("metrics", instrument="Cam", visit=3, detector=1, collections="run/a")])
    supersede_bias(butler, [1])
    today = pipeline(b_config={"fail_on": [{"visit": 99}]})  # a config change that changes no output
    old_products = set(view(butler, "out"))
    listed = keys_of(all_stale(butler, pipeline=today))
    listed_ids = {(p.dataset_type, p.dataset_id) for p in all_stale(butler, pipeline=today)}
    report = run_pipeline(butler, today, INPUTS, "out", incremental=True, calibrations="today")
    assert report.ok
    remade = {(t, k[1:] if t != "patchCount" else k[-1:]) for t, k in view(butler, report.run)} & \
        {(t, k[1:] if t != "patchCount" else k[-1:]) for t, k in old_products}
    # No quantum would make these today (listed, not remade): the one whose only input was
    # removed, and visit 4's on the detectors whose bias was decertified and not replaced.
    orphans = {("metricsA", (3, 1))} | {("metricsA", (4, d)) for d in (0, 2, 3)}
    assert listed == remade | orphans
    assert {("visitSummary", (v,)) for v in (1, 2, 3, 4)} <= listed  # the config change of task b
    assert ("metricsA", (4, 1)) in remade and ("metricsA", (5, 1)) not in listed  # the new bias; a new visit
    assert len(listed_ids) == len(listed)
    # After the run only the orphans are stale; against the old config, the summaries just made
    # are, unless config is ignored.
    assert keys_of(all_stale(butler, pipeline=today)) == orphans
    assert keys_of(all_stale(butler, pipeline=pipeline())) == orphans | {("visitSummary", (v,)) for v in (1, 2, 3, 4)}
    assert keys_of(all_stale(butler, pipeline=pipeline(), config=False)) == orphans


def decisions_of(butler, today, **kwargs):
    """Each quantum's verdict on ``today``'s graph, judged on its columns and, as the oracle, on
    the same graph made into quantum objects first (one quantum at a time)."""
    from skybutler.pipeline import QuantumGraphBuilder
    from skybutler.provenance.staleness import assess

    def verdicts(graph):
        result = assess(butler, graph, ["out"], **kwargs)
        return [(d.index, d.task, d.data_id, d.status, d.recorded and d.recorded.quantum_id, d.reasons, d.added,
                 d.removed, d.calibrations, d.products) for d in result.decisions], \
            [o.to_dict() for o in result.orphans]

    build = lambda: QuantumGraphBuilder(butler, today, ["out"], "x", output="out").build()  # noqa: E731
    columnar = build()
    assert columnar.columnar
    return verdicts(columnar), verdicts(build().materialise())


def test_decisions_on_columns_equal_the_per_quantum_ones(repo, monkeypatch):
    """Added, removed and replaced inputs, a superseded calibration, a decertified one, a
    config change and a code change: every verdict, reason and product is the same whether the
    graph is judged on its columns or one quantum object at a time."""
    butler, _ = repo
    same = decisions_of(butler, pipeline())
    assert same[0] == same[1] and {d[3] for d in same[0][0]} == {"current"}
    put(butler, [(2, 3), (5, 0)])
    butler.remove([butler.find_dataset("metrics", instrument="Cam", visit=3, detector=1, collections="run/a")])
    gone = butler.find_dataset("metrics", instrument="Cam", visit=1, detector=2, collections="run/a")
    butler.remove([gone])
    put(butler, [(1, 2)])  # the same data ID, another dataset: replaced
    supersede_bias(butler, [1])
    for today, kwargs in [(pipeline(), {}), (pipeline(b_config={"fail_on": [{"visit": 99}]}), {}),
                          (pipeline(b_config={"fail_on": [{"visit": 99}]}), {"config": False})]:
        columns, objects = decisions_of(butler, today, **kwargs)
        assert columns == objects
        statuses = {d[3] for d in columns[0]}
        assert statuses == {"current", "stale", "new"} and columns[1]
    # The graph less its current quanta, made from the columns or from all the objects: the same.
    from skybutler.pipeline import QuantumGraphBuilder
    from skybutler.provenance.staleness import assess

    build = lambda: QuantumGraphBuilder(butler, pipeline(), ["out"], "x", output="out").build()  # noqa: E731
    done = {d.index: d.products for d in assess(butler, build(), ["out"]).decisions if d.status == "current"}
    lean, full = build().without(done), build().materialise().without(done)
    assert list(lean.quanta) == list(full.quanta) and lean.unchanged == full.unchanged and len(lean) > 3
    import skybutler.provenance.staleness as staleness

    monkeypatch.setattr(staleness, "code_hash", lambda cls: "0" * 64)
    columns, objects = decisions_of(butler, pipeline(), software=True)
    assert columns == objects and "current" not in {d[3] for d in columns[0]}


def test_cli_stale(repo):
    butler, before = repo
    put(butler, [(2, 3)])
    runner = CliRunner()
    result = runner.invoke(cli, ["stale", str(butler.root), "visitSummary", "-c", "out", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["data_id"]["visit"] for r in rows] == [2]
    assert rows[0]["added"] == ["metricsA@{visit: 2, detector: 3}"]
    result = runner.invoke(cli, ["stale", str(butler.root), "visitSummary", "-c", "out", "-w", "visit = 1"])
    assert result.exit_code == 0 and "0 of 1 visitSummary" in result.output
    result = runner.invoke(cli, ["stale", str(butler.root), "nope", "-c", "out"])
    assert result.exit_code == 1 and "nope" in result.output and "Traceback" not in result.output


# -- incremental runs ----------------------------------------------------------------------------

TYPES = ("metricsA", "visitSummary", "patchCount")


def view(butler, collection):
    """The find-first products of ``collection``: (type, data-ID values) -> checksum of the file."""
    out = {}
    for name in TYPES:
        refs = list(butler.query_datasets(name, collections=collection))
        artifacts = butler.registry.datasets.artifacts([r.id for r in refs])
        for ref in refs:
            out[(name, ref.data_id.required_values)] = artifacts[ref.id].checksum
    return out


def ran(butler, run):
    """(task, data-ID values) of every quantum recorded in ``run``."""
    keys = {"a": ("visit", "detector"), "b": ("visit",), "c": ("patch",)}
    return {(q.task_label, tuple(q.data_id[k] for k in keys[q.task_label]))
            for q in butler.provenance.quanta(run=run)}


def as_quanta(products):
    task = {"metricsA": "a", "visitSummary": "b", "patchCount": "c"}
    return {(task[t], k) for t, k in products}


@pytest.mark.parametrize("stack", STACKS)
def test_an_incremental_run_redoes_exactly_the_stale_and_new_quanta_and_equals_a_full_rerun(repo):
    butler, before = repo
    first = butler.collections.get_chain("out")[0]
    put(butler, [(2, 3), (5, 0), (5, 1)])
    butler.remove([butler.find_dataset("metrics", instrument="Cam", visit=3, detector=1, collections="run/a")])
    after = (before | {(2, 3), (5, 0), (5, 1)}) - {(3, 1)}
    report = run_pipeline(butler, pipeline(), INPUTS, "out", incremental=True)
    assert report.ok and report.run != first
    assert butler.collections.get_chain("out")[:2] == (report.run, first)
    old, new = expected_inputs(before), expected_inputs(after)
    redo = {k for k in expected_stale(before, after) if k in new} | (set(new) - set(old))
    assert ran(butler, report.run) == as_quanta(redo)
    kept = as_quanta(k for k in old if k in new and k not in redo)
    assert report.unchanged == {t: n for t in "abc" if (n := sum(1 for task, _ in kept if task == t))}
    assert any("would not be made today" in n and "metricsA" in n for n in report.notes)
    # The chain's view equals a full re-run, product for product and byte for byte, except the
    # product whose only input was removed: it stays, reported, in its old RUN.
    full = run_pipeline(butler, pipeline(), INPUTS, "full")
    assert full.ok
    incremental_view = view(butler, "out")
    assert incremental_view.pop(("metricsA", ("Cam", 3, 1)))
    assert incremental_view == view(butler, "full")
    # The old products stay queryable in their RUN.
    assert butler.find_dataset("visitSummary", instrument="Cam", visit=2, collections=first) is not None


def test_an_incremental_run_with_nothing_new_runs_nothing_and_says_so(repo, tmp_path):
    butler, _ = repo
    chain = butler.collections.get_chain("out")
    report = run_pipeline(butler, pipeline(), INPUTS, "out", incremental=True)
    assert report.total == 0 and report.run == "" and sum(report.unchanged.values()) == 15 + 4 + 2
    assert "nothing to do" in report.describe()
    assert butler.collections.get_chain("out") == chain
    from pipeline_helpers import TASKS, write_pipeline

    yaml_file = write_pipeline(tmp_path / "p.yaml", {"a": f"{TASKS}.CalibratedScaleTask",
                                                     "b": f"{TASKS}.VisitSummaryTask", "c": f"{TASKS}.PatchCountTask"})
    args = ["run", yaml_file, "-b", str(butler.root), "-i", ",".join(INPUTS), "-o", "out", "--incremental",
            "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "nothing to do: all 21 quanta are current in 'out'" in result.output
    put(butler, [(2, 3)])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and "3 succeeded" in result.output and "19 unchanged quanta kept" in result.output
    assert "2 quanta redone (inputs added: 2)" in result.output  # and one new
    result = CliRunner().invoke(cli, args[:-2] + ["--calibrations", "today"])
    assert result.exit_code == 1 and "--calibrations, --software and --ignore-config go with --incremental" in result.output


def test_an_incremental_run_can_ignore_a_changed_config(repo, tmp_path):
    """A config change alone redoes its task's quanta, unless told to ignore configs (Python
    ``config=False``, CLI ``--ignore-config``); an added input is still redone then."""
    butler, _ = repo
    today = pipeline(b_config={"fail_on": [{"visit": 99}]})
    graph = build_graph(butler, today, INPUTS, "out", incremental=True)
    assert len(graph) == 4 and graph.stale == {"b": 4}
    report = run_pipeline(butler, today, INPUTS, "out", incremental=True, config=False)
    assert report.total == 0 and "nothing to do" in report.describe()
    with pytest.raises(SkybutlerError, match="config=False .* goes with incremental=True"):
        build_graph(butler, today, INPUTS, "out", config=False)
    from pipeline_helpers import TASKS, write_pipeline

    tasks = {"a": f"{TASKS}.CalibratedScaleTask", "c": f"{TASKS}.PatchCountTask",
             "b": {"class": f"{TASKS}.VisitSummaryTask", "config": {"fail_on": [{"visit": 99}]}}}
    yaml_file = write_pipeline(tmp_path / "p.yaml", tasks)
    args = ["run", yaml_file, "-b", str(butler.root), "-i", ",".join(INPUTS), "-o", "out", "--incremental",
            "--no-progress", "--ignore-config"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and "nothing to do" in result.output, result.output
    put(butler, [(2, 3)])
    result = CliRunner().invoke(cli, args + ["--json"])
    assert result.exit_code == 0, result.output
    assert ran(butler, json.loads(result.output)["run"]) == \
        {("a", (2, 3)), ("b", (2,))} | {("c", (p,)) for p in patch_overlaps([(2, 3)])}
    result = CliRunner().invoke(cli, args[:-3] + ["--ignore-config"])
    assert result.exit_code == 1 and "go with --incremental" in result.output


def test_a_superseded_calibration_follows_the_users_choice(repo):
    butler, before = repo
    chain = butler.collections.get_chain("out")
    supersede_bias(butler)
    with pytest.raises(SkybutlerError, match=r"4 quanta read a calibration that was decertified or superseded .*"
                                             r"calibration bias@\{detector: 0\} superseded.*--calibrations"):
        run_pipeline(butler, pipeline(), INPUTS, "out", incremental=True)
    assert butler.collections.get_chain("out") == chain
    kept = run_pipeline(butler, pipeline(), INPUTS, "out", incremental=True, calibrations="recorded")
    assert kept.total == 0 and any("read their recorded calibration" in n for n in kept.notes)
    redo = run_pipeline(butler, pipeline(), INPUTS, "out", incremental=True, calibrations="today")
    assert redo.ok and ran(butler, redo.run) == as_quanta(expected_stale(before, before, recalibrated=LATE))
    assert {butler.get("metricsA", instrument="Cam", visit=4, detector=d, collections="out")["bias"]
            for d in DETECTORS} == {3}
    assert run_pipeline(butler, pipeline(), INPUTS, "full").ok
    assert view(butler, "out") == view(butler, "full")


def test_a_recompute_whose_calibration_changed_says_so_and_follows_the_choice(repo):
    from skybutler.retention.ondemand import CalibrationChangedError, RecomputeOptions

    butler, _ = repo
    ref = butler.find_dataset("metricsA", instrument="Cam", visit=4, detector=2, collections="out")
    original = butler.get(ref)
    butler.retention.purge([ref])
    newer = supersede_bias(butler)
    with pytest.raises(CalibrationChangedError, match=r"bias@\{'instrument': 'Cam', 'detector': 2\}.* was "
                                                      r"superseded by .* in 'calib'.*on_calibration='recorded'"):
        butler.get(ref, recompute=True)
    assert butler.retention.state(ref).state == "purged-recomputable"
    recorded_bias = {link.dataset_id for q in butler.provenance.quanta(run=ref.run) for link in q.inputs
                     if link.prerequisite and q.data_id.get("visit") == 4 and q.data_id.get("detector") == 2}
    assert butler.get(ref, recompute=RecomputeOptions(on_calibration="recorded")) == original
    assert "recorded calibration used: bias@" in butler.retention.state(ref).note
    # Today's: the bias certified now (level 3) is read, the product says so, and so does its
    # provenance; the recorded bias stays named in the note.
    butler.retention.purge([ref])
    today = butler.get(ref, recompute=RecomputeOptions(on_calibration="today"))
    assert today["bias"] == 3 and original["bias"] == 2 and {k: v for k, v in today.items() if k != "bias"} == \
        {k: v for k, v in original.items() if k != "bias"}
    assert butler.get(ref) == today and butler.retention.state(ref).state == "stored"
    note = butler.retention.state(ref).note
    assert "today's calibration used instead: bias@" in note and str(next(iter(recorded_bias))) in note
    (quantum,) = [q for q in butler.provenance.quanta(run=ref.run) if any(o.dataset_id == ref.id for o in q.outputs)]
    assert [link.dataset_id for link in quantum.inputs if link.prerequisite] == [newer[2].id]
    # The same through a worker pool (the workers are told which calibration to read).
    other = butler.find_dataset("metricsA", instrument="Cam", visit=4, detector=1, collections="out")
    butler.retention.purge([other])
    result = CliRunner().invoke(cli, ["recompute", str(butler.root), str(other.id), "--calibrations", "today",
                                      "--executor", "pool", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert butler.get(other)["bias"] == 3 and "today's calibration used instead" in butler.retention.state(other).note
    # Decertified with nothing in its place: refused by default and for today's (nothing to use),
    # recreated with the recorded one when asked.
    butler.retention.purge([ref])
    butler.collections.decertify("calib", "bias", SWITCH, None)
    result = CliRunner().invoke(cli, ["recompute", str(butler.root), str(ref.id)])
    assert result.exit_code == 1 and "was decertified (nothing is certified" in result.output
    result = CliRunner().invoke(cli, ["recompute", str(butler.root), str(ref.id), "--calibrations", "today"])
    assert result.exit_code == 1 and "cannot recompute with today's calibration" in result.output
    assert "Traceback" not in result.output and butler.retention.state(ref).state == "purged-recomputable"
    result = CliRunner().invoke(cli, ["recompute", str(butler.root), str(ref.id), "--calibrations", "recorded"])
    assert result.exit_code == 0, result.output
