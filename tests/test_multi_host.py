"""Two hosts writing one repository: a PostgreSQL registry and a datastore (S3 where the test
stack has it, else a directory) shared, each host with its own repository directory and so its
own write journal and dataset locks.

What is guaranteed, and shown here with two repository directories standing for two hosts:

- an open (recovery) on host A replays only A's journals: B's, live or dead, are not A's to see;
- ``verify --fix`` on A never moves a file of a write still at work on B: while a client on
  another host has written (its PostgreSQL session holds the repository's shared writer lock),
  files no row explains are reported in flight, not quarantined -- the proof is taken again
  just before each move, so a writer that begins after the plan is honoured too;
- a write on B killed with its files in place: once B's session is gone, A's repair quarantines
  those files (nothing proves them skybutler's from A), never deletes them, and B's next open
  settles its journal; no dataset of B's is left without its file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import POSTGRES_URL, S3_ENDPOINT, populate, stack_locations
from skybutler import Butler
from skybutler.cli.main import cli

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs SKYBUTLER_TEST_POSTGRES_URL")

N = 4


@pytest.fixture
def hosts(tmp_path) -> tuple[Path, Path]:
    """Host A's and host B's directories of one repository (the same butler.yaml)."""
    locations = stack_locations("postgres", tmp_path)
    if not S3_ENDPOINT:
        locations["datastore"] = str(tmp_path / "shared-datastore")
    a, b = tmp_path / "host-a", tmp_path / "host-b"
    with Butler.create(a, **locations) as butler:
        populate(butler)
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        butler.collections.register("r", "run")
    b.mkdir()
    shutil.copy(a / "butler.yaml", b / "butler.yaml")
    return a, b


def _put_many(root: Path) -> None:
    with Butler(root, run="r") as butler:
        butler.put_many("metrics", [({"n": n}, {"instrument": "Cam", "visit": 1, "detector": n}) for n in range(N)])


def _writer_paused_at_files_published(root: Path) -> tuple[int, int, int]:
    """Fork a put_many on ``root`` that stops with its files published, its rows not committed;
    its pid, the pipe end it says 'ready' on, and the one that lets it go on."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            from skybutler import writes

            original = writes.crash_point

            def pause(step: str) -> None:
                if step == "files-published":
                    os.write(ready_w, b"1")
                    os.read(go_r, 1)
                original(step)

            writes.crash_point = pause
            _put_many(root)
        except BaseException:  # noqa: BLE001 - reported by the exit status
            import traceback

            traceback.print_exc()
            code = 3
        os._exit(code)
    assert os.read(ready_r, 1) == b"1"
    return pid, ready_r, go_w


def _quarantined(root: Path) -> list[str]:
    return [json.loads(line)["original"] for m in (root / ".skybutler" / "quarantine").glob("*/manifest.jsonl")
            for line in m.read_text().splitlines()]


def _count(root: Path) -> int:
    with Butler(root, collections="r") as butler:
        return butler.query_datasets("metrics").count()


def test_repair_on_one_host_leaves_another_hosts_write_in_flight_alone(hosts):
    a, b = hosts
    pid, ready, go = _writer_paused_at_files_published(b)
    try:
        runner = CliRunner()
        report = runner.invoke(cli, ["verify", str(a), "--json"])
        found = json.loads(report.stdout)
        assert found["consistent"] and len(found["in_flight"]) == N, report.output
        assert found["foreign_writers"], "the writer on the other host is not named"
        fixed = runner.invoke(cli, ["verify", str(a), "--fix", "--yes"])
        assert fixed.exit_code == 0, fixed.output
        assert not _quarantined(a), "a repair on host A moved host B's files in flight"
    finally:
        os.write(go, b"1")
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert _count(a) == N
    with Butler(a, collections="r") as butler:
        assert sorted(butler.get(r)["n"] for r in butler.query_datasets("metrics")) == list(range(N))
    assert CliRunner().invoke(cli, ["verify", str(a)]).exit_code == 0
    assert CliRunner().invoke(cli, ["verify", str(b)]).exit_code == 0


def test_a_write_killed_on_another_host_is_quarantined_never_deleted_and_settled_there(hosts):
    a, b = hosts
    pid, ready, go = _writer_paused_at_files_published(b)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    journal_b = b / ".skybutler" / "journal"
    assert len(list(journal_b.iterdir())) == 1
    deadline = time.monotonic() + 10  # the server notices the dead session at once, or nearly
    while True:
        runner = CliRunner()
        found = json.loads(runner.invoke(cli, ["verify", str(a), "--json"]).stdout)
        if not found["foreign_writers"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not found["foreign_writers"], found
    assert len(found["orphan_files"]) == N, found
    assert len(list(journal_b.iterdir())) == 1, "host A's open replayed host B's journal"
    assert runner.invoke(cli, ["verify", str(a), "--fix", "--yes"]).exit_code == 0
    assert len(_quarantined(a)) == N  # set aside with their bytes, not deleted
    with Butler(b) as butler:  # B's next open settles its journal: nothing of it was committed
        assert not butler.recovered or "settled" in butler.recovered[-1]
    assert not any(journal_b.iterdir())
    assert _count(a) == 0
    assert runner.invoke(cli, ["verify", str(a)]).exit_code == 0
    _put_many(b)  # the write again completes
    assert _count(a) == N
    assert runner.invoke(cli, ["verify", str(a)]).exit_code == 0


def test_a_repair_planned_before_another_host_began_writing_leaves_everything_alone(hosts):
    """The proof is taken again for each step: a plan made while no other host wrote is not
    carried out once one does (its files may be in flight), and is after it is done."""
    from skybutler.verify import plan_repair, repair, verify

    a, b = hosts
    with Butler(a) as butler:
        stray = "r/stray.txt"
        butler.datastore.fs.pipe_file(butler.datastore.full_path(stray), b"a stray")
        plan = plan_repair(verify(butler))
        assert [(s.action, s.path) for s in plan] == [("quarantine", stray)]
        pid, ready, go = _writer_paused_at_files_published(b)
        try:
            assert repair(butler, plan).quarantined == 0
            assert butler.datastore.fs.cat_file(butler.datastore.full_path(stray)) == b"a stray"
        finally:
            os.write(go, b"1")
            os.waitpid(pid, 0)
        assert repair(butler, plan_repair(verify(butler))).quarantined == 1
    assert _count(a) == N
    assert CliRunner().invoke(cli, ["verify", str(a)]).exit_code == 0
