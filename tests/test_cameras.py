"""Real cameras out of the box: built-in descriptions, their observing days, first-use
registration, bad input, ingest with no network, and updating a stored description (translation
checked by astro-metadata-translator is in test_camera_translators.py, cameras of one's own from
YAML in test_own_camera.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time, TimeDelta
from click.testing import CliRunner

import camera_headers as ch
from skybutler import Butler, Timespan
from skybutler.cli.main import cli
from skybutler.ingest import ingest_raws
from skybutler.instruments import (
    RawHeaderError,
    builtin_camera_names,
    day_obs_record,
    get_instrument,
    metadata_from_header,
)
from skybutler.instruments import instrument as instrument_module

HERE = Path(__file__).parent


def write_raw(path: Path, header: dict) -> Path:
    """A small raw FITS file with this primary header."""
    hdu = fits.PrimaryHDU(np.zeros((8, 8), dtype=np.int16))
    for key, value in header.items():
        if key not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND"):
            hdu.header[key] = value
    hdu.writeto(path)
    return path


# -- every camera translates and is described ------------------------------------------------

CASES = [
    # builder, instrument, exposure, detector, detector name, physical filter, band
    (ch.hsc, "HSC", 904024, 50, "1_12", "HSC-R2", "r"),
    (ch.suprimecam, "SuprimeCam", 40535, 7, "clarisse", "W-S-I+", "i"),
    (ch.decam, "DECam", 1234567, 25, "S1", "r DECam SDSS c0002 6415.0 1480.0", "r"),
    (ch.megaprime, "MegaPrime", 1849375, 14, "ccd14", "r.MP9602", "r"),
    (ch.sdss, "Imager on SDSS 2.5m", 6377, 15, "g4", "g", "g"),
    (ch.lsstcam, "LSSTCam", 2025053100123, 94, "R22_S11", "r_57", "r"),
    (ch.lsstcomcam, "LSSTComCam", 2024111900045, 4, "R22_S11", "i_06", "i"),
    (ch.latiss, "LATISS", 2023083100300, 0, "RXX_S00", "SDSSr_65mm~empty", "r"),
]


@pytest.mark.parametrize(("builder", "name", "exposure", "detector", "det_name", "physical_filter", "band"), CASES,
                         ids=[c[1] for c in CASES])
def test_camera_header_translates_and_is_described(builder, name, exposure, detector, det_name, physical_filter,
                                                   band) -> None:
    meta = metadata_from_header(builder(), f"{name}.fits")
    assert (meta.instrument, meta.exposure_id, meta.detector, meta.physical_filter) == (
        name, exposure, detector, physical_filter)
    assert meta.observation_type == "science" and meta.tracking_ra is not None and meta.airmass is not None
    camera = get_instrument(name)
    assert camera.detector(detector).full_name == det_name
    assert camera.band_of(physical_filter) == band
    assert day_obs_record(meta)["timespan"].contains(meta.datetime_begin)


def test_builtin_cameras() -> None:
    assert {"HSC", "SuprimeCam", "DECam", "MegaPrime", "LSSTCam", "LSSTComCam", "LATISS"} <= set(
        builtin_camera_names())
    lsst = get_instrument("LSSTCam")
    assert len(lsst.detectors) == 205 and lsst.detector(0).full_name == "R01_S00"
    assert lsst.detector(188).full_name == "R43_S22" and lsst.detector(189).purpose == "GUIDER"
    # Science sensors 42.25 mm apart at 0.2"/10 um: neighbours 0.1174 degrees apart.
    assert lsst.detector(1).offset_x - lsst.detector(0).offset_x == pytest.approx(42.25 * 20 / 3600)
    hsc = get_instrument("HSC")
    assert len(hsc.detectors) == 112 and hsc.detector(104).purpose == "FOCUS"
    assert sorted(d.id for d in get_instrument("DECam").detectors) == list(range(1, 63))


def test_detectors_are_numbered_as_the_translators_number_them() -> None:
    """The library's own tables are the oracle for the cameras it knows."""
    from astro_metadata_translator.translators import DecamTranslator, HscTranslator, SdssTranslator

    hsc = get_instrument("HSC")
    assert [hsc.detector(i).full_name for i in range(112)] == list(HscTranslator._DETECTOR_NUM_TO_UNIQUE_NAME)
    decam = get_instrument("DECam")
    assert all(decam.detector(i).full_name == n for i, n in DecamTranslator.detector_names.items())
    sdss = get_instrument("Imager on SDSS 2.5m")
    assert all(sdss.detector(i).full_name == n for n, i in SdssTranslator.detector_name_id_map.items())
    for detector in (0, 9, 17):  # MegaPrime numbers its detectors by the ccdNN extension name
        meta = metadata_from_header(ch.megaprime(detector=detector), "m.fits")
        assert meta.detector == detector and get_instrument("MegaPrime").detector(detector).full_name == f"ccd{detector:02d}"


