"""Headers of real observations (tests/data/translator_headers: astro-metadata-translator's
own test data) go through raw ingest: each either ingests with the exposure and detector
records the translator's ObservationInfo gives (the oracle), or is refused with a message
naming what is missing, and nothing of it lands."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

amt = pytest.importorskip("astro_metadata_translator")
from astro_metadata_translator.tests import read_test_file  # noqa: E402

from skybutler import Butler, Timespan  # noqa: E402
from skybutler.ingest import ingest_raws  # noqa: E402

HEADERS = Path(__file__).parent / "data" / "translator_headers"
#: Cards describing the HDU's structure, not the observation: the written file gets its own.
_STRUCTURE = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO", "BSCALE", "BLANK"}


def header_of(name: str) -> dict:
    return dict(read_test_file(name, dir=str(HEADERS)))


def write_raw(path: Path, header: dict, extension: dict | None = None) -> Path:
    """A small raw file with ``header`` in its primary HDU (with the pixels, or before an image
    extension holding ``extension``'s cards)."""
    pixels = np.zeros((8, 8), dtype=np.int16)
    primary = fits.PrimaryHDU(None if extension else pixels)
    for key, value in header.items():
        if key not in _STRUCTURE:
            primary.header[key] = value
    hdus = [primary]
    if extension:
        hdus.append(fits.ImageHDU(pixels, fits.Header(list(extension.items()))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        fits.HDUList(hdus).writeto(path, output_verify="silentfix")
    return path


def translated(path: Path, header: dict):
    """The oracle: the translator's own reading of the header."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return amt.ObservationInfo(header, filename=str(path), pedantic=False)


def assert_records_are_the_translators(butler: Butler, info) -> None:
    record = butler.get_record("exposure", instrument=info.instrument, id=info.exposure_id)
    assert record is not None
    assert (record["obs_id"], record["physical_filter"], record["day_obs"], record["observation_type"],
            record["science_program"], record["target_name"]) == (
        info.observation_id, info.physical_filter, info.observing_day, info.observation_type,
        info.science_program, info.object)
    assert record["exposure_time"] == pytest.approx(info.exposure_time.to_value("s"))
    assert record["timespan"] == Timespan(info.datetime_begin, info.datetime_end)
    if info.tracking_radec is not None:
        assert record["tracking_ra"] == pytest.approx(info.tracking_radec.icrs.ra.deg, abs=1e-9)
        assert record["tracking_dec"] == pytest.approx(info.tracking_radec.icrs.dec.deg, abs=1e-9)
    if info.altaz_begin is not None:
        assert record["azimuth"] == pytest.approx(info.altaz_begin.az.deg, abs=1e-9)
    detector = butler.get_record("detector", instrument=info.instrument, id=info.detector_num)
    assert detector["full_name"] == info.detector_unique_name


INGESTED = ["fitsheader-hsc.yaml", "fitsheader-hsc-HSCA04090107.yaml", "fitsheader-suprimecam-CORR40535770.yaml",
            "fitsheader-decam.yaml", "fitsheader-decam-0160496.yaml", "fitsheader-decam-raw_dec050441_25.yaml",
            "fitsheader-sdss-fpC-006377-g4-0399.yaml"]


def test_every_shipped_header_is_covered():
    assert sorted(p.name for p in HEADERS.glob("*.yaml")) == sorted([*INGESTED, *RUBIN, "fitsheader-megaprime.yaml"])


@pytest.mark.parametrize("name", INGESTED)
def test_a_real_header_ingests_as_the_translator_reads_it(tmp_path, name):
    header = header_of(name)
    raw = write_raw(tmp_path / "raw.fits", header)
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, [raw], processes=1)
        assert result.failures == [] and len(result.refs) == 1
        info = translated(raw, dict(fits.getheader(raw)))
        (ref,) = result.refs
        assert (ref.data_id["instrument"], ref.data_id["exposure"], ref.data_id["detector"]) == (
            info.instrument, info.exposure_id, info.detector_num)
        assert_records_are_the_translators(butler, info)


def test_a_merged_header_written_as_one_primary_hdu_keeps_its_data_size(tmp_path):
    """The DECam raw header is its primary's cards merged with its tile-compressed CCD's (XTENSION,
    PCOUNT = the heap size, ...).  Written as one primary HDU those cards mean nothing (FITS
    section 4.4.1.1): its data are NAXIS1 x NAXIS2, as astropy reads them, not a missing heap."""
    raw = write_raw(tmp_path / "raw.fits", header_of("fitsheader-decam-raw_dec050441_25.yaml"))
    assert fits.getheader(raw)["PCOUNT"] == 6336669
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, [raw], processes=1)
        assert result.failures == []
        (ref,) = result.refs
        np.testing.assert_array_equal(butler.get(ref).data, fits.getdata(raw))


def test_the_decam_raw_header_in_a_file_as_decam_writes_it(tmp_path):
    """The same header split as the camera writes it: the primary's cards in a primary HDU without
    data, the CCD's in a RICE tile-compressed extension of unsigned 16-bit pixels (BZERO 32768).
    It ingests as the translator reads the merged header; the pixels and a cut-out are astropy's."""
    header = header_of("fitsheader-decam-raw_dec050441_25.yaml")
    keys = list(header)
    split = keys.index("XTENSION")
    primary = fits.PrimaryHDU()
    for key in keys[:split]:
        if key not in _STRUCTURE:
            primary.header[key] = header[key]
    pixels = np.random.default_rng(5).integers(0, 65535, (40, 30)).astype(np.uint16)
    ccd = fits.CompImageHDU(pixels, compression_type="RICE_1")
    for key in keys[split:]:
        if not (key in _STRUCTURE or key in ("XTENSION", "PCOUNT", "GCOUNT", "TFIELDS", "CHECKSUM", "DATASUM")
                or key.startswith(("Z", "TTYPE", "TFORM"))):
            ccd.header[key] = header[key]
    raw = tmp_path / "dec050441.fits.fz"
    fits.HDUList([primary, ccd]).writeto(raw)
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, [raw], processes=1)
        assert result.failures == []
        (ref,) = result.refs
        info = translated(raw, header)
        assert (ref.data_id["exposure"], ref.data_id["detector"]) == (info.exposure_id, info.detector_num)
        assert_records_are_the_translators(butler, info)
        with fits.open(raw) as hdus:
            truth = hdus[1].data.copy()
        assert butler.get(ref).data.dtype == np.uint16
        np.testing.assert_array_equal(butler.get(ref).data, truth)
        np.testing.assert_array_equal(butler.get(ref, parameters={"bbox": (3, 5, 21, 33)}).data, truth[5:33, 3:21])


def test_a_primary_header_without_its_ccd_is_refused_naming_the_card(tmp_path):
    """MegaPrime's translator reads the detector from the CCD extension's EXTNAME (ccdNN); the
    shipped header is a primary HDU's, without it, and the translator makes up ccd99."""
    raw = write_raw(tmp_path / "megaprime.fits", header_of("fitsheader-megaprime.yaml"))
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, [raw], processes=1)
        ((path, reason),) = [(Path(f.path).name, f.reason) for f in result.failures]
        assert path == "megaprime.fits" and reason.startswith("instrument 'MegaPrime' has no detector 99: the "
                                                              "header has no EXTNAME"), reason
        assert result.refs == [] and butler.get_record("exposure", instrument="MegaPrime", id=1038843) is None


def test_the_megaprime_header_with_its_ccd_extension_ingests(tmp_path):
    """The same primary header before the extension of one CCD (EXTNAME ccd14), as a raw of
    one detector is written: it ingests as detector 14 with the translator's records."""
    header = header_of("fitsheader-megaprime.yaml")
    raw = write_raw(tmp_path / "megaprime-14.fits", header, extension={"EXTNAME": "ccd14", "INHERIT": True})
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, [raw], processes=1)
        assert result.failures == [] and [r.data_id["detector"] for r in result.refs] == [14]
        assert_records_are_the_translators(butler, translated(raw, {**header, "EXTNAME": "ccd14"}))


