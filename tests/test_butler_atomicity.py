"""The atomicity of the Butler's writes: a put that fails at any step (formatting, the
registry, publishing, a conflict) leaves no row and no file, and ``butler.transaction()``
groups puts and removals whose files appear or go only when the block commits."""

from __future__ import annotations

import pytest

from skybutler.errors import BackendError, DatasetConflictError, DatastoreError, FormatterError
from skybutler.formats import get_formatter
from skybutler.verify import verify
from test_butler import DATA_ID, assert_consistent, make_image_hdu, stored_files


def test_a_formatter_raising_midway_leaves_no_row_and_no_file(butler, monkeypatch):
    kept = butler.put({"kept": 1}, "metrics", {**DATA_ID, "detector": 0})

    def broken_write(obj, stream):
        stream.write(b'{"partial": ')
        raise OSError("device full")

    monkeypatch.setattr(get_formatter("json"), "_write", broken_write)
    with pytest.raises(FormatterError, match="device full"):
        butler.put({"a": 1}, "metrics", DATA_ID)
    assert butler.find_dataset("metrics", DATA_ID) is None
    assert stored_files(butler) == {kept.artifact.path}
    monkeypatch.undo()
    assert butler.put({"a": 1}, "metrics", DATA_ID)  # nothing is in the way afterwards
    assert_consistent(butler)


def test_a_registry_failure_after_the_files_are_written_leaves_no_file(butler, monkeypatch):
    original = butler.registry.datasets.insert
    calls = []

    def insert_then_fail(*args, **kwargs):
        calls.append(original(*args, **kwargs))
        raise BackendError("connection lost after insert")

    monkeypatch.setattr(butler.registry.datasets, "insert", insert_then_fail)
    with pytest.raises(BackendError, match="connection lost"):
        butler.put_many("metrics", [({"d": d}, {**DATA_ID, "detector": d}) for d in range(3)])
    assert len(calls) == 1  # the rows were inserted, then rolled back
    monkeypatch.undo()
    assert stored_files(butler) == set()
    assert butler.collections.query() == []  # the RUN registered in that transaction is gone too
    refs = butler.put_many("metrics", [({"d": d}, {**DATA_ID, "detector": d}) for d in range(3)])
    assert len(refs) == 3
    assert_consistent(butler)


def test_a_failure_after_some_files_are_published_takes_them_back(butler, monkeypatch):
    publish = butler.datastore._publish
    published = []

    def fail_for_detector_2(path, staged, data, *rest):
        # By path, not by call order: an object store publishes a batch from several threads.
        if path.endswith("_2.json"):
            raise DatastoreError("store went away")
        publish(path, staged, data, *rest)
        published.append(path)

    monkeypatch.setattr(butler.datastore, "_publish", fail_for_detector_2)
    with pytest.raises(DatastoreError, match="store went away"):
        butler.put_many("metrics", [({"d": d}, {**DATA_ID, "detector": d}) for d in range(4)])
    assert len(published) == (2 if butler.datastore.local else 3)  # in order locally, all others in threads
    monkeypatch.undo()
    assert stored_files(butler) == set()
    assert butler.collections.query() == []
    butler.put({"d": 0}, "metrics", DATA_ID)
    assert_consistent(butler)


def test_a_conflicting_put_keeps_the_first_file_and_leaves_no_strays(butler):
    first = butler.put({"first": 1}, "metrics", DATA_ID)
    content = butler.datastore._read_bytes(first.artifact.path)
    for _ in range(3):
        with pytest.raises(DatasetConflictError):
            butler.put({"second": 2}, "metrics", DATA_ID)
    assert butler.datastore._read_bytes(first.artifact.path) == content
    assert stored_files(butler) == {first.artifact.path}
    assert not [p for p in butler.datastore.walk() if ".tmp-" in p]


def test_transaction_groups_puts_and_a_failure_undoes_rows_and_files(butler):
    with butler.transaction():
        for detector in range(3):
            butler.put({"d": detector}, "metrics", instrument="Cam", visit=1, detector=detector, run="grouped")
    assert butler.query_datasets("metrics", collections="grouped").count() == 3
    files_before = sorted(p for p in butler.datastore.walk() if p.endswith(".json"))
    with pytest.raises(RuntimeError):
        with butler.transaction():
            butler.put({"d": 9}, "metrics", instrument="Cam", visit=2, detector=0, run="rolled-back")
            butler.put({"d": 9}, "metrics", instrument="Cam", visit=2, detector=1, run="grouped")
            raise RuntimeError("stop")
    assert not butler.collections.exists("rolled-back")
    assert butler.query_datasets("metrics", collections="grouped").count() == 3
    assert sorted(p for p in butler.datastore.walk() if p.endswith(".json")) == files_before
    # The butler is still usable afterwards, including for the rolled-back RUN's name.
    butler.put({"d": 1}, "metrics", instrument="Cam", visit=2, detector=0, run="rolled-back")


