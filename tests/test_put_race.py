"""Two writers putting the same data ID into the same RUN, one stalled half-way through its put.

On PostgreSQL a put of its own places its file first and sends its rows with their COMMIT after
(see docs/architecture.md, "What a put does"): a second writer meeting that file before the rows
arrive must be told of a conflicting put, not of a stranger's file for ``verify --fix``; and a
repair made meanwhile must leave the live writer's file where it is.  On SQLite a put's rows go
first, so the second writer waits for the first's commit and meets its rows instead.
"""

from __future__ import annotations

import os
import signal
import threading
import traceback
from pathlib import Path

import pytest

import skybutler.writes as writes
from conftest import S3_ENDPOINT, STACKS, populate, stack_locations
from skybutler import Butler
from skybutler.datastore.quarantine import Quarantine
from skybutler.errors import ArtifactExistsError, DatasetConflictError
from skybutler.verify import RepairAction, plan_repair, repair, verify

DATA_ID = {"instrument": "Cam", "visit": 1, "detector": 1}


#: Where the files go: local disk, and on the other stack the object store too when one is configured
#: (the write journal stays on the writers' local disk either way).
STORES = [pytest.param(("sqlite", "local"), id="sqlite-local")] + [
    pytest.param((s, store), id=f"{s}-{store}") for s in STACKS if s != "sqlite"
    for store in ["local"] + (["object-store"] if S3_ENDPOINT else [])]


@pytest.fixture(params=STORES)
def store(request) -> tuple[str, str]:
    return request.param


@pytest.fixture
def stack(store) -> str:
    return store[0]


@pytest.fixture
def two_writers(store, tmp_path):
    """Two butlers on one repository, each having written to RUN ``r`` already (so a put of its own
    takes the one-round-trip way)."""
    stack, where = store
    locations = stack_locations(stack, tmp_path)
    if where == "local":
        locations["datastore"] = None
    a = Butler.create(tmp_path / "repo", run="r", collections=["r"], **locations)
    populate(a, n_visits=2, n_detectors=2)
    a.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    a.put({"warm": 1}, "metrics", instrument="Cam", visit=2, detector=0)
    b = Butler(a.root, run="r", collections=["r"])
    b.put({"warm": 2}, "metrics", instrument="Cam", visit=2, detector=1)
    yield a, b
    b.close()
    a.close()


def test_a_put_meeting_a_live_writers_file_is_a_conflict_and_repair_leaves_that_file(two_writers, stack,
                                                                                    monkeypatch, tmp_path):
    a, b = two_writers
    paused, release = threading.Event(), threading.Event()
    writer_a: list[threading.Thread] = []

    def stall(step: str) -> None:  # writer A stops between placing its file and committing its rows
        if step == "files-published" and writer_a and threading.current_thread() is writer_a[0]:
            paused.set()
            release.wait(30)

    monkeypatch.setattr(writes, "crash_point", stall)
    outcome: list[object] = []
    writer_a.append(threading.Thread(target=lambda: outcome.append(a.put({"by": "a"}, "metrics", **DATA_ID))))
    writer_a[0].start()
    try:
        assert paused.wait(30)
        if stack == "sqlite":  # A holds the database's write lock: B waits for A's commit
            threading.Timer(1.0, release.set).start()
        else:
            live = [i.path for j in b.datastore.journal.live() for i in j.intents]
            assert len(live) == 1  # A's journal names its file, and A holds its lock
        with pytest.raises(DatasetConflictError) as caught:
            b.put({"by": "b"}, "metrics", **DATA_ID)
        assert "verify" not in str(caught.value)
        assert "'visit': 1" in str(caught.value) and "'detector': 1" in str(caught.value)  # names the data ID
        if stack != "sqlite":
            assert not release.is_set()  # told while A is still half-way
            source = tmp_path / "by_c.json"  # an ingest of the same data ID is told the same
            source.write_text('{"by": "c"}')
            with pytest.raises(DatasetConflictError, match="'detector': 1"):
                b.ingest("metrics", [(source, DATA_ID)], transfer="copy")
            assert source.read_text() == '{"by": "c"}'
            # verify sees A's file in flight; a repair planned a moment earlier (before A's journal
            # was there) that lists it as an orphan leaves it alone
            report = verify(b)
            assert live[0] in report.in_flight and live[0] not in report.orphan_files
            result = repair(b, [RepairAction("quarantine", live[0], "no dataset of this repository is "
                                             "recorded at this path")])
            assert result.quarantined == 0
    finally:
        release.set()
        writer_a[0].join(30)
    assert len(outcome) == 1  # A's put committed
    assert b.get("metrics", DATA_ID) == {"by": "a"}
    assert verify(b).consistent


