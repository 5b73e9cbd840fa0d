"""Raw ingestion, cameras, visits and sky maps through a server (a real uvicorn on loopback),
each compared with the same work done by a local butler on a twin repository: the local path is
the oracle (same records, same dataset IDs, same data IDs).  Hostile cases: a user who may not
write, a corrupt file, over quota, over the request-size limit, a file name that climbs out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.datastore import transfer
from skybutler.errors import PermissionDeniedError, QuotaExceededError, ServerError, SkybutlerError, TransferError
from skybutler.ingest import (
    define_visits,
    ingest_raws,
    register_instrument,
    register_skymap,
    write_curated_calibrations,
)
from skybutler.instruments import simulate_night
from skybutler.remote.ingest import upload_body
from skybutler.verify import verify

pytest.importorskip("fastapi")

NIGHT = 20260301
SKYMAP = {"rings": 5, "patches": 3}


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    """1 bias and 2 science exposures of SimCam's 9 detectors: 27 small files."""
    out = tmp_path_factory.mktemp("night")
    simulate_night(out, day_obs=NIGHT, n_science=2, n_bias=1, n_flat=0, bands=("g",), size=16)
    return out


@pytest.fixture
def served(make_butler, tmp_path):
    """A served repository (its local butler, URL and the tokens of an admin, a writer of the raw
    RUN and a user with no grant) and an empty twin repository on the same stack."""
    served_butler = make_butler("served")
    access = Access(served_butler.registry.access)
    access.add_user("boss", admin=True)
    access.add_user("raw_writer")
    access.grant("user", "raw_writer", "SimCam/raw/*", "write")
    tokens = {name: access.create_token(name) for name in ("boss", "raw_writer", "nobody")}
    with running_server(served_butler.root, max_request_bytes=64 * 1024) as url:
        yield served_butler, url, tokens, make_butler("twin")


def _snapshot(butler: Butler) -> dict:
    """Everything raw ingest and visit definition write: records of the elements they touch, the
    raws (ID, data ID, run) and the stored bytes of each."""
    out: dict = {}
    for element in ("instrument", "detector", "physical_filter", "day_obs", "group", "exposure", "visit",
                    "visit_definition", "visit_detector_region"):
        out[element] = sorted(json.dumps({k: str(v) for k, v in r.items()}, sort_keys=True)
                              for r in butler.registry.dimensions.fetch_all(element))
    refs = [] if not butler.query_dataset_types("raw") else butler.query_datasets(
        "raw", collections=[c.name for c in butler.collections.query("*", ["run"])], find_first=False)
    out["raws"] = sorted((str(r.id), str(dict(r.data_id.required)), r.run) for r in refs)
    artifacts = butler.registry.datasets.artifacts([r.id for r in refs])
    out["files"] = sorted((str(i), a.size, a.checksum) for i, a in artifacts.items())
    return out


def test_remote_ingest_matches_local_ingest(served, night):
    """Camera registration, raw ingest (twice: the second is a no-op), visits: the same outcome
    through the server as locally, down to the dataset IDs."""
    local, url, tokens, twin = served
    with Butler(url, token=tokens["boss"]) as remote:
        camera, new = register_instrument(remote, "SimCam")
        assert new and camera.name == "SimCam"
        first = ingest_raws(remote, [night])  # auto: an upload (copy)
        again = ingest_raws(remote, [night])
        visits = define_visits(remote, instrument="SimCam")
    assert first.ok and len(first.refs) == 27 and first.runs == ["SimCam/raw/all"]
    assert again.ok and again.refs == [] and len(again.already_ingested) == 27
    register_instrument(twin, "SimCam")
    oracle = ingest_raws(twin, [night], transfer="copy")
    oracle_visits = define_visits(twin, instrument="SimCam")
    assert sorted(r.id for r in first.refs) == sorted(r.id for r in oracle.refs)
    assert sorted(map(str, (r.data_id.mapping for r in first.refs))) == \
        sorted(map(str, (r.data_id.mapping for r in oracle.refs)))
    assert visits.defined == oracle_visits.defined and len(visits.defined) == 2
    assert _snapshot(local) == _snapshot(twin)
    assert all(p.exists() for p in night.iterdir())  # a copy leaves the files where they were


