"""Shared fixtures: small real repositories on every configured stack.

The default stack is SQLite + local files.  Setting ``SKYBUTLER_TEST_POSTGRES_URL``
(a PostgreSQL server URL; each test gets its own schema) adds the PostgreSQL stack,
and ``SKYBUTLER_TEST_S3_ENDPOINT`` (an S3-compatible endpoint with credentials in
the usual AWS_* variables) puts that stack's datastore on S3.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skybutler import Butler, Timespan
from skybutler.dimensions import regions

POSTGRES_URL = os.environ.get("SKYBUTLER_TEST_POSTGRES_URL")
S3_ENDPOINT = os.environ.get("SKYBUTLER_TEST_S3_ENDPOINT")
S3_BUCKET = os.environ.get("SKYBUTLER_TEST_S3_BUCKET", "skybutler-test")

STACKS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])

if S3_ENDPOINT:  # botocore (and so s3fs) reads the endpoint of S3 from this standard variable
    os.environ.setdefault("AWS_ENDPOINT_URL_S3", S3_ENDPOINT)

#: PostgreSQL schemas (and S3 prefixes of the same name) made by stack_locations, dropped at session end.
_MADE_NAMES: list[str] = []


def run_cli(*args: object, code: int = 0, input: str | None = None) -> Any:
    """Run the ``skybutler`` command line in this process (click's CliRunner: stdout is not a
    terminal, as in a pipe) with ``args``; checks its exit status is ``code`` and that it printed no
    traceback.  Its click Result, stdout and stderr kept apart."""
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], input=input)
    assert result.exit_code == code, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.output
    return result


def stack_locations(stack: str, tmp_path: Path) -> dict[str, str | None]:
    """Registry URL and datastore URI for a new repository on ``stack``."""
    if stack == "sqlite":
        return {"registry": None, "datastore": None}
    name = f"t_{uuid.uuid4().hex[:12]}"
    _MADE_NAMES.append(name)
    datastore = f"s3://{S3_BUCKET}/{name}" if S3_ENDPOINT else None
    return {"registry": f"{POSTGRES_URL}?schema={name}", "datastore": datastore}


#: Set by .ci/services.sh: its servers are deleted after the run, so nothing need be dropped.
THROWAWAY_SERVERS = os.environ.get("SKYBUTLER_TEST_THROWAWAY_SERVERS") == "1"


@pytest.fixture(scope="session", autouse=True)
def _drop_test_schemas():
    """Leave the shared PostgreSQL database and S3 bucket as the session found them (a CI run's
    throwaway servers excepted: dropping a worker's thousand schemas there took ~20 s at its end)."""
    yield
    if not _MADE_NAMES or THROWAWAY_SERVERS:
        return
    import sqlalchemy as sa

    from skybutler.registry.database import make_engine

    engine, _ = make_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            for name in _MADE_NAMES:
                with conn.begin():
                    conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
                    conn.execute(sa.schema.DropSchema(name, cascade=True, if_exists=True))
    finally:
        engine.dispose()
    if S3_ENDPOINT:
        import fsspec

        fs = fsspec.filesystem("s3")
        for name in _MADE_NAMES:
            if fs.exists(f"{S3_BUCKET}/{name}"):
                fs.rm(f"{S3_BUCKET}/{name}", recursive=True)


@pytest.fixture(params=STACKS)
def stack(request) -> str:
    return request.param


@pytest.fixture
def make_butler(stack: str, tmp_path: Path) -> Callable[..., Butler]:
    """A factory of new, empty repositories on the current stack."""
    made: list[Butler] = []

    def make(name: str = "repo", **kwargs) -> Butler:
        butler = Butler.create(tmp_path / name, **stack_locations(stack, tmp_path), **kwargs)
        made.append(butler)
        return butler

    yield make
    for butler in made:
        butler.close()


def _day(begin: str) -> Timespan:
    from astropy.time import Time, TimeDelta

    start = Time(begin, scale="tai")
    return Timespan(start, start + TimeDelta(1, format="jd"))


def visit_pointing(visit: int) -> tuple[float, float]:
    """The benchmark workload's pointing formula."""
    return (7.3 * visit) % 360, -75 + (11 * visit) % 70


def populate(butler: Butler, n_visits: int = 6, n_detectors: int = 4) -> None:
    """Dimension records of a small camera 'Cam': 3 filters, one night, visits with regions and timespans."""
    from astropy.time import TimeDelta

    butler.insert_records("instrument", [{"name": "Cam", "detector_max": n_detectors, "visit_max": 1000}])
    butler.insert_records("band", [{"name": b} for b in "gri"])
    butler.insert_records("physical_filter", [{"instrument": "Cam", "name": f"Cam-{b}", "band": b} for b in "gri"])
    butler.insert_records("detector", [{"instrument": "Cam", "id": d, "full_name": f"R00_S{d:02d}",
                                        "purpose": "SCIENCE"} for d in range(n_detectors)])
    night = _day("2025-01-01T12:00:00")
    butler.insert_records("day_obs", [{"instrument": "Cam", "id": 20250101, "timespan": night}])
    visits = []
    for v in range(1, n_visits + 1):
        ra, dec = visit_pointing(v)
        begin = night.begin + TimeDelta(43200 + (v - 1) * 120, format="sec")
        exptime = 15.0 if v % 10 == 0 else 30.0
        visits.append({"instrument": "Cam", "id": v, "physical_filter": f"Cam-{'gri'[(v - 1) % 3]}",
                       "day_obs": 20250101, "exposure_time": exptime, "observation_type": "science",
                       "region": regions.rectangle(ra, dec, 3.5, 3.5),
                       "timespan": Timespan(begin, begin + TimeDelta(exptime, format="sec"))})
    butler.insert_records("visit", visits)


@pytest.fixture
def butler(make_butler) -> Butler:
    """A repository with the small camera's records and a ``metrics`` Dict dataset type."""
    b = make_butler(run="run/a", collections=["run/a"])
    populate(b)
    b.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    return b


def template_repository(tmp_path_factory, build: Callable[[Butler], Any]) -> tuple[Path, Any]:
    """The ``butler`` fixture's repository on SQLite after ``build``, made once (for a module-scoped
    fixture), with what ``build`` returned.  Checked to hold no absolute path, so a copy is whole."""
    root = tmp_path_factory.mktemp("template") / "repo"
    with Butler.create(root, run="run/a", collections=["run/a"]) as butler:
        populate(butler)
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        made = build(butler)
    needle = os.fsencode(root.parent)
    assert not [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]
    return root, made


def built_repository(request, stack: str, template: str, build: Callable[[Butler], Any]) -> tuple[Butler, Any]:
    """The ``butler`` fixture's repository after ``build``, with what ``build`` returned.  On SQLite, a
    copy of the module-scoped ``template`` fixture's (see template_repository), so each test still
    has its own repository but the pipeline runs once per module; on other stacks, built afresh.
    (``stack`` is the caller's fixture: a parametrized fixture must be asked for by name.)"""
    if stack != "sqlite":
        butler = request.getfixturevalue("butler")
        return butler, build(butler)
    root, made = request.getfixturevalue(template)
    copy = shutil.copytree(root, request.getfixturevalue("tmp_path") / "repo")
    butler = Butler(copy, run="run/a", collections=["run/a"])
    request.addfinalizer(butler.close)
    return butler, made


def in_forked_child(child: Callable[[], Any], timeout: float = 60) -> tuple[Any, int | None]:
    """What ``child()`` returns when run in a forked process (sent back through a queue), and the
    child's exit code: for checking what a fork inherits from this process."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=lambda: queue.put(child()))
    process.start()
    answer = queue.get(timeout=timeout)
    process.join(timeout)
    return answer, process.exitcode


@contextlib.contextmanager
def two_clients_on(stack: str, tmp_path: Path,
                   prepare: Callable[[Butler], None] | None = None) -> Iterator[tuple[Butler, Butler]]:
    """Two butlers on one new repository on ``stack`` with the small camera's records (two visits,
    two detectors): the one that made it, ``prepare``-d before the other opens, and that other."""
    first = Butler.create(tmp_path / "repo", **stack_locations(stack, tmp_path))
    populate(first, 2, 2)
    if prepare is not None:
        prepare(first)
    second = Butler(tmp_path / "repo")
    try:
        yield first, second
    finally:
        first.close()
        second.close()
