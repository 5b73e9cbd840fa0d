"""Reading from the command line: get of every storage class (-o FILE), dataset states and
collection globs in query-datasets, retrieve-artifacts, and one -j for every command."""

from __future__ import annotations

import json
import zipfile

import click
import numpy as np
import pyarrow as pa
import pytest
import yaml
from astropy.io import fits

from conftest import populate
from conftest import run_cli as run
from skybutler import Butler
from skybutler.cli.main import add_command_modules
from skybutler.retention import ColdTierConfig

DATA_ID = ("instrument=Cam", "visit=1", "detector=2")


@pytest.fixture
def stocked(butler):
    """metrics in run/a and run/b, a Table and an Image in run/a."""
    butler.register_dataset_type("src", ["instrument", "visit", "detector"], "Table")
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "Image")
    for run_name in ("run/a", "run/b"):
        for d in (1, 2):
            butler.put({"seeing": 0.5 + d, "run": run_name}, "metrics", instrument="Cam", visit=1, detector=d,
                       run=run_name)
    butler.put(pa.table({"ra": [1.5, 2.5], "n": [3, 4]}), "src", instrument="Cam", visit=1, detector=2)
    butler.put(np.arange(12, dtype="f4").reshape(3, 4), "calexp", instrument="Cam", visit=1, detector=2)
    return butler


# -- get ------------------------------------------------------------------------


def test_get_prints_dicts_and_tables_and_writes_any_dataset_to_a_file(stocked, tmp_path):
    repo = stocked.root
    assert json.loads(run("get", repo, "metrics", *DATA_ID, "-c", "run/b").stdout) == {"seeing": 2.5, "run": "run/b"}
    rows = json.loads(run("get", repo, "src", *DATA_ID, "-c", "run/a", "--json").stdout)
    assert rows == [{"ra": 1.5, "n": 3}, {"ra": 2.5, "n": 4}]
    table = run("get", repo, "src", *DATA_ID, "-c", "run/a").stdout
    assert table.splitlines()[1].split() == ["┃", "ra", "┃", "n", "┃"] and "2.5" in table
    refused = run("get", repo, "calexp", *DATA_ID, "-c", "run/a", code=1)
    assert refused.stderr.strip() == ("error: calexp is an Image, which cannot be printed; write it to a file with "
                                      "-o FILE (e.g. -o calexp.fits)")
    image = tmp_path / "calexp.fits"
    done = run("get", repo, "calexp", *DATA_ID, "-c", "run/a", "-o", image)
    assert done.stdout == "" and f"to {image}" in done.stderr
    with fits.open(image) as hdus:  # astropy reads what was written
        np.testing.assert_array_equal(hdus[0].data, np.arange(12, dtype="f4").reshape(3, 4))
    run("get", repo, "metrics", *DATA_ID, "-c", "run/a", "-o", tmp_path / "m.yaml")
    assert yaml.safe_load((tmp_path / "m.yaml").read_text()) == {"seeing": 2.5, "run": "run/a"}
    run("get", repo, "src", *DATA_ID, "-c", "run/a", "-o", tmp_path / "src.parquet")
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "src.parquet").to_pylist() == rows
    missing = run("get", repo, "metrics", "instrument=Cam", "visit=1", "detector=3", "-c", "run/a", code=1)
    assert missing.stderr.startswith("error: no metrics dataset with data ID instrument=Cam visit=1 detector=3")
    # --rows: the first rows of a table only; refused, in one line, for what is not a table
    assert json.loads(run("get", repo, "src", *DATA_ID, "-c", "run/a", "--json", "--rows", "1").stdout) == rows[:1]
    assert run("get", repo, "metrics", *DATA_ID, "-c", "run/a", "--rows", "1", code=1).stderr.strip() == (
        "error: --rows needs a table; metrics is a Dict")


