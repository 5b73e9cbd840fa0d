"""Fault injection on writes through a server and on decertification.

A server (forked from the test, ``test_faults_paths._serve_killed``) kills itself with SIGKILL
at a named step (:mod:`skybutler.faults`) of a client's ``put_many``, ``ingest`` of uploaded
files or ``ingest-raws``: the uploads wait in held scratch directories of the repository
(``datastore/uploads.py``), which the next open removes once their server is dead.  Then what
test_faults asks of every write (``assert_recovered``: the repository opens, ``verify`` is clean
after ``verify --fix``, every user file is in its place or stored, a file of the user's planted
in the datastore survives, no scratch is left), and the same call again completes.

A decertification is one registry transaction: killed after each of its commits in turn
(``sql-committed:n``), on the path or in the server, the validity ranges are those before it or
those it makes uninterrupted in a twin repository.  A caller without the right, an unknown
collection and a dataset type that is no calibration are refused with the ranges unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import POSTGRES_URL, populate, stack_locations
from server_helpers import running_server
from skybutler import Butler, Timespan
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import SkybutlerError
from test_faults import assert_recovered, plant_user_file, raws, run_killed  # noqa: F401 -- raws: a fixture
from test_faults_paths import _serve_killed, _stop

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow

N = 6


def _served(stack: str, where: Path) -> tuple[Path, dict[str, str]]:
    """A repository of the small camera with SimCam registered, ``metrics``, a bias calibration
    certified in ``calib``, and tokens of boss (administrator) and ana (reads everything)."""
    from skybutler.ingest import register_instrument

    with Butler.create(where, **stack_locations(stack, where.parent)) as butler:
        populate(butler)
        register_instrument(butler, "SimCam")
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        butler.register_dataset_type("bias", ["instrument", "detector"], "Dict", is_calibration=True)
        refs = butler.put_many("bias", [({"level": d}, {"instrument": "Cam", "detector": d}) for d in range(4)],
                               run="calib/run")
        butler.collections.certify("calib", refs, "2025-01-01T00:00:00", "2025-03-01T00:00:00")
        access = Access(butler.registry.access)
        access.add_user("boss", admin=True)
        access.grant("user", "ana", "*", "read")
        tokens = {name: access.create_token(name) for name in ("boss", "ana")}
    plant_user_file(where)
    return where, tokens


def _items() -> list[tuple[dict, dict]]:
    return [({"n": n}, {"instrument": "Cam", "visit": 1 + n // 4, "detector": n % 4}) for n in range(N)]


def _json_files(directory: Path) -> dict[Path, bytes]:
    directory.mkdir()
    for n in range(N):
        (directory / f"m{n}.json").write_text(json.dumps({"n": n, "pad": "x" * (50 + 31 * n)}))
    return {p: p.read_bytes() for p in directory.iterdir()}


def _stored(root: Path, dataset_type: str, run: str) -> list:
    with Butler(root, collections=run) as butler:
        if not butler.query_dataset_types(dataset_type) or not butler.collections.exists(run):
            return []
        return sorted(json.dumps(butler.get(r), sort_keys=True, default=str) if dataset_type != "raw"
                      else str(dict(r.data_id.required)) for r in butler.query_datasets(dataset_type))


def _write(kind: str, url: str, token: str, source: Path | None, transfer: str = "copy") -> None:
    """One write through the server: put_many, an ingest of uploaded files, or ingest-raws."""
    if kind == "ingest-raws":
        result = CliRunner().invoke(cli, ["ingest-raws", url, str(source), "--transfer", transfer],
                                    env={"SKYBUTLER_TOKEN": token})
        if result.exit_code != 0:
            raise SkybutlerError(result.output)
        return
    with Butler(url, token=token, run="r") as remote:
        if kind == "put":
            remote.put_many("metrics", _items())
        else:
            remote.ingest("metrics", [(source / f"m{n}.json", data_id) for n, (_, data_id) in enumerate(_items())],
                          transfer=transfer)


#: (write, transfer, step): every step on SQLite; a representative few on PostgreSQL + S3.
STEPS = {"put": ["journal-written", "file-staged:2", "files-published", "registry-committed"],
         "ingest": ["journal-written", "file-placed:2", "registry-committed"],
         "ingest-raws": ["journal-written", "file-placed:4", "registry-committed"]}
CASES = [pytest.param("sqlite", kind, transfer, step, id=f"sqlite-{kind}-{transfer}-{step}")
         for kind, steps in STEPS.items() for transfer in (["copy"] if kind == "put" else ["copy", "move"])
         for step in steps]
if POSTGRES_URL:
    CASES += [pytest.param("postgres", kind, "move" if kind != "put" else "copy", "registry-committed" if
                           kind == "put" else "file-placed:2", id=f"postgres-{kind}") for kind in STEPS]


@pytest.mark.parametrize("stack, kind, transfer, step", CASES)
def test_a_write_through_a_killed_server(raws, tmp_path, stack, kind, transfer, step):  # noqa: F811
    root, tokens = _served(stack, tmp_path / "repo")
    source = None
    sources: dict[Path, bytes] = {}
    if kind == "ingest":
        sources = _json_files(tmp_path / "incoming")
        source = tmp_path / "incoming"
    elif kind == "ingest-raws":
        source = Path(shutil.copytree(raws, tmp_path / "incoming"))
        sources = {p: p.read_bytes() for p in source.rglob("*.fits")}
    pid, url = _serve_killed(root, step)
    try:
        _write(kind, url, tokens["boss"], source, transfer)
    except Exception as err:  # noqa: BLE001 - the server died under the write
        print("the write failed:", err)
    assert _stop(pid), f"the server never reached {step}"
    if kind != "put":  # the upload it died with waits in its scratch directory, for the next open
        prefix = "upload-" if kind == "ingest" else "import-"
        assert [p for p in (root / ".skybutler" / "uploads").glob(f"{prefix}*") if not p.name.endswith(".held")]
    assert all(p.read_bytes() == data for p, data in sources.items()), "the client lost a file the server never kept"
    assert_recovered(root, sources)
    dataset_type, run = ("raw", "SimCam/raw/all") if kind == "ingest-raws" else ("metrics", "r")
    kept = _stored(root, dataset_type, run)
    assert len(kept) in (0, len(sources) or N), "a write through a server was kept in part"
    if not kept:  # killed before its commit: the same write again completes
        with running_server(root) as url:
            _write(kind, url, tokens["boss"], source, transfer)
    assert len(_stored(root, dataset_type, run)) == (len(sources) or N)
    assert_recovered(root, sources)


# -- decertification --------------------------------------------------------------------------


def _validity(root: Path) -> list:
    with Butler(root) as butler:
        return sorted((str(dict(ref.data_id.required)), str(span)) for ref, span in
                      butler.collections.validity("calib", "bias"))


def _decertify(target: Butler) -> None:
    target.collections.decertify("calib", "bias", "2025-01-20T00:00:00", "2025-02-01T00:00:00",
                                 data_ids=[{"instrument": "Cam", "detector": d} for d in (1, 2)])


DECERTIFY_CASES = [pytest.param(s, w, id=f"{s}-{w}") for s in ["sqlite"] + (["postgres"] if POSTGRES_URL else [])
                   for w in ("path", "server")]


@pytest.mark.parametrize("stack, where", DECERTIFY_CASES)
def test_a_killed_decertification_is_all_or_nothing(tmp_path, stack, where):
    twin, _ = _served(stack, tmp_path / "twin")
    before = _validity(twin)
    with Butler(twin) as butler:
        _decertify(butler)
    expected = _validity(twin)
    assert len(expected) == len(before) + 2  # two ranges split in two
    for n in range(1, 6):
        root, tokens = _served(stack, tmp_path / f"repo{n}")
        if where == "path":
            killed = run_killed(lambda: _decertify(Butler(root)), f"sql-committed:{n}")  # noqa: B023
        else:
            pid, url = _serve_killed(root, f"sql-committed:{n}")
            try:
                _decertify(Butler(url, token=tokens["boss"]))
            except Exception as err:  # noqa: BLE001 - the server died under it
                print("the decertification failed:", err)
            killed = _stop(pid)
        assert_recovered(root, {})
        assert _validity(root) in (before, expected), f"a decertification killed after commit {n} was kept in part"
        if not killed:
            assert _validity(root) == expected
            return
    pytest.fail("a decertification commits more than 5 times")


def test_a_refused_decertification_changes_nothing(tmp_path):
    from skybutler.errors import PermissionDeniedError

    root, tokens = _served("sqlite", tmp_path / "repo")
    before = _validity(root)
    with running_server(root) as url:
        with pytest.raises(PermissionDeniedError, match="ana.* may not write .*calib"):
            _decertify(Butler(url, token=tokens["ana"]))
        with Butler(url, token=tokens["boss"]) as boss:
            with pytest.raises(SkybutlerError, match="no collection named 'calibs'"):
                boss.collections.decertify("calibs", "bias", None, None)
            with pytest.raises(SkybutlerError, match="metrics.* is not a calibration"):
                boss.collections.decertify("calib", "metrics", None, None)
            with pytest.raises(SkybutlerError, match="begin .* after its end|end .* before"):
                boss.collections.decertify("calib", "bias", timespan=Timespan("2025-02-01T00:00:00",
                                                                              "2025-01-01T00:00:00"))
    assert _validity(root) == before
