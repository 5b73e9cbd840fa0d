"""Two writers putting the same data ID into the same RUN, one stalled half-way through its put.

On PostgreSQL a put of its own places its file first and sends its rows with their COMMIT after
(see docs/architecture.md, "What a put does"): a second writer meeting that file before the rows
arrive must be told of a conflicting put, not of a stranger's file for ``verify --fix``; and a
repair made meanwhile must leave the live writer's file where it is.  On SQLite a put's rows go
first, so the second writer waits for the first's commit and meets its rows instead.
"""

from __future__ import annotations

import threading

import pytest

import skybutler.writes as writes
from conftest import populate, stack_locations
from skybutler import Butler
from skybutler.errors import DatasetConflictError
from skybutler.verify import RepairAction, repair, verify

DATA_ID = {"instrument": "Cam", "visit": 1, "detector": 1}


@pytest.fixture
def two_writers(stack, tmp_path):
    """Two butlers on one repository (files on local disk, where the write journal lives), each
    having written to RUN ``r`` already (so a put of its own takes the one-round-trip way)."""
    a = Butler.create(tmp_path / "repo", run="r", collections=["r"],
                      **{**stack_locations(stack, tmp_path), "datastore": None})
    populate(a, n_visits=2, n_detectors=2)
    a.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    a.put({"warm": 1}, "metrics", instrument="Cam", visit=2, detector=0)
    b = Butler(a.root, run="r", collections=["r"])
    b.put({"warm": 2}, "metrics", instrument="Cam", visit=2, detector=1)
    yield a, b
    b.close()
    a.close()


def test_a_put_meeting_a_live_writers_file_is_a_conflict_and_repair_leaves_that_file(two_writers, stack,
                                                                                    monkeypatch):
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
        if stack != "sqlite":
            assert not release.is_set()  # told while A is still half-way
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
