"""Export/import/transfer with IDs preserved, verify after faults, migrations, concurrent writers."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from conftest import populate
from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.errors import SchemaVersionError, SkybutlerError
from skybutler.registry.migrations import migrate
from skybutler.repository_transfer import export_datasets, import_datasets, transfer_datasets
from skybutler.timespan import Timespan
from skybutler.verify import plan_repair, repair, verify


def _fill(butler: Butler, visits=range(1, 4), detectors=range(4)) -> list:
    return butler.put_many("metrics", [({"v": v, "d": d}, {"instrument": "Cam", "visit": v, "detector": d})
                                       for v in visits for d in detectors])


def test_export_import_preserves_ids_and_contents(butler, make_butler, tmp_path):
    refs = _fill(butler)
    assert export_datasets(butler, butler.query_datasets("metrics"), tmp_path / "export") == len(refs)
    target = make_butler("target", collections=["run/a"])
    assert import_datasets(target, tmp_path / "export") == len(refs)
    assert import_datasets(target, tmp_path / "export") == 0  # idempotent: same IDs are skipped
    imported = list(target.query_datasets("metrics"))
    assert {r.id for r in imported} == {r.id for r in refs}
    assert target.get("metrics", visit=2, detector=3) == {"v": 2, "d": 3}
    # Dimension records came along, regions included.
    assert target.query_data_ids(["visit"], "visit.region OVERLAPS POINT(14.6, -53)").count() == 1


def test_exported_records_are_the_records_read_back(butler, make_butler, tmp_path):
    """The records an export writes (from the rows, no record built) are what the registry's
    records say, field for field (oracle: each record fetched, its region encoded and its
    timespan taken to nanoseconds), to the type: booleans, half-bounded and missing timespans; and they
    import as those records."""
    import base64
    import json

    from skybutler.dimensions import regions as sky

    night = butler.registry.dimensions.fetch_one("day_obs", ("Cam", 20250101))["timespan"]
    butler.insert_records("group", [{"instrument": "Cam", "name": "g1"}])
    butler.insert_records("exposure", [  # a boolean true, false and missing; timespans whole, half and none
        {"instrument": "Cam", "id": e, "physical_filter": "Cam-g", "day_obs": 20250101, "group": "g1",
         "has_simulated": e == 1, "can_see_sky": None if e == 3 else e == 2, "exposure_time": 30.0 + e,
         "timespan": {1: Timespan(night.begin, None), 2: night, 3: None}[e]} for e in (1, 2, 3)])
    butler.register_dataset_type("exposure_metrics", ["instrument", "exposure", "detector"], "Dict")
    refs = butler.put_many("exposure_metrics", [({"e": e}, {"instrument": "Cam", "exposure": e, "detector": 0})
                                                for e in (1, 2, 3)])
    refs += _fill(butler)
    export_datasets(butler, refs, tmp_path / "e")
    written = [json.loads(line) for line in (tmp_path / "e" / "export.records.jsonl").read_text().splitlines()]
    assert {item["element"] for item in written} >= {"instrument", "visit", "exposure", "day_obs", "band", "group"}
    for item in written:
        for row in item["records"]:
            element = butler.universe[item["element"]]
            identity = tuple(row[d] for d in element.identity)
            expected = butler.registry.dimensions.fetch_one(item["element"], identity).to_dict()
            if expected.get("region") is not None:
                expected["region"] = base64.b64encode(sky.encode(expected["region"])).decode()
            if expected.get("timespan") is not None:
                expected["timespan"] = list(expected["timespan"].to_ns())
            assert json.dumps(row) == json.dumps(expected)
    target = make_butler("target")
    import_datasets(target, tmp_path / "e")
    for e in (1, 2, 3):
        assert target.registry.dimensions.fetch_one("exposure", ("Cam", e)) == \
            butler.registry.dimensions.fetch_one("exposure", ("Cam", e))


@pytest.mark.parametrize("remembered", [100_000, 3])
def test_export_writes_records_chunk_by_chunk_each_dataset_once(butler, make_butler, tmp_path, monkeypatch,
                                                                 remembered):
    """A streamed export: each chunk's records follow its datasets, a record named by several
    chunks is written once while remembered (with a tiny memory, again: the import skips it), and
    a dataset given twice, in one chunk or two, is written once.  The import gives back every
    dataset and record (oracle: the source's own)."""
    import json

    import skybutler.copy_out as copy_out
    import skybutler.repository_transfer as transfer

    monkeypatch.setattr(transfer, "CHUNK", 5)
    monkeypatch.setattr(copy_out, "WRITTEN_LIMIT", remembered)
    refs = _fill(butler, visits=range(1, 7))
    assert export_datasets(butler, refs + refs[::-1] + refs[:2], tmp_path / "e") == len(refs)
    lines = (tmp_path / "e" / "export.datasets.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(str(r.id) for r in refs)
    written = [json.loads(line) for line in (tmp_path / "e" / "export.records.jsonl").read_text().splitlines()]
    visits = [json.dumps(row, sort_keys=True) for item in written for row in item["records"]
              if item["element"] == "visit"]
    assert len(set(visits)) == 6 and len(written) > 6  # records went out chunk by chunk
    if remembered > 10:
        assert len(visits) == 6
    target = make_butler("target", collections=["run/a"])
    assert import_datasets(target, tmp_path / "e") == len(refs)
    assert {r.id for r in target.query_datasets("metrics")} == {r.id for r in refs}
    for element in ("instrument", "detector", "physical_filter", "band", "day_obs", "visit"):
        assert sorted(map(repr, target.registry.dimensions.fetch_all(element))) == \
            sorted(map(repr, butler.registry.dimensions.fetch_all(element)))


def test_export_holds_one_chunk_of_refs_and_reads_with_a_small_cache(butler, tmp_path, monkeypatch):
    """A streamed export keeps no chunk of refs while it reads the next one (what it holds does not
    grow with the export), and its reads of a SQLite registry keep a small page cache, restored after.
    Oracles: weak references to the refs as the stream hands them out; SQLite's own ``cache_size``."""
    import gc
    import weakref

    import skybutler.repository_transfer as transfer
    from skybutler.models import DatasetRef
    from skybutler.registry import database

    class Tracked(DatasetRef):  # weakly referenceable
        pass

    monkeypatch.setattr(transfer, "CHUNK", 5)
    refs = _fill(butler, visits=range(1, 6))  # 20 refs: four chunks
    alive: weakref.WeakSet = weakref.WeakSet()
    most = 0

    def stream():
        nonlocal most
        for ref in refs:
            gc.collect()
            most = max(most, len(alive))
            copy = Tracked(ref.id, ref.dataset_type, ref.data_id, ref.run)
            alive.add(copy)
            yield copy

    def cache_kib() -> int | None:
        if butler.registry.db.dialect != "sqlite":
            return None
        with butler.registry.db.reading() as conn:
            return -conn.exec_driver_sql("PRAGMA cache_size").scalar()

    sizes: list[int] = []
    real = butler.registry.datasets.artifacts
    monkeypatch.setattr(butler.registry.datasets, "artifacts", lambda ids: sizes.append(cache_kib()) or real(ids))
    assert export_datasets(butler, stream(), tmp_path / "e") == len(refs)
    assert most <= 5  # the refs of the chunk being read, not also the last one's
    if butler.registry.db.dialect == "sqlite":
        assert sizes == [database.SQLITE_SMALL_CACHE_KIB] * 4
        assert cache_kib() == database.SQLITE_CACHE_KIB


def test_import_reads_each_file_once(butler, make_butler, tmp_path, monkeypatch):
    """A file is checked from the bytes that are copied into the datastore, not opened twice
    (test_integrity: a refused one still undoes the import)."""
    import builtins
    import os

    refs = _fill(butler)
    export_datasets(butler, refs, tmp_path / "e")
    files = {str(p) for p in (tmp_path / "e").rglob("*.json") if p.name != "export.json"}
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def counting_open(path, *args, **kwargs):
        opened.append(os.path.abspath(path) if isinstance(path, (str, Path)) else path)
        return real_open(path, *args, **kwargs)

    def counting_os_open(path, *args, **kwargs):
        opened.append(os.path.abspath(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(os, "open", counting_os_open)
    target = make_butler("target", collections=["run/a"])
    assert import_datasets(target, tmp_path / "e") == len(refs)
    monkeypatch.undo()
    assert sorted(p for p in opened if p in files) == sorted(files)
    assert target.get("metrics", visit=2, detector=3) == {"v": 2, "d": 3}


def test_export_and_import_tell_their_progress(butler, make_butler, tmp_path, monkeypatch):
    """Python: a callback told (done, total), rising to the whole; CLI in a pipe: stdout holds
    the sentence only, stderr one plain line of the finished bar."""
    import skybutler.repository_transfer as transfer

    refs = _fill(butler)
    told: list[tuple[int, int | None]] = []
    export_datasets(butler, refs, tmp_path / "e", progress=lambda done, total: told.append((done, total)))
    assert told == [(n, len(refs)) for n in range(1, len(refs) + 1)]
    monkeypatch.setattr(transfer, "CHUNK", 5)  # three chunks on import
    target = make_butler("target")
    told.clear()
    import_datasets(target, tmp_path / "e", progress=lambda done, total: told.append((done, total)))
    assert told == [(0, 12), (5, 12), (10, 12), (12, 12)]
    result = CliRunner().invoke(cli, ["export", str(butler.root), str(tmp_path / "cli")])
    assert result.exit_code == 0 and result.stdout == f"exported 12 datasets to {tmp_path / 'cli'}\n"
    assert "exporting datasets" in result.stderr and "12/12" in result.stderr
    other = make_butler("other")
    result = CliRunner().invoke(cli, ["import", str(other.root), str(tmp_path / "cli")])
    assert result.exit_code == 0 and result.stdout.startswith("imported 12 datasets")
    assert "importing datasets" in result.stderr and "12/12" in result.stderr


def test_cli_export_streams_its_queries_and_checks_them_first(butler, make_butler, tmp_path, monkeypatch):
    """The command hands the export its queries to read batch by batch (not a list of every ref),
    with their number for the progress bar; a where-clause it cannot read writes nothing."""
    import skybutler.cli.maintenance_commands as commands

    refs = _fill(butler)
    given = []
    real = commands.export_datasets
    monkeypatch.setattr(commands, "export_datasets", lambda b, r, *a, **k: given.append(r) or real(b, r, *a, **k))
    result = CliRunner().invoke(cli, ["export", str(butler.root), str(tmp_path / "cli")])
    assert result.exit_code == 0 and "12/12" in result.stderr
    (stream,) = given
    assert not isinstance(stream, list) and len(stream) == len(refs)
    assert all(q.streaming for q in stream.queries)
    other = make_butler("other")
    assert import_datasets(other, tmp_path / "cli") == len(refs)
    assert {r.id for r in other.query_datasets("metrics", collections=["run/a"])} == {r.id for r in refs}
    result = CliRunner().invoke(cli, ["export", str(butler.root), str(tmp_path / "bad"), "--where", "visit >"])
    assert result.exit_code != 0 and not (tmp_path / "bad").exists()


def test_export_refuses_non_empty_target_and_import_checks_manifest(butler, tmp_path):
    _fill(butler)
    export_datasets(butler, butler.query_datasets("metrics"), tmp_path / "e")
    with pytest.raises(SkybutlerError, match="already holds an export"):
        export_datasets(butler, butler.query_datasets("metrics"), tmp_path / "e")
    with pytest.raises(SkybutlerError, match="no export.json"):
        import_datasets(butler, tmp_path / "nothing-here")


def test_failed_import_leaves_target_unchanged(butler, make_butler, tmp_path):
    _fill(butler)
    export_datasets(butler, butler.query_datasets("metrics"), tmp_path / "e")
    victim = next((tmp_path / "e").rglob("*.json.bak"), None) or sorted((tmp_path / "e" / "run~").rglob("*.json"))[-1]
    victim.unlink()  # one file of the export is missing
    target = make_butler("target", collections=["run/a"])
    with pytest.raises(SkybutlerError):
        import_datasets(target, tmp_path / "e")
    assert not target.collections.exists("run/a") or target.query_datasets("metrics").count() == 0
    assert verify(target).consistent


def test_transfer_between_repositories_preserves_ids(butler, make_butler):
    refs = _fill(butler)
    target = make_butler("target", collections=["run/a"])
    assert transfer_datasets(butler, target, refs[:5]) == 5
    assert {r.id for r in target.query_datasets("metrics")} == {r.id for r in refs[:5]}


def test_verify_reports_missing_and_orphan_files_and_fix_quarantines_orphans(butler):
    refs = _fill(butler)
    assert verify(butler).consistent
    butler.datastore.remove([refs[0].artifact])  # behind the registry's back
    orphan = butler.datastore.full_path("run~/a/stray.json")
    butler.datastore.fs.pipe_file(orphan, b"{}")
    report = verify(butler)
    assert len(report.missing_files) == 1 and str(refs[0].id) in report.missing_files[0]
    assert report.orphan_files == ["run~/a/stray.json"]
    result = repair(butler, plan_repair(report))
    assert result.quarantined == 1 and result.deleted == 0 and not butler.datastore.fs.exists(orphan)
    assert (Path(result.quarantine) / "files" / "run~/a/stray.json").read_bytes() == b"{}"


def test_verify_cli_exit_status(butler):
    _fill(butler)
    runner = CliRunner()
    assert runner.invoke(cli, ["verify", str(butler.root)]).exit_code == 0
    butler.datastore.fs.pipe_file(butler.datastore.full_path("stray.txt"), b"x")
    result = runner.invoke(cli, ["verify", str(butler.root), "--json"])
    assert result.exit_code == 1 and '"stray.txt"' in result.stdout


WRITER = textwrap.dedent("""
    import sys
    from skybutler import Butler
    butler = Butler(sys.argv[1], run=sys.argv[2])
    start, count = int(sys.argv[3]), int(sys.argv[4])
    for i in range(start, start + count):
        visit, detector = divmod(i, 4)
        butler.put({"i": i}, "metrics", instrument="Cam", visit=visit + 1, detector=detector)
        if i == start:  # the first put loads the storage classes: the puts that follow stream
            print("ready", flush=True)
""")


def _writer(repo: Path, run: str, start: int, count: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(repo), run, str(start), str(count)],
                            stdout=subprocess.PIPE, text=True)


def test_sigkill_mid_put_leaves_no_row_without_file(stack, make_butler):
    if stack != "sqlite":
        pytest.skip("the local-file variant covers the ordering; the PostgreSQL stack runs the concurrency test")
    butler = make_butler()
    populate(butler, n_visits=200, n_detectors=4)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    proc = _writer(butler.root, "killed", 0, 800)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.8)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    report = verify(butler)
    # The put in flight is settled from its journal: no file of it is left behind.
    assert report.consistent, report.summary()
    assert butler.query_datasets("metrics", collections="killed").count() > 0


def test_concurrent_writers_store_every_dataset_exactly_once(stack, make_butler):
    n_proc, per_proc = (4, 100) if stack == "sqlite" else (8, 250)
    butler = make_butler()
    populate(butler, n_visits=(n_proc * per_proc) // 4 + 1, n_detectors=4)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    procs = [_writer(butler.root, "shared", i * per_proc, per_proc) for i in range(n_proc)]
    for p in procs:
        assert p.wait(timeout=300) == 0
    refs = list(butler.query_datasets("metrics", collections="shared"))
    assert len(refs) == n_proc * per_proc
    # every put landed once, at the data ID the writer gave it (see WRITER), and nothing else
    assert sorted((r.data_id["visit"], r.data_id["detector"]) for r in refs) == \
        [(i // 4 + 1, i % 4) for i in range(n_proc * per_proc)]
    assert verify(butler).consistent


def test_migrate_upgrades_an_older_schema_and_newer_is_refused(stack, make_butler):
    if stack != "sqlite":
        pytest.skip("the migration path is the same SQL on both stacks; exercised on SQLite")
    butler = make_butler()
    root = butler.root
    url = f"sqlite:///{root}/registry.sqlite3"
    butler.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE dataset_metric")
        conn.exec_driver_sql("UPDATE skybutler_meta SET value='1' WHERE key='schema_version'")
    with pytest.raises(SchemaVersionError, match="skybutler migrate"):
        Butler(root)
    result = CliRunner().invoke(cli, ["migrate", str(root)])
    assert result.exit_code == 0, result.output
    assert "1 -> 6" in result.output
    reopened = Butler(root)
    assert reopened.registry.metadata.metric_exists("anything") is False
    reopened.close()
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE skybutler_meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(SchemaVersionError, match="newer"):
        Butler(root)
    with pytest.raises(SchemaVersionError, match="newer"):
        migrate(url, reopened.universe)


def test_migrate_grows_a_release_repository_to_the_new_default_universe(tmp_path):
    """A repository written by skybutler 0.1.0 (schema 3, default universe 1; made by
    tests/data/make_schema3_repo.py) opens after `skybutler migrate` with every record,
    dataset and file it had, and takes the fields and elements of the grown universe."""
    import tarfile

    with tarfile.open(Path(__file__).parent / "data" / "schema3_repo.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / "repo"
    with pytest.raises(SchemaVersionError, match="run 'skybutler migrate'"):
        Butler(root)
    result = CliRunner().invoke(cli, ["migrate", str(root)])
    assert result.exit_code == 0, result.output
    assert "3 -> 6" in result.output
    with Butler(root, collections=["r"], run="r") as b:
        assert b.universe.version == 2
        exposure = b.get_record("exposure", instrument="Cam", exposure=7)
        assert (exposure["obs_id"], exposure["seq_num"], exposure["azimuth"]) == ("CAM_7", 7, 12.5)
        assert exposure["can_see_sky"] is None and exposure["seq_start"] is None
        assert b.get_record("detector", instrument="Cam", detector=1)["full_name"] == "S1"
        assert {r.data_id["detector"]: b.get(r)["n"] for r in b.query_datasets("summary")} == {0: 10, 1: 11}
        assert b.query_data_ids(["visit"], "visit.region OVERLAPS POINT(10.5, 0.2)").count() == 1
        # The grown universe's elements and fields take records.
        b.insert_records("visit_system", [{"instrument": "Cam", "id": 0, "name": "one-to-one"}])
        b.insert_records("visit_system_membership", [{"instrument": "Cam", "visit": 7, "visit_system": 0}])
        b.insert_records("exposure", [{**exposure, "exposure": 8, "obs_id": "CAM_8", "can_see_sky": True, "seq_start": 7}])
        assert b.query_data_ids(["exposure"], "exposure.can_see_sky = TRUE AND exposure.seq_start = 7").count() == 1
        assert b.query_data_ids(["visit", "visit_system"], "visit_system = 0").count() == 1
        # A membership table made after the migration refers to its dataset by (id, type), the
        # unique index the migration added; the old tables keep their keys and take writes.
        b.register_dataset_type("per_visit", ["instrument", "visit"], "Dict")
        b.put({"a": 1}, "per_visit", instrument="Cam", visit=7)
        b.put({"n": 12}, "summary", instrument="Cam", visit=7, detector=1, run="r2")
        assert b.get("per_visit", instrument="Cam", visit=7) == {"a": 1}
        assert b.get("summary", instrument="Cam", visit=7, detector=1, collections="r2") == {"n": 12}
    again = CliRunner().invoke(cli, ["migrate", str(root)])
    assert again.exit_code == 0 and "already at schema version 6" in again.output


def test_migrate_grows_the_universe_on_every_stack(make_butler):
    """The same upgrade on SQLite and PostgreSQL: a repository brought back to universe 1 (the
    grown universe's new tables and columns dropped) is grown again, its records kept."""
    from skybutler.registry.database import Database

    butler = make_butler()
    populate(butler, n_visits=2, n_detectors=2)
    root, url = butler.root, butler.config.registry_url(butler.root)
    butler.close()
    db = Database(url)
    new_columns = {"instrument": ["exposure_max", "visit_system"], "visit": ["name", "seq_num", "azimuth"],
                   "detector": ["name_in_raft"]}
    with db.transaction() as conn:
        quote = conn.dialect.identifier_preparer.quote
        prefix = f"{quote(db.schema)}." if db.schema else ""
        for table in ("visit_system_membership", "visit_system", "subfilter"):
            conn.exec_driver_sql(f"DROP TABLE {prefix}{table}")
        for table, columns in new_columns.items():
            for column in columns:
                conn.exec_driver_sql(f"ALTER TABLE {prefix}{table} DROP COLUMN {quote(column)}")
        conn.exec_driver_sql(f"UPDATE {prefix}skybutler_meta SET value='1' WHERE key='universe_version'")
        conn.exec_driver_sql(f"UPDATE {prefix}skybutler_meta SET value='3' WHERE key='schema_version'")
    db.close()
    with pytest.raises(SchemaVersionError, match="skybutler migrate"):
        Butler(root)
    assert migrate(url, butler.universe) == (3, 6)
    with Butler(root) as again:
        assert again.get_record("visit", instrument="Cam", visit=2)["exposure_time"] == 30.0
        assert again.get_record("visit", instrument="Cam", visit=2)["seq_num"] is None
        again.insert_records("visit_system", [{"instrument": "Cam", "id": 1, "name": "by-group"}])
        again.insert_records("visit_system_membership", [{"instrument": "Cam", "visit": 2, "visit_system": 1}])
        assert again.query_data_ids(["visit"], "visit_system = 1", instrument="Cam").count() == 1
