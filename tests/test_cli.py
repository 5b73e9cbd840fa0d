"""The ``skybutler`` command line, run through click's CliRunner on real repositories."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml
from click.testing import Result

from conftest import run_cli as run
from skybutler import Butler, Timespan
from skybutler.cli.main import cli
from skybutler.cli.repo_commands import strip_password

COMMANDS = ["create", "register-dataset-type", "query-dataset-types", "query-collections", "collection-chain",
            "register-collection", "remove-runs", "remove-collections", "certify-calibrations", "ingest-files",
            "insert-records", "put", "get", "config-dump"]


def run_json(*args: object) -> object:
    """Invoke a command with ``--json``; its stdout must be pure JSON."""
    return json.loads(run(*args, "--json").stdout)


def fails(*args: object, message: str, code: int = 1) -> Result:
    """Invoke a command expected to fail; skybutler errors are one red line on stderr."""
    result = run(*args, code=code)
    if code == 1:
        assert result.stderr.startswith("error: "), result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    return result


@pytest.fixture
def repo(butler: Butler) -> Path:
    """A repository with camera records, a ``metrics`` Dict type over (instrument, visit, detector)
    a calibration ``bias`` Dict type over (instrument, detector) and an empty RUN ``run/a``."""
    butler.collections.register("run/a", "run")
    butler.register_dataset_type("bias", ["instrument", "detector"], "Dict", is_calibration=True)
    return butler.root


def fresh(repo: Path) -> Butler:
    return Butler(repo)


# -- the command group --------------------------------------------------------


def test_help_lists_every_command():
    out = run("--help").stdout
    for name in COMMANDS:
        assert name in out


def test_entry_point_is_the_cli_group():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "skybutler"]
    assert script.value == "skybutler.cli.main:cli"
    assert script.load() is cli


def test_unknown_repository_is_a_clean_error(tmp_path):
    fails("query-collections", tmp_path / "nowhere", message="is not a skybutler repository")


# -- create and config-dump ---------------------------------------------------


def test_create_then_config_dump(tmp_path):
    root = tmp_path / "new"
    assert "created repository" in run("create", root, "--checksum", "none").stdout
    dumped = run("config-dump", root).stdout
    config = yaml.safe_load(dumped)
    assert config["checksum"] is None
    assert config["registry"] == f"sqlite:///{root / 'registry.sqlite3'}"
    assert config["datastore"] == str(root / "datastore")
    assert "default" in config["templates"]
    assert config["universe"] == "default"
    assert "# dimension universe 'default' version " in dumped
    assert json.loads(run("config-dump", root, "--json").stdout) == config
    (root / "butler.yaml").write_text(dumped)  # the dump is a butler.yaml: it opens the same repository
    assert yaml.safe_load(run("config-dump", root).stdout) == config
    fails("create", root, message="a repository already exists")
    run("create", root, "--checksum", "md5", code=2)


def test_strip_password():
    assert strip_password("postgresql://ana:secret@db.example:5432/survey?schema=s") == \
        "postgresql://ana@db.example:5432/survey?schema=s"
    assert strip_password("sqlite:////tmp/r/registry.sqlite3") == "sqlite:////tmp/r/registry.sqlite3"


# -- insert-records -----------------------------------------------------------


def test_insert_records_from_yaml_and_json(tmp_path):
    root = tmp_path / "r"
    run("create", root)
    (tmp_path / "inst.yaml").write_text("- {name: Cam, detector_max: 4, visit_max: 100}\n")
    (tmp_path / "det.json").write_text(json.dumps([{"instrument": "Cam", "id": d, "full_name": f"S{d}"}
                                                   for d in (1, 2)]))
    (tmp_path / "day.yaml").write_text(
        "- {instrument: Cam, id: 20250101, timespan: {begin: '2025-01-01T12:00:00', end: '2025-01-02T12:00:00'}}\n")
    assert "inserted 1 new instrument" in run("insert-records", root, "instrument", tmp_path / "inst.yaml").stdout
    assert "inserted 2 new detector" in run("insert-records", root, "detector", tmp_path / "det.json").stdout
    run("insert-records", root, "day_obs", tmp_path / "day.yaml")
    assert "inserted 0 new" in run("insert-records", root, "detector", tmp_path / "det.json",
                                   "--skip-existing").stdout
    with fresh(root) as b:
        assert b.get_record("detector", instrument="Cam", detector=2)["full_name"] == "S2"
        span = b.get_record("day_obs", instrument="Cam", day_obs=20250101)["timespan"]
        assert span == Timespan("2025-01-01T12:00:00", "2025-01-02T12:00:00")


def test_insert_records_failures(tmp_path):
    root = tmp_path / "r"
    run("create", root)
    (tmp_path / "bad.yaml").write_text("- {name: Cam, colour: blue}\n")
    fails("insert-records", root, "instrument", tmp_path / "bad.yaml", message="has no field(s) colour")
    (tmp_path / "scalar.yaml").write_text("42\n")
    fails("insert-records", root, "instrument", tmp_path / "scalar.yaml", message="must hold a list of records")
    (tmp_path / "span.yaml").write_text("- {instrument: Cam, id: 1, timespan: [2025-01-02, 2025-01-01]}\n")
    fails("insert-records", root, "day_obs", tmp_path / "span.yaml", message="bad timespan")
    fails("insert-records", root, "nosuch", tmp_path / "scalar.yaml", message="must hold a list")


# -- dataset types ------------------------------------------------------------


def test_register_and_query_dataset_types(repo):
    out = run("register-dataset-type", repo, "calexp", "instrument", "visit", "detector", "-s", "Image").stdout
    assert "registered dataset type calexp" in out
    assert "already exists" in run("register-dataset-type", repo, "calexp", "instrument", "visit", "detector",
                                   "--storage-class", "Image").stdout
    listed = run_json("query-dataset-types", repo)
    assert [t["name"] for t in listed] == ["bias", "calexp", "metrics"]
    assert {"name": "bias", "dimensions": ["instrument", "detector"], "storage_class": "Dict",
            "is_calibration": True} in listed
    assert [t["name"] for t in run_json("query-dataset-types", repo, "cal*")] == ["calexp"]
    assert "calexp" in run("query-dataset-types", repo).stdout
    assert run_json("query-dataset-types", repo, "zzz*") == []
    assert "no dataset types match" in run("query-dataset-types", repo, "zzz*").stdout


def test_register_dataset_type_failures(repo):
    fails("register-dataset-type", repo, "x", "visit", "-s", "NoSuchClass", message="Unknown storage class")
    fails("register-dataset-type", repo, "metrics", "instrument", "-s", "Dict", message="metrics")
    fails("register-dataset-type", repo, "x", "nosuchdim", "-s", "Dict", message="nosuchdim")
    # without --storage-class the first argument after the name is the storage class (as the Rubin butler's)
    fails("register-dataset-type", repo, "x", "visit", message="Unknown storage class 'visit'")
    run("register-dataset-type", repo, "x", code=2)  # no storage class at all


# -- collections --------------------------------------------------------------


def test_register_and_query_collections(repo):
    run("register-collection", repo, "best", "--type", "tagged", "--doc", "hand-picked")
    assert "already exists" in run("register-collection", repo, "best", "--type", "TAGGED").stdout
    run("register-collection", repo, "calib", "--type", "calibration")
    run("collection-chain", repo, "defaults", "run/a", "calib")
    listed = {c["name"]: c for c in run_json("query-collections", repo)}
    assert listed["best"] == {"name": "best", "type": "tagged", "children": [], "doc": "hand-picked"}
    assert listed["defaults"]["children"] == ["run/a", "calib"]
    assert [c["name"] for c in run_json("query-collections", repo, "--type", "run", "--type", "tagged")] == \
        ["best", "run/a"]
    flat = run_json("query-collections", repo, "def*", "--flatten")
    assert [c["name"] for c in flat] == ["defaults", "run/a", "calib"]
    table = run("query-collections", repo).stdout
    assert "defaults" in table and "chained" in table
    assert "no collections match" in run("query-collections", repo, "zzz").stdout


def test_register_collection_failures(repo):
    run("register-collection", repo, "x", "--type", "weird", code=2)
    run("register-collection", repo, "x", code=2)
    fails("register-collection", repo, "run/a", "--type", "tagged", message="exists with type RUN")


def test_collection_chain_modes(repo):
    for name in ("b", "c", "d"):
        run("register-collection", repo, name, "--type", "tagged")
    assert "chain = run/a, b" in run("collection-chain", repo, "chain", "run/a", "b").stdout
    run("collection-chain", repo, "chain", "c", "--mode", "prepend")
    run("collection-chain", repo, "chain", "d", "--mode", "extend")
    with fresh(repo) as b:
        assert b.collections.get_chain("chain") == ("c", "run/a", "b", "d")
    run("collection-chain", repo, "chain", "b", "--mode", "redefine")
    with fresh(repo) as b:
        assert b.collections.get_chain("chain") == ("b",)


def test_collection_chain_failures(repo):
    run("collection-chain", repo, "outer", "run/a")
    run("collection-chain", repo, "inner", "outer")
    fails("collection-chain", repo, "outer", "inner", "--mode", "extend", message="would contain itself")
    fails("collection-chain", repo, "outer", "outer", message="would contain itself")
    fails("collection-chain", repo, "outer", "nosuch", message="no collection named 'nosuch'")
    fails("collection-chain", repo, "fresh", "nosuch", message="no collection named 'nosuch'")
    assert "fresh" not in [c["name"] for c in run_json("query-collections", repo)]  # a refusal changes nothing
    fails("collection-chain", repo, "run/a", "outer", message="run/a")  # a RUN cannot become a chain
    run("collection-chain", repo, "outer", "run/a", "--mode", "sideways", code=2)
    run("collection-chain", repo, "outer", code=2)  # at least one child


# -- removal ------------------------------------------------------------------


def put_metrics(repo: Path, run_name: str, *visits: int) -> None:
    with fresh(repo) as b:
        for v in visits:
            b.put({"v": v}, "metrics", instrument="Cam", visit=v, detector=1, run=run_name)


def test_remove_runs_refuses_without_yes_when_not_interactive(repo):
    put_metrics(repo, "run/b", 1, 2)
    result = fails("remove-runs", repo, "run/b", message="pass --yes")
    assert "run/b" in result.stdout and "2 dataset(s)" in result.stdout
    with fresh(repo) as b:
        assert b.collections.exists("run/b")


def test_remove_runs_with_yes(repo):
    put_metrics(repo, "run/b", 1, 2)
    with fresh(repo) as b:
        artifact = b.find_dataset("metrics", instrument="Cam", visit=1, detector=1, collections="run/b").artifact
        assert b.datastore.exists(artifact)
    out = run("remove-runs", repo, "run/b", "--yes").stdout
    assert "removed 1 RUN collection(s) and 2 dataset(s)" in out
    with fresh(repo) as b:
        assert not b.datastore.exists(artifact)
    assert [c["name"] for c in run_json("query-collections", repo)] == ["run/a"]


def test_remove_runs_failures(repo):
    put_metrics(repo, "run/b", 1)
    run("collection-chain", repo, "defaults", "run/b")
    fails("remove-runs", repo, "run/b", "--yes", message="is in chain(s) defaults")
    fails("remove-runs", repo, "defaults", "--yes", message="not a RUN; use remove-collections")
    fails("remove-runs", repo, "nosuch", "--yes", message="no collection named 'nosuch'")
    run("remove-runs", repo, code=2)
    with fresh(repo) as b:
        assert b.exists("metrics", instrument="Cam", visit=1, detector=1, collections="run/b")


def test_remove_collections(repo):
    run("register-collection", repo, "best", "--type", "tagged")
    run("collection-chain", repo, "defaults", "run/a", "best")
    fails("remove-collections", repo, "defaults", message="pass --yes")
    fails("remove-collections", repo, "best", "--yes", message="is in chain(s) defaults")
    fails("remove-collections", repo, "run/a", "--yes", message="use remove-runs")
    fails("remove-collections", repo, "nosuch", "--yes", message="no collection named")
    assert "removed 2 collection(s)" in run("remove-collections", repo, "defaults", "best", "-y").stdout
    assert [c["name"] for c in run_json("query-collections", repo)] == ["run/a"]


# -- calibrations -------------------------------------------------------------


def test_certify_calibrations(repo):
    with fresh(repo) as b:
        for d in (0, 1):
            b.put({"level": d}, "bias", instrument="Cam", detector=d, run="calib/run1")
    out = run("certify-calibrations", repo, "calib/run1", "Cam/calib", "bias",
              "--begin", "2025-01-01T00:00:00", "--end", "2025-02-01T00:00:00").stdout
    assert out.strip() == ("certified 2 bias dataset(s) into Cam/calib, valid from 2025-01-01T00:00:00.000 TAI "
                           "until 2025-02-01T00:00:00.000 TAI")
    with fresh(repo) as b:
        ref = b.find_dataset("bias", instrument="Cam", detector=1, collections="Cam/calib",
                             timespan=Timespan("2025-01-10T00:00:00", "2025-01-10T00:01:00"))
        assert ref is not None and ref.run == "calib/run1"
    fails("certify-calibrations", repo, "calib/run1", "Cam/calib", "bias", "--begin", "2025-01-15T00:00:00",
          message="would overlap")
    # Unbounded on both sides is allowed in an empty collection.
    run("certify-calibrations", repo, "calib/run1", "other/calib", "bias")


def test_certify_calibrations_failures(repo):
    put_metrics(repo, "run/b", 1)
    fails("certify-calibrations", repo, "run/a", "c", "nosuch", message="'nosuch' is not registered")
    fails("certify-calibrations", repo, "run/a", "c", "bias", message="no bias datasets in 'run/a'")
    fails("certify-calibrations", repo, "nosuch", "c", "bias", message="no collection named 'nosuch'")
    fails("certify-calibrations", repo, "run/b", "c", "metrics", message="not a calibration type")
    run("certify-calibrations", repo, "run/a", "c", "bias", "--begin", "yesterday-ish", code=2)
    run("certify-calibrations", repo, "run/a", "c", "bias", "--begin", "2025-02-01", "--end", "2025-01-01",
        code=2)


# -- ingest-files -------------------------------------------------------------


def write_ingest_table(tmp_path: Path, visits: tuple[int, ...]) -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    lines = ["file,instrument,visit,detector"]
    for v in visits:
        (tmp_path / "in" / f"m{v}.json").write_text(json.dumps({"visit": v}))
        lines.append(f"m{v}.json,Cam,{v},2")
    table = tmp_path / "in" / "files.csv"
    table.write_text("\n".join(lines) + "\n")
    return table


def test_ingest_files(repo, tmp_path):
    table = write_ingest_table(tmp_path, (1, 2, 3))
    refs = run_json("ingest-files", repo, "metrics", table, "--run", "ingested", "--transfer", "copy",
                    "--id-mode", "deterministic")
    assert sorted(r["visit"] for r in refs) == [1, 2, 3]
    assert all(r["run"] == "ingested" and r["detector"] == 2 for r in refs)
    assert (tmp_path / "in" / "m1.json").exists()  # copied, not moved
    assert json.loads(run("get", repo, "metrics", "-c", "ingested", "instrument=Cam", "visit=3",
                          "detector=2").stdout) == {"visit": 3}
    done = run("ingest-files", repo, "metrics", "more", write_ingest_table(tmp_path / "in", (4,)))  # the old form
    assert "ingested 1 metrics dataset(s) into more" in done.stdout and "--run RUN" in done.stderr
    run("ingest-files", repo, "metrics", table, code=2)  # no RUN at all: a usage error


def test_ingest_files_keeps_the_ids_of_an_id_column(repo, tmp_path):
    table = write_ingest_table(tmp_path, (1, 2))
    ids = ["0b5c1f2e-38c9-4d0e-9b8a-5f0c2d4e6a71", "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"]
    lines = table.read_text().splitlines()
    table.write_text("\n".join([lines[0] + ",id"] + [f"{line},{i}" for line, i in zip(lines[1:], ids)]) + "\n")
    refs = run_json("ingest-files", repo, "metrics", table, "--run", "kept")
    assert sorted(r["id"] for r in refs) == sorted(ids)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,instrument,visit,detector,id\nin/m1.json,Cam,1,2,not-an-id\n")
    fails("ingest-files", repo, "metrics", bad, "--run", "kept2", message="line 2: the id column does not hold a dataset ID")


def test_ingest_files_failures(repo, tmp_path):
    table = write_ingest_table(tmp_path, (1, 2))
    run("ingest-files", repo, "metrics", table, "--run", "ingested", "--transfer", "teleport", code=2)
    fails("ingest-files", repo, "nosuch", table, "--run", "ingested", message="'nosuch' is not registered")
    (tmp_path / "in" / "m2.json").unlink()
    fails("ingest-files", repo, "metrics", table, "--run", "ingested", message="no such file")
    with fresh(repo) as b:  # all or nothing: m1 was not left behind, nor the new RUN
        assert not b.collections.exists("ingested")
    bad = tmp_path / "bad.csv"
    bad.write_text("visit,path\n1,x.json\n")  # a first column of another name is the files unless a data-ID key
    fails("ingest-files", repo, "metrics", bad, "--run", "ingested", message="has no 'file' column")
    bad.write_text("file,instrument,visit,detector\nx.json,Cam,one,2\n")
    fails("ingest-files", repo, "metrics", bad, "--run", "ingested", message="line 2: visit must be an integer")


# -- put and get --------------------------------------------------------------


def test_put_and_get(repo, tmp_path):
    source = tmp_path / "m.json"
    source.write_text(json.dumps({"scatter": 0.02, "n": [1, 2]}))
    ref = json.loads(run("put", repo, "metrics", source, "--run", "u/ana", "instrument=Cam", "visit=4",
                         "detector=3", "--json").stdout)
    assert ref["run"] == "u/ana" and ref["visit"] == 4 and ref["detector"] == 3
    shown = run("put", repo, "metrics", source, "--run", "u/[ana]", "visit=5", "detector=3").stdout.strip()
    with fresh(repo) as b:  # a sentence, and the RUN's brackets are text, not markup
        stored = b.find_dataset("metrics", instrument="Cam", visit=5, detector=3, collections="u/[ana]")
    assert shown == f"stored metrics instrument=Cam, visit=5, detector=3 in RUN u/[ana] as dataset {stored.id}"
    got = run("get", repo, "metrics", "--collections", "run/a,u/ana", "instrument=Cam", "visit=4", "detector=3")
    assert json.loads(got.stdout) == {"scatter": 0.02, "n": [1, 2]}


def test_put_and_get_failures(repo, tmp_path):
    source = tmp_path / "m.json"
    source.write_text("[1, 2]")
    fails("put", repo, "metrics", source, "--run", "u/ana", "visit=1", "detector=1",
          message="cannot hold an object of type list")
    source.write_text("{not json")
    fails("put", repo, "metrics", source, "--run", "u/ana", "visit=1", message="is not valid JSON")
    source.write_text("{}")
    fails("put", repo, "nosuch", source, "--run", "u/ana", "visit=1", message="'nosuch' is not registered")
    run("put", repo, "metrics", source, "visit=1", "detector=1", code=2)  # --run is required
    fails("get", repo, "metrics", "-c", "nosuch", "visit=1", "detector=1", message="no collection named 'nosuch'")
    fails("get", repo, "metrics", "-c", "run/a", "visit=1", "detector=1", message="no metrics dataset")
    fails("get", repo, "nosuch", "-c", "run/a", "visit=1", message="'nosuch' is not registered")
    fails("get", repo, "metrics", "-c", "run/a", "visit=one", message="visit must be an integer", code=2)
    fails("get", repo, "metrics", "-c", "run/a", "visit", message="is not KEY=VALUE", code=2)
    run("register-dataset-type", repo, "img", "instrument", "visit", "detector", "-s", "Image")
    fails("get", repo, "img", "-c", "run/a", "visit=1", "detector=1", message="write it to a file with -o FILE")