# -- the observing day of each camera, at its boundary -------------------------------------


@pytest.mark.parametrize(("builder", "before_utc", "after_utc", "day_before", "offset_h"), [
    # Subaru and CFHT: the TAI date (TAI is UTC + 37 s): 23:59:00 UTC is still the 1st, 23:59:30 the 2nd.
    (ch.hsc, "2024-03-01T23:59:00", "2024-03-01T23:59:30", 20240301, 0),
    (ch.suprimecam, "2008-03-01T23:59:00", "2008-03-01T23:59:30", 20080301, 0),
    (ch.megaprime, "2015-03-01T23:59:00", "2015-03-01T23:59:30", 20150301, 0),
    (ch.sdss, "2006-10-01T23:59:00", "2006-10-01T23:59:30", 20061001, 0),
    # DECam and Rubin: the day begins at 12:00 TAI.
    (ch.decam, "2024-03-01T11:59:00", "2024-03-01T11:59:30", 20240229, 12),
], ids=["HSC", "SuprimeCam", "MegaPrime", "SDSS", "DECam"])
def test_day_obs_at_the_boundary(builder, before_utc, after_utc, day_before, offset_h) -> None:
    before = metadata_from_header(builder(utc=before_utc), "before.fits")
    after = metadata_from_header(builder(utc=after_utc), "after.fits")
    text = str(day_before)
    day_after = int((Time(f"{text[:4]}-{text[4:6]}-{text[6:]}") + TimeDelta(1, format="jd")).strftime("%Y%m%d"))
    assert (before.day_obs, after.day_obs) == (day_before, day_after)
    assert before.day_obs_offset == after.day_obs_offset == offset_h * 3600
    for meta in (before, after):
        span = day_obs_record(meta)["timespan"]
        assert span.contains(meta.datetime_begin)
        assert span.begin.tai.isot.endswith(f"T{offset_h:02d}:00:00.000")


@pytest.mark.parametrize("builder", [ch.lsstcam, ch.lsstcomcam, ch.latiss], ids=["LSSTCam", "LSSTComCam", "LATISS"])
def test_rubin_day_obs_rule(builder) -> None:
    """Without DAYOBS the day begins at 12:00 TAI; with it, the header's day is the exposure's."""
    header = builder(utc="2025-06-02T11:59:00")
    del header["DAYOBS"]
    assert metadata_from_header(header, "a.fits").day_obs == 20250601  # 11:59:37 TAI
    header = builder(utc="2025-06-02T11:59:30")
    del header["DAYOBS"]
    meta = metadata_from_header(header, "b.fits")
    assert meta.day_obs == 20250602 and meta.exposure_id == 20250602 * 100_000 + header["SEQNUM"]
    assert day_obs_record(meta)["timespan"].contains(meta.datetime_begin)


# -- recognise and register on first ingest ---------------------------------------------------


