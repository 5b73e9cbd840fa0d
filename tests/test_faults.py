"""Fault injection: kill -9 every write path at its step boundaries and at random instants.

Each case forks a child (no interpreter start-up, so a random instant falls inside the work)
that runs one write -- put, put_many, ingest-files and ingest-raws in every transfer mode,
import, transfer, verify --fix itself -- and is killed with SIGKILL: by itself at a named step
(``SKYBUTLER_CRASH_AT``, see :mod:`skybutler.faults`) or by the test after a random delay.
Then, whatever the instant:

- the repository opens;
- ``verify --fix --yes`` and then ``verify`` say consistent (exit 0), so no dataset row
  lacks its file and no file lacks its row;
- no user file was lost: every source file is in its place with its bytes, or a registered
  dataset holds those bytes;
- nothing of skybutler's was put in the quarantine: a crash of skybutler's own writes is settled
  from the write journal, never left for a person to sort out; and nothing of the user's was
  deleted: a file of theirs planted in the datastore's tree (named like a dataset's file) is in
  its place or in the quarantine, with its bytes;
- no temporary file or scratch directory of skybutler's is left once the repository is repaired.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
import xxhash
from click.testing import CliRunner

from conftest import POSTGRES_URL, populate, stack_locations
from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.instruments import simulate_night

pytestmark = pytest.mark.slow

N_FILES = 6
#: Step boundaries every placing write passes; ``None`` stands for a kill after a random delay.
PUT_STEPS = ["journal-written", "file-staged:2", "files-published", "registry-committed:2", None, None]
INGEST_STEPS = ["journal-written", "file-placed:3", "registry-committed", None]
TRANSFERS = ["copy", "move", "hardlink", "symlink", "relsymlink", "link", "direct", "auto"]
SEEDS = random.Random(13)


def _digest(data: bytes) -> str:
    return xxhash.xxh3_64_hexdigest(data)


def run_killed(work: Callable[[], object], step: str | None, delay: float | None = None) -> bool:
    """Run ``work`` in a forked child killed at ``step``, or when ``step`` is None after ``delay``
    seconds (a random delay if not given); True if the child was killed, False if it finished first."""
    delay = SEEDS.uniform(0.0, 0.4) if delay is None else delay
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            if step is not None:
                os.environ["SKYBUTLER_CRASH_AT"] = step
            work()
        except SystemExit as err:
            code = err.code if isinstance(err.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 3
        os._exit(code)
    if step is None:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return False
            time.sleep(0.005)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, f"the writer failed on its own (exit {os.WEXITSTATUS(status)})"
    return False


def cli_main(*args: object) -> Callable[[], None]:
    """The ``skybutler`` command line as a child's work."""
    return lambda: cli.main([str(a) for a in args], prog_name="skybutler", standalone_mode=True)


#: The user's file planted in each repository's datastore tree (by :func:`plant_user_file`), by repository.
PLANTED: dict[Path, tuple[str, bytes]] = {}


def plant_user_file(root: Path) -> None:
    """Put a file of the user's in the datastore's tree, where a dataset's file could be: no dataset
    explains it, so a repair may set it aside (quarantine) but never delete it."""
    path, data = "r/metrics/Cam/notes_of_the_night.json", b'{"note": "my own file, put here by hand"}'
    with Butler(root) as butler:
        full = butler.datastore.full_path(path)
        butler.datastore.fs.makedirs(os.path.dirname(full), exist_ok=True)
        butler.datastore.fs.pipe_file(full, data)
    PLANTED[Path(root)] = (path, data)


def skybutler_leftovers(root: Path) -> list[str]:
    """Temporary files and scratch directories of skybutler's in the repository (its datastore too)."""
    with Butler(root) as butler:
        found = [p for p in butler.datastore.walk() if ".tmp-" in p]
    found += [str(p) for p in Path(root).rglob("*") if ".tmp-" in p.name or p.name.startswith(
        (".rubin-zip-", ".rubin-repository-", "rubin-repository-", "import-", "upload-", "zip-", "transfer-")) or ".publishing-" in p.name]
    return found


