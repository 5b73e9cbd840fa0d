"""A repository never loses or harms what it was given: create beside foreign files, the
datastore's own tree, verify and its repair (quarantine, never deletion of what is not ours)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import populate
from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.errors import ArtifactExistsError, SkybutlerError
from skybutler.models import DatasetRef
from skybutler.verify import verify

DATA_ID = {"instrument": "Cam", "visit": 1, "detector": 2}


def _cli(*args: object, code: int = 0, input: str | None = None):
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input)
    assert result.exit_code == code, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.output
    return result


def _foreign(root: Path) -> dict[str, bytes]:
    """Files of the user's own in ``root``; returns their contents by name."""
    root.mkdir(parents=True, exist_ok=True)
    files = {"notes.txt": b"my notes", "image.fits": b"SIMPLE  =                    T" + b" " * 50}
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


def _ready(butler: Butler) -> Butler:
    populate(butler)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    return butler


# -- create -------------------------------------------------------------------


def test_create_refuses_a_non_empty_directory(tmp_path):
    root = tmp_path / "repo"
    files = _foreign(root)
    with pytest.raises(SkybutlerError, match="is not empty .*existing_ok=True"):
        Butler.create(root)
    assert {p.name: p.read_bytes() for p in root.iterdir()} == files  # nothing was made there
    result = _cli("create", root, code=1)
    assert result.stderr.startswith("error: ") and "--existing-ok" in result.stderr
    assert {p.name for p in root.iterdir()} == set(files)


def test_create_existing_ok_never_counts_or_touches_foreign_files(tmp_path):
    root = tmp_path / "repo"
    files = _foreign(root)
    _cli("create", root, "--existing-ok")
    with _ready(Butler(root, run="r")) as butler:
        butler.put({"a": 1}, "metrics", DATA_ID)
        report = verify(butler)
        assert report.consistent and report.files == 1, report.summary()
    _cli("verify", root, "--fix", "--yes")
    assert {name: (root / name).read_bytes() for name in files} == files


def test_create_existing_ok_refuses_names_it_would_make(tmp_path):
    root = tmp_path / "repo"
    _foreign(root)
    (root / "datastore").mkdir()
    with pytest.raises(SkybutlerError, match="already holds datastore"):
        Butler.create(root, existing_ok=True)
    assert not (root / "butler.yaml").exists() and not (root / "registry.sqlite3").exists()


def test_a_new_repository_keeps_dataset_files_apart_from_the_registry(tmp_path):
    with _ready(Butler.create(tmp_path / "repo", run="r")) as butler:
        ref = butler.put({"a": 1}, "metrics", DATA_ID)
        assert Path(butler.datastore.root) == tmp_path / "repo" / "datastore"
        assert butler.get_uri(ref).startswith(f"file://{tmp_path / 'repo' / 'datastore'}/")
        assert yaml.safe_load((tmp_path / "repo" / "butler.yaml").read_text())["datastore"] == "datastore"


def test_a_repository_with_files_at_its_root_keeps_opening(tmp_path):
    """Repositories made before the datastore had a tree of its own keep their layout."""
    root = tmp_path / "old"
    Butler.create(root).close()
    config = yaml.safe_load((root / "butler.yaml").read_text())
    del config["datastore"]
    (root / "butler.yaml").write_text(yaml.safe_dump(config))
    os.rmdir(root / "datastore")
    with _ready(Butler(root, run="r", collections="r")) as butler:
        ref = butler.put({"a": 1}, "metrics", DATA_ID)
        assert (root / ref.artifact.path).exists()
        assert butler.get("metrics", DATA_ID) == {"a": 1}
        report = verify(butler)
        # butler.yaml and the SQLite files are the registry's, never dataset files
        assert report.consistent and report.files == 1, report.summary()


# -- crashes: moves, retries ----------------------------------------------------------


def _crash(step: str, script: str, *args: object) -> None:
    """Run ``script`` in a new process that kills itself (SIGKILL) at ``step``."""
    env = {**os.environ, "SKYBUTLER_CRASH_AT": step}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)


INGEST_MOVE = """
    import sys
    from pathlib import Path
    from skybutler import Butler
    butler = Butler(sys.argv[1], run="r")
    files = sorted(Path(sys.argv[2]).glob("*.json"))
    butler.ingest("metrics", [(f, {"instrument": "Cam", "visit": 1, "detector": int(f.stem)}) for f in files],
                  transfer="move")
"""