def with_cold_tier(butler: Butler, tmp_path) -> Butler:
    config = butler.config
    config.retention.cold_tier = ColdTierConfig(uri=str(tmp_path / "tape"))
    config.save(butler.root)
    butler.close()
    return Butler(butler.root, collections=["run/a"])


def test_get_stages_a_cold_dataset_and_says_so(stocked, tmp_path):
    butler = with_cold_tier(stocked, tmp_path)
    ref = butler.find_dataset("metrics", instrument="Cam", visit=1, detector=2, collections="run/a")
    butler.retention.move_to_cold([ref])
    assert butler.retention.state(ref).state == "cold"
    done = run("get", butler.root, "metrics", *DATA_ID, "-c", "run/a")
    assert json.loads(done.stdout) == {"seeing": 2.5, "run": "run/a"}
    assert "staged metrics instrument=Cam visit=1 detector=2 of RUN run/a back from the cold tier" in done.stderr
    assert "recomput" not in done.stderr and "quanta" not in done.stderr
    assert butler.retention.state(ref).state == "stored"


def test_get_of_a_purged_dataset_with_no_recompute_speaks_cli(stocked):
    ref = stocked.find_dataset("metrics", instrument="Cam", visit=1, detector=2, collections="run/a")
    stocked.retention.purge([ref], force=True)  # made by no pipeline: purged-lost
    failed = run("get", stocked.root, "metrics", *DATA_ID, "-c", "run/a", "--no-recompute", code=1)
    assert failed.stderr.strip() == ("error: metrics instrument=Cam visit=1 detector=2 of RUN run/a was purged "
                                     "(purged-lost); run without --no-recompute to re-create it from its provenance")
    assert "recompute=True" not in failed.stderr


# -- query-datasets: states and globs ---------------------------------------------


def test_query_datasets_shows_states_and_filters_by_them(stocked, tmp_path):
    butler = with_cold_tier(stocked, tmp_path)
    refs = {r.data_id["detector"]: r for r in butler.query_datasets("metrics", collections="run/a")}
    butler.retention.move_to_cold([refs[1]])
    butler.retention.purge([refs[2]], force=True)
    rows = json.loads(run("query-datasets", butler.root, "metrics", "-c", "run/a", "--json").stdout)
    assert {(r["detector"], r["state"]) for r in rows} == {(1, "cold"), (2, "purged-lost")}
    rows = json.loads(run("query-datasets", butler.root, "metrics", "--states", "purged", "--json").stdout)
    assert [(r["run"], r["detector"]) for r in rows] == [("run/a", 2)]
    rows = json.loads(run("query-datasets", butler.root, "metrics", "--states", "stored,cold", "--json").stdout)
    assert sorted((r["run"], r["detector"], r["state"]) for r in rows) == [
        ("run/a", 1, "cold"), ("run/b", 1, "stored"), ("run/b", 2, "stored")]
    bad = run("query-datasets", butler.root, "metrics", "--states", "gone", code=2)
    assert "'gone' is not a state" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_query_datasets_takes_collection_globs(stocked):
    repo = stocked.root
    stocked.collections.register("other", "RUN")
    rows = json.loads(run("query-datasets", repo, "metrics", "-c", "run/*", "--json").stdout)
    assert sorted((r["run"], r["detector"]) for r in rows) == [("run/a", 1), ("run/a", 2), ("run/b", 1), ("run/b", 2)]
    rows = json.loads(run("query-datasets", repo, "metrics", "-c", "run/b", "-c", "run/?", "--json").stdout)
    assert len(rows) == 4  # run/b given first, run/a from the glob; a glob gives every match
    rows = json.loads(run("query-datasets", repo, "metrics", "-c", "run/b,run/a", "--json").stdout)
    assert sorted(r["run"] for r in rows) == ["run/b", "run/b"]  # named in order: first match per data ID
    rows = json.loads(run("query-datasets", repo, "metrics", "-c", "run/[b]", "--json").stdout)
    assert {r["run"] for r in rows} == {"run/b"}
    refused = run("query-datasets", repo, "metrics", "-c", "run/*", "--find-first", code=2)
    assert "--find-first" in refused.stderr
    nothing = run("query-datasets", repo, "metrics", "-c", "nope/*", code=1)
    assert nothing.stderr.strip() == "error: no collection matches 'nope/*'"