def assert_recovered(root: Path, sources: dict[Path, bytes]) -> None:
    """The checks every case ends with (see the module doc)."""
    with Butler(root):
        pass
    runner = CliRunner()
    fixed = runner.invoke(cli, ["verify", str(root), "--fix", "--yes"])
    assert fixed.exit_code == 0, fixed.output
    again = runner.invoke(cli, ["verify", str(root), "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["consistent"], again.output
    with Butler(root) as butler:
        stored = set()
        for artifact in butler.registry.datasets.all_artifacts().values():
            data = butler.datastore._read_bytes(artifact.path)
            stored.add(_digest(data))
    for path, data in sources.items():
        in_place = path.exists() and path.read_bytes() == data
        assert in_place or _digest(data) in stored, f"user file {path} was lost"
    quarantined = {}
    for manifest in (root / ".skybutler" / "quarantine").glob("*/manifest.jsonl"):
        for line in manifest.read_text().splitlines():
            entry = json.loads(line)
            if not entry.get("put_back"):  # put back: a killed repair's move, undone
                quarantined[entry["original"]] = (manifest.parent / entry["quarantined_as"]).read_bytes()
    planted: set[str] = set()
    if Path(root) in PLANTED:
        path, data = PLANTED[Path(root)]
        with Butler(root) as butler:
            full, uri = butler.datastore.full_path(path), butler.datastore.uri_of_path(path)
            in_place = butler.datastore.fs.exists(full) and butler.datastore.fs.cat_file(full) == data
        assert in_place or quarantined.get(uri) == data, f"the user's file {full} was deleted"
        planted = {uri}
    assert set(quarantined) <= planted, f"a crash left files for the quarantine: {set(quarantined) - planted}"
    journal = root / ".skybutler" / "journal"
    assert not journal.exists() or not any(journal.iterdir())
    assert not skybutler_leftovers(root), skybutler_leftovers(root)


# -- repositories and inputs ------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """An SQLite repository with the small camera, a ``metrics`` Dict type and RUN ``r``."""
    root = tmp_path_factory.mktemp("template") / "repo"
    with Butler.create(root) as butler:
        populate(butler)
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        butler.collections.register("r", "run")
    return root


@pytest.fixture
def repo(template, tmp_path, request) -> Path:
    stack = getattr(request, "param", "sqlite")
    if stack == "sqlite":
        root = Path(shutil.copytree(template, tmp_path / "repo"))
        plant_user_file(root)
        return root
    locations = stack_locations(stack, tmp_path)
    if stack == "postgres-local":  # PostgreSQL with the files on local disk (staged, then renamed)
        locations["datastore"] = None
    with Butler.create(tmp_path / "repo", **locations) as butler:
        populate(butler)
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        butler.collections.register("r", "run")
    plant_user_file(butler.root)
    return butler.root


@pytest.fixture(scope="module")
def raws(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raws")
    simulate_night(out, n_science=1, n_bias=0, n_flat=0, bands=("g",), size=32)
    return out


def json_sources(directory: Path) -> dict[Path, bytes]:
    """Files of the user's to ingest, and an ingest table naming them."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = {}
    rows = ["file,instrument,visit,detector"]
    for n in range(N_FILES):
        path = directory / f"m{n}.json"
        path.write_bytes(json.dumps({"n": n, "pad": "x" * (100 + 37 * n)}).encode())
        sources[path] = path.read_bytes()
        rows.append(f"{path.name},Cam,{1 + n // 4},{n % 4}")
    (directory / "table.csv").write_text("\n".join(rows) + "\n")
    return sources


# -- put and put_many -----------------------------------------------------------------------


def _puts(root: Path) -> None:
    with Butler(root, run="r") as butler:
        for n in range(N_FILES):
            butler.put({"n": n}, "metrics", instrument="Cam", visit=1 + n // 4, detector=n % 4)


def _put_many(root: Path) -> None:
    with Butler(root, run="r") as butler:
        butler.put_many("metrics", [({"n": n}, {"instrument": "Cam", "visit": 1 + n // 4, "detector": n % 4})
                                    for n in range(N_FILES)])


STACKS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])
#: PostgreSQL + S3 runs a representative few kill points of each write path (every step runs on
#: SQLite; the write paths are the same code, and each PostgreSQL case costs a schema and S3 round trips).
PG_PUT_STEPS = ["files-published", "registry-committed:2", None]
PG_INGEST_STEPS = ["file-placed:3", "registry-committed"]


def on_stacks(sqlite_steps: list, other_steps: list) -> list:
    """(stack, step) pairs: every step on SQLite, a representative few on PostgreSQL + S3."""
    return [pytest.param(stack, step, id=f"{stack}-{step}")
            for stack in STACKS for step in (sqlite_steps if stack == "sqlite" else other_steps)]


@pytest.mark.parametrize("repo, step", on_stacks(PUT_STEPS, PG_PUT_STEPS), indirect=["repo"])
@pytest.mark.parametrize("writer", [_puts, _put_many], ids=["put", "put_many"])
def test_put(repo, writer, step):
    run_killed(lambda: writer(repo), step)
    assert_recovered(repo, {})
    with Butler(repo, run="r", collections="r") as butler:  # a retry of what is missing completes
        have = {(r.data_id["visit"], r.data_id["detector"]) for r in butler.query_datasets("metrics")}
        butler.put_many("metrics", [({"n": n}, {"instrument": "Cam", "visit": 1 + n // 4, "detector": n % 4})
                                    for n in range(N_FILES) if (1 + n // 4, n % 4) not in have])
        assert butler.query_datasets("metrics").count() == N_FILES
    assert_recovered(repo, {})


#: A put_many large enough to be formatted and staged in a thread while its rows go in: killed
#: with its journal written, a file staged by the thread (the rows going in meanwhile), half its
#: membership rows sent by COPY, its files published, its rows committed.
BACKGROUND_STEPS = ["journal-written", "file-staged:4", "copy-half-sent:2", "files-published", "registry-committed",
                    None, None]


@pytest.mark.parametrize("repo, step", [
    pytest.param(stack, step, id=f"{stack}-{step}")
    for stack in ["sqlite"] + (["postgres-local"] if POSTGRES_URL else [])
    for step in BACKGROUND_STEPS if stack != "sqlite" or not (step or "").startswith("copy")], indirect=["repo"])
def test_put_many_prepared_in_background(repo, step, monkeypatch):
    from skybutler.datastore import staging
    from skybutler.registry import bulk

    def work() -> None:
        monkeypatch.setattr(staging, "BACKGROUND_MIN_FILES", 2)
        monkeypatch.setattr(bulk, "COPY_MIN_ROWS", 2)
        _put_many(repo)

    killed = run_killed(work, step)
    assert killed or step is None, f"the writer never reached {step}"
    assert_recovered(repo, {})
    assert _stored_count(repo) in (0, N_FILES), "a put_many was kept in part"
    with Butler(repo, run="r", collections="r") as butler:
        if butler.query_datasets("metrics").count() == 0:  # the batch again completes
            work()
        assert butler.query_datasets("metrics").count() == N_FILES
        assert {butler.get(r)["n"] for r in butler.query_datasets("metrics")} == set(range(N_FILES))
    assert_recovered(repo, {})


#: An ingest large enough to place its files in a thread while its rows go in.
BACKGROUND_INGEST_STEPS = ["journal-written", "file-placed:3", "copy-half-sent:2", "registry-committed", None]


@pytest.mark.parametrize("repo, step", [
    pytest.param(stack, step, id=f"{stack}-{step}")
    for stack in ["sqlite"] + (["postgres-local"] if POSTGRES_URL else [])
    for step in BACKGROUND_INGEST_STEPS if stack != "sqlite" or not (step or "").startswith("copy")],
    indirect=["repo"])
@pytest.mark.parametrize("transfer", ["copy", "move"])
def test_ingest_placed_in_background(repo, tmp_path, transfer, step, monkeypatch):
    from skybutler.datastore import staging
    from skybutler.registry import bulk

    sources = json_sources(tmp_path / "incoming")
    table = tmp_path / "incoming" / "table.csv"

    def work() -> None:
        monkeypatch.setattr(staging, "BACKGROUND_MIN_FILES", 2)
        monkeypatch.setattr(bulk, "COPY_MIN_ROWS", 2)
        cli_main("ingest-files", repo, "metrics", "r", table, "--transfer", transfer)()

    killed = run_killed(work, step)
    assert killed or step is None, f"the writer never reached {step}"
    assert_recovered(repo, sources)
    assert _stored_count(repo) in (0, N_FILES), "an ingest was kept in part"
    CliRunner().invoke(cli, ["ingest-files", str(repo), "metrics", "r", str(table), "--transfer", transfer])
    assert_recovered(repo, sources)
    assert _stored_count(repo) == N_FILES


def _puts_in_transaction(root: Path) -> None:
    with Butler(root, run="r") as butler, butler.transaction():
        for n in range(N_FILES):
            butler.put({"n": n}, "metrics", instrument="Cam", visit=1 + n // 4, detector=n % 4)


#: Inside one transaction: the first put begins its journal, later ones append to it (the 3rd
#: append, a file staged and published mid-block, a put's own rows in before the block commits),
#: then the block's commit before its journal is settled.
TRANSACTION_STEPS = ["journal-written", "journal-appended:3", "file-staged:4", "files-published:5",
                     "registry-committed:2", "transaction-committed", None, None]
PG_TRANSACTION_STEPS = ["journal-appended:3", "transaction-committed"]


def _stored_count(root: Path) -> int:
    with Butler(root, collections="r") as butler:
        return butler.query_datasets("metrics").count()


@pytest.mark.parametrize("repo, step", on_stacks(TRANSACTION_STEPS, PG_TRANSACTION_STEPS), indirect=["repo"])
def test_puts_in_one_transaction(repo, step):
    killed = run_killed(lambda: _puts_in_transaction(repo), step)
    assert killed or step is None
    assert_recovered(repo, {})
    count = _stored_count(repo)
    assert count in (0, N_FILES), "a transaction was kept in part"
    if step is not None:  # a random kill may fall before or after the commit
        assert count == (N_FILES if step == "transaction-committed" else 0)
    if count == 0:  # the block again completes
        _puts_in_transaction(repo)
        assert _stored_count(repo) == N_FILES
    assert_recovered(repo, {})


def _removals_in_transaction(root: Path) -> None:
    with Butler(root, collections="r") as butler:
        refs = list(butler.query_datasets("metrics"))
        with butler.transaction():
            for ref in refs:
                butler.remove([ref])


@pytest.mark.parametrize("repo, step", on_stacks(["journal-appended:2", "transaction-committed", None],
                                                 ["transaction-committed"]), indirect=["repo"])
def test_removals_in_one_transaction(repo, step):
    """Removals of one block share its journal too: killed before the commit every dataset
    stays; killed after it (rows gone, files not yet), the next open deletes the files."""
    _put_many(repo)
    killed = run_killed(lambda: _removals_in_transaction(repo), step)
    assert killed or step is None
    assert_recovered(repo, {})
    count = _stored_count(repo)
    assert count in (0, N_FILES), "a transaction was kept in part"
    if step is not None:
        assert count == (0 if step == "transaction-committed" else N_FILES)


def test_a_transaction_killed_in_the_middle_of_appending_to_its_journal(repo):
    """A kill inside the write of an append leaves a torn last line: its intent never acted on,
    the block's earlier puts (files published, rows not committed) are taken back out."""
    assert run_killed(lambda: _puts_in_transaction(repo), "journal-appended:3")
    (journal,) = (repo / ".skybutler" / "journal").iterdir()
    data = journal.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    assert b'"kind": "put"' in data[last:]
    journal.write_bytes(data[:last + (len(data) - last) // 2])  # the last intent cut in the middle
    planted = repo / "datastore" / PLANTED[repo][0]
    assert sum(1 for p in (repo / "datastore").rglob("*.json") if p != planted) == 3  # the first 3 puts' files
    assert_recovered(repo, {})
    assert _stored_count(repo) == 0
    _puts_in_transaction(repo)
    assert _stored_count(repo) == N_FILES


@pytest.mark.parametrize("repo", [s for s in STACKS if s != "sqlite"] or [pytest.param("postgres", marks=(
    pytest.mark.skip("needs SKYBUTLER_TEST_POSTGRES_URL")))], indirect=True)
@pytest.mark.parametrize("step", ["files-published", "copy-half-sent:2", None])
@pytest.mark.parametrize("writer", [_put_many, "ingest"], ids=["put_many", "ingest"])
def test_bulk_copy_path(repo, tmp_path, writer, step):
    """put_many and ingest through PostgreSQL's COPY (the path of batches of COPY_MIN_ROWS and more),
    killed with their files in place, or in the middle of a COPY (of the membership rows)."""
    from skybutler.registry import bulk

    sources = json_sources(tmp_path / "incoming") if writer == "ingest" else {}
    work = (cli_main("ingest-files", repo, "metrics", "r", tmp_path / "incoming" / "table.csv", "--transfer", "move")
            if writer == "ingest" else lambda: _put_many(repo))

    def copying() -> None:
        bulk.COPY_MIN_ROWS = 2  # in the forked child only
        work()

    killed = run_killed(copying, "file-placed:3" if writer == "ingest" and step == "files-published" else step)
    assert killed or step is None, f"the writer never reached {step}"
    assert_recovered(repo, sources)


# -- ingest-files and ingest-raws ----------------------------------------------------------


@pytest.mark.parametrize("step", INGEST_STEPS)
@pytest.mark.parametrize("transfer", TRANSFERS)
def test_ingest_files(repo, tmp_path, transfer, step):
    sources = json_sources(tmp_path / "incoming")
    run_killed(cli_main("ingest-files", repo, "metrics", "r", tmp_path / "incoming" / "table.csv",
                        "--transfer", transfer), step)
    assert_recovered(repo, sources)
    # the same command again finishes the job (files already in are reported, none is lost)
    CliRunner().invoke(cli, ["ingest-files", str(repo), "metrics", "r", str(tmp_path / "incoming" / "table.csv"),
                             "--transfer", transfer])
    assert_recovered(repo, sources)


@pytest.mark.parametrize("repo", [s for s in STACKS if s != "sqlite"] or [pytest.param("postgres", marks=(
    pytest.mark.skip("needs SKYBUTLER_TEST_POSTGRES_URL")))], indirect=True)
@pytest.mark.parametrize("step", PG_INGEST_STEPS)
@pytest.mark.parametrize("transfer", ["copy", "move"])
def test_ingest_files_other_stack(repo, tmp_path, transfer, step):
    sources = json_sources(tmp_path / "incoming")
    run_killed(cli_main("ingest-files", repo, "metrics", "r", tmp_path / "incoming" / "table.csv",
                        "--transfer", transfer), step)
    assert_recovered(repo, sources)


RAW_STEPS = ["journal-written", "file-placed:4", "registry-committed", None]


#: On PostgreSQL + S3, the transfers an object store takes (copy; move, as copy-then-delete).
RAW_CASES = [pytest.param(stack, transfer, step, id=f"{stack}-{transfer}-{step}") for stack in STACKS
             for transfer in (TRANSFERS if stack == "sqlite" else ["copy", "move"])
             for step in (RAW_STEPS if stack == "sqlite" else ["file-placed:4", "registry-committed"])]


@pytest.mark.parametrize("repo, transfer, step", RAW_CASES, indirect=["repo"])
def test_ingest_raws(repo, raws, tmp_path, transfer, step):
    incoming = Path(shutil.copytree(raws, tmp_path / "incoming"))
    sources = {p: p.read_bytes() for p in incoming.rglob("*.fits")}
    run_killed(cli_main("ingest-raws", repo, incoming, "--transfer", transfer, "--processes", "1"), step)
    assert_recovered(repo, sources)


@pytest.mark.parametrize("step", ["intent-settled:2", None])
def test_recovery_itself(repo, tmp_path, step):
    """The open that settles a killed move is killed too: the next open finishes the job."""
    sources = json_sources(tmp_path / "incoming")
    table = tmp_path / "incoming" / "table.csv"
    assert run_killed(cli_main("ingest-files", repo, "metrics", "r", table, "--transfer", "move"), "file-placed:4")
    assert run_killed(lambda: Butler(repo).close(), step) or step is None
    assert_recovered(repo, sources)


# -- import, transfer ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(template, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source") / "repo"
    shutil.copytree(template, root)
    _put_many(root)
    out = tmp_path_factory.mktemp("export") / "e"
    assert CliRunner().invoke(cli, ["export", str(root), str(out)]).exit_code == 0
    return out


@pytest.mark.parametrize("repo, step", on_stacks(INGEST_STEPS, PG_INGEST_STEPS), indirect=["repo"])
@pytest.mark.parametrize("transfer", ["copy", "move"])
def test_import(repo, exported, tmp_path, transfer, step):
    export = Path(shutil.copytree(exported, tmp_path / "e"))
    sources = {p: p.read_bytes() for p in export.rglob("*.json") if p.name != "export.json"}
    run_killed(cli_main("import", repo, export, "--transfer", transfer), step)
    assert_recovered(repo, sources)


@pytest.mark.parametrize("repo, step", on_stacks(INGEST_STEPS, PG_INGEST_STEPS), indirect=["repo"])
def test_transfer(repo, template, exported, tmp_path, step):
    source = Path(shutil.copytree(template, tmp_path / "source"))  # an SQLite repository, into either stack
    assert CliRunner().invoke(cli, ["import", str(source), str(exported)]).exit_code == 0
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()

    def work() -> None:
        import tempfile

        tempfile.tempdir = str(system_temp)  # in the forked child only
        cli_main("transfer", source, repo)()

    run_killed(work, step)
    assert_recovered(repo, {})
    assert_recovered(source, {})
    assert not any(system_temp.iterdir()), "a killed transfer left its copies in the system's temporary space"


# -- verify --fix itself -------------------------------------------------------------------


def quarantined_files(root: Path) -> dict[str, list[bytes]]:
    """The files in the quarantine, by the URI each came from (every copy of it)."""
    found: dict[str, list[bytes]] = {}
    for manifest in (root / ".skybutler" / "quarantine").glob("*/manifest.jsonl"):
        for line in manifest.read_text().splitlines():
            entry = json.loads(line)
            kept = manifest.parent / entry["quarantined_as"]
            if kept.exists() and not entry.get("put_back"):
                found.setdefault(entry["original"], []).append(kept.read_bytes())
    return found


#: On an object store a quarantine move is a copy and then a delete: killed between the two, and after.
VERIFY_FIX_CASES = on_stacks(["file-quarantined:2", None, None], ["quarantine-copied:2", "file-quarantined:2"])


@pytest.mark.parametrize("repo, step", VERIFY_FIX_CASES, indirect=["repo"])
def test_verify_fix(repo, step):
    _put_many(repo)
    strays = {}
    with Butler(repo) as butler:
        fs = butler.datastore.fs
        for n in range(4):
            path = f"r/stray{n}.txt"
            fs.makedirs(os.path.dirname(butler.datastore.full_path(path)), exist_ok=True)
            fs.pipe_file(butler.datastore.full_path(path), f"stray {n}".encode())
            strays[butler.datastore.uri_of_path(path)] = (path, f"stray {n}".encode())
    run_killed(cli_main("verify", repo, "--fix", "--yes"), step)
    with Butler(repo) as butler:  # the open settles a killed repair: each stray in one place, whole
        quarantined = quarantined_files(repo)
        for uri, (path, data) in strays.items():
            full = butler.datastore.full_path(path)
            copies = quarantined.get(uri, []) + ([fs.cat_file(full)] if fs.exists(full) else [])
            assert copies == [data], f"{uri} is not in exactly one place, whole: {len(copies)} copies"
    runner = CliRunner()
    assert runner.invoke(cli, ["verify", str(repo), "--fix", "--yes"]).exit_code == 0
    assert runner.invoke(cli, ["verify", str(repo)]).exit_code == 0
    # every stray is in the quarantine, once, under a manifest line saying where it came from
    quarantined = quarantined_files(repo)
    for uri, (_, data) in strays.items():
        assert quarantined.get(uri) == [data], f"{uri} was lost or copied twice"