# -- Rubin's cameras: real headers in files written as the camera writes them ----------------

#: Rubin headers (trimmed from obs_lsst's test headers) and what Rubin's own translators make of
#: them: obs_lsst's published values (its tests/test_translator.py for MC_C_20190319_000001), and
#: otherwise the header's cards themselves (the pointing is RASTART/DECSTART, the one tracked).
RUBIN = {
    "fitsheader-lsstcam-MC_C_20190319_000001_R10_S02.yaml": dict(
        instrument="LSSTCam", exposure=3019031900001, detector=29, day_obs=20190319, observation_type="bias",
        physical_filter=None, tracking=None),
    "fitsheader-lsstcam-MC_O_20250415_000060_R01_S01.yaml": dict(
        instrument="LSSTCam", exposure=2025041500060, detector=1, day_obs=20250415, observation_type="acq",
        physical_filter="i_39", tracking=(127.50084038794044, -44.200057330111896)),
    "fitsheader-lsstcomcam-CC_O_20241108_000266_R22_S00.yaml": dict(
        instrument="LSSTComCam", exposure=2024110800266, detector=0, day_obs=20241108, observation_type="science",
        physical_filter="g_01", tracking=(53.312407782266014, -27.994761670941685)),
    # The grating wheel's empty slot is "empty_1": the physical filter names it "empty".
    "fitsheader-latiss-AT_O_20240624_000169_R00_S00.yaml": dict(
        instrument="LATISS", exposure=2024062400169, detector=0, day_obs=20240624, observation_type="dark",
        physical_filter="SDSSr_65mm~empty", tracking=None),
}