def test_globs_and_default_collections_where_no_order_is_needed(stocked):
    repo = stocked.root
    stocked.collections.register("empty", "RUN")
    ids = json.loads(run("query-data-ids", repo, "visit", "detector", "--datasets", "metrics", "--json").stdout)
    assert sorted(r["detector"] for r in ids) == [1, 2]  # every RUN searched: having one anywhere is enough
    none = json.loads(run("query-data-ids", repo, "visit", "detector", "--datasets", "metrics", "-c", "emp*",
                          "--json").stdout)
    assert none == []
    refused = run("prune-datasets", repo, "run/*", "--datasets", "metrics", "--yes", code=2)
    assert "--find-all" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert stocked.query_datasets("metrics", collections=["run/a", "run/b"], find_first=False).count() == 4
    run("prune-datasets", repo, "run/*", "--datasets", "metrics", "--find-all", "--where", "detector = 1", "--yes")
    left = stocked.query_datasets("metrics", collections=["run/a", "run/b"], find_first=False)
    assert sorted((r.run, r.data_id["detector"]) for r in left) == [("run/a", 2), ("run/b", 2)]
    run("associate", repo, "picked", "--dataset-type", "metrics", "-c", "run/[a]")
    assert [r.run for r in stocked.query_datasets("metrics", collections="picked")] == ["run/a"]


# -- retrieve-artifacts -------------------------------------------------------------


def test_retrieve_artifacts_in_the_datastore_layout_flat_and_as_a_zip(stocked, tmp_path):
    repo = stocked.root
    out = tmp_path / "out"
    done = run("retrieve-artifacts", repo, out, "--dataset-type", "metrics", "-c", "run/*")
    assert "copied 4 file(s)" in done.stdout
    refs = list(stocked.query_datasets("metrics", collections=["run/a", "run/b"], find_first=False))
    datastore = stocked.datastore
    for ref in refs:  # each file at RUN/type/type_dataID, byte for byte (read through the datastore's file system)
        stored = stocked.registry.datasets.artifacts([ref.id])[ref.id].path
        relative = f"{ref.run}/metrics/metrics_instrument=Cam_visit=1_detector={ref.data_id['detector']}.json"
        assert (out / relative).read_bytes() == datastore.fs.cat_file(datastore.full_path(stored))
    assert len([p for p in out.rglob("*") if p.is_file()]) == len(refs) == 4
    again = run("retrieve-artifacts", repo, out, "--dataset-type", "metrics", "-c", "run/a", code=1)
    assert "already exists" in again.stderr and "--clobber" in again.stderr
    run("retrieve-artifacts", repo, out, "--dataset-type", "metrics", "-c", "run/a", "--clobber")
    flat = tmp_path / "flat"
    clash = run("retrieve-artifacts", repo, flat, "--dataset-type", "metrics", "--no-preserve-path", code=1)
    assert "would both be written to" in clash.stderr and not flat.exists()
    run("retrieve-artifacts", repo, flat, "--dataset-type", "src,calexp", "--no-preserve-path")
    assert sorted(p.suffix for p in flat.iterdir()) == [".fits", ".parquet"]
    zipped = json.loads(run("retrieve-artifacts", repo, tmp_path / "z", "--dataset-type", "metrics", "-c", "run/b",
                            "--zip", "--json").stdout)
    assert len(zipped) == 1 and zipfile.is_zipfile(zipped[0])
    target = tmp_path / "target"
    with Butler.create(target) as fresh:  # the zip comes back in whole: same IDs and content
        populate(fresh)  # a zip of bare refs carries no records
    run("import", target, zipped[0])
    with Butler(target) as fresh:
        back = {r.id: fresh.get(r) for r in fresh.query_datasets("metrics", collections="run/b")}
    assert back == {r.id: stocked.get(r) for r in stocked.query_datasets("metrics", collections="run/b")}