def test_ingest_recognises_and_registers_cameras(tmp_path) -> None:
    raws = tmp_path / "raws"
    raws.mkdir()
    write_raw(raws / "hsc-50.fits", ch.hsc(detector=50))
    write_raw(raws / "hsc-51.fits", ch.hsc(detector=51))
    write_raw(raws / "decam-25.fits", ch.decam(detector=25))
    write_raw(raws / "lsstcam-94.fits", ch.lsstcam())
    repo = tmp_path / "repo"
    runner = CliRunner()
    assert runner.invoke(cli, ["create", str(repo)]).exit_code == 0
    result = runner.invoke(cli, ["ingest-raws", str(repo), str(raws), "-j", "1"])
    assert result.exit_code == 0, result.output
    for name in ("HSC", "DECam", "LSSTCam"):
        assert f"registered camera {name} on first use" in result.stdout
    assert "4 raw(s) ingested" in result.stdout
    with Butler(repo) as butler:
        refs = butler.query_datasets("raw", collections=["HSC/raw/all", "DECam/raw/all", "LSSTCam/raw/all"])
        got = sorted((r.data_id["instrument"], r.data_id["exposure"], r.data_id["detector"]) for r in refs)
        assert got == [("DECam", 1234567, 25), ("HSC", 904024, 50), ("HSC", 904024, 51),
                       ("LSSTCam", 2025053100123, 94)]
        assert len(butler.registry.dimensions.fetch_all("detector")) == 112 + 62 + 205
        hsc_exposure = butler.get_record("exposure", instrument="HSC", id=904024)
        assert hsc_exposure["day_obs"] == 20240301 and hsc_exposure["physical_filter"] == "HSC-R2"
        assert butler.get_record("physical_filter", instrument="HSC", name="HSC-R2")["band"] == "r"
    again = runner.invoke(cli, ["ingest-raws", str(repo), str(raws)])
    assert again.exit_code == 0 and "registered camera" not in again.stdout
    assert "0 raw(s) ingested, 4 already ingested" in again.stdout


# -- bad input: a per-file error naming the file and the reason; the rest goes in ---------------


@pytest.fixture
def translator_without_description():
    """A header translator for 'NoDescCam', which skybutler has no description of."""
    from astro_metadata_translator import FitsTranslator, MetadataTranslator

    class NoDescriptionTranslator(FitsTranslator):
        name = "NoDescCam"
        supported_instrument = "NoDescCam"
        _const_map = {"instrument": "NoDescCam"}

        @classmethod
        def can_translate(cls, header, filename=None):
            return header.get("INSTRUME") == "NoDescCam"

    yield NoDescriptionTranslator
    MetadataTranslator.translators.pop("NoDescCam", None)


def test_bad_raws_are_reported_and_the_rest_ingested(tmp_path, translator_without_description) -> None:
    raws = tmp_path / "raws"
    raws.mkdir()
    write_raw(raws / "good-50.fits", ch.hsc(detector=50))
    write_raw(raws / "good-51.fits", ch.hsc(detector=51))
    unreadable = ch.hsc(detector=52)
    del unreadable["DET-ID"]
    write_raw(raws / "no-detector-card.fits", unreadable)
    write_raw(raws / "unknown-filter.fits", ch.hsc(detector=53, filt="HSC-Q"))
    write_raw(raws / "unknown-detector.fits", ch.hsc(detector=140))
    write_raw(raws / "no-description.fits", {"INSTRUME": "NoDescCam", "DATE-OBS": "2024-01-01T00:00:00"})
    write_raw(raws / "nobody.fits", {"INSTRUME": "MysteryCam"})
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, raws, processes=1)
        reasons = {Path(f.path).name: f.reason for f in result.failures}
        assert set(reasons) == {"no-detector-card.fits", "unknown-filter.fits", "unknown-detector.fits",
                                "no-description.fits", "nobody.fits"}
        assert "DET-ID" in reasons["no-detector-card.fits"]
        assert "no physical filter 'HSC-Q'" in reasons["unknown-filter.fits"]
        assert "no detector 140" in reasons["unknown-detector.fits"]
        assert "'NoDescCam' has a header translator but no skybutler description" in reasons["no-description.fits"]
        assert "MysteryCam" in reasons["nobody.fits"]
        assert sorted(r.data_id["detector"] for r in result.refs) == [50, 51]
    with pytest.raises(RawHeaderError, match=r"^x\.fits: .*no physical filter 'HSC-Q'"):
        metadata_from_header(ch.hsc(filt="HSC-Q"), "x.fits")