def test_a_writer_of_the_raw_run_ingests_an_admin_registered_camera(served, night, tmp_path):
    local, url, tokens, _ = served
    with Butler(url, token=tokens["raw_writer"]) as remote:
        with pytest.raises(PermissionDeniedError, match="administrator"):
            register_instrument(remote, "SimCam")  # a camera's own records: an administrator's
        with pytest.raises(PermissionDeniedError, match=r"administrator may register or update a camera \(SimCam\)"):
            ingest_raws(remote, [night])  # registering it on first use: refused, nothing written
        assert not local.registry.dimensions.fetch_all("exposure") and not local.query_dataset_types("raw")
        with Butler(url, token=tokens["boss"]) as boss:
            register_instrument(boss, "SimCam")
        moved = tmp_path / "moved"
        shutil.copytree(night, moved)
        result = ingest_raws(remote, [moved], transfer="move")
        assert result.ok and len(result.refs) == 27 and not list(moved.glob("*.fits"))
        visits = define_visits(remote, instrument="SimCam")
        assert len(visits.defined) == 2
    assert len(local.registry.dimensions.fetch_all("exposure")) == 3


def test_a_camera_registered_through_a_server_keeps_its_own_class_here(served):
    """The server keeps SimCam's description; this process keeps SimCam itself (a class with
    header checks of its own), not a plain description of it, when the two describe the same."""
    from skybutler.instruments import get_instrument
    from skybutler.instruments.simcam import SimCam

    _, url, tokens, _ = served
    with Butler(url, token=tokens["boss"]) as boss:
        kept, new = register_instrument(boss, "SimCam")
    assert new and type(kept) is SimCam and type(get_instrument("SimCam")) is SimCam


def test_refused_requests_write_nothing(served, night, tmp_path):
    """A user who may not write the RUN, a RUN over quota, a corrupt file, a file above the request
    limit: refused with the right error, and the repository is left exactly as it was."""
    local, url, tokens, _ = served
    with Butler(url, token=tokens["boss"]) as boss:
        register_instrument(boss, "SimCam")
    before = _snapshot(local)
    with Butler(url, token=tokens["nobody"]) as remote:
        with pytest.raises(PermissionDeniedError, match="may not write to collection 'SimCam/raw/all'"):
            ingest_raws(remote, [night])
        with pytest.raises(PermissionDeniedError, match="may not define visits"):
            define_visits(remote)
        with pytest.raises(PermissionDeniedError):
            register_skymap(remote, "tiny", **SKYMAP)
        with pytest.raises(SkybutlerError, match="transfer 'direct'"):
            ingest_raws(remote, [night], transfer="direct")
    Access(local.registry.access).set_quota("user", "nobody", max_bytes=10_000)
    with Butler(url, token=tokens["nobody"]) as remote:
        with pytest.raises(QuotaExceededError):
            ingest_raws(remote, [night], run="u/nobody/raw")
    assert _snapshot(local) == before
    # A corrupt (truncated) file is a failure naming it; the good ones go in.
    bad = tmp_path / "bad"
    bad.mkdir()
    good = sorted(night.glob("*.fits"))[0]
    shutil.copy(good, bad / good.name)
    cut, other = sorted(night.glob("*.fits"))[1:3]
    (bad / "cut.fits").write_bytes(cut.read_bytes()[:3000])  # cut short in its pixels
    (bad / "big.fits").write_bytes(other.read_bytes() + b"\0" * (70 * 1024))  # a valid FITS, padded
    with Butler(url, token=tokens["boss"]) as remote:
        result = ingest_raws(remote, [bad])
    reasons = {Path(f.path).name: f.reason for f in result.failures}
    assert set(reasons) == {"cut.fits", "big.fits"} and len(result.refs) == 1, reasons
    assert reasons["big.fits"].endswith("bytes: above the server's request-size limit of 65536 bytes")
    assert reasons["cut.fits"].startswith("not a readable FITS file") and "truncated" in reasons["cut.fits"]