@pytest.mark.parametrize("step", ["file-placed:3", "registry-committed"])
def test_a_killed_move_ingest_never_loses_a_users_file(tmp_path, step):
    root = tmp_path / "repo"
    with _ready(Butler.create(root)) as butler:
        butler.collections.register("r", "run")
    sources = tmp_path / "incoming"
    sources.mkdir()
    originals = {}
    for d in range(4):
        originals[d] = f'{{"detector": {d}}}'.encode()
        (sources / f"{d}.json").write_bytes(originals[d])
    _crash(step, INGEST_MOVE, root, sources)
    said = _cli("verify", root).stderr  # the open settles the interrupted ingest, and says so
    if step == "file-placed:3":
        assert said.count("recovered an interrupted write: moved ") == 3 and str(sources) in said
    with Butler(root, collections="r") as butler:
        refs = {r.data_id["detector"]: r for r in butler.query_datasets("metrics")}
        for d, data in originals.items():
            back = (sources / f"{d}.json")
            # every file is either registered (and readable) or back where it came from
            assert (d in refs and butler.get(refs[d]) == {"detector": d}) or back.read_bytes() == data
        assert len(refs) == (4 if step == "registry-committed" else 0)
        assert verify(butler).consistent
        assert not list((root / ".skybutler" / "journal").iterdir())


PUT = """
    import sys
    from skybutler import Butler
    butler = Butler(sys.argv[1], run="r")
    butler.put_many("metrics", [({"d": d}, {"instrument": "Cam", "visit": 1, "detector": d}) for d in range(4)])
"""


def test_a_retried_put_completes_after_a_crashed_writer(tmp_path):
    """The crash happens while this butler is open: its retry finds the crashed writer's files,
    settles them from the journal and completes, instead of refusing."""
    with _ready(Butler.create(tmp_path / "repo", run="r", collections="r")) as butler:
        _crash("files-published", PUT, butler.root)
        assert any(".json" in p for p in butler.datastore.walk())  # the files are there, without rows
        refs = butler.put_many("metrics", [({"d": d}, {**DATA_ID, "detector": d}) for d in range(4)])
        assert [butler.get(r) for r in refs] == [{"d": d} for d in range(4)]
        assert verify(butler).consistent


def test_a_retried_put_takes_identical_bytes_left_without_a_journal(tmp_path):
    with _ready(Butler.create(tmp_path / "repo", run="r", collections="r")) as butler:
        ref = butler.put({"a": 1}, "metrics", DATA_ID)
        path = Path(butler.datastore.full_path(ref.artifact.path))
        data = path.read_bytes()
        butler.registry.datasets.delete([ref.id])  # as if its writer died after publishing
        assert path.exists()
        again = butler.put({"a": 1}, "metrics", DATA_ID)  # same bytes: completes
        assert butler.get(again) == {"a": 1} and path.read_bytes() == data
        butler.registry.datasets.delete([again.id])
        with pytest.raises(ArtifactExistsError, match="skybutler verify .* --fix"):
            butler.put({"a": 2}, "metrics", DATA_ID)  # other bytes: never overwritten
        assert path.read_bytes() == data


# -- verify --fix -------------------------------------------------------------------


def test_verify_fix_quarantines_what_it_cannot_prove_is_its_own(tmp_path):
    with _ready(Butler.create(tmp_path / "repo", run="r", collections="r")) as butler:
        kept = butler.put({"a": 1}, "metrics", DATA_ID)
        store = Path(butler.datastore.root)
        (store / "r").mkdir(exist_ok=True)
        (store / "r" / "notes.txt").write_text("a user's notes")
        stale = store / "r" / f"x.json.tmp-{'a' * 32}-0"
        stale.write_text("{}")
        os.utime(stale, (1e9, 1e9))  # written long ago by a writer that is gone
        fresh = store / "r" / f"y.json.tmp-{'b' * 32}-0"
        fresh.write_text("{}")  # may belong to a writer at work: left alone
        root = butler.root
    result = _cli("verify", root, code=1)
    assert "notes.txt" in result.stdout and "INCONSISTENT" in result.stdout
    refused = _cli("verify", root, "--fix", code=1)  # no terminal to ask, no --yes: nothing changes
    assert "pass --yes" in refused.stderr and (store / "r" / "notes.txt").exists() and stale.exists()
    fixed = _cli("verify", root, "--fix", "--yes", "--json")
    summary = json.loads(fixed.stdout)
    assert summary["consistent"] and summary["quarantined"] == 1 and summary["removed"] == 1
    assert not stale.exists() and fresh.exists()
    manifest = [json.loads(line) for line in (Path(summary["quarantine"]) / "manifest.jsonl").read_text().splitlines()]
    assert [m["original"] for m in manifest] == [f"file://{store}/r/notes.txt"]
    assert manifest[0]["reason"] and manifest[0]["time"]
    assert (Path(summary["quarantine"]) / manifest[0]["quarantined_as"]).read_text() == "a user's notes"
    with Butler(root, collections="r") as butler:
        assert butler.get(kept) == {"a": 1}


