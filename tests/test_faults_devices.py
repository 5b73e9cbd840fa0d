"""Fault injection on the moves that cross file systems, where a rename cannot serve and a move is
a copy and then a delete: an ingest with ``--transfer move`` of files on another device, and a
repair's quarantine of files from a datastore on another device than the repository.  Each runs on
SQLite and on PostgreSQL with the files on local disk (on S3 every move is a copy and a delete,
swept in test_faults.py).  An ingest is asked what test_faults asks of every write
(``assert_recovered``); a quarantine, that each stray is in exactly one place, whole, at every
instant a kill leaves, in the quarantine once the repair is run again, and ``verify`` clean.

/dev/shm (a tmpfs) is the second file system; the cases are skipped where it is not writable.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import POSTGRES_URL, populate, stack_locations
from skybutler import Butler
from skybutler.cli.main import cli
from test_faults import (  # noqa: F401 -- template, the fixture, shared
    INGEST_STEPS,
    PG_INGEST_STEPS,
    _put_many,
    assert_recovered,
    cli_main,
    json_sources,
    plant_user_file,
    quarantined_files,
    run_killed,
    skybutler_leftovers,
    template,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.access("/dev/shm", os.W_OK),
                                                   reason="needs a second file system (/dev/shm)")]

#: Every step on SQLite; a representative few on PostgreSQL (same code, a schema per case).
STACKS = ["sqlite"] + (["postgres-local"] if POSTGRES_URL else [])


def on_stacks(sqlite_steps: list, other_steps: list) -> list:
    return [pytest.param(stack, step, id=f"{stack}-{step}")
            for stack in STACKS for step in (sqlite_steps if stack == "sqlite" else other_steps)]


@pytest.fixture
def elsewhere():
    """A fresh directory on the second file system, removed afterwards."""
    path = Path(f"/dev/shm/skybutler-faults-{uuid.uuid4().hex[:12]}")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _repository(stack: str, root: Path, datastore: Path | None = None) -> Path:
    """The small camera, ``metrics`` and RUN ``r`` on ``stack``, the files in ``datastore`` if given,
    a user's file planted in the datastore's tree."""
    locations = stack_locations("postgres" if stack != "sqlite" else "sqlite", root.parent)
    locations["datastore"] = str(datastore) if datastore is not None else None
    with Butler.create(root, **locations) as butler:
        populate(butler)
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        butler.collections.register("r", "run")
    plant_user_file(root)
    return root


@pytest.mark.parametrize("stack, step", on_stacks(INGEST_STEPS, PG_INGEST_STEPS))
def test_a_move_from_another_device_copies_then_deletes_after_commit(tmp_path, elsewhere, stack, step):
    repo = _repository(stack, tmp_path / "repo")
    sources = json_sources(elsewhere)
    run_killed(cli_main("ingest-files", repo, "metrics", "r", elsewhere / "table.csv", "--transfer", "move"), step)
    assert_recovered(repo, sources)
    with Butler(repo, collections="r") as butler:
        done = butler.query_datasets("metrics").count()
    assert done in (0, len(sources)), "an ingest was kept in part"
    if done == 0:  # killed before its commit: the same command again does the job
        table = elsewhere / "table.csv"
        again = CliRunner().invoke(cli, ["ingest-files", str(repo), "metrics", "r", str(table), "--transfer", "move"])
        assert again.exit_code == 0, again.output
        assert_recovered(repo, sources)
    with Butler(repo, collections="r") as butler:
        assert butler.query_datasets("metrics").count() == len(sources)
    assert not any(elsewhere.glob("*.json")), "a moved file is both in the repository and where it came from"


#: Killed after its 2nd copy into the quarantine (original not yet deleted), its 2nd whole move, at random.
QUARANTINE_STEPS = ["quarantine-copied:2", "file-quarantined:2", None]


@pytest.mark.parametrize("stack, step", on_stacks(QUARANTINE_STEPS, ["quarantine-copied:2"]))
def test_a_quarantine_from_a_datastore_on_another_device(tmp_path, elsewhere, stack, step):
    repo = _repository(stack, tmp_path / "repo", datastore=elsewhere / "datastore")
    _put_many(repo)
    strays = {}
    for n in range(4):
        path = elsewhere / "datastore" / "r" / f"stray{n}.txt"
        path.write_bytes(f"stray {n}".encode())
        strays[path] = path.read_bytes()
    killed = run_killed(cli_main("verify", repo, "--fix", "--yes"), step)
    assert killed or step is None, f"the repair never reached {step}"
    with Butler(repo):  # the open settles a killed repair: each stray in one place, whole
        quarantined = quarantined_files(repo)
        for path, data in strays.items():
            copies = quarantined.get(path.as_uri(), []) + ([path.read_bytes()] if path.exists() else [])
            assert copies == [data], f"{path} is not in exactly one place, whole: {len(copies)} copies"
    runner = CliRunner()  # the strays are strangers: the quarantine is where they go, so not assert_recovered
    assert runner.invoke(cli, ["verify", str(repo), "--fix", "--yes"]).exit_code == 0
    assert runner.invoke(cli, ["verify", str(repo)]).exit_code == 0
    assert not skybutler_leftovers(repo), skybutler_leftovers(repo)
    quarantined = quarantined_files(repo)
    for path, data in strays.items():
        assert quarantined.get(path.as_uri()) == [data], f"{path} was lost or copied twice"
    assert not list((repo / ".skybutler" / "quarantine").rglob("*.copying")), "a half-made copy was left"
