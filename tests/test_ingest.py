"""Raw ingest and visit definition on simulated SimCam nights."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from click.testing import CliRunner

from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.datastore import transfer
from skybutler.dimensions import regions
from skybutler.errors import TransferError
from skybutler.ingest import define_visits, find_raw_files, ingest_raws
from skybutler.ingest.visits import detector_corners
from skybutler.instruments import SimCam, simulate_night, star_catalog
from skybutler.models import deterministic_dataset_id

SIZE = 32  # pixels per detector side: the sky is the same at any size, and tiny files are fast
NIGHT1, NIGHT2 = 20260301, 20260302


@pytest.fixture(scope="module")
def night1(tmp_path_factory) -> Path:
    """1 bias, 2 flats (g, r) and 3 science exposures of 9 detectors: 54 files."""
    out = tmp_path_factory.mktemp("night1")
    simulate_night(out, day_obs=NIGHT1, n_science=3, n_bias=1, n_flat=1, bands=("g", "r"), size=SIZE)
    return out


@pytest.fixture(scope="module")
def night2(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("night2")
    simulate_night(out, day_obs=NIGHT2, n_science=2, n_bias=0, n_flat=0, bands=("i",), size=SIZE)
    return out


def raw_ids(butler: Butler, run: str = "SimCam/raw/all") -> dict[tuple, object]:
    refs = butler.registry.refs_by_id(butler.registry.datasets.ids_in_collection(run, "raw"))
    return {r.data_id.required_values: r.id for r in refs}


def test_same_raw_same_id_in_two_repositories(night1, tmp_path):
    ids = []
    for name in ("site_a", "site_b"):
        with Butler.create(tmp_path / name) as butler:
            result = ingest_raws(butler, [night1], transfer="copy")
            assert result.ok and len(result.refs) == 54 and result.runs == ["SimCam/raw/all"]
            ids.append(raw_ids(butler))
    assert ids[0] == ids[1] and len(ids[0]) == 54
    ref = result.refs[0]
    assert ref.id == deterministic_dataset_id("raw", ref.data_id)
    with Butler(tmp_path / "site_b") as butler:  # the stored raw reads back with its header
        header = butler.get(ref, component="header")
        assert header["EXPID"] == ref.data_id["exposure"] and header["CCDNUM"] == ref.data_id["detector"]
        exposure = butler.get_record("exposure", instrument="SimCam", id=ref.data_id["exposure"])
        assert exposure["day_obs"] == NIGHT1 and exposure["obs_id"] == header["OBSID"]
        assert len(butler.registry.dimensions.fetch_all("detector")) == 9


def test_reingest_is_a_no_op(night1, tmp_path):
    with Butler.create(tmp_path / "repo") as butler:
        first = ingest_raws(butler, night1, transfer="symlink")
        before = raw_ids(butler)
        again = ingest_raws(butler, [night1, night1 / "SC_O_20260301_000001_R00_S00.fits"], transfer="symlink")
        assert again.ok and again.refs == [] and len(again.already_ingested) == 54
        assert raw_ids(butler) == before and len(first.refs) == 54


def _edited(source: Path, target: Path, **cards) -> Path:
    with fits.open(source) as hdus:
        for key, value in cards.items():
            hdus[0].header[key] = value
        hdus.writeto(target)
    return target


def test_bad_files_are_reported_and_the_rest_ingested(night1, tmp_path):
    raws = tmp_path / "raws"
    shutil.copytree(night1, raws)
    files = sorted(raws.glob("SC_O_20260301_000004_*.fits"))  # a science exposure
    (raws / "corrupt.fits").write_bytes(b"SIMPLE  =   this is not FITS at all")
    bad = tmp_path / "bad"
    bad.mkdir()
    # Each bad file replaces a good one, so its data ID is not ingested from elsewhere.
    _edited(files[0], bad / "a.fits", INSTRUME="NoSuchCam")
    _edited(files[1], bad / "b.fits", FILTER="SimCam-q")
    _edited(files[2], bad / "c.fits", CCDNUM=42)
    missing_key = _edited(files[3], bad / "d.fits")
    with fits.open(missing_key, mode="update") as hdus:
        del hdus[0].header["EXPID"]
    for f in files[:4]:
        f.unlink()
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, [raws, bad], transfer="copy")
        reasons = {Path(f.path).name: f.reason for f in result.failures}
        assert set(reasons) == {"corrupt.fits", "a.fits", "b.fits", "c.fits", "d.fits"}
        assert "FITS" in reasons["corrupt.fits"]
        assert "NoSuchCam" in reasons["a.fits"]
        assert "SimCam-q" in reasons["b.fits"]
        assert "42" in reasons["c.fits"]
        assert "EXPID" in reasons["d.fits"]
        assert len(result.refs) == 50
        ingested = raw_ids(butler)
        exposure = 2026030100004
        assert {d for (_, e, d) in ingested if e == exposure} == set(range(4, 9))


def test_a_batch_that_fails_is_retried_file_by_file(night1, tmp_path, monkeypatch):
    """A transfer error in the middle of a batch leaves nothing of that batch behind; the files are
    then ingested one by one and only the bad one is reported."""
    original = transfer.ingest_file
    victim = "SC_O_20260301_000002_R00_S11.fits"

    def flaky(datastore, source, *args, **kwargs):
        if Path(source).name == victim:
            raise TransferError(f"simulated disk error on {source}")
        return original(datastore, source, *args, **kwargs)

    monkeypatch.setattr(transfer, "ingest_file", flaky)
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, night1, transfer="copy")
        assert [Path(f.path).name for f in result.failures] == [victim]
        assert "simulated disk error" in result.failures[0].reason
        assert len(result.refs) == 53
        stored = [p for p in butler.datastore.walk() if p.endswith(".fits")]
        assert len(stored) == 53 and not any(".tmp-" in p for p in butler.datastore.walk())


def test_incremental_nights(night1, night2, tmp_path):
    with Butler.create(tmp_path / "repo") as butler:
        assert len(ingest_raws(butler, night1).refs) == 54
        second = ingest_raws(butler, [night1, night2])
        assert second.ok and len(second.refs) == 18 and len(second.already_ingested) == 54
        assert {r["day_obs"] for r in butler.registry.dimensions.fetch_all("day_obs")} == {NIGHT1, NIGHT2}
        assert len(butler.registry.dimensions.fetch_all("exposure")) == 8
        assert len(raw_ids(butler)) == 72
        assert {r["physical_filter"] for r in butler.registry.dimensions.fetch_all("exposure")} == {
            "SimCam-g", "SimCam-r", "SimCam-i"}


def test_process_pool_reads_the_same_headers(night2, tmp_path):
    with Butler.create(tmp_path / "a") as a, Butler.create(tmp_path / "b") as b:
        sequential = ingest_raws(a, night2, processes=1)
        pooled = ingest_raws(b, night2, processes=2)
        assert sequential.ok and pooled.ok
        assert raw_ids(a) == raw_ids(b)
        assert [dict(r) for r in a.registry.dimensions.fetch_all("exposure")] == [
            dict(r) for r in b.registry.dimensions.fetch_all("exposure")]


def _registry_content(butler: Butler) -> tuple:
    """The raws (data ID, ID, facts with their regions' bytes) and the exposure records."""
    refs = butler.registry.refs_by_id(butler.registry.datasets.ids_in_collection("SimCam/raw/all", "raw"))
    facts = {r.data_id.required_values: (r.id, butler.get_metadata(r)) for r in refs}
    for _, fact in facts.values():
        fact["region"] = regions.encode(fact["region"])
    exposures = sorted((dict(r) for r in butler.registry.dimensions.fetch_all("exposure")), key=lambda r: r["exposure"])
    return facts, exposures


def test_a_pool_stores_chunks_as_they_are_read(night1, tmp_path, make_butler):
    """Batches stored while the pool reads on (on every stack): the same raws, facts, regions, exposure
    records and failures (in file order) as one sequential batch into SQLite; a data ID repeated in a
    later chunk is refused."""
    raws = tmp_path / "raws"
    shutil.copytree(night1, raws)
    (raws / "SC_O_20260301_000002_corrupt.fits").write_bytes(b"SIMPLE  =   not FITS")
    shutil.copy(raws / "SC_O_20260301_000001_R00_S00.fits", raws / "zz_copy.fits")  # after 54 others
    with Butler.create(tmp_path / "a") as a, make_butler("b") as b:
        sequential = ingest_raws(a, raws, processes=1)
        streamed = ingest_raws(b, raws, processes=2, batch_size=5)
        assert len(streamed.refs) == len(sequential.refs) == 54
        assert [(Path(f.path).name, f.reason) for f in streamed.failures] == [
            (Path(f.path).name, f.reason) for f in sequential.failures]
        assert [Path(f.path).name for f in streamed.failures] == ["SC_O_20260301_000002_corrupt.fits",
                                                                   "zz_copy.fits"]
        assert _registry_content(a) == _registry_content(b)


def test_a_failing_batch_stops_the_pool_and_keeps_the_batches_before(night1, tmp_path, monkeypatch):
    from skybutler.ingest import raws as raw_ingest

    calls = []
    original = raw_ingest._ingest_batch

    def fail_third(butler, run, batch, *args):
        calls.append(len(batch))
        if len(calls) == 3:
            raise RuntimeError("simulated failure storing the third batch")
        return original(butler, run, batch, *args)

    monkeypatch.setattr(raw_ingest, "_ingest_batch", fail_third)
    with Butler.create(tmp_path / "repo") as butler:
        with pytest.raises(RuntimeError, match="third batch"):
            ingest_raws(butler, night1, processes=2, batch_size=10)
        assert len(raw_ids(butler)) == sum(calls[:2]) == 20


def test_find_raw_files(night2, tmp_path):
    (tmp_path / "notes.txt").write_text("not a raw")
    listed = find_raw_files([night2, tmp_path, night2 / "SC_O_20260302_000001_R00_S00.fits"])
    assert len(listed) == 18 and all(p.suffix == ".fits" for p in listed)


def test_cli_ingest_raws(night2, tmp_path):
    repo = tmp_path / "repo"
    runner = CliRunner()
    assert runner.invoke(cli, ["create", str(repo)]).exit_code == 0
    broken = tmp_path / "broken.fits"
    broken.write_text("garbage")
    result = runner.invoke(cli, ["ingest-raws", str(repo), str(night2), str(broken), "-t", "copy", "-j", "1"])
    assert result.exit_code == 1, result.output
    assert "broken.fits" in result.stdout and "18 raw(s) ingested" in result.stdout
    assert "could not be ingested" in result.stderr
    again = runner.invoke(cli, ["ingest-raws", str(repo), str(night2)])
    assert again.exit_code == 0, again.output
    assert "already ingested" in again.stdout and "0 raw(s) ingested, 18 already ingested" in again.stdout
    visits = runner.invoke(cli, ["define-visits", str(repo), "--instrument", "SimCam"])
    assert visits.exit_code == 0 and "2 visit(s) defined" in visits.stdout


# -- visits ---------------------------------------------------------------------------


def test_tan_corners_match_astropy():
    camera = SimCam()
    header = camera.wcs_header(5, 210.0, -45.0, 30.0)
    det = camera.detector(5)
    expected = WCS(header).all_pix2world([[0.5, 0.5], [det.nx + 0.5, 0.5]], 1)
    got = detector_corners(camera, 5, 210.0, -45.0, 30.0)[:2]
    assert np.allclose(got, expected, atol=1e-9)


def test_define_visits(night1, tmp_path):
    with Butler.create(tmp_path / "repo") as butler:
        ingest_raws(butler, night1)
        result = define_visits(butler)
        science = [r for r in butler.registry.dimensions.fetch_all("exposure") if r["observation_type"] == "science"]
        assert sorted(v for _, v in result.defined) == sorted(r["exposure"] for r in science)
        assert define_visits(butler).defined == []  # idempotent
        camera = SimCam()
        for exposure in science:
            visit = butler.get_record("visit", instrument="SimCam", id=exposure["exposure"])
            assert visit["timespan"] == exposure["timespan"]
            assert visit["physical_filter"] == exposure["physical_filter"]
            assert butler.get_record("visit_definition", instrument="SimCam", exposure=exposure["exposure"],
                                     visit=exposure["exposure"]) is not None
            _check_stars_inside(butler, camera, exposure, visit["region"])


def _check_stars_inside(butler, camera, exposure, visit_region) -> None:
    """Every catalog star that lands on a detector is inside the visit region and that
    detector's region; stars well off the focal plane are outside the visit region."""
    ra, dec, angle = exposure["tracking_ra"], exposure["tracking_dec"], exposure["sky_angle"]
    stars = star_catalog(0, ra, dec, 0.2)
    on_some_detector = np.zeros(len(stars), dtype=bool)
    for det in camera.detectors:
        record = butler.get_record("visit_detector_region", instrument="SimCam", visit=exposure["exposure"],
                                   detector=det.id)
        x, y = WCS(camera.wcs_header(det.id, ra, dec, angle)).all_world2pix(stars["ra"], stars["dec"], 1)
        inside = (x > 1) & (x < det.nx) & (y > 1) & (y < det.ny)
        on_some_detector |= inside
        for s_ra, s_dec in zip(stars["ra"][inside], stars["dec"][inside]):
            point = regions.point(s_ra, s_dec)
            assert record["region"].contains(point) and visit_region.contains(point)
    assert on_some_detector.sum() > 10
    far = regions.point(ra, dec + 0.15)  # the focal plane is ~0.1 degree across
    assert not visit_region.contains(far)
