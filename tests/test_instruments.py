"""Tests of skybutler.instruments: SimCam, its simulator, header translation, records."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from skybutler import Timespan
from skybutler.errors import SkybutlerError
from skybutler.instruments import (
    ExposureSpec,
    Instrument,
    InstrumentError,
    RawHeaderError,
    SimCam,
    UnknownInstrumentError,
    UnknownRawInstrumentError,
    day_obs_record,
    exposure_record,
    get_instrument,
    glint_detectors,
    glint_trail,
    group_record,
    metadata_from_header,
    plan_night,
    read_observation_metadata,
    simulate_night,
    star_catalog,
    write_exposure,
)

DAY_OBS = 20260301
SEED = 7


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A default small night: 6 science x 9 detectors, 3 biases, 3 flats per band."""
    out = tmp_path_factory.mktemp("night")
    paths = simulate_night(out, day_obs=DAY_OBS, n_science=6, bands=("g", "r"), n_bias=3, n_flat=3, seed=SEED)
    specs = plan_night(DAY_OBS, 6, ("g", "r"), 3, 3, SEED)
    return {"paths": paths, "specs": specs, "dir": out}


def _path(night: dict, spec: ExposureSpec, detector: int) -> Path:
    name = SimCam().detector(detector).full_name
    return Path(night["dir"]) / f"{spec.obs_id}_{name}.fits"


def _science(night: dict) -> list[ExposureSpec]:
    return [s for s in night["specs"] if s.observation_type == "science"]


# -- simulator ----------------------------------------------------------------------


def test_night_is_complete(night: dict) -> None:
    assert len(night["paths"]) == (6 + 3 + 3 * 2) * 9
    assert all(p.exists() for p in night["paths"])


def test_simulator_is_deterministic(tmp_path: Path) -> None:
    spec = _science({"specs": plan_night(DAY_OBS, seed=SEED)})[0]
    a = write_exposure(tmp_path / "a", spec, seed=SEED, detectors=[4])
    b = write_exposure(tmp_path / "b", spec, seed=SEED, detectors=[4])
    c = write_exposure(tmp_path / "c", spec, seed=SEED + 1, detectors=[4])
    assert a[0].read_bytes() == b[0].read_bytes()
    assert not np.array_equal(fits.getdata(a[0]), fits.getdata(c[0]))


def test_pixels_have_overscan_and_bias_level(night: dict) -> None:
    bias = next(s for s in night["specs"] if s.observation_type == "bias")
    with fits.open(_path(night, bias, 4)) as hdul:
        data, header = hdul[0].data.astype(float), hdul[0].header
    assert data.shape == (256, 256 + 32)
    assert header["DATASEC"] == "[1:256,1:256]" and header["BIASSEC"] == "[257:288,1:256]"
    overscan = data[:, 256:]
    assert 1000 < np.median(overscan) < 1300
    assert 2.0 < overscan.std() < 8.0  # read noise 6 e- / gain 1.2
    flat = next(s for s in night["specs"] if s.observation_type == "flat")
    flat_data = fits.getdata(_path(night, flat, 4)).astype(float)
    assert np.median(flat_data[:, :256]) - np.median(flat_data[:, 256:]) > 10000


def test_science_exposure_has_saturated_stars_somewhere(night: dict) -> None:
    spec = _science(night)[0]
    saturated = sum(int((fits.getdata(_path(night, spec, d)) == 65535).any()) for d in range(9))
    assert saturated >= 1


# -- metadata ----------------------------------------------------------------------