def test_a_rolled_back_transaction_that_made_the_facts_tables_leaves_them_makeable(butler):
    """The first image of a repository makes the tables of its facts (and of their sky pixels) inside
    the transaction that stores it; when that transaction rolls back, the tables go with it, and
    the next write makes them again (their definitions once held their indexes twice, and every
    later image failed: "index dataset_metadata_skypix_begin already exists")."""
    butler.register_dataset_type("calexp", ["visit", "detector"], "Image")
    with pytest.raises(RuntimeError), butler.transaction():
        butler.put(make_image_hdu(), "calexp", DATA_ID, run="first")
        raise RuntimeError("stop")
    ref = butler.put(make_image_hdu(), "calexp", DATA_ID, run="first")
    assert butler.get(ref, component="header")["FILTER"] == "r"
    assert butler.get_metadata(ref)["exptime"] == 30.0


#: A transaction of more puts than a process may hold open files: run with this soft limit.
_MANY_PUTS = """
import resource, sys
from skybutler import Butler
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
with Butler(sys.argv[1]) as butler, butler.transaction():
    refs = [butler.put({"n": n}, "metrics", instrument="Cam", visit=1 + n % 6, detector=n // 6 % 4,
                       run=f"many/{n // 24}") for n in range(200)]
if sys.argv[2] == "remove":
    with Butler(sys.argv[1]) as butler, butler.transaction():
        for ref in refs[::2]:
            butler.remove([ref])
"""


@pytest.mark.parametrize("then", ["keep", "remove"])
def test_a_transaction_of_more_writes_than_open_files_allowed_is_written_whole(butler, then):
    """Each put (and removal) of a transaction once held its journal open until the block ended:
    200 puts, or 100 removals, under a limit of 64 open files failed with "Too many open files"."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _MANY_PUTS, str(butler.root), then], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = [f"many/{k}" for k in range(9)]
    got = {(r.run, r.data_id["visit"], r.data_id["detector"]): butler.get(r)["n"]
           for r in butler.query_datasets("metrics", collections=runs, find_first=False)}
    kept = range(200) if then == "keep" else range(1, 200, 2)
    assert got == {(f"many/{n // 24}", 1 + n % 6, n // 6 % 4): n for n in kept}
    assert_consistent(butler)
    assert not any((butler.root / ".skybutler" / "journal").iterdir())


def test_put_many_pauses_the_cyclic_collector_and_restores_it(butler):
    import gc

    seen = []
    original = butler.datastore.prepare_many

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return original(*args, **kwargs)

    butler.datastore.prepare_many = spy
    assert gc.isenabled()
    butler.put_many("metrics", [({"i": 1}, {"instrument": "Cam", "visit": 1, "detector": 0})])
    assert seen == [False] and gc.isenabled()
    with pytest.raises(DatasetConflictError):  # the same data ID again: refused, collector back on
        butler.put_many("metrics", [({"i": 1}, {"instrument": "Cam", "visit": 1, "detector": 0})])
    assert gc.isenabled()


def _state(butler) -> tuple[set, dict]:
    """Every dataset row (ID, RUN) and every stored file with its bytes: what a rollback must restore."""
    runs = [c.name for c in butler.collections.query("*", types=["run"])]
    rows = {(r.id, r.run) for r in butler.query_datasets("metrics", collections=runs, find_first=False)}
    files = {p: butler.datastore._read_bytes(p) for p in butler.datastore.walk()}
    return rows, files


@pytest.mark.parametrize("removal", ["remove", "remove_runs"])
def test_a_removal_inside_a_transaction_deletes_files_only_when_the_block_commits(butler, removal):
    refs = butler.put_many("metrics", [({"d": d}, {"instrument": "Cam", "visit": 1, "detector": d})
                                       for d in range(3)], run="doomed")
    kept = butler.put({"k": 1}, "metrics", instrument="Cam", visit=2, detector=0, run="kept")
    before = _state(butler)

    def remove() -> None:
        if removal == "remove":
            butler.remove(refs[:2])
        else:
            butler.remove_runs(["doomed"])

    with pytest.raises(RuntimeError):
        with butler.transaction():
            remove()
            butler.put({"n": 1}, "metrics", instrument="Cam", visit=2, detector=1, run="kept")
            raise RuntimeError("the outer block fails after the removal")
    assert _state(butler) == before  # rows and files exactly as they were
    assert [butler.get(r) for r in refs] == [{"d": d} for d in range(3)]
    with butler.transaction():
        remove()
        # not yet committed: the files are still there
        assert all(butler.datastore.exists(r.artifact) for r in refs)
    gone = refs[:2] if removal == "remove" else refs
    assert not any(butler.datastore.exists(r.artifact) for r in gone)
    assert all(butler.datastore.exists(r.artifact) for r in refs if r not in gone)
    assert butler.get(kept) == {"k": 1}
    assert verify(butler).consistent