def write_rubin_raw(path: Path, header: dict) -> Path:
    """A raw as Rubin's cameras write one detector: the header in an empty primary HDU, then
    one RICE tile-compressed image extension per amplifier (INHERIT = T)."""
    rng = np.random.default_rng(7)
    amps = [fits.CompImageHDU(rng.integers(20000, 30000, (40, 52), dtype=np.int32), compression_type="RICE_1",
                              name=f"Segment{n:02d}") for n in (10, 11, 12)]
    for amp in amps:
        amp.header["INHERIT"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # "STUTTER ROWS" becomes a HIERARCH card
        primary = fits.PrimaryHDU()
        for key, value in header.items():
            if key not in _STRUCTURE:
                primary.header[key] = value
        fits.HDUList([primary, *amps]).writeto(path)
    return path


@pytest.mark.parametrize("name", sorted(RUBIN))
def test_a_real_rubin_header_ingests_as_rubins_translators_read_it(tmp_path, name):
    from skybutler.instruments.translators import OBS_LSST

    if OBS_LSST:
        pytest.skip("obs_lsst's translators are in use")
    expected = RUBIN[name]
    header = header_of(name)
    raw = write_rubin_raw(tmp_path / "raw.fits", header)
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, [raw], processes=1)
        assert result.failures == [] and len(result.refs) == 1
        (ref,) = result.refs
        assert (ref.data_id["instrument"], ref.data_id["exposure"], ref.data_id["detector"]) == (
            expected["instrument"], expected["exposure"], expected["detector"])
        record = butler.get_record("exposure", instrument=expected["instrument"], id=expected["exposure"])
        assert (record["obs_id"], record["day_obs"], record["observation_type"]) == (
            header["OBSID"], expected["day_obs"], expected["observation_type"])
        assert record["exposure_time"] == header["EXPTIME"]
        if expected["physical_filter"] is not None:
            assert record["physical_filter"] == expected["physical_filter"]
        if expected["tracking"] is None:
            assert (record["tracking_ra"], record["tracking_dec"]) == (None, None)
        else:
            assert (record["tracking_ra"], record["tracking_dec"]) == pytest.approx(expected["tracking"], abs=1e-9)
        # An amplifier's pixels, cut out, are astropy's reading of the same bytes, sliced.
        with fits.open(raw) as hdus:
            truth = hdus["Segment11"].data[5:30, 3:41]
        box = butler.get("raw", ref.data_id, collections=f"{expected['instrument']}/raw/all",
                         parameters={"hdu": "Segment11", "bbox": (3, 5, 41, 30)})
        np.testing.assert_array_equal(box.data, truth)
