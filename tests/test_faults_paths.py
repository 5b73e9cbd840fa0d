"""Fault injection on the write paths test_faults.py leaves out: the commands that change only the
registry (sky maps, instruments, visits, certification, chains, tags, users), the removals, the
curated calibrations, a pipeline run writing its outputs, and the migration of an old repository.
The access changes are in test_faults_access.py, writes through a server and decertification in
test_faults_served.py, ``retention apply`` in test_faults_retention_apply.py.

Each case kills the command with SIGKILL (``test_faults.run_killed``) at a named step or at a
fraction of the time an uninterrupted run of it takes, then asks what test_faults asks of every
write (``assert_recovered``: the repository opens, ``verify`` is clean after ``verify --fix``,
every user file is in its place or registered, a user's file planted in the datastore's tree
survives, no temporary file is left), and one thing more: the same command run again completes,
and the repository is then the one the command makes uninterrupted in a twin repository (the
oracle), so no write was kept in part in a way a retry cannot complete.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import POSTGRES_URL, populate, stack_locations
from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.models import CollectionType
from test_calibrations import write_curated
from test_faults import assert_recovered, cli_main, plant_user_file, raws, run_killed, template  # noqa: F401 -- the fixtures, shared

pytestmark = pytest.mark.slow

#: Where in an uninterrupted run's time each case is killed.
FRACTIONS = [0.15, 0.4, 0.65, 0.9]


def fingerprint(root: Path) -> tuple:
    """What a write leaves in a repository, as its public API tells it (dataset IDs left out:
    a random ID is another on a retry)."""
    with Butler(root) as butler:
        infos = sorted((c.name, c.type.value, tuple(c.children)) for c in butler.collections.query("*"))
        types = sorted(t.name for t in butler.query_dataset_types())
        runs = [name for name, kind, _ in infos if kind == CollectionType.RUN.value]
        datasets = sorted((t, r.run, tuple(sorted(r.data_id.required.items())))
                          for t in types for r in (butler.query_datasets(t, collections=runs, find_first=False)
                                                   if runs else []))
        tagged = sorted((name, t, tuple(sorted(r.data_id.required.items()))) for name, kind, _ in infos
                        if kind == CollectionType.TAGGED.value for t in types
                        for r in butler.query_datasets(t, collections=name, find_first=False))
        validity = sorted((name, t, tuple(sorted(ref.data_id.required.items())), str(span))
                          for name, kind, _ in infos if kind == CollectionType.CALIBRATION.value
                          for t in types if butler.get_dataset_type(t).is_calibration
                          for ref, span in butler.collections.validity(name, t))
        records = {element: butler.query_dimension_records(element).count()
                   for element in ("instrument", "physical_filter", "detector", "exposure", "visit",
                                   "visit_definition", "visit_detector_region", "skymap", "tract", "patch")}
        users = sorted(butler.access.users())
    return infos, types, datasets, tagged, validity, records, users


def _invoke(*args: object) -> None:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def _copy(source: Path, where: Path) -> Path:
    return Path(shutil.copytree(source, where))


@pytest.fixture(scope="module")
def uninterrupted() -> Callable[[tuple, Callable[[], tuple]], tuple]:
    """The oracle of a write, made once per module and test process: ``uninterrupted(key, make)``
    is ``make()`` (what the write leaves uninterrupted in a twin repository, and how long it took)
    the first time ``key`` is asked for, the same tuple after.  Every kill point of a write
    compares with the same uninterrupted run, which is made again only for another write."""
    made: dict[tuple, tuple] = {}

    def get(key: tuple, make: Callable[[], tuple]) -> tuple:
        if key not in made:
            made[key] = make()
        return made[key]
    return get


# -- the writes: (setup of the repository, the command's arguments after its REPO) -----------------


def _calibrations(root: Path) -> None:
    with Butler(root) as butler:
        butler.register_dataset_type("bias", ["instrument", "detector"], "Dict", is_calibration=True)
        butler.put_many("bias", [({"level": d}, {"instrument": "Cam", "detector": d}) for d in range(4)],
                        run="calib/run")


def _metrics(root: Path) -> None:
    with Butler(root, run="r") as butler:
        butler.put_many("metrics", [({"visit": v, "detector": d, "x": 1.0}, {"instrument": "Cam", "visit": v,
                                                                             "detector": d})
                                    for v in (1, 2) for d in range(4)])


def _tagged(root: Path) -> None:
    _metrics(root)
    _invoke("associate", root, "best", "--dataset-type", "metrics", "-c", "r")


def _raws(raws_dir: Path) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        _invoke("ingest-raws", root, raws_dir, "--transfer", "copy", "--processes", "1")
    return setup


def _two_tagged(root: Path) -> None:
    _tagged(root)
    _invoke("associate", root, "also", "--dataset-type", "metrics", "-c", "r", "-w", "visit = 1")
    _invoke("collection-chain", root, "both", "best", "also")


def _unused_types(root: Path) -> None:
    with Butler(root) as butler:
        for name in ("notes", "flags"):
            butler.register_dataset_type(name, ["instrument", "detector"], "Dict")


def _simcam(root: Path) -> None:
    _invoke("register-instrument", root, "SimCam")


WRITES: dict[str, tuple[Callable[..., Callable[[Path], None] | None], list[str]]] = {
    "register-skymap": (lambda d: None, ["register-skymap", "{repo}", "sky", "--rings", "6", "--patches", "4"]),
    "register-instrument": (lambda d: None, ["register-instrument", "{repo}", "SimCam"]),
    "define-visits": (lambda d: _raws(d["raws"]), ["define-visits", "{repo}", "SimCam"]),
    "write-curated-calibrations": (lambda d: _simcam, ["write-curated-calibrations", "{repo}", "{curated}",
                                                       "--instrument", "SimCam"]),
    "certify-calibrations": (lambda d: _calibrations, ["certify-calibrations", "{repo}", "calib/run", "calib",
                                                       "bias", "--begin", "2025-01-01T00:00:00"]),
    "collection-chain": (lambda d: _metrics, ["collection-chain", "{repo}", "best", "r"]),
    "associate": (lambda d: _metrics, ["associate", "{repo}", "best", "--dataset-type", "metrics", "-c", "r"]),
    "prune-datasets": (lambda d: _metrics, ["prune-datasets", "{repo}", "r", "--datasets", "metrics",
                                            "-w", "visit = 1", "--yes"]),
    "remove-runs": (lambda d: _metrics, ["remove-runs", "{repo}", "r", "--yes"]),
    "remove-collections": (lambda d: _tagged, ["remove-collections", "{repo}", "best", "--yes"]),
    "add-user": (lambda d: None, ["add-user", "{repo}", "ana", "--group", "survey"]),
    "remove-collections-three": (lambda d: _two_tagged, ["remove-collections", "{repo}", "best", "also", "both",
                                                        "--yes"]),
    "remove-dataset-type": (lambda d: _unused_types, ["remove-dataset-type", "{repo}", "notes", "flags"]),
}


#: Writes that go file by file, each on its own (a failure is reported per file): a killed one
#: keeps the files it finished, and the same command again does the rest.
FILE_BY_FILE = {"write-curated-calibrations"}


def first_steps(name: str, before: tuple) -> list[tuple]:
    """The states a write may be killed in besides before and after: a camera's registration
    registers its description's dataset type first, outside its transaction (on PostgreSQL the
    table a foreign key points at is made before any row it locks; ingest/instruments.py), so
    killed there the repository has that dataset type and nothing more of the camera."""
    if name != "register-instrument":
        return []
    infos, types, *rest = before
    return [(infos, sorted([*types, "camera_description"]), *rest)]


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    return write_curated(tmp_path_factory.mktemp("curated") / "curated")


#: The removals delete files after their rows: killed there too.  On PostgreSQL + S3 a
#: representative few (every one runs on SQLite; each case there costs two schemas).
#: Besides the fractions, each is killed after its first registry commit: a command of several
#: transactions is then kept in part.
CASES = [pytest.param("sqlite", name, point, id=f"sqlite-{name}-{point}") for name in WRITES
         for point in FRACTIONS + ["sql-committed:1"]
         + (["registry-committed"] if name in ("prune-datasets", "remove-runs") else [])]
if POSTGRES_URL:
    CASES += [pytest.param("postgres", name, point, id=f"postgres-{name}-{point}")
              for name in ("certify-calibrations", "collection-chain", "prune-datasets", "remove-runs")
              for point in [0.4, *(["registry-committed"] if name in ("prune-datasets", "remove-runs") else [])]]
    # a removal of tagged and chained collections killed after its first commit (one transaction)
    CASES += [pytest.param("postgres", "remove-collections-three", "sql-committed:1",
                           id="postgres-remove-collections-three-sql-committed:1")]


def _fresh(stack: str, template: Path, where: Path) -> Path:  # noqa: F811
    """A repository like ``template`` (the small camera, ``metrics``, RUN r) on ``stack``."""
    if stack == "sqlite":
        return _copy(template, where)
    with Butler.create(where, **stack_locations(stack, where.parent)) as butler:
        populate(butler)
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        butler.collections.register("r", "run")
    return where


@pytest.mark.parametrize("stack, name, fraction", CASES)
def test_a_killed_command_is_retried_into_the_uninterrupted_result(template, raws, curated, uninterrupted, tmp_path,  # noqa: F811
                                                                    stack, name, fraction):
    make_setup, command = WRITES[name]
    setup = make_setup({"raws": raws})
    sources = {p: p.read_bytes() for p in curated.rglob("*") if p.is_file()}

    def args(root: Path) -> list[str]:
        return [a.format(repo=root, curated=curated) for a in command]

    def run_twin() -> tuple:
        twin = _fresh(stack, template, tmp_path / "twin")
        if setup is not None:
            setup(twin)
        started = time.monotonic()
        _invoke(*args(twin))
        took = time.monotonic() - started
        return fingerprint(twin), took

    expected, took = uninterrupted((stack, name), run_twin)

    repo = _fresh(stack, template, tmp_path / "repo")
    if setup is not None:
        setup(repo)
    plant_user_file(repo)
    before = fingerprint(repo)
    if isinstance(fraction, str):
        killed = run_killed(cli_main(*args(repo)), fraction)
    else:
        killed = run_killed(cli_main(*args(repo)), None, delay=took * fraction)
    print(f"{name} at {fraction}: {'killed' if killed else 'finished first'} (an uninterrupted run took {took:.2f} s)")
    assert_recovered(repo, sources)
    if killed and name not in FILE_BY_FILE:  # all or nothing: what a killed registry write leaves is its state before or after
        assert fingerprint(repo) in (before, expected, *first_steps(name, before)), f"{name} was kept in part"
    if fingerprint(repo) != expected:  # killed before its commit: the command again completes
        _invoke(*args(repo))
    assert fingerprint(repo) == expected
    assert_recovered(repo, sources)


# -- a pipeline run writing its outputs -----------------------------------------------------


def _run_pipeline(root: Path) -> None:
    """scale (a) -> visit summary (b) from RUN r into ``out``; a run killed before is resumed."""
    from skybutler.execution import run_pipeline
    from skybutler.pipeline import Pipeline
    from skybutler.pipeline.testing import ScaleTask, VisitSummaryTask

    pipeline = Pipeline()
    pipeline.add_task("a", ScaleTask)
    pipeline.add_task("b", VisitSummaryTask)
    with Butler(root) as butler:
        resume = butler.collections.exists("out")
        report = run_pipeline(butler, pipeline, ["r"], "out", resume=resume)
        if not report.ok:  # each failed quantum's error and recorded log (its traceback), not a truncated repr
            logs = {str(r.quantum_id): r.log for r in butler.provenance.store.get(
                uuid.UUID(f["quantum_id"]) for f in report.failed if f["quantum_id"])}
            pytest.fail(f"{report.describe()}\n" + "\n".join(
                f"{f['error']}\n{logs.get(f['quantum_id']) or ''}" for f in report.failed), pytrace=False)


def _outputs(root: Path) -> dict:
    with Butler(root, collections="out") as butler:
        return {(t, tuple(sorted(r.data_id.required.items()))): butler.get(r)
                for t in ("metricsA", "visitSummary") for r in butler.query_datasets(t)}


#: Its outputs are put quantum by quantum: killed at the 2nd put's journal, the 3rd's files
#: published, the 5th's rows committed, and at fractions of its time.  On PostgreSQL + S3 a
#: representative few (a case there costs two schemas and 5-10 s).
PIPELINE_POINTS = ["journal-written:2", "files-published:3", "registry-committed:5", *FRACTIONS]
PG_PIPELINE_POINTS = ["files-published:3", "registry-committed:5", 0.4]


@pytest.mark.parametrize("stack, point", [
    pytest.param(stack, point, id=f"{stack}-{point}") for stack in ["sqlite"] + (["postgres"] if POSTGRES_URL else [])
    for point in (PIPELINE_POINTS if stack == "sqlite" else PG_PIPELINE_POINTS)])
def test_a_killed_pipeline_run_resumes_into_the_uninterrupted_outputs(template, uninterrupted, tmp_path,  # noqa: F811
                                                                       stack, point):
    def run_twin() -> tuple:
        twin = _fresh(stack, template, tmp_path / "twin")
        _metrics(twin)
        started = time.monotonic()
        _run_pipeline(twin)
        took = time.monotonic() - started
        return _outputs(twin), took

    expected, took = uninterrupted(("pipeline", stack), run_twin)
    repo = _fresh(stack, template, tmp_path / "repo")
    _metrics(repo)
    plant_user_file(repo)
    if isinstance(point, str):
        assert run_killed(lambda: _run_pipeline(repo), point), f"the run never reached {point}"
    else:
        run_killed(lambda: _run_pipeline(repo), None, delay=took * point)
    assert_recovered(repo, {})
    _run_pipeline(repo)
    assert _outputs(repo) == expected and len(expected) == 10
    assert_recovered(repo, {})


# -- a Rubin export (directory, zip) coming in ---------------------------------------------------


@pytest.fixture(scope="module")
def rubin_export(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("lsst.daf.butler", reason="the Rubin butler (pip install 'skybutler[rubin-test]')")
    import glob

    from rubin_repos import make_rubin_export

    base = tmp_path_factory.mktemp("rubin")
    butler, refs = make_rubin_export(base)
    (base / "zip").mkdir()
    butler.retrieve_artifacts_zip([r.expanded(butler.registry.expandDataId(r.dataId)) for r in refs],
                                  str(base / "zip"))
    (zipped,) = glob.glob(str(base / "zip" / "*.zip"))
    return {"export": base / "export", "zip": Path(zipped), "repository": base / "repo"}


RUBIN_CASES = [("export", transfer, point) for transfer in ("copy", "move")
               for point in ["journal-written", "file-placed:3", "registry-committed", 0.5]] + \
    [(kind, "copy", point) for kind in ("zip", "repository")
     for point in ["journal-written", "file-placed:3", "registry-committed", 0.5]] + \
    [("repository", "copy", point) for point in (0.15, 0.3)]  # while the Rubin butler exports it
#: On PostgreSQL + S3 a representative few: an export moved in killed with files placed, a zip
#: killed at its commit, a whole repository killed at half its time.
PG_RUBIN_CASES = [("export", "move", "file-placed:3"), ("zip", "copy", "file-placed:3"),
                  ("zip", "copy", "registry-committed"), ("repository", "copy", 0.5)]


@pytest.mark.parametrize("stack, kind, transfer, point", [
    pytest.param(stack, *case, id=f"{stack}-{'-'.join(map(str, case))}")
    for stack in ["sqlite"] + (["postgres"] if POSTGRES_URL else [])
    for case in (RUBIN_CASES if stack == "sqlite" else PG_RUBIN_CASES)])
def test_a_killed_rubin_import(rubin_export, uninterrupted, tmp_path, stack, kind, transfer, point):
    if kind == "export":
        source = Path(shutil.copytree(rubin_export["export"], tmp_path / "export"))
    elif kind == "zip":
        source = Path(shutil.copy(rubin_export["zip"], tmp_path))
    else:  # a whole Rubin repository: the Rubin butler exports it, then its export comes in
        source = Path(shutil.copytree(rubin_export["repository"], tmp_path / "rubin"))
    sources = {p: p.read_bytes() for p in ([source] if kind == "zip" else source.rglob("*"))
               if p.is_file() and p.name != "export.yaml" and "sqlite" not in p.name}
    args = ["import", tmp_path / "repo", source, "--transfer", transfer]
    def run_twin() -> tuple:
        Butler.create(tmp_path / "twin", **stack_locations(stack, tmp_path)).close()
        started = time.monotonic()
        _invoke("import", tmp_path / "twin", rubin_export[kind], "--transfer", "copy")
        took = time.monotonic() - started
        return fingerprint(tmp_path / "twin"), took

    expected, took = uninterrupted(("rubin-import", stack, kind), run_twin)
    Butler.create(tmp_path / "repo", **stack_locations(stack, tmp_path)).close()
    plant_user_file(tmp_path / "repo")
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()

    def work() -> None:
        import tempfile

        tempfile.tempdir = str(system_temp)  # in the forked child only
        cli_main(*args)()

    if isinstance(point, str):
        assert run_killed(work, point), f"the import never reached {point}"
    else:
        run_killed(work, None, delay=took * point)
    assert_recovered(tmp_path / "repo", sources)
    assert not any(system_temp.iterdir()), "a killed import left its scratch in the system's temporary space"
    if fingerprint(tmp_path / "repo") != expected:
        _invoke(*args)
    assert fingerprint(tmp_path / "repo") == expected
    assert_recovered(tmp_path / "repo", sources)


# -- migrate ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_a_killed_migration_is_finished_by_migrating_again(uninterrupted, tmp_path, fraction):
    import tarfile

    def unpack(name: str) -> Path:
        with tarfile.open(Path(__file__).parent / "data" / "schema3_repo.tar.gz") as tar:
            tar.extractall(tmp_path / name, filter="data")
        return tmp_path / name / "repo"

    def run_twin() -> tuple:
        twin = unpack("twin")
        started = time.monotonic()
        _invoke("migrate", twin)
        took = time.monotonic() - started
        return fingerprint(twin), took

    expected, took = uninterrupted(("migrate",), run_twin)
    repo = unpack("repo")
    run_killed(cli_main("migrate", repo), None, delay=took * fraction)
    _invoke("migrate", repo)
    plant_user_file(repo)
    assert_recovered(repo, {})
    assert fingerprint(repo) == expected
    with Butler(repo, collections="r") as butler:
        assert {r.data_id["detector"]: butler.get(r)["n"] for r in butler.query_datasets("summary")} == {0: 10, 1: 11}


# -- writes through a server: an import in batches (resumed), a catalog publication --------------


def _serve_killed(root: Path, step: str, **settings) -> tuple[int, str]:
    """Fork a server of ``root`` that kills itself at ``step``; its pid and URL."""
    from server_helpers import running_server

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child serves until it dies at the step (or the test kills it)
        try:
            os.environ["SKYBUTLER_CRASH_AT"] = step
            with running_server(root, **settings) as url:
                os.write(write, url.encode())
                time.sleep(600)
        finally:
            os._exit(3)
    os.close(write)
    url = os.read(read, 200).decode()
    os.close(read)
    return pid, url


def _stop(pid: int) -> bool:
    """Kill the server if it is still up (a few seconds after its client is done: a dying
    process closes its sockets before it can be reaped); True if it had killed itself."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