def _post(url: str, token: str, run: str, body) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/raws/ingest", params={"run": run}, content=body,
                      headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_hostile_uploads_are_refused_and_write_nothing(served, night, tmp_path):
    """What a client other than skybutler's might send: a file whose header says otherwise than the
    data ID sent, a truncated file, a name that climbs out of the upload, a body above the limit."""
    local, url, tokens, _ = served
    with Butler(url, token=tokens["boss"]) as boss:
        register_instrument(boss, "SimCam")
    before = _snapshot(local)
    token = tokens["boss"]
    good = sorted(night.glob("*.fits"))[0]
    data_id = {"instrument": "SimCam", "exposure": 1, "detector": 99}
    answer = _post(url, token, "SimCam/raw/all", upload_body("SimCam/raw/all", [("0/a.fits", good, data_id)]))
    assert answer.status_code == 422 and "its header gives data ID" in answer.json()["message"]
    cut = tmp_path / "cut.fits"
    cut.write_bytes(good.read_bytes()[:3000])
    answer = _post(url, token, "SimCam/raw/all", upload_body("SimCam/raw/all", [("0/cut.fits", cut, data_id)]))
    assert answer.status_code == 422 and answer.json()["message"].startswith("cut.fits: "), answer.text
    answer = _post(url, token, "SimCam/raw/all", upload_body("SimCam/raw/all", [("../../x.fits", good, data_id)]))
    assert answer.status_code == 422 and "invalid uploaded file name" in answer.json()["message"]
    big = tmp_path / "big.fits"
    big.write_bytes(b"\0" * (100 * 1024))
    answer = _post(url, token, "SimCam/raw/all", upload_body("SimCam/raw/all", [("0/big.fits", big, data_id)]))
    assert answer.status_code == 413
    answer = _post(url, tokens["nobody"], "SimCam/raw/all", upload_body("SimCam/raw/all", [("0/a.fits", good,
                                                                                             data_id)]))
    assert answer.status_code == 403
    assert _snapshot(local) == before
    assert not list((local.root / ".skybutler" / "uploads").glob("*/*"))  # no scratch left


def test_skymap_through_the_server_matches_a_local_one(served):
    local, url, tokens, twin = served
    seen = []
    with Butler(url, token=tokens["boss"]) as remote:
        skymap, new = register_skymap(remote, "tiny", progress=lambda done, total: seen.append((done, total)),
                                      **SKYMAP)
        again, new_again = register_skymap(remote, "tiny", **SKYMAP)
        with pytest.raises(SkybutlerError, match="different configuration"):
            register_skymap(remote, "tiny", rings=6, patches=3)
    oracle, _ = register_skymap(twin, "tiny", **SKYMAP)
    assert new and not new_again and skymap.hash == oracle.hash == again.hash and seen and seen[-1][0] == seen[-1][1]
    for element in ("skymap", "tract", "patch"):
        assert len(local.registry.dimensions.fetch_all(element)) == len(twin.registry.dimensions.fetch_all(element))