def test_verify_fix_exits_non_zero_while_still_inconsistent(tmp_path):
    with _ready(Butler.create(tmp_path / "repo", run="r")) as butler:
        ref = butler.put({"a": 1}, "metrics", DATA_ID)
        os.unlink(butler.datastore.full_path(ref.artifact.path))  # a row without its file: not repairable
        (Path(butler.datastore.root) / "stray.txt").write_text("x")
        root = butler.root
    result = _cli("verify", root, "--fix", "--yes", code=1)
    assert "row without file" in result.stdout and "INCONSISTENT" in result.stdout
    assert "quarantined 1 file(s)" in result.stdout


def test_verify_fix_never_touches_a_live_writers_files(tmp_path):
    """A writer at work holds its journal's lock: its staged and published files are in flight,
    not orphans, and a repair running meanwhile leaves them alone."""
    with _ready(Butler.create(tmp_path / "repo", run="r", collections="r")) as butler:
        dtype = butler.get_dataset_type("metrics")
        refs = [DatasetRef(uuid.uuid4(), dtype, butler.expand_data_id(dtype.dimensions, DATA_ID, detector=d), "r")
                for d in range(2)]
        pending = butler.datastore.prepare_many(refs, [{"d": 0}, {"d": 1}], "json")
        pending[0].commit()  # one file published, one still staged: the registry not yet committed
        published = Path(butler.datastore.full_path(pending[0].artifact.path))
        staged = Path(pending[1]._staged)
        summary = json.loads(_cli("verify", butler.root, "--fix", "--yes", "--json").stdout)
        assert summary["consistent"] and len(summary["in_flight"]) == 2, summary
        assert published.exists() and staged.exists()
        butler.datastore.settle(pending)  # the writer gives up: its journal ends with it
        butler.datastore.remove([pending[0].artifact])
    assert json.loads(_cli("verify", tmp_path / "repo", "--json").stdout)["consistent"]


REMOVE_RUN = """
    import sys
    from skybutler import Butler
    with Butler(sys.argv[1]) as butler:
        butler.remove_runs(["r"])
"""


def test_a_killed_removal_is_finished_by_the_next_open(tmp_path):
    with _ready(Butler.create(tmp_path / "repo", run="r")) as butler:
        refs = butler.put_many("metrics", [({"d": d}, {**DATA_ID, "detector": d}) for d in range(3)])
        kept = butler.put({"k": 1}, "metrics", DATA_ID, run="other")
        root = butler.root
    _crash("registry-committed", REMOVE_RUN, root)  # rows gone, files not yet deleted
    with Butler(root) as butler:
        assert not any(Path(butler.datastore.full_path(r.artifact.path)).exists() for r in refs)
        assert butler.get(kept) == {"k": 1}
        report = verify(butler)
        assert report.consistent and report.datasets == 1, report.summary()


def test_verify_fix_quarantines_on_every_stack(make_butler):
    """On an object store too: the stranger is downloaded into the repository's quarantine and
    only then deleted from the store."""
    butler = _ready(make_butler(run="r", collections="r"))
    kept = butler.put({"a": 1}, "metrics", DATA_ID)
    stray = butler.datastore.full_path("r/stray.txt")
    butler.datastore.fs.pipe_file(stray, b"a stranger's bytes")
    summary = json.loads(_cli("verify", butler.root, "--fix", "--yes", "--json").stdout)
    assert summary["consistent"] and summary["quarantined"] == 1 and summary["removed"] == 0
    entry = json.loads((Path(summary["quarantine"]) / "manifest.jsonl").read_text())
    assert entry["original"].endswith("r/stray.txt") and entry["size"] == len(b"a stranger's bytes")
    assert (Path(summary["quarantine"]) / entry["quarantined_as"]).read_bytes() == b"a stranger's bytes"
    assert not butler.datastore.fs.exists(stray) and butler.get(kept) == {"a": 1}


@pytest.mark.parametrize("content", [b'{"pid": 1}\n{"foo": 1}\n', b'{"pid": 1}\n[1, 2]\n', b"\xff\xfe\n\n",
                                     b'{"pid": 1}\n{"dataset_id": "zz", "path": "a", "kind": "put"}\n'])