def _admin_token(root: Path) -> str:
    from skybutler.access import Access

    with Butler(root) as butler:
        access = Access(butler.registry.access)
        access.add_user("boss", admin=True)
        return access.create_token("boss")


@pytest.fixture(scope="module")
def export_dir(template, tmp_path_factory) -> Path:  # noqa: F811
    source = _copy(template, tmp_path_factory.mktemp("source") / "repo")
    _metrics(source)
    out = tmp_path_factory.mktemp("export") / "e"
    _invoke("export", source, out)
    return out


#: The export goes in three batches of under 1500 bytes: each killed at its journal, a file
#: moved in from the upload, its commit.
IMPORT_STEPS = ["journal-written", "file-placed:2", "registry-committed", "journal-written:2", "file-placed:5",
                "registry-committed:2", "registry-committed:3"]


@pytest.mark.parametrize("step", IMPORT_STEPS)
def test_an_import_through_a_killed_server_resumes(template, export_dir, uninterrupted, tmp_path, step):  # noqa: F811
    from server_helpers import running_server
    from skybutler.repository_transfer import import_datasets

    def run_twin() -> tuple:
        twin = _copy(template, tmp_path / "twin")
        _invoke("import", twin, export_dir)
        return fingerprint(twin)[:5], 0.0

    expected, _ = uninterrupted(("import",), run_twin)
    repo = _copy(template, tmp_path / "repo")
    token = _admin_token(repo)
    plant_user_file(repo)
    export = Path(shutil.copytree(export_dir, tmp_path / "e"))
    sources = {p: p.read_bytes() for p in export.rglob("*") if p.is_file()}
    pid, url = _serve_killed(repo, step, max_request_bytes=1500)
    try:
        import_datasets(Butler(url, token=token), export)
    except Exception as err:  # noqa: BLE001 - the server died under the import
        print("the import failed:", err)
    assert _stop(pid), f"the server never reached {step}"
    assert_recovered(repo, sources)
    with running_server(repo, max_request_bytes=1500) as url:
        import_datasets(Butler(url, token=token), export)  # resumed: what is in is not sent again
    assert fingerprint(repo)[:5] == expected
    assert_recovered(repo, sources)
    assert {p: p.read_bytes() for p in export.rglob("*") if p.is_file()} == sources


