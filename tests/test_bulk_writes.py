"""Bulk write paths: put_many and ingest of many datasets (``COPY`` on PostgreSQL); what a single
put sends is in ``test_write_round_trips.py``.

Every stack runs these; on PostgreSQL a batch of ``bulk.COPY_MIN_ROWS`` datasets or more
goes through ``COPY`` and a smaller one is sent as one statement: in one pipeline inside a savepoint, or
with its BEGIN and COMMIT in one query when it is a transaction of its own.  Whatever
the path, a failure half-way leaves the repository as it was, and a conflict caught inside
``butler.transaction()`` leaves the transaction usable.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from conftest import populate, stack_locations
from skybutler import Butler
from skybutler.errors import DataIdError, DatasetConflictError
from skybutler.registry import bulk

N_VISITS, N_DETECTORS = 5, 16  # 80 datasets: over the COPY threshold (and few objects for S3's mock)


@pytest.fixture
def big(make_butler) -> Butler:
    b = make_butler(run="r", collections=["r"])
    populate(b, n_visits=N_VISITS, n_detectors=N_DETECTORS)
    b.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    return b


@pytest.fixture
def big_local(stack, tmp_path) -> Butler:
    """``big`` with its files on local disk whatever the registry (PostgreSQL's bulk path with staged files)."""
    b = Butler.create(tmp_path / "local", run="r", collections=["r"],
                      **{**stack_locations(stack, tmp_path), "datastore": None})
    populate(b, n_visits=N_VISITS, n_detectors=N_DETECTORS)
    b.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    yield b
    b.close()


def data_ids(visits=range(1, N_VISITS + 1)) -> list[dict]:
    return [{"instrument": "Cam", "visit": v, "detector": d} for v in visits for d in range(N_DETECTORS)]


def payload(d: dict) -> dict:
    return {"visit": d["visit"], "detector": d["detector"], "label": f"v{d['visit']}d{d['detector']}"}


def snapshot(butler: Butler) -> tuple[set, set]:
    """What the repository holds: dataset rows (ID, data ID, RUN) and files in the datastore."""
    runs = [c.name for c in butler.collections.query("*")]
    rows = {(r.id, r.data_id["visit"], r.data_id["detector"], r.run)
            for r in butler.query_datasets("metrics", collections=runs)} if runs else set()
    rows |= {(i, a.path) for i, a in butler.registry.datasets.all_artifacts().items()}
    fs, root = butler.datastore.fs, butler.datastore.root
    files = set(fs.find(root)) if fs.exists(root) else set()
    return rows, {f for f in files if "/.skybutler/" not in f}


def test_bulk_put_many_reads_back_with_its_facts(big: Butler):
    assert len(data_ids()) >= bulk.COPY_MIN_ROWS
    refs = big.put_many("metrics", [(payload(d), d) for d in data_ids()])
    assert len({r.id for r in refs}) == len(refs) == N_VISITS * N_DETECTORS
    got = {(r.data_id["visit"], r.data_id["detector"]): big.get(r) for r in big.query_datasets("metrics")}
    assert got == {(d["visit"], d["detector"]): payload(d) for d in data_ids()}
    # the facts rows went in with the datasets (a Dict's key count)
    assert big.query_datasets("metrics", where="metrics.n_keys = 3").count() == len(refs)
    assert big.registry.datasets.artifacts([refs[7].id])[refs[7].id] == refs[7].artifact


def test_bulk_put_many_conflicting_at_the_end_leaves_nothing(big: Butler):
    big.put(payload(data_ids()[-1]), "metrics", **data_ids()[-1])
    before = snapshot(big)
    with pytest.raises(DatasetConflictError, match=r"already exists in RUN 'r'"):
        big.put_many("metrics", [(payload(d), d) for d in data_ids()])
    assert snapshot(big) == before
    # a dataset ID already used (the dataset table's key, not the data ID) is named too
    ref = next(iter(big.query_datasets("metrics")))
    ids = [uuid.uuid4() for _ in range(len(data_ids()) - 1)] + [ref.id]
    with pytest.raises(DatasetConflictError, match=str(ref.id)):
        big.put_many("metrics", [(payload(d), d) for d in data_ids()], run="other", ids=ids)
    assert snapshot(big) == before


def test_bulk_put_many_failing_after_its_rows_leaves_nothing(big: Butler, monkeypatch):
    before = snapshot(big)

    def broken(*args, **kwargs):
        raise RuntimeError("facts lost on the way")

    monkeypatch.setattr(big.registry.metadata, "insert", broken)  # after the dataset rows went in
    with pytest.raises(RuntimeError, match="facts lost"):
        big.put_many("metrics", [(payload(d), d) for d in data_ids()])
    assert snapshot(big) == before
    monkeypatch.undo()
    assert len(big.put_many("metrics", [(payload(d), d) for d in data_ids()])) == len(data_ids())


@pytest.mark.parametrize("n_visits", [1, N_VISITS], ids=["pipelined", "copy"])
def test_a_conflict_caught_inside_a_transaction_leaves_it_usable(big: Butler, n_visits):
    first = data_ids(range(1, n_visits + 1))
    big.put_many("metrics", [(payload(d), d) for d in first[:1]])
    with big.transaction():
        with pytest.raises(DatasetConflictError):
            big.put_many("metrics", [(payload(d), d) for d in first])
        big.put({"after": True}, "metrics", instrument="Cam", visit=1, detector=N_DETECTORS - 1, run="later")
    assert big.get("metrics", instrument="Cam", visit=1, detector=N_DETECTORS - 1, collections="later") == {
        "after": True}
    assert big.query_datasets("metrics", collections="r").count() == 1


def test_bulk_ingest_failing_after_its_rows_leaves_nothing_and_keeps_the_sources(big: Butler, tmp_path: Path,
                                                                                  monkeypatch):
    items = []
    for d in data_ids():
        path = tmp_path / f"m_{d['visit']}_{d['detector']}.json"
        path.write_text(json.dumps(payload(d)))
        items.append((path, d))
    before = snapshot(big)

    def broken(*args, **kwargs):
        raise RuntimeError("facts lost on the way")

    monkeypatch.setattr(big.registry.metadata, "insert", broken)  # files placed and dataset rows in
    with pytest.raises(RuntimeError, match="facts lost"):
        big.ingest("metrics", items, transfer="move")
    assert snapshot(big) == before
    assert all(p.read_text() == json.dumps(payload(d)) for p, d in items), "a source file was lost or changed"
    monkeypatch.undo()
    refs = big.ingest("metrics", items, transfer="copy")
    assert len(refs) == len(items)
    assert big.get(refs[-1]) == payload(data_ids()[-1])


def test_export_and_import_stream_in_chunks_and_import_is_all_or_nothing(big: Butler, make_butler, tmp_path,
                                                                          monkeypatch):
    from skybutler import repository_transfer as rt

    monkeypatch.setattr(rt, "CHUNK", 16)  # five chunks of datasets, records in chunks too
    big.put_many("metrics", [(payload(d), d) for d in data_ids()])
    assert rt.export_datasets(big, big.query_datasets("metrics"), tmp_path / "out") == len(data_ids())
    lines = (tmp_path / "out" / rt.DATASETS_FILE).read_text().splitlines()
    assert len(lines) == len(data_ids())
    last = json.loads(lines[-1])
    good = (tmp_path / "out" / last["path"]).read_bytes()
    (tmp_path / "out" / last["path"]).write_text("{not json")  # the last chunk holds a broken file
    target = make_butler("target")
    with pytest.raises(Exception, match="metrics|json|JSON"):
        rt.import_datasets(target, tmp_path / "out")
    assert snapshot(target) == (set(), set())  # the first chunks' files and rows were undone
    (tmp_path / "out" / last["path"]).write_bytes(good)
    assert rt.import_datasets(target, tmp_path / "out") == len(data_ids())
    got = {(r.data_id["visit"], r.data_id["detector"]): target.get(r)
           for r in target.query_datasets("metrics", collections="r")}
    assert got == {(d["visit"], d["detector"]): payload(d) for d in data_ids()}
    # an export of format 1 (everything in export.json) is still read
    manifest = json.loads((tmp_path / "out" / rt.MANIFEST).read_text())
    records: dict[str, list] = {}
    for line in (tmp_path / "out" / rt.RECORDS_FILE).read_text().splitlines():
        item = json.loads(line)
        records.setdefault(item["element"], []).extend(item["records"])
    v1 = {"format_version": 1, "universe": manifest["universe"], "records": records,
          "dataset_types": manifest["dataset_types"], "runs": manifest["runs"],
          "datasets": [json.loads(line) for line in lines]}
    (tmp_path / "out" / rt.MANIFEST).write_text(json.dumps(v1))
    (tmp_path / "out" / rt.DATASETS_FILE).unlink()
    (tmp_path / "out" / rt.RECORDS_FILE).unlink()
    other = make_butler("other")
    assert rt.import_datasets(other, tmp_path / "out") == len(data_ids())
    assert other.query_datasets("metrics", collections="r").count() == len(data_ids())


def registry_dump(butler: Butler) -> dict[str, list]:
    """Every row of every table of the registry, read by SQLAlchemy reflection (not through skybutler)."""
    import sqlalchemy as sa

    engine = butler.registry.db.engine
    meta = sa.MetaData(schema=butler.registry.db.schema)
    meta.reflect(bind=engine)
    with engine.connect() as conn:
        return {name: sorted(map(repr, conn.execute(sa.select(table)).all())) for name, table in meta.tables.items()}


def datastore_files(butler: Butler) -> dict[str, bytes]:
    """Every file of the datastore's tree (skybutler's bookkeeping aside) with its bytes."""
    fs, root = butler.datastore.fs, butler.datastore.root
    return {f: fs.cat_file(f) for f in (fs.find(root) if fs.exists(root) else []) if "/.skybutler/" not in f}


def _fail_insert_on_call(monkeypatch, n: int) -> dict[str, int]:
    """Make the registry's n-th dataset insert (one import chunk's) fail with an OSError;
    the returned dict counts the calls."""
    from skybutler.registry.registry import Registry

    calls = {"n": 0}
    original = Registry.insert_datasets

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise OSError(f"injected failure in chunk {n}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Registry, "insert_datasets", failing)
    return calls


def test_a_failure_half_way_through_a_many_chunk_import_leaves_registry_and_datastore_as_they_were(
        big: Butler, make_butler, tmp_path, monkeypatch):
    """Many chunks in one transaction: a failure while the third chunk's rows go in (files of two
    chunks placed, their rows written, their undo held only by journals on disk) leaves every table
    and every file of the target as before -- records, dataset types and RUNs of the export included."""
    from skybutler import repository_transfer as rt
    from skybutler.registry.registry import Registry

    monkeypatch.setattr(rt, "CHUNK", 16)  # five chunks
    big.put_many("metrics", [(payload(d), d) for d in data_ids()])
    rt.export_datasets(big, big.query_datasets("metrics"), tmp_path / "out")
    target = make_butler("target", run="mine")
    target.insert_records("instrument", [{"name": "Other", "detector_max": 4}])
    target.register_dataset_type("notes", ["instrument"], "Dict")
    target.put({"a": 1}, "notes", instrument="Other")
    before_rows, before_files = registry_dump(target), datastore_files(target)
    original = Registry.insert_datasets
    calls = _fail_insert_on_call(monkeypatch, 3)
    spilled = []
    monkeypatch.setattr(rt, "ingest_with_ids", lambda *a, _f=rt.ingest_with_ids, **k: spilled.append(k) or _f(*a, **k))
    with pytest.raises(OSError, match="injected"):
        rt.import_datasets(target, tmp_path / "out")
    assert calls["n"] == 3 and all(k.get("spill") for k in spilled)
    assert registry_dump(target) == before_rows
    assert datastore_files(target) == before_files
    assert not target.datastore.journal.has_entries()  # every chunk's journal settled
    monkeypatch.setattr(Registry, "insert_datasets", original)
    assert rt.import_datasets(target, tmp_path / "out") == len(data_ids())
    got = {(r.data_id["visit"], r.data_id["detector"]): target.get(r)
           for r in target.query_datasets("metrics", collections="r")}
    assert got == {(d["visit"], d["detector"]): payload(d) for d in data_ids()}


def test_a_failed_many_chunk_import_by_move_puts_every_moved_file_back(big: Butler, make_butler, tmp_path,
                                                                        monkeypatch):
    """The undo of spilled chunks works from their journals: files moved in by the first chunks go back
    to the export, byte for byte, when a later chunk fails."""
    from skybutler import repository_transfer as rt

    if not big.datastore.local:
        pytest.skip("a move into an object store is a copy whose source stays until the commit")
    monkeypatch.setattr(rt, "CHUNK", 16)
    big.put_many("metrics", [(payload(d), d) for d in data_ids()])
    rt.export_datasets(big, big.query_datasets("metrics"), tmp_path / "out")
    exported = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    target = make_butler("target")
    _fail_insert_on_call(monkeypatch, 4)
    with pytest.raises(OSError, match="injected"):
        rt.import_datasets(target, tmp_path / "out", transfer="move")
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == exported
    assert datastore_files(target) == {}


def test_bulk_registration_refuses_a_missing_record_by_name_and_leaves_nothing(big: Butler):
    """``insert_bulk`` checks the chunk's dimension records itself (SQLite's per-row foreign-key
    checks are off for it): a record missing from a later chunk refuses the whole call, names
    the record, leaves every earlier chunk out, and the checks are back on afterwards."""
    dtype = big.get_dataset_type("metrics")
    big.collections.register("bulk", "run")
    before = snapshot(big)
    good = [("Cam", v, d) for v in range(1, N_VISITS + 1) for d in range(N_DETECTORS)]
    for bad, message in [(("Cam", N_VISITS + 1, 0), f"no visit record instrument='Cam', visit={N_VISITS + 1}"),
                         (("Cam", 1, N_DETECTORS), f"no detector record instrument='Cam', detector={N_DETECTORS}"),
                         (("Elsewhere", 1, 0), "no instrument record instrument='Elsewhere'")]:
        with pytest.raises(DataIdError, match=f"^{message}: register it before metrics datasets"):
            big.registry.datasets.insert_bulk(dtype, "bulk", [*good, bad], batch_size=N_DETECTORS)
        assert snapshot(big) == before
    # a put after the refused bulk call is still checked by the database's foreign keys
    with big.registry.db.transaction() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys" if big.registry.db.dialect == "sqlite"
                                    else "SELECT 1").scalar() == 1
    assert big.registry.datasets.insert_bulk(dtype, "bulk", good, batch_size=7) == len(good)
    assert big.query_datasets("metrics", collections="bulk").count() == len(good)


def test_bulk_registration_rows_agree_and_a_later_chunk_conflict_leaves_nothing(big: Butler):
    """``insert_bulk`` writes the dataset rows of a chunk in one statement (SQLite) or a COPY
    and its membership rows apart: every membership row has its own dataset row, of its type
    and RUN, each chunk's IDs in increasing order; values given as lists work as tuples; a data ID
    given again in a later chunk refuses the whole call, earlier chunks included."""
    big.register_dataset_type("other", ["instrument", "visit", "detector"], "Dict")
    for run in ("spare", "bulk", "bulk2"):  # no RUN's number the same as a type's
        big.collections.register(run, "run")
    good = [["Cam", v, d] for v in range(1, N_VISITS + 1) for d in range(N_DETECTORS)]
    datasets = big.registry.datasets
    assert datasets.insert_bulk(big.get_dataset_type("metrics"), "bulk", good, batch_size=7) == len(good)
    assert datasets.insert_bulk(big.get_dataset_type("other"), "bulk2", iter(good[:9]), batch_size=4) == 9
    refs = {name: list(big.query_datasets(name, collections=["bulk", "bulk2"])) for name in ("metrics", "other")}
    assert sorted((r.data_id["visit"], r.data_id["detector"]) for r in refs["metrics"]) == [(v, d) for _, v, d in good]
    assert sorted((r.data_id["visit"], r.data_id["detector"]) for r in refs["other"]) == [(v, d) for _, v, d in good[:9]]
    owners = datasets.owners(r.id for rs in refs.values() for r in rs)
    assert owners == {**{r.id: ("metrics", "bulk") for r in refs["metrics"]}, **{r.id: ("other", "bulk2") for r in refs["other"]}}
    by_key = {(r.data_id["visit"], r.data_id["detector"]): r.id for r in refs["metrics"]}
    ids = [by_key[v, d] for _, v, d in good]
    assert len(set(ids)) == len(ids)  # and each chunk's in increasing order (appended to every index)
    assert all(ids[i:i + 7] == sorted(ids[i:i + 7]) for i in range(0, len(ids), 7))
    before = snapshot(big)
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        datasets.insert_bulk(big.get_dataset_type("other"), "bulk", [*good, good[3]], batch_size=7)
    assert snapshot(big) == before
    assert big.query_datasets("other", collections="bulk").count() == 0


# -- a large put_many prepares its files in a thread while its rows go in -------------------


def test_bulk_put_many_equals_a_loop_of_single_puts(big_local: Butler, make_butler):
    """The oracle: the same datasets put one by one into a twin repository give the same IDs
    (deterministic), paths, sizes, checksums, facts and file bytes."""
    from skybutler.datastore import staging

    assert len(data_ids()) >= staging.BACKGROUND_MIN_FILES
    twin = make_butler("twin", run="r", collections=["r"])
    populate(twin, n_visits=N_VISITS, n_detectors=N_DETECTORS)
    twin.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    for d in data_ids():
        twin.put(payload(d), "metrics", d, id_mode="deterministic")
    big_local.put_many("metrics", [(payload(d), d) for d in data_ids()], id_mode="deterministic")

    def stored(butler: Butler) -> dict:
        refs = list(butler.query_datasets("metrics"))
        artifacts = butler.registry.datasets.artifacts([r.id for r in refs])
        root = butler.datastore.root.rstrip("/") + "/"
        return {(r.id, r.data_id["visit"], r.data_id["detector"]):
                (artifacts[r.id], butler.datastore.fs.cat_file(root + artifacts[r.id].path)) for r in refs}

    ours, theirs = stored(big_local), stored(twin)
    assert len(ours) == len(data_ids()) and ours == theirs
    assert big_local.query_datasets("metrics", where="metrics.n_keys = 3").count() == len(data_ids())


def _fail_file_write_at(monkeypatch, n: int) -> list[str]:
    """Make the n-th staged file's write fail (a full disk); returns the names of the threads that wrote."""
    from skybutler.datastore import datastore as ds

    threads: list[str] = []
    original = ds.write_new_file

    def failing(path, data):
        import threading

        threads.append(threading.current_thread().name)
        if len(threads) == n:
            raise OSError(28, "No space left on device")
        return original(path, data)

    monkeypatch.setattr(ds, "write_new_file", failing)
    return threads


def test_bulk_put_many_with_a_file_failing_half_way_leaves_nothing(big_local: Butler, monkeypatch):
    """A file of a large batch fails to stage (in the preparing thread, while the rows go in): no
    row, no file, no staged leftover and no journal stays; the batch then goes in whole."""
    from skybutler.errors import DatastoreError

    before = snapshot(big_local)
    threads = _fail_file_write_at(monkeypatch, len(data_ids()) // 2)
    with pytest.raises(DatastoreError, match="No space left on device"):
        big_local.put_many("metrics", [(payload(d), d) for d in data_ids()])
    assert snapshot(big_local) == before
    assert set(threads) == {"skybutler-prepare"}, threads
    assert not big_local.datastore.journal.has_entries()
    assert not list(Path(big_local.datastore.root).rglob("*.tmp-*")), "a staged file was left behind"
    monkeypatch.undo()
    assert len(big_local.put_many("metrics", [(payload(d), d) for d in data_ids()])) == len(data_ids())
    assert snapshot(big_local) != before


def test_bulk_put_many_with_an_object_failing_to_format_half_way_leaves_nothing(big_local: Butler, monkeypatch):
    """The formatter fails on one object of a large batch (after the dataset rows went in): nothing stays."""
    from skybutler.errors import FormatterError
    from skybutler.formats import get_formatter

    json_formatter = get_formatter("json")
    original = json_formatter._write

    def failing(obj, stream):
        if obj.get("label") == "v3d5":
            stream.write(b'{"label": ')
            raise RuntimeError("cannot encode this one")
        return original(obj, stream)

    before = snapshot(big_local)
    monkeypatch.setattr(json_formatter, "_write", failing)
    with pytest.raises(FormatterError, match="cannot encode this one"):
        big_local.put_many("metrics", [(payload(d), d) for d in data_ids()])
    assert snapshot(big_local) == before
    assert not big_local.datastore.journal.has_entries()


def test_bulk_put_many_in_a_transaction_rolled_back_leaves_nothing(big_local: Butler, monkeypatch):
    """Two large batches in one enclosing transaction share its journal; a failure after both
    takes both out, files included."""
    before = snapshot(big_local)
    with pytest.raises(RuntimeError, match="changed my mind"):
        with big_local.transaction():
            big_local.put_many("metrics", [(payload(d), d) for d in data_ids()])
            big_local.put_many("metrics", [(payload(d), d) for d in data_ids()], run="second")
            assert [big_local.query_datasets("metrics", collections=c).count() for c in ("r", "second")] == \
                [len(data_ids())] * 2
            raise RuntimeError("changed my mind")
    assert snapshot(big_local) == before
    assert not big_local.datastore.journal.has_entries()


def test_bulk_ingest_parses_each_file_once_and_records_its_facts(big: Butler, tmp_path: Path, monkeypatch):
    """The formatter's check and the facts come from one parse of each file (a second one cost
    about a tenth of an ingest); a file the formatter refuses is still named, with every other one."""
    from skybutler.errors import InvalidFileError
    from skybutler.formats import get_formatter

    items = []
    for d in data_ids():
        path = tmp_path / f"m_{d['visit']}_{d['detector']}.json"
        path.write_text(json.dumps(payload(d)))
        items.append((path, d))
    json_formatter = get_formatter("json")
    parses = []
    for hook in ("_read", "_validate"):
        original = getattr(json_formatter, hook)
        monkeypatch.setattr(json_formatter, hook, lambda *a, _o=original, **k: parses.append(1) or _o(*a, **k))
    refs = big.ingest("metrics", items, transfer="copy")
    assert len(parses) == len(items)
    assert big.query_datasets("metrics", where="metrics.n_keys = 3").count() == len(refs) == len(items)
    before = snapshot(big)
    bad = [tmp_path / "bad1.json", tmp_path / "bad2.json"]
    for path in bad:
        path.write_text("{not json")
    with pytest.raises(InvalidFileError, match=r"2 file\(s\) cannot be read") as caught:
        big.ingest("metrics", [(bad[0], data_ids()[0]), *items[1:-1], (bad[1], data_ids()[-1])], run="other")
    assert [f for f, _ in caught.value.failures] == [str(p) for p in bad]
    assert snapshot(big) == before


@pytest.mark.parametrize("transfer", ["copy", "move"])
def test_bulk_ingest_with_a_file_failing_half_way_leaves_nothing_and_keeps_the_sources(
        big_local: Butler, tmp_path: Path, monkeypatch, transfer):
    """A large ingest places its files in a thread while its rows go in; a file failing half-way
    there leaves no row, no file and no journal, and every source where it was, with its bytes."""
    from skybutler.datastore import transfer as tr
    from skybutler.errors import TransferError

    items = []
    for d in data_ids():
        path = tmp_path / "in" / f"m_{d['visit']}_{d['detector']}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(payload(d)))
        items.append((path, d))
    sources = {p: p.read_bytes() for p, _ in items}
    before = snapshot(big_local)
    threads: list[str] = []
    original = tr.rename_no_replace

    def failing(source, destination):
        import threading

        threads.append(threading.current_thread().name)
        if len(threads) == len(items) // 2:
            raise OSError(28, "No space left on device")
        return original(source, destination)

    monkeypatch.setattr(tr, "rename_no_replace", failing)
    with pytest.raises((TransferError, OSError), match="No space left on device"):
        big_local.ingest("metrics", items, transfer=transfer)
    assert set(threads) == {"skybutler-place"}, threads
    assert snapshot(big_local) == before
    assert {p: p.read_bytes() for p, _ in items if p.exists()} == sources, "a source file was lost or changed"
    assert not big_local.datastore.journal.has_entries()
    monkeypatch.undo()
    refs = big_local.ingest("metrics", items, transfer=transfer)
    assert {(r.data_id["visit"], r.data_id["detector"]): big_local.get(r) for r in refs} == {
        (d["visit"], d["detector"]): payload(d) for d in data_ids()}
