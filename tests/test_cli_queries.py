"""The query commands (query-data-ids, query-datasets, query-dimension-records) on a small
repository: binds, tables, JSON, CSV and Parquet, several dataset types, paging after a row,
and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import populate
from conftest import run_cli as cli_run
from skybutler import Butler


@pytest.fixture(scope="module")
def cli_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "repo"
    with Butler.create(root) as butler:
        populate(butler)
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        butler.put_many("metrics", [({"a": 1}, {"instrument": "Cam", "visit": v, "detector": 0}) for v in (1, 2)],
                        run="a")
        butler.put_many("metrics", [({"a": 2}, {"instrument": "Cam", "visit": 2, "detector": 0})], run="b")
        butler.register_dataset_type("summary", ["instrument", "visit", "detector"], "Dict")
        butler.put({"s": 1}, "summary", instrument="Cam", visit=1, detector=0, run="a")
    return root


def test_cli_query_data_ids(cli_repo):
    rows = json.loads(cli_run("query-data-ids", cli_repo, "visit", "--where", "visit IN (vs)", "--bind", "vs=1,3",
                              "--json").stdout)
    assert rows == [{"instrument": "Cam", "visit": 1}, {"instrument": "Cam", "visit": 3}]
    table = cli_run("query-data-ids", cli_repo, "visit", "detector", "--where", "visit = v AND detector < 2",
                    "--bind", "v=2").stdout
    assert "instrument" in table and "│ 2 " in table
    csv_text = cli_run("query-data-ids", cli_repo, "visit", "detector", "--where", "visit = 2",
                       "--order-by", "-detector", "--limit", "2", "--csv").stdout
    assert csv_text.splitlines() == ["instrument,visit,detector", "Cam,2,3", "Cam,2,2"]
    with_data = json.loads(cli_run("query-data-ids", cli_repo, "visit", "detector", "--datasets", "metrics",
                                   "--collections", "b", "--json").stdout)
    assert with_data == [{"instrument": "Cam", "visit": 2, "detector": 0}]
    said = " ".join(cli_run("query-data-ids", cli_repo, "visit", "--where", "visit > 99").stdout.split())
    assert "no data IDs match; the where-clause term 'visit > 99' excludes every row" in said  # and why, as Rubin's
    said = " ".join(cli_run("query-datasets", cli_repo, "summary", "-c", "b", "--where", "visit = 1").stdout.split())
    assert "no summary datasets match; no summary datasets in collections ['b']" in said
    assert json.loads(cli_run("query-data-ids", cli_repo, "visit", "--where", "visit > 99", "--json").stdout) == []


def test_cli_query_datasets_and_records(cli_repo, tmp_path):
    first = json.loads(cli_run("query-datasets", cli_repo, "metrics", "-c", "b,a", "--json").stdout)
    assert sorted((r["visit"], r["run"]) for r in first) == [(1, "a"), (2, "b")]
    every = json.loads(cli_run("query-datasets", cli_repo, "metrics", "-c", "b", "-c", "a", "--no-find-first",
                               "--json").stdout)
    assert sorted((r["visit"], r["run"]) for r in every) == [(1, "a"), (2, "a"), (2, "b")]
    out = tmp_path / "refs.parquet"
    assert "wrote 2 row(s)" in cli_run("query-datasets", cli_repo, "metrics", "-c", "b,a", "--parquet", out).stdout
    assert sorted(pq.read_table(out).column("visit").to_pylist()) == [1, 2]
    records = json.loads(cli_run("query-dimension-records", cli_repo, "visit", "--where", "band = 'r'",
                                 "--json").stdout)
    assert [r["id"] for r in records] == [2, 5] and len(records[0]["region"]) == 4
    assert "[[" not in cli_run("query-dimension-records", cli_repo, "visit", "-w", "visit = 2").stdout  # summarised
    assert cli_run("query-dimension-records", cli_repo, "detector", "--csv").stdout.count("\n") == 5
    several = json.loads(cli_run("query-datasets", cli_repo, "metrics,summary", "-c", "b,a", "--json").stdout)
    assert sorted((r["dataset_type"], r["visit"], r["run"]) for r in several) == [
        ("metrics", 1, "a"), ("metrics", 2, "b"), ("summary", 1, "a")]


def test_cli_query_datasets_pages_after_a_row(cli_repo):
    every = json.loads(cli_run("query-datasets", cli_repo, "metrics", "-c", "b", "-c", "a", "--no-find-first",
                               "--order-by", "-visit", "--order-by", "dataset_id", "--json").stdout)
    last = every[0]
    rest = json.loads(cli_run("query-datasets", cli_repo, "metrics", "-c", "b", "-c", "a", "--no-find-first",
                              "--order-by", "-visit", "--order-by", "dataset_id",
                              "--after", f"{last['visit']},{last['dataset_id']}", "--json").stdout)
    assert rest == every[1:] and len(every) == 3
    refused = cli_run("query-datasets", cli_repo, "metrics", "-c", "a", "--after", "1", code=1)
    assert refused.stderr == "error: paging after a row needs an order that ends with dataset_id\n"


def test_cli_query_errors(cli_repo):
    failed = cli_run("query-data-ids", cli_repo, "visit", "--where", "visit = 'abc'", code=1)
    assert failed.stderr.startswith("error: cannot compare int with str") and "          ^" in failed.stderr
    assert "no collection named 'nope'" in cli_run("query-datasets", cli_repo, "metrics", "-c", "nope",
                                                   code=1).stderr
    assert "choose one of" in cli_run("query-data-ids", cli_repo, "visit", "--json", "--csv", code=1).stderr
    cli_run("query-data-ids", cli_repo, "visit", "--bind", "novalue", code=2)