def test_science_header_translates(night: dict) -> None:
    spec = _science(night)[0]
    meta = read_observation_metadata(_path(night, spec, 5))
    assert meta.instrument == "SimCam"
    assert meta.exposure_id == DAY_OBS * 100000 + spec.seq_num
    assert meta.detector == 5
    assert meta.observation_type == "science"
    assert meta.physical_filter == "SimCam-g"
    # Taken after midnight on the next calendar date, still the same observing night.
    assert meta.datetime_begin.tai.isot.startswith("2026-03-02T01:00")
    assert meta.day_obs == DAY_OBS
    assert meta.exposure_time == 30.0 and meta.dark_time == 31.0
    assert (meta.datetime_end - meta.datetime_begin).sec == pytest.approx(30.0)
    assert meta.tracking_ra == pytest.approx(spec.ra) and meta.tracking_dec == pytest.approx(spec.dec)
    assert meta.sky_angle == pytest.approx(spec.sky_angle)
    assert 0.0 <= meta.zenith_angle < 60.0 and 0.0 <= meta.azimuth < 360.0
    assert meta.airmass == pytest.approx(1 / math.cos(math.radians(meta.zenith_angle)), rel=0.01)
    assert meta.obs_id == spec.obs_id and meta.seq_num == spec.seq_num
    assert meta.target_name == "SIMFIELD_1" and meta.science_program == "SIMSURVEY"
    assert meta.observation_reason == "science"
    assert meta.has_simulated is True and meta.can_see_sky is True


@pytest.mark.parametrize("kind", ["bias", "flat"])
def test_calibration_header_translates(night: dict, kind: str) -> None:
    spec = next(s for s in night["specs"] if s.observation_type == kind)
    meta = read_observation_metadata(_path(night, spec, 0))
    assert meta.observation_type == kind
    assert meta.day_obs == DAY_OBS
    assert meta.exposure_time == (0.0 if kind == "bias" else 5.0)
    assert meta.tracking_ra is None and meta.azimuth is None and meta.airmass is None
    assert meta.observation_reason == "calibration"
    assert meta.group == f"{DAY_OBS}_{kind}" + ("_g" if kind == "flat" else "")
    assert meta.physical_filter == "SimCam-g"


def test_records_from_metadata(night: dict) -> None:
    spec = _science(night)[0]
    meta = read_observation_metadata(_path(night, spec, 0))
    rec = exposure_record(meta)
    assert rec["id"] == meta.exposure_id and rec["day_obs"] == DAY_OBS and rec["group"] == meta.group
    assert rec["timespan"] == Timespan(meta.datetime_begin, meta.datetime_end)
    expected_keys = {
        "instrument", "id", "physical_filter", "day_obs", "group", "obs_id", "seq_num", "exposure_time",
        "dark_time", "observation_type", "observation_reason", "science_program", "target_name",
        "tracking_ra", "tracking_dec", "sky_angle", "azimuth", "zenith_angle", "airmass", "timespan",
        "seq_start", "seq_end", "has_simulated", "can_see_sky",
    }  # fmt: skip
    assert set(rec) == expected_keys
    day = day_obs_record(meta)
    assert day["id"] == DAY_OBS
    assert day["timespan"] == Timespan(Time("2026-03-01T12:00:00", scale="tai"), Time("2026-03-02T12:00:00", scale="tai"))
    assert day["timespan"].contains(meta.datetime_begin)
    assert group_record(meta) == {"instrument": "SimCam", "name": meta.group}


# -- WCS, stars, glints -----------------------------------------------------------------


def test_wcs_puts_catalog_stars_where_their_flux_is(night: dict) -> None:
    spec = _science(night)[1]
    stars = star_catalog(SEED, spec.ra, spec.dec, 0.2)
    checked = 0
    for det in (0, 4, 8):
        with fits.open(_path(night, spec, det)) as hdul:
            data, header = hdul[0].data.astype(float), hdul[0].header
        x, y = WCS(header).all_world2pix(stars["ra"], stars["dec"], 0)
        inside = (x > 5) & (x < 250) & (y > 5) & (y < 250)
        assert inside.sum() > 5
        sky = np.median(data[:, :256])
        brightest = np.argmin(np.where(inside, stars["mag_g"], np.inf))
        col, row = int(round(x[brightest])), int(round(y[brightest]))
        assert data[row, col] > sky + 2000
        checked += 1
    assert checked == 3