def test_cli_on_a_url(served, night, monkeypatch):
    local, url, tokens, twin = served
    monkeypatch.setenv("SKYBUTLER_TOKEN", tokens["boss"])
    runner = CliRunner()
    for args in (["register-instrument", url, "SimCam"], ["ingest-raws", url, str(night)],
                 ["define-visits", url, "--instrument", "SimCam"], ["register-skymap", url, "tiny", "--rings", "5",
                                                                    "--patches", "3"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    again = runner.invoke(cli, ["ingest-raws", url, str(night)])
    assert "0 raw(s) ingested, 27 already ingested, 0 failed" in again.output
    refused = runner.invoke(cli, ["ingest-raws", url, str(night), "--transfer", "symlink"])
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1
    assert "through a server raws are uploaded" in refused.output


def _curated(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


CURATED = {"bias/0/2026-01-01.yaml": "level: 1000.0\n", "bias/R00_S01/2026-01-01.yaml": "level: 1011.0\n",
           "crosstalk/2026-01-01.yaml": "matrix: [[1.0, 0.001], [0.002, 1.0]]\n"}


def test_curated_calibrations_through_the_server_match_local_ones(served, tmp_path):
    """Ingested and certified as locally; a newer file then ends the validity of the one before it
    for its detector only (a decertification of one data ID, in the same batch as the certification)."""
    local, url, tokens, twin = served
    curated = _curated(tmp_path / "curated", CURATED)
    register_instrument(twin, "SimCam")
    with Butler(url, token=tokens["boss"]) as remote:
        register_instrument(remote, "SimCam")
        results = [write_curated_calibrations(remote, curated)]
        _curated(curated, {"bias/0/2026-03-01.yaml": "level: 1004.0\n"})
        results.append(write_curated_calibrations(remote, curated))
    with Butler(url, token=tokens["raw_writer"]) as remote:  # may not write SimCam/calib: each file says so
        refused = write_curated_calibrations(remote, curated)
    assert not refused.certified and {"may not write" in f.reason for f in refused.failures} == {True}
    oracle = _curated(tmp_path / "oracle", CURATED)
    expected = [write_curated_calibrations(twin, oracle)]
    _curated(oracle, {"bias/0/2026-03-01.yaml": "level: 1004.0\n"})
    expected.append(write_curated_calibrations(twin, oracle))
    def shown(ref, span) -> tuple:  # curated calibrations have random IDs: compared by what they are
        return ref.dataset_type.name, str(dict(ref.data_id.required)), ref.run, str(span)

    for got, want in zip(results, expected):
        assert [shown(r, s) for _, r, s in got.certified] == [shown(r, s) for _, r, s in want.certified]
        assert not got.failures and got.summary() == want.summary()
    for dataset_type in ("bias", "crosstalk"):
        assert sorted(shown(r, s) for r, s in local.collections.validity("SimCam/calib", dataset_type)) == \
            sorted(shown(r, s) for r, s in twin.collections.validity("SimCam/calib", dataset_type))
    assert len(local.collections.validity("SimCam/calib", "bias")) == 3


def test_a_batch_failing_on_the_server_half_way_leaves_nothing(served, night, monkeypatch):
    """A disk error while the server places the third file of a batch: the batch's records, rows
    and files already placed are all taken back; the client then sends the files one by one, as a
    local ingest retries them, and only the bad one is reported."""
    local, url, tokens, _ = served
    files = sorted(night.glob("*.fits"))
    victim = files[2].name
    original = transfer.ingest_file
    error = [OSError]

    def flaky(datastore, source, *args, **kwargs):
        if Path(source).name == victim:
            raise error[0](f"simulated disk error on {source}")
        return original(datastore, source, *args, **kwargs)

    with Butler(url, token=tokens["boss"]) as remote:
        register_instrument(remote, "SimCam")
        before = _snapshot(local)
        monkeypatch.setattr(transfer, "ingest_file", flaky)
        with pytest.raises(ServerError, match="internal error") as failed:  # a fault not foreseen
            ingest_raws(remote, files[:9])
        assert failed.value.status == 500 and "simulated" not in str(failed.value)  # nothing of its insides
        assert _snapshot(local) == before
        error[0] = TransferError  # a disk error the datastore reports: that file fails, the others go in
        # the same client goes on (the 500 said the connection closes, so it is not reused)
        alone = ingest_raws(remote, [files[2]])  # the batch of one file fails: nothing at all is written
        assert [Path(f.path).name for f in alone.failures] == [victim] and not alone.refs
        assert _snapshot(local) == before
        result = ingest_raws(remote, files[:9])
    assert [Path(f.path).name for f in result.failures] == [victim] and "simulated disk error" in \
        result.failures[0].reason
    assert len(result.refs) == 8 and len(_snapshot(local)["raws"]) == 8
    report = verify(local)
    assert report.consistent and report.files == 9, report  # 8 raws and the camera's description


def test_a_whole_exposure_file_is_refused_through_a_server_and_nothing_is_written(served, tmp_path):
    """One file holding several CCDs (MegaPrime) would be several raws sharing it: the client says so
    for that file, and the server refuses such an upload by name (a client other than skybutler's)."""
    pytest.importorskip("astro_metadata_translator")
    from multi_ccd_files import megaprime_exposure

    local, url, tokens, _ = served
    raw = megaprime_exposure(tmp_path / "1038843o.fits")
    with Butler(url, token=tokens["boss"]) as boss:
        register_instrument(boss, "MegaPrime")
        before = _snapshot(local)
        result = ingest_raws(boss, [raw])
    assert result.refs == [] and [(f.path, f.reason) for f in result.failures] == [(str(raw), (
        "holds 3 detectors (one per image extension): a whole-exposure file is not ingested through a server; "
        "ingest it into the repository itself, or split it into one file per detector"))]
    data_id = {"instrument": "MegaPrime", "exposure": 1038843, "detector": 0}
    answer = _post(url, tokens["boss"], "MegaPrime/raw/all",
                   upload_body("MegaPrime/raw/all", [("0/1038843o.fits", raw, data_id)]))
    assert answer.status_code == 422, answer.text
    assert answer.json()["message"] == ("1038843o.fits: holds 3 detectors (one per image extension): a "
                                        "whole-exposure file is not ingested through a server")
    assert _snapshot(local) == before