@pytest.mark.parametrize(("builder", "dropped", "prop"), [
    (ch.decam, ("ZD",), "altaz_begin"),
    (ch.decam, ("TELRA",), "tracking_radec"),
    (ch.hsc, ("ALTITUDE",), "altaz_begin"),
], ids=["decam-no-ZD", "decam-no-TELRA", "hsc-no-ALTITUDE"])
def test_a_raw_missing_a_card_is_refused_naming_the_file_and_the_card(tmp_path, builder, dropped, prop) -> None:
    """A science raw without a card its pointing is read from: the translator's own message says
    only that the property could not be found; the refusal names the file, the property and the
    card(s) the translator looked for and did not find."""
    header = builder()
    for card in dropped:
        del header[card]
    raws = tmp_path / "raws"
    raws.mkdir()
    write_raw(raws / "broken.fits", header)
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, raws, processes=1)
        ((path, reason),) = [(Path(f.path).name, f.reason) for f in result.failures]
        assert path == "broken.fits" and prop in reason and all(card in reason for card in dropped), reason
        assert result.refs == []
    with pytest.raises(RawHeaderError, match=rf"^broken\.fits: .*{prop}.*did not find: .*{dropped[0]}"):
        metadata_from_header(header, "broken.fits")


def test_a_real_shaped_decam_raw_ingests_as_the_translator_reads_it(tmp_path) -> None:
    """A DECam raw as the archive serves it: tile-compressed (.fits.fz), the exposure's cards in
    an empty primary HDU and a compressed extension for its CCD, a card whose value is the bare
    word NaN, a long string continued (CONTINUE) and a long keyword (HIERARCH): it ingests with
    what astro-metadata-translator reads from the merged headers (the oracle).  A file holding
    two CCDs' extensions is a whole exposure: one raw per CCD, sharing the file (see
    test_multi_ccd.py)."""
    from astro_metadata_translator import ObservationInfo
    from astro_metadata_translator.file_helpers import read_basic_metadata_from_file

    exposure = ch.decam(exposure=177764)
    primary = fits.PrimaryHDU()
    for key, value in exposure.items():
        if key not in ("SIMPLE", "BITPIX", "NAXIS", "CCDNUM", "DETPOS"):
            primary.header[key] = value
    primary.header["OBS-LAT"], primary.header["OBS-LONG"] = -30.16606, 70.81489  # numbers, as in the archive's
    primary.header["PROGRAM"] = "Large Scale Structure in COSMOS: A Calibration Field for DECam Extragalactic Surveys&"
    with pytest.warns(fits.verify.VerifyWarning, match="HIERARCH"):
        primary.header["TIME_RECORDED"] = "2024-03-01T03:02:33.540188"
    primary.header.append(fits.Card.fromstring(f"{'LSKYPOW':8s}= {'NaN':>20s}"))
    extensions = []
    for ccd, name in ((25, "S1"), (1, "S29")):
        ext = fits.CompImageHDU(np.zeros((16, 16), dtype=np.int16))
        ext.header["CCDNUM"], ext.header["DETPOS"], ext.header["EXTNAME"] = ccd, name, name
        extensions.append(ext)
    raws = tmp_path / "raws"
    raws.mkdir()
    fits.HDUList([primary, extensions[0]]).writeto(raws / "DECam_00177764_S1.fits.fz", output_verify="ignore")
    fits.HDUList([primary.copy(), *extensions]).writeto(raws / "two_ccds.fits.fz", output_verify="ignore")
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, raws, processes=1)
        assert [(Path(f.path).name, f.reason) for f in result.failures] == [
            ("two_ccds.fits.fz", "same data ID {'instrument': 'DECam', 'exposure': 177764, 'detector': 25} as "
                                 f"{raws / 'DECam_00177764_S1.fits.fz'}")]
        assert [r.data_id["detector"] for r in result.refs] == [25]
        one = str(raws / "DECam_00177764_S1.fits.fz")
        info = ObservationInfo(read_basic_metadata_from_file(one, -1), filename=one)
        record = butler.get_record("exposure", instrument="DECam", exposure=177764)
        assert (record["obs_id"], record["physical_filter"], record["day_obs"], record["exposure_time"]) == (
            info.observation_id, info.physical_filter, info.observing_day, info.exposure_time.to_value("s"))
        assert record["timespan"] == Timespan(info.datetime_begin, info.datetime_end)
        assert record["tracking_ra"] == pytest.approx(info.tracking_radec.icrs.ra.deg, abs=1e-9)
        assert record["science_program"] == info.science_program == exposure["PROPID"]
    with Butler.create(tmp_path / "other") as butler:
        both = ingest_raws(butler, [raws / "two_ccds.fits.fz"], processes=1)
        assert both.failures == [] and [(r.data_id["detector"], r.artifact.formatter) for r in both.refs] == [
            (25, "fits-hdu:1"), (1, "fits-hdu:2")]


