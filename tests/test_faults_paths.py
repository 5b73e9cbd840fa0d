"""Fault injection on the write paths test_faults.py leaves out: the commands that change only the
registry (sky maps, instruments, visits, certification, chains, tags, users), the removals, the
curated calibrations, a pipeline run writing its outputs, and the migration of an old repository.

Each case kills the command with SIGKILL (``test_faults.run_killed``) at a named step or at a
fraction of the time an uninterrupted run of it takes, then asks what test_faults asks of every
write (``assert_recovered``: the repository opens, ``verify`` is clean after ``verify --fix``,
every user file is in its place or registered, a user's file planted in the datastore's tree
survives, no temporary file is left), and one thing more: the same command run again completes,
and the repository is then the one the command makes uninterrupted in a twin repository (the
oracle), so no write was kept in part in a way a retry cannot complete.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

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


#: The removals delete files after their rows: killed there too.
CASES = [(name, point) for name in WRITES for point in FRACTIONS + (
    ["registry-committed"] if name in ("prune-datasets", "remove-runs") else [])]


@pytest.mark.parametrize("name, fraction", CASES)
def test_a_killed_command_is_retried_into_the_uninterrupted_result(template, raws, curated, tmp_path, name,  # noqa: F811
                                                                    fraction):
    make_setup, command = WRITES[name]
    setup = make_setup({"raws": raws})
    sources = {p: p.read_bytes() for p in curated.rglob("*") if p.is_file()}

    def args(root: Path) -> list[str]:
        return [a.format(repo=root, curated=curated) for a in command]

    twin = _copy(template, tmp_path / "twin")
    if setup is not None:
        setup(twin)
    started = time.monotonic()
    _invoke(*args(twin))
    took = time.monotonic() - started
    expected = fingerprint(twin)

    repo = _copy(template, tmp_path / "repo")
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