def test_star_catalog_is_consistent_between_queries() -> None:
    a = star_catalog(3, 150.0, 2.0, 0.2)
    b = star_catalog(3, 150.1, 2.05, 0.2)
    shared = set(a["id"]) & set(b["id"])
    assert len(shared) > 50
    ra_a = dict(zip(a["id"], a["ra"], strict=True))
    ra_b = dict(zip(b["id"], b["ra"], strict=True))
    assert all(ra_a[i] == ra_b[i] for i in shared)
    sep = np.hypot((a["ra"] - 150.0) * math.cos(math.radians(2.0)), a["dec"] - 2.0)
    assert sep.max() <= 0.2 + 1e-6
    other_seed = star_catalog(4, 150.0, 2.0, 0.2)
    assert len(other_seed) != len(a) or not np.array_equal(other_seed["ra"], a["ra"])


def test_glint_detectors_have_a_trail(night: dict) -> None:
    instrument = SimCam()
    with_glint = [s for s in _science(night) if glint_detectors(s.exposure_id)]
    assert with_glint, "a 6-exposure night has glints on every third exposure"
    for spec in with_glint:
        x0_deg, y0_deg, angle = glint_trail(spec.exposure_id)
        hit = glint_detectors(spec.exposure_id)
        for det in range(9):
            with fits.open(_path(night, spec, det)) as hdul:
                data, header = hdul[0].data.astype(float)[:, :256], hdul[0].header
            scale = instrument.pixel_scale * header["BINNING"] / 3600.0
            x0 = header["CRPIX1"] - 1 + x0_deg / scale
            y0 = header["CRPIX2"] - 1 + y0_deg / scale
            yy, xx = np.mgrid[0:256, 0:256]
            on_line = np.abs((xx - x0) * math.sin(angle) - (yy - y0) * math.cos(angle)) < 0.5
            excess = np.median(data[on_line]) - np.median(data) if on_line.sum() >= 5 else 0.0
            if det in hit and on_line.sum() >= 5:
                assert excess > 1000, (spec.obs_id, det)
            elif det not in hit:
                assert on_line.sum() == 0 or excess < 200, (spec.obs_id, det)
    assert glint_detectors(with_glint[0].exposure_id, "bias") == set()


# -- instruments --------------------------------------------------------------------------


def test_simcam_dimension_records() -> None:
    records = SimCam().dimension_records()
    assert records["instrument"] == [
        {
            "name": "SimCam",
            "class_name": "skybutler.instruments.simcam.SimCam",
            "detector_max": 9,
            "visit_max": SimCam().visit_max,
            "exposure_max": SimCam().visit_max,  # a visit is one exposure, with the same ID
        }
    ]
    assert [r["name"] for r in records["band"]] == sorted("ugrizy")
    assert {"instrument": "SimCam", "name": "SimCam-r", "band": "r"} in records["physical_filter"]
    assert len(records["detector"]) == 9
    assert records["detector"][4] == {
        "instrument": "SimCam", "id": 4, "full_name": "R00_S11", "purpose": "SCIENCE", "raft": "R00",
        "name_in_raft": "S11",
    }  # fmt: skip
    assert get_instrument("SimCam") == SimCam()
    with pytest.raises(UnknownInstrumentError, match="NoSuchCam"):
        get_instrument("NoSuchCam")