def _leftover(butler: Butler, obj: dict) -> tuple[str, bytes]:
    """A file of exactly the bytes a put of ``obj`` at DATA_ID writes, at its path, that no dataset
    and no journal explains (a crashed attempt's leftover whose journal is gone, say)."""
    ref = butler.put(obj, "metrics", **DATA_ID)
    path = butler.registry.datasets.artifacts([ref.id])[ref.id].path
    data = butler.datastore._read_bytes(path)
    butler.remove([ref])
    full = butler.datastore.full_path(path)
    butler.datastore.fs.makedirs(butler.datastore.fs._parent(full), exist_ok=True)
    butler.datastore.fs.pipe_file(full, data)
    return path, data


def test_repair_never_sets_aside_a_leftover_that_a_retried_put_adopts_meanwhile(two_writers, monkeypatch):
    """A put retried with ``adopt_leftovers`` (a pipeline's quantum run again) takes a leftover of its
    very bytes as its own; a repair that proved the file nobody's a moment earlier must not then move
    it away from under the new dataset's row."""
    a, b = two_writers
    path, data = _leftover(a, {"by": "a"})
    plan = plan_repair(verify(b))
    assert [s.path for s in plan if s.action == "quarantine"] == [path]
    paused, release = threading.Event(), threading.Event()
    take = Quarantine.take

    def stalled_take(self, datastore, where, reason):  # the repair stops just before its move
        paused.set()
        release.wait(30)
        return take(self, datastore, where, reason)

    monkeypatch.setattr(Quarantine, "take", stalled_take)
    outcome: list[object] = []
    repairing = threading.Thread(target=lambda: outcome.append(repair(b, plan)))
    repairing.start()
    try:
        assert paused.wait(30) or not repairing.is_alive()
        try:
            a.put_many("metrics", [({"by": "a"}, DATA_ID)], adopt_leftovers=True)
            adopted = True
        except ArtifactExistsError as err:  # told the file is being set aside: nothing written
            assert "verify --fix" in str(err) and "now" in str(err)
            adopted = False
    finally:
        release.set()
        repairing.join(30)
    result = outcome[0]
    if adopted:  # the put took the file: the repair left it
        assert result.quarantined == 0 and a.get("metrics", DATA_ID) == {"by": "a"}
    else:  # the repair took it: it is in the quarantine with its bytes, and no row points at it
        assert result.quarantined == 1
        assert (Path(result.quarantine) / "files" / path).read_bytes() == data
        assert not a.registry.datasets.paths_in_use([path])
    assert verify(b).consistent


def _kill_self(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("store", [s for s in STORES if s.values[0][1] == "object-store"]
                         or [pytest.param(("postgres", "object-store"), marks=pytest.mark.skip("needs S3"))])
def test_a_repair_killed_between_its_copy_and_its_delete_leaves_the_file_in_one_place(two_writers):
    """On an object store a quarantine move is a copy then a delete: a repair killed between them
    leaves the original where it was, once the repository is opened again, not a second copy."""
    a, b = two_writers
    path, data = _leftover(a, {"by": "a"})
    full = a.datastore.full_path(path)
    pid = os.fork()
    if pid == 0:  # the repair, killed as it deletes the original (its copy made)
        try:
            with Butler(a.root) as butler:
                butler.datastore.fs.rm_file = _kill_self
                repair(butler, plan_repair(verify(butler)))
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    quarantine = a.root / ".skybutler" / "quarantine"
    with Butler(a.root) as opened:  # the open settles the killed repair
        assert opened.datastore.fs.cat_file(full) == data
    copies = [p for p in quarantine.rglob("*") if p.is_file() and p.name != "manifest.jsonl"]
    assert copies == [], f"{path} is in two places: {copies}"
    assert repair(b, plan_repair(verify(b))).quarantined == 1  # a repair now moves it, whole
    assert not a.datastore.fs.exists(full)
    assert [p.read_bytes() for p in quarantine.rglob(os.path.basename(path))] == [data]
    assert verify(b).consistent