def test_hsc_focus_ccds_ingest_and_an_unnumbered_ccd_is_refused_by_name(tmp_path) -> None:
    """HSC's 8 focus CCDs (DET-ID 104-111, the translator's numbers) are described and ingest;
    its 4 guide CCDs have no number in the translator (nor a published position), so a header
    claiming DET-ID 112 is refused with the reason, and the rest of the night goes in."""
    raws = tmp_path / "raws"
    raws.mkdir()
    for det in (50, 104, 111):
        write_raw(raws / f"HSC-{det}.fits", ch.hsc(detector=det))
    write_raw(raws / "HSC-112.fits", ch.hsc(detector=112))
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, raws, processes=1)
        assert sorted(r.data_id["detector"] for r in result.refs) == [50, 104, 111]
        assert [(Path(f.path).name, f.reason) for f in result.failures] == [
            ("HSC-112.fits", "instrument 'HSC' has no detector 112")]
        records = butler.query_dimension_records("detector", where="instrument = 'HSC'")
        purposes = {r["detector"]: r["purpose"] for r in records}
        assert purposes[104] == purposes[111] == "FOCUS" and purposes[50] == "SCIENCE"


# -- no network ----------------------------------------------------------------------------------


def _can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rn", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -rn (a network namespace without network)")
def test_ingest_needs_no_network(tmp_path) -> None:
    """SDSS headers name no site: astropy would download its site registry. With the network
    unplugged and an empty astropy cache, ingest still works (the site comes from the description)."""
    raws = tmp_path / "raws"
    raws.mkdir()
    write_raw(raws / "sdss.fits", ch.sdss())
    decam = ch.decam()
    for card in ("OBS-LONG", "OBS-LAT", "OBS-ELEV"):
        del decam[card]
    write_raw(raws / "decam.fits", decam)
    script = textwrap.dedent(f"""
        import sys
        from astropy.config import paths
        sys.path.insert(0, {str(HERE)!r})
        with paths.set_temp_cache({str(tmp_path / "cache")!r}, delete=True):
            from skybutler import Butler
            from skybutler.ingest import ingest_raws
            with Butler.create({str(tmp_path / "repo")!r}) as butler:
                result = ingest_raws(butler, {str(raws)!r}, processes=1)
                print([f.reason for f in result.failures], len(result.refs))
    """)
    (tmp_path / "cache").mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(["unshare", "-rn", sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[] 2"


def test_define_visits_of_cameras_with_and_without_a_layout(tmp_path) -> None:
    """LSSTComCam's and HSC's layouts are known (approximately): their visits cover their sensors.
    SDSS's description has no layout: its exposure is skipped with the reason, not given a wrong region."""
    from skybutler.dimensions import regions
    from skybutler.ingest import define_visits

    raws = tmp_path / "raws"
    raws.mkdir()
    for slot in ("S00", "S11", "S22"):
        write_raw(raws / f"comcam-{slot}.fits", ch.lsstcomcam(slot=slot))
    write_raw(raws / "hsc.fits", ch.hsc())
    write_raw(raws / "sdss.fits", ch.sdss())
    with Butler.create(tmp_path / "repo") as butler:
        assert ingest_raws(butler, raws, processes=1).ok
        result = define_visits(butler)
        assert result.defined == [("HSC", 904024), ("LSSTComCam", 2024111900045)]
        assert [(i, e) for i, e, _ in result.skipped] == [("Imager on SDSS 2.5m", 6377)]
        assert "no focal-plane layout" in result.skipped[0][2]
        visit = butler.get_record("visit", instrument="LSSTComCam", id=2024111900045)
        # The raft is ~0.7 degrees across: the boresight is inside, a point 0.3 degrees off is too,
        # one 1 degree off is not.
        assert visit["region"].contains(regions.point(150.1, -2.2))
        assert visit["region"].contains(regions.point(150.1, -2.2 + 0.3))
        assert not visit["region"].contains(regions.point(150.1, -2.2 + 1.0))
        # HSC's field is 1.5 degrees across, centred on RA2000/DEC2000 (10:00:28.6 +02:12:21).
        hsc = butler.get_record("visit", instrument="HSC", id=904024)
        ra, dec = 150.119167, 2.205833
        assert hsc["region"].contains(regions.point(ra, dec))
        assert hsc["region"].contains(regions.point(ra, dec + 0.6))
        assert not hsc["region"].contains(regions.point(ra, dec + 0.9))
        assert len([r for r in butler.registry.dimensions.fetch_all("visit_detector_region")
                    if r["instrument"] == "HSC"]) == 112


# -- updating a stored camera description --------------------------------------------------------


@pytest.fixture(autouse=True)
def _shipped_hsc_afterwards():
    """Tests here register older HSC descriptions in this process: the next test gets skybutler's own."""
    yield
    instrument_module._INSTANCES["HSC"] = instrument_module.shipped_instrument("HSC")


def _hsc_without_layout():
    """HSC as a repository registered it before layouts were added: no offsets, ``layout: none``."""
    from skybutler.instruments import Instrument

    data = get_instrument("HSC").to_dict()
    data["layout"] = "none"
    data["detectors"] = [{**d, "offset_x": None, "offset_y": None} for d in data["detectors"]]
    return Instrument.from_dict(data, source="old HSC")


def test_register_instrument_update_gives_an_old_repository_the_layout(tmp_path) -> None:
    """A repository whose HSC description has no layout (made before layouts were added) cannot
    define regions; ``register-instrument --update`` replaces the description and records in
    place, and visits then get the regions of every placed detector."""
    from skybutler.ingest import define_visits
    from skybutler.ingest.instruments import _stored_description

    raws = tmp_path / "raws"
    raws.mkdir()
    write_raw(raws / "hsc.fits", ch.hsc())
    repo = tmp_path / "repo"
    with Butler.create(repo) as butler:
        butler.register_instrument(_hsc_without_layout())
        assert ingest_raws(butler, raws, processes=1).ok
        assert define_visits(butler).defined == []  # no layout: skipped
    runner = CliRunner()
    result = runner.invoke(cli, ["register-instrument", str(repo), "HSC", "--update"])
    assert result.exit_code == 0, result.output
    assert "updated camera HSC" in result.output and "layout" in result.output and "detectors" in result.output
    again = runner.invoke(cli, ["register-instrument", str(repo), "HSC", "--update"])
    assert "nothing to update" in again.output
    with Butler(repo) as butler:
        assert _stored_description(butler, "HSC")["layout"] == "approximate"
        assert define_visits(butler).defined == [("HSC", 904024)]
        regions = [r for r in butler.registry.dimensions.fetch_all("visit_detector_region") if r["instrument"] == "HSC"]
        assert len(regions) == sum(d.placed for d in get_instrument("HSC").detectors) == 112
        assert butler.register_instrument("HSC") is False  # the stored description is now the shipped one


def test_register_instrument_update_refuses_what_contradicts_the_repository(tmp_path) -> None:
    """Removing a detector, moving a physical filter that exposures use to another band, or an
    exposure bound below IDs in use: refused, naming each, and nothing changes; a filter that no
    exposure uses may move band."""
    from skybutler.ingest.instruments import _stored_description
    from skybutler.instruments import Instrument

    raws = tmp_path / "raws"
    raws.mkdir()
    write_raw(raws / "hsc.fits", ch.hsc())  # filter HSC-R2
    repo = tmp_path / "repo"
    with Butler.create(repo) as butler:
        assert ingest_raws(butler, raws, processes=1).ok
        before = _stored_description(butler, "HSC")
        records = {e: butler.registry.dimensions.fetch_all(e) for e in ("instrument", "physical_filter", "detector")}
    data = get_instrument("HSC").to_dict()
    bad = {**data, "detectors": [d for d in data["detectors"] if d["id"] != 7],
           "filters": {**data["filters"], "HSC-R2": "i"}, "exposure_max": 1000}
    path = tmp_path / "hsc.yaml"
    path.write_text(__import__("yaml").safe_dump(bad))
    result = CliRunner().invoke(cli, ["register-instrument", str(repo), str(path), "--update"])
    assert result.exit_code != 0
    message = result.output.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    for part in ("detector(s) 7 (1_45)", "HSC-R2 from band 'r' to 'i'", "1 exposure/visit record(s)",
                 "exposure_max 1000 is not above exposure 904024", "nothing was changed"):
        assert part in message, (part, message)
    with Butler(repo) as butler:
        assert _stored_description(butler, "HSC") == before
        assert {e: butler.registry.dimensions.fetch_all(e) for e in records} == records
        # A filter no exposure uses may move band.
        moved = Instrument.from_dict({**data, "filters": {**data["filters"], "HSC-G": "r"}}, source="x")
        assert butler.register_instrument(moved, update=True) is True
        assert butler.get_record("physical_filter", instrument="HSC", name="HSC-G")["band"] == "r"


def test_register_instrument_update_is_one_transaction(tmp_path, monkeypatch) -> None:
    """A failure while the new description is stored leaves the records and description as they were."""
    from skybutler.ingest.instruments import _stored_description

    with Butler.create(tmp_path / "repo") as butler:
        butler.register_instrument(_hsc_without_layout())
        before = _stored_description(butler, "HSC")
        detectors = butler.registry.dimensions.fetch_all("detector")

        def failing_put(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(butler, "put", failing_put)
        with pytest.raises(OSError, match="disk full"):
            butler.register_instrument("HSC", update=True)
        monkeypatch.undo()
        assert _stored_description(butler, "HSC") == before
        assert butler.registry.dimensions.fetch_all("detector") == detectors


def test_a_rubin_camera_without_a_translator_names_obs_lsst(tmp_path) -> None:
    """astro-metadata-translator alone translates no Rubin camera; skybutler translates LSSTCam,
    LSSTComCam and LATISS itself. A header of another Rubin camera (a test stand) fails with a
    message naming the package that translates it (obs_lsst), and the rest of the batch goes in."""
    import astro_metadata_translator as amt

    from skybutler.instruments.translators import OBS_LSST, rubin

    if OBS_LSST:
        pytest.skip("obs_lsst is installed: its translators read this header")
    header = {**ch.lsstcam(), "INSTRUME": "LSST-TS8", "OBSID": "TS_C_20250531_000123"}
    library_only = {cls for cls in amt.MetadataTranslator.translators.values()
                    if not cls.__module__.startswith("skybutler.")}
    assert not any(cls.can_translate(ch.lsstcam()) for cls in library_only)  # the library alone: none
    assert {rubin.LsstCamTranslator, rubin.LsstComCamTranslator, rubin.LatissTranslator} <= set(
        amt.MetadataTranslator.translators.values())
    raws = tmp_path / "raws"
    raws.mkdir()
    write_raw(raws / "ts8.fits", header)
    write_raw(raws / "lsstcam.fits", ch.lsstcam())
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, raws, processes=1)
    assert len(result.refs) == 1
    (failure,) = result.failures
    assert failure.path.endswith("ts8.fits")
    assert "'LSST-TS8'" in failure.reason and "obs_lsst" in failure.reason and "not on PyPI" in failure.reason


def test_megaprime_corner_ccds_are_ingested_without_a_region_and_said_so(tmp_path) -> None:
    """MegaCam's corner CCDs ccd36-ccd39 have no published position: their raws go in, their visit
    has no region for them (one for each of the 36 placed CCDs), and define-visits says why."""
    from skybutler.ingest import define_visits

    raws = tmp_path / "raws"
    raws.mkdir()
    for ccd in (14, 37):
        write_raw(raws / f"ccd{ccd}.fits", ch.megaprime(detector=ccd))
    with Butler.create(tmp_path / "repo") as butler:
        assert len(ingest_raws(butler, raws, processes=1).refs) == 2
        result = define_visits(butler)
        assert result.unplaced == {"MegaPrime": ["ccd36", "ccd37", "ccd38", "ccd39"]}
        assert "ccd36, ccd37, ccd38, ccd39 have no published focal-plane position" in result.summary()
        regions = {r["detector"] for r in butler.registry.dimensions.fetch_all("visit_detector_region")}
        assert regions == set(range(36))