def test_a_damaged_journal_never_stops_the_repository_opening_and_is_kept(tmp_path, content):
    """A journal no writer holds that cannot be read: what its writer did cannot be known, so it is
    neither replayed (that could delete a user's file) nor deleted; the repository opens, and
    verify reports it until a person has looked."""
    with _ready(Butler.create(tmp_path / "repo", run="r")) as butler:
        ref = butler.put({"a": 1}, "metrics", DATA_ID)
        root = butler.root
    damaged = root / ".skybutler" / "journal" / f"{uuid.uuid4().hex}.json"
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_bytes(content)
    with Butler(root) as butler:
        assert butler.get(ref) == {"a": 1}
        report = verify(butler)
        assert not report.consistent and report.damaged_journals[0].startswith(str(damaged))
    result = _cli("verify", root, "--fix", "--yes", code=1)
    assert "damaged write journal" in result.output
    assert damaged.read_bytes() == content
    damaged.unlink()
    _cli("verify", root)


def test_the_next_open_removes_only_the_scratch_directories_of_dead_processes(tmp_path):
    """Files brought in to be ingested wait in held scratch directories of the repository: one
    whose process was killed goes with the next open, one a live process holds stays, and so
    does anything there that skybutler did not make."""
    from skybutler.datastore.uploads import held_directory, release_directory

    Butler.create(tmp_path / "repo").close()
    uploads = tmp_path / "repo" / ".skybutler" / "uploads"
    pid = os.fork()
    if pid == 0:  # a process that makes its scratch directory and is killed in the middle of its work
        dead, _ = held_directory(uploads, "zip-")
        (dead / "member.fits").write_bytes(b"a copy of a zip's member")
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    (dead,) = [p for p in uploads.glob("zip-*") if p.suffix != ".held"]
    live, held = held_directory(uploads, "import-")  # this process at work in it
    (live / "export.json").write_text("{}")
    unheld_old, unheld_young = uploads / "import-old", uploads / "upload-young"
    for made in (unheld_old, unheld_young):  # a process killed as it made one, long ago and just now
        made.mkdir()
    os.utime(unheld_old, (1e9, 1e9))
    mine = uploads / "notes"
    mine.write_text("not skybutler's")
    with Butler(tmp_path / "repo") as butler:
        assert sorted(butler.recovered) == sorted(f"removed the scratch directory {p} of a process that died"
                                                  for p in (dead, unheld_old))
    assert not dead.exists() and not Path(f"{dead}.held").exists() and not unheld_old.exists()
    assert (live / "export.json").exists() and unheld_young.exists() and mine.read_text() == "not skybutler's"
    release_directory(live, held)
    assert not live.exists() and not Path(f"{live}.held").exists()


def test_a_process_killed_removing_its_scratch_directory_leaves_what_the_next_open_removes(tmp_path):
    """A scratch directory goes before its lock file: a process killed between the two leaves a
    lock file alone, which the next open removes once no process holds it (a live process's,
    whose directory is already gone, stays)."""
    import shutil

    from skybutler.datastore.uploads import held_directory, release_directory

    Butler.create(tmp_path / "repo").close()
    uploads = tmp_path / "repo" / ".skybutler" / "uploads"
    pid = os.fork()
    if pid == 0:  # killed after removing its directory, before its lock file
        dead, _ = held_directory(uploads, "transfer-")
        (dead / "export.json").write_text("{}")
        shutil.rmtree(dead)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    (dead_lock,) = uploads.glob("transfer-*.held")
    live, held = held_directory(uploads, "upload-")
    shutil.rmtree(live)  # this process between removing its directory and its lock file
    with Butler(tmp_path / "repo"):
        pass
    assert not dead_lock.exists() and Path(f"{live}.held").exists()
    release_directory(live, held)
    assert list(uploads.iterdir()) == []


def test_the_next_open_removes_an_unfinished_publication_only_when_no_publisher_holds_it(tmp_path):
    """A server's publications live in its repository: the hidden version a killed publisher left
    goes with the next open, never one a live publisher is writing (it holds the lock)."""
    import fcntl

    Butler.create(tmp_path / "repo").close()
    publications = tmp_path / "repo" / ".skybutler" / "publications"
    (publications / "deep").mkdir(parents=True)
    unfinished = publications / ".deep.publishing-0123"
    (unfinished / "dataset").mkdir(parents=True)
    fd = os.open(publications / ".deep.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a publisher at work
    with Butler(tmp_path / "repo") as butler:
        assert not butler.recovered and unfinished.exists()
    os.close(fd)  # ... killed
    with Butler(tmp_path / "repo") as butler:
        assert butler.recovered == [f"removed the unfinished publication {unfinished} of a publisher that died"]
    assert not unfinished.exists() and (publications / "deep").exists()