@pytest.mark.parametrize("step, update", [(step, update) for update in (False, True)
                                          for step in ["publication-partition:2", "publication-staged",
                                                       "publication-swapped", "registry-committed"]
                                          if update or step != "publication-swapped"])
def test_a_publication_through_a_killed_server(make_butler, tmp_path, step, update):
    """The server's publication tree is its own (under .skybutler/publications): a first
    publication or an update killed at any step leaves the repository consistent and no
    unfinished version behind, and the same publication again completes."""
    from server_helpers import running_server
    from test_server_publish import _catalogs, _repo, _tokens

    served = _repo(make_butler, "served", 4)
    tokens = _tokens(served, {"ana": []}, [("ana", "r1", "read"), ("ana", "publications/*", "write")])
    if update:  # a publication there already: the killed one makes its next version
        with running_server(served.root) as url:
            Butler(url, token=tokens["ana"], collections="r1").publish_catalog("src", "deep", max_rows=500)
        _catalogs(served, range(4, 6), seed=9)
    root = Path(served.root)
    served.close()
    plant_user_file(root)
    pid, url = _serve_killed(root, step)
    try:
        Butler(url, token=tokens["ana"], collections="r1").publish_catalog("src", "deep", max_rows=500)
    except Exception:  # noqa: BLE001 - the server died under the publication
        pass
    assert _stop(pid), f"the server never reached {step}"
    assert_recovered(root, {})
    with running_server(root) as url:
        report = Butler(url, token=tokens["ana"], collections="r1").publish_catalog("src", "deep", max_rows=500)
    assert report.total_rows > 0 or report.notes == ["nothing new to publish"]
    assert_recovered(root, {})