def test_yaml_instrument(tmp_path: Path) -> None:
    path = tmp_path / "tinycam.yaml"
    path.write_text(
        """
name: TinyCam
pixel_scale: 0.3
visit_max: 1000000
detector_defaults: {nx: 1024, ny: 512, pixel_size: 15.0}
detectors:
  - {id: 0, full_name: A, raft: R1, offset_x: -0.05}
  - {id: 3, full_name: B, raft: R1, offset_x: 0.05, purpose: WAVEFRONT}
filters:
  TinyCam-g: g
  TinyCam-r2: r
"""
    )
    cam = Instrument.from_yaml(path)
    assert get_instrument("TinyCam") is cam
    assert cam.detector(3).nx == 1024 and cam.detector(3).purpose == "WAVEFRONT"
    records = cam.dimension_records()
    assert records["instrument"][0]["detector_max"] == 4
    assert records["instrument"][0]["visit_max"] == 1000000
    assert {"instrument": "TinyCam", "name": "TinyCam-r2", "band": "r"} in records["physical_filter"]
    assert [d["full_name"] for d in records["detector"]] == ["A", "B"]
    wcs = WCS(cam.wcs_header(3, 10.0, 0.0, 0.0))
    ra, dec = wcs.all_pix2world([(1024 - 1) / 2], [(512 - 1) / 2], 0)
    assert ra[0] == pytest.approx(9.95, abs=1e-6) and dec[0] == pytest.approx(0.0, abs=1e-6)  # east is left

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Broken\npixel_scale: 0.2\ndetectors: [{id: 0}]\nfilters: {}\n")
    with pytest.raises(InstrumentError, match="bad.yaml"):
        Instrument.from_yaml(bad)


# -- errors -------------------------------------------------------------------------------


def _edited(night: dict, tmp_path: Path, **changes: object) -> Path:
    spec = _science(night)[0]
    path = tmp_path / "edited.fits"
    shutil.copy(_path(night, spec, 4), path)
    with fits.open(path, mode="update") as hdul:
        for key, value in changes.items():
            key = key.replace("_", "-")
            if value is None:
                del hdul[0].header[key]
            else:
                hdul[0].header[key] = value
    return path


def test_corrupt_file_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.fits"
    path.write_bytes(b"this is not FITS" * 200)
    with pytest.raises(RawHeaderError, match="corrupt.fits.*not a readable FITS file") as info:
        read_observation_metadata(path)
    assert isinstance(info.value, SkybutlerError) and info.value.path == str(path)


def test_unknown_instrument_error(night: dict, tmp_path: Path) -> None:
    path = _edited(night, tmp_path, INSTRUME="NoSuchCam")
    with pytest.raises(UnknownRawInstrumentError, match="edited.fits.*NoSuchCam"):
        read_observation_metadata(path)


def test_a_camera_no_translator_knows_is_named_with_what_to_do(tmp_path: Path) -> None:
    """A header of a camera skybutler cannot read (a Gemini one): the refusal names the camera, the
    cameras skybutler reads, and how to describe another one."""
    from astropy.io import fits

    path = tmp_path / "N20200101S0001.fits"
    fits.PrimaryHDU(np.zeros((4, 4), np.int16), fits.Header(
        {"INSTRUME": "GMOS-N", "TELESCOP": "Gemini-North", "DATE-OBS": "2020-01-01"})).writeto(path)
    with pytest.raises(UnknownRawInstrumentError, match="N20200101S0001.fits.*'GMOS-N'") as caught:
        read_observation_metadata(path)
    message = str(caught.value)
    assert "reads the raws of DECam, HSC" in message and "SuprimeCam" in message
    assert "'headers:' section" in message and "skybutler register-instrument REPO FILE" in message


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"EXPTIME": None}, "EXPTIME"),
        ({"OBSID": None}, "OBSID"),
        ({"RA": None}, "missing header keyword RA"),
        ({"SEQNUM": 99}, "EXPID .* contradicts SEQNUM 99"),
        ({"DETECTOR": "R00_S00"}, "DETECTOR 'R00_S00' contradicts CCDNUM 4"),
        ({"DATE_END": "2026-03-02T03:00:00.000"}, "DATE-END .* contradicts DATE-OBS"),
        ({"ZD": 45.0}, "ALTITUDE .* contradicts ZD"),
        ({"FILTER": "SimCam-q"}, "no physical filter 'SimCam-q'"),
        ({"OBSTYPE": "party"}, "OBSTYPE 'party'"),
    ],
)
def test_missing_or_contradictory_keys(night: dict, tmp_path: Path, changes: dict, reason: str) -> None:
    path = _edited(night, tmp_path, **changes)
    with pytest.raises(RawHeaderError, match=f"edited.fits: .*{reason}"):
        read_observation_metadata(path)