def test_retrieve_artifacts_layout_is_run_type_and_data_id_readable_and_never_collides(butler, tmp_path):
    """RUN/type/type_key=value.ext, escaped only where a file system needs it; odd names and
    names that would collide (a case-only difference, a file where another RUN needs a
    directory) each get their own file, checked byte for byte against what was put."""
    file_in_the_way = "r/metrics/metrics_instrument=Cam_visit=1_detector=1.json"
    runs = ["u/ana/run 1", "Night", "night", "a//b", "..", "ü:*?", "r", file_in_the_way]
    put = {}
    for run_name in runs:
        ref = butler.put({"run": run_name}, "metrics", instrument="Cam", visit=1, detector=1, run=run_name)
        put[ref.id] = run_name
    written = butler.retrieve_artifacts(butler.query_datasets("metrics", collections=runs, find_first=False),
                                        tmp_path / "out")
    relative = {p.relative_to(tmp_path / "out").as_posix(): p for p in written}
    name = "metrics_instrument=Cam_visit=1_detector=1.json"
    plain = {f"u/ana/run 1/metrics/{name}", f"a%2F%2Fb/metrics/{name}", f"%2E%2E/metrics/{name}",
             f"ü%3A%2A%3F/metrics/{name}", f"{file_in_the_way}/metrics/{name}"}
    assert plain <= set(relative)
    marked = {path for path in relative if "_~" in path}
    ids = {i.hex[:12]: i for i in put}
    # Night/night differ only by case; RUN r's file is where the last RUN needs a directory.
    assert {(put[ids[path.rsplit("_~", 1)[1][:12]]], path.split("/")[0]) for path in marked} == \
        {("Night", "Night"), ("night", "night"), ("r", "r")}
    assert len(relative) == len(runs) and len(set(relative)) == len(runs)
    assert sorted(json.loads(p.read_text())["run"] for p in written) == sorted(runs)
    # Values escape what separates the data-ID part; the same selection twice is refused.
    butler.register_dataset_type("note", ["instrument", "physical_filter"], "Dict")
    ref = butler.put({"n": 1}, "note", instrument="Cam", physical_filter="Cam-g", run="u/ana/run 1")
    (path,) = butler.retrieve_artifacts([ref], tmp_path / "notes")
    assert path.relative_to(tmp_path / "notes").as_posix() == \
        "u/ana/run 1/note/note_instrument=Cam_physical_filter=Cam-g.json"
    with pytest.raises(Exception, match="already exists"):
        butler.retrieve_artifacts([ref], tmp_path / "notes")


def test_retrieve_artifacts_refuses_datasets_without_a_file_before_writing(stocked, tmp_path):
    ref = stocked.find_dataset("metrics", instrument="Cam", visit=1, detector=2, collections="run/a")
    stocked.retention.purge([ref], force=True)
    with pytest.raises(Exception, match="no stored file to retrieve.*purged-lost"):
        stocked.retrieve_artifacts(stocked.query_datasets("metrics", collections="run/a"), tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    written = stocked.retrieve_artifacts(stocked.query_datasets("metrics", collections="run/a", states="stored"),
                                         tmp_path / "out", preserve_path=False)
    assert [p.name for p in written] == [p.name for p in (tmp_path / "out").iterdir()]


# -- one -j everywhere -------------------------------------------------------------


def test_every_jobs_option_is_the_same():
    group = click.Group()
    add_command_modules(group)
    found = {}
    for name, command in group.commands.items():
        for param in getattr(command, "params", []):
            if "-j" in getattr(param, "opts", ()):
                found[name] = (tuple(param.opts), param.default)
    assert set(found) >= {"run", "recompute", "ingest-raws"}
    assert set(found.values()) == {(("-j", "--processes", "--jobs"), None)}