def test_an_exposure_is_identified_once_and_a_file_contradicting_it_is_still_refused(night: dict, monkeypatch) -> None:
    """The later files of an exposure take its translation over, its identity included: SimCam's
    EXPID is checked against DATE-OBS (an astropy time, ~1 ms) once an exposure, not once a file.
    The oracle for each file is its translation alone; a file whose EXPID, SEQNUM or DATE-OBS
    differs from its exposure's is translated and checked anew, and refused."""
    from skybutler.instruments import headers as translation
    from skybutler.instruments.translators.simcam import SimCamTranslator

    calls = []
    identify = SimCamTranslator.to_exposure_id

    def counted(self):
        calls.append(1)
        return identify(self)

    spec = _science(night)[1]
    headers = [dict(fits.getheader(_path(night, spec, d))) for d in range(9)]
    alone = []
    for header in headers:
        translation._EXPOSURES.clear()
        alone.append(metadata_from_header(header, "f.fits"))
    translation._EXPOSURES.clear()
    monkeypatch.setattr(SimCamTranslator, "to_exposure_id", counted)
    together = [metadata_from_header(header, "f.fits") for header in headers]
    assert together == alone
    assert len(calls) <= 3  # the first file's translation; none for the 8 others
    later = {key: value for key, value in headers[4].items()  # its end is then begin + EXPTIME
             if key not in ("DATE-END", "MJD-END")}
    for changes, reason in (({"SEQNUM": 99}, "EXPID .* contradicts SEQNUM 99"),
                            ({"DATE-OBS": "2026-03-03T01:00:00.000"}, "contradicts the observing night")):
        with pytest.raises(RawHeaderError, match=f"late.fits: .*{reason}"):
            metadata_from_header({**later, **changes}, "late.fits")


def test_real_camera_header_translates_through_the_same_path() -> None:
    """An HSC-style header needs no skybutler code: the library's translator handles it."""
    header = {
        "SIMPLE": True, "NAXIS": 2, "TELESCOP": "Subaru", "UT-STR": "06:15:55.908", "MJD-STR": 56598.26106374757, "DATE-OBS": "2013-11-02", "UT": "06:15:55.927",
        "MJD": 56598.26106397435, "UT-END": "06:16:27.928", "MJD-END": 56598.26143435203,
        "EXP-ID": "HSCA90402400", "FRAMEID": "HSCA90402512", "DET-ID": 50, "T_CCDSN": "120",
        "EXPTIME": 30.0, "DATA-TYP": "OBJECT", "OBJECT": "STRIPE82L", "FILTER01": "HSC-i", "PROP-ID": "o13015",
        "RA2000": "21:22:59.982", "DEC2000": "+00:30:00.07", "AZIMUTH": 226.68922661, "ALTITUDE": 63.04359233,
        "AIRMASS": 1.1216, "INR-STR": 43.205407, "INST-PA": "0.000", "OBS-ALOC": "Observation", "T_AG": False,
        "OUT-TMP": 272.35, "OUT-HUM": 33.1, "OUT-PRS": 621.7,
    }  # fmt: skip
    meta = metadata_from_header(header, "hsc-raw.fits")
    assert meta.instrument == "HSC" and meta.detector == 50 and meta.physical_filter == "HSC-I"
    assert meta.observation_type == "science" and meta.exposure_time == 30.0
    assert meta.day_obs == 20131102 and meta.day_obs_offset == 0.0  # Subaru's rule: the TAI date, no offset
    assert meta.tracking_dec == pytest.approx(0.5, abs=1e-3)
