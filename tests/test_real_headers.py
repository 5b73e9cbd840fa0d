"""Headers of real observations (tests/data/translator_headers: astro-metadata-translator's
own test data) go through raw ingest: each either ingests with the exposure and detector
records the translator's ObservationInfo gives (the oracle), or is refused with a message
naming what is missing, and nothing of it lands."""

from __future__ import annotations

import os
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
#: Cards describing the HDU's structure, not the observation: the written file gets its own (a
#: header's CHECKSUM and DATASUM are of the real file's bytes).
_STRUCTURE = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO", "BSCALE", "BLANK",
              "CHECKSUM", "DATASUM"}


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


#: Astropy's site registry entry for Apache Point (astropy-data coordinates/sites.json, "apo"): the
#: SDSS translator looks its site up there, a download this machine (and ingest, offline) cannot make.
APO = {"longitude": -105.820417, "latitude": 32.780361, "elevation": 2788.0}


def _registry_site(name: str, *args, **kwargs):
    from astropy.coordinates import EarthLocation

    if name != "apo":
        raise AssertionError(f"the oracle has no registry entry for site {name!r}")
    return EarthLocation.from_geodetic(APO["longitude"], APO["latitude"], APO["elevation"])


def translated(path: Path, header: dict):
    """The oracle: the translator's own reading of the header, with its site registry answering as
    online (the SDSS translator's pointing, altitude and airmass need it)."""
    from unittest import mock

    from astropy.coordinates import EarthLocation

    with warnings.catch_warnings(), mock.patch.object(EarthLocation, "of_site", _registry_site):
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
    assert_the_other_fields_are_the_translators(record, info)


def assert_the_other_fields_are_the_translators(record: dict, info) -> None:
    """Every other exposure field with an ObservationInfo counterpart.  The sky angle of a camera whose
    translator gives its rotator's angle (Suprime-Cam) is that angle plus the parallactic angle, here
    from the hour angle (astropy's sidereal time) instead of the header's altitude and azimuth skybutler
    uses (they agree within 0.05 degrees)."""
    from skybutler.instruments import get_instrument

    assert (record["group"], record["seq_num"], record["observation_reason"], record["can_see_sky"],
            record["has_simulated"]) == (
        info.exposure_group or str(info.exposure_id), info.observation_counter or 0,
        info.observation_reason or "unknown", info.can_see_sky, bool(info.has_simulated_content))
    dark = info.dark_time if info.dark_time is not None else info.exposure_time
    assert record["dark_time"] == pytest.approx(dark.to_value("s"))
    if info.altaz_begin is None:
        assert (record["zenith_angle"], record["azimuth"]) == (None, None)
    else:
        assert record["zenith_angle"] == pytest.approx(90.0 - info.altaz_begin.alt.deg, abs=1e-9)
    assert record["airmass"] == pytest.approx(info.boresight_airmass, abs=1e-9)
    rotation = info.boresight_rotation_angle
    if rotation is None:
        assert record["sky_angle"] is None
    elif get_instrument(info.instrument).rotation == "sky":
        assert record["sky_angle"] == pytest.approx(rotation.to_value("deg"), abs=1e-9)
    else:
        from astropy.coordinates import FK5

        site, begin = info.location, info.datetime_begin
        radec = info.tracking_radec.transform_to(FK5(equinox=begin))  # of the date, as the sidereal time
        hour = (begin.sidereal_time("mean", longitude=site.lon) - radec.ra).wrap_at("180d").rad
        lat, dec = site.lat.rad, radec.dec.rad
        parallactic = np.degrees(np.arctan2(np.sin(hour), np.tan(lat) * np.cos(dec) - np.sin(dec) * np.cos(hour)))
        expected = (rotation.to_value("deg") + parallactic) % 360.0
        assert abs((record["sky_angle"] - expected + 180.0) % 360.0 - 180.0) < 0.1, (record["sky_angle"], expected)


INGESTED = ["fitsheader-hsc.yaml", "fitsheader-hsc-HSCA04090107.yaml", "fitsheader-suprimecam-CORR40535770.yaml",
            "fitsheader-decam.yaml", "fitsheader-decam-0160496.yaml", "fitsheader-decam-raw_dec050441_25.yaml",
            "fitsheader-sdss-fpC-006377-g4-0399.yaml", "fitsheader-decam-instcal-c4d_190402_050618_ooi_VR_v1.yaml"]

#: Headers refused, and the start of the reason.  The two calibrated exposures (a DECam calexp,
#: a MegaPrime Elixir-processed CCD of 2006) name their filter by its band alone, a name neither
#: the translator (whose physical filter it is) nor the camera's filter list (the Rubin butler's) knows;
#: bad-megaprime (the translator's own example of a broken header) spells OBSTYPE "OBSTYP".
REFUSED = {
    "fitsheader-decam-calexp-0412037_10.yaml": "instrument 'DECam' has no physical filter 'g' (known: ",
    "fitsheader-megaprime-calexp-849375-14.yaml": "instrument 'MegaPrime' has no physical filter 'r' (known: ",
    "bad-megaprime.yaml": "cannot determine exposure_time: Could not find EXPTIME in header",
}


def test_every_shipped_header_is_covered():
    assert sorted(p.name for p in HEADERS.glob("*.yaml")) == sorted(
        [*INGESTED, *RUBIN, *REFUSED, "fitsheader-megaprime.yaml"])


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_real_header_skybutler_cannot_take_is_refused_with_its_reason(tmp_path, name):
    """Refused naming the file and the reason, and nothing of it lands: the repository is as it was."""
    raw = write_raw(tmp_path / "raw.fits", header_of(name))
    with Butler.create(tmp_path / "repo") as butler:
        before = repository_state(butler)
        result = ingest_raws(butler, [raw], processes=1)
        ((path, reason),) = [(f.path, f.reason) for f in result.failures]
        assert path == str(raw) and reason.startswith(REFUSED[name]), reason
        assert result.refs == [] and repository_state(butler) == before


def test_a_refused_header_gives_the_same_reason_in_every_process(tmp_path):
    """bad-megaprime lacks the cards of two required properties: the reason names the first in name
    order, whatever the process's string hashing (which orders a plain set)."""
    import subprocess
    import sys

    raw = write_raw(tmp_path / "raw.fits", header_of("bad-megaprime.yaml"))
    code = ("import sys; from skybutler.instruments import RawHeaderError, read_observation_metadata\n"
            "try: read_observation_metadata(sys.argv[1])\nexcept RawHeaderError as e: print(e.reason)")
    reasons = {subprocess.run([sys.executable, "-c", code, str(raw)], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2, 3)}
    assert reasons == {REFUSED["bad-megaprime.yaml"] + "\n"}


def repository_state(butler: Butler) -> tuple:
    """What a refused file must not change: every row of the registry database, and the files."""
    import sqlite3

    root = Path(butler.root)
    with sqlite3.connect(f"file:{root / 'registry.sqlite3'}?mode=ro", uri=True) as db:
        rows = list(db.iterdump())
    files = sorted((str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*")
                   if p.is_file() and not p.name.startswith("registry.sqlite3"))
    return rows, files


def test_the_sdss_site_is_the_one_its_translator_looks_up():
    """SDSS headers name no site: the translator looks "apo" up in astropy's online site registry, and
    offline (as ingest reads headers) it has no pointing, altitude or airmass.  skybutler's SDSS
    description gives the registry's site, so the exposure has the values the translator gives online
    (the oracle above); its own fall-back for an unknown site (32.78 N, 105.82 W, 2798 m) is ~40 m
    away and agrees within a few arcseconds."""
    from unittest import mock

    from astropy.coordinates import EarthLocation
    from astropy.coordinates.errors import UnknownSiteException

    from skybutler.instruments import get_instrument

    site = get_instrument("Imager on SDSS 2.5m").location
    assert (site.longitude, site.latitude, site.height) == (APO["longitude"], APO["latitude"], APO["elevation"])
    header = header_of("fitsheader-sdss-fpC-006377-g4-0399.yaml")

    def unknown(*args, **kwargs):
        raise UnknownSiteException("apo", "of_site")

    with warnings.catch_warnings(), mock.patch.object(EarthLocation, "of_site", unknown):
        warnings.simplefilter("ignore")
        fallback = amt.ObservationInfo(header, filename="sdss.fits", pedantic=False)
    online = translated(Path("sdss.fits"), header)
    assert online.boresight_airmass == pytest.approx(fallback.boresight_airmass, abs=1e-5)
    assert online.altaz_begin.alt.deg == pytest.approx(fallback.altaz_begin.alt.deg, abs=1e-3)


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
    raw = write_decam_fz(tmp_path / "dec050441.fits.fz", header, checksum=False)
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


# -- Mislabelled, truncated and corrupt raws ------------------------------------------------


@pytest.mark.parametrize(("name", "stored"), [("HSCA90402450.txt", ".fits"), ("HSCA90402450.txt.gz", ".fits.gz"),
                                              ("HSCA90402450.fit", ".fit"), ("HSCA90402450.fits.gz", ".fits.gz")])
def test_a_raw_named_as_another_format_is_stored_under_the_fits_suffix(tmp_path, name, stored):
    """A FITS raw is read by its content, whatever its name; its copy in the datastore is named as
    a FITS file (a FITS suffix of its own is kept, and a compression suffix after it)."""
    import gzip

    raw = write_raw(tmp_path / "raw.fits", header_of("fitsheader-hsc.yaml"))
    named = tmp_path / name
    named.write_bytes(gzip.compress(raw.read_bytes()) if name.endswith(".gz") else raw.read_bytes())
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, [named], processes=1)
        assert result.failures == []
        (ref,) = result.refs
        assert str(butler.get_uri(ref)).endswith(f"/raw_HSC_904024_50{stored}")
        np.testing.assert_array_equal(butler.get(ref).data, fits.getdata(raw))


def write_decam_fz(path: Path, header: dict, checksum: bool = True) -> Path:
    """The DECam raw header as the camera writes it: the primary's cards in a primary HDU without
    data, the CCD's in a RICE tile-compressed extension of unsigned 16-bit pixels; with the
    CHECKSUM and DATASUM cards DECam's files carry (of the bytes written) unless not ``checksum``."""
    keys = list(header)
    split = keys.index("XTENSION")
    primary = fits.PrimaryHDU()
    for key in keys[:split]:
        if key not in _STRUCTURE:
            primary.header[key] = header[key]
    pixels = np.random.default_rng(5).integers(0, 65535, (40, 30)).astype(np.uint16)
    ccd = fits.CompImageHDU(pixels, compression_type="RICE_1")
    for key in keys[split:]:
        if not (key in _STRUCTURE or key in ("XTENSION", "PCOUNT", "GCOUNT", "TFIELDS")
                or key.startswith(("Z", "TTYPE", "TFORM"))):
            ccd.header[key] = header[key]
    fits.HDUList([primary, ccd]).writeto(path, checksum=checksum)
    return path


def _flip_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]


def hostile_raws(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Broken copies of real raws, and the start of (or a phrase in) each one's reason."""
    hsc = write_raw(tmp_path / "hsc.fits", header_of("fitsheader-hsc.yaml"))
    with fits.open(hsc) as hdus:  # written again with its checksums, as Subaru's archive gives them
        hdus.writeto(tmp_path / "hsc-sum.fits", checksum=True)
    hsc_sum = (tmp_path / "hsc-sum.fits").read_bytes()
    decam_path = write_decam_fz(tmp_path / "decam.fits.fz", header_of("fitsheader-decam-raw_dec050441_25.yaml"))
    decam = decam_path.read_bytes()
    with fits.open(decam_path, disable_image_compression=True) as hdus:
        tiles = hdus[1]._data_offset + hdus[1].header["NAXIS1"] * hdus[1].header["NAXIS2"]  # the heap
    rubin = tmp_path / "rubin.fits"
    with fits.open(write_rubin_raw(rubin, header_of("fitsheader-lsstcam-MC_O_20250415_000060_R01_S01.yaml"))) as hdus:
        hdus.writeto(tmp_path / "rubin-sum.fits", checksum=True)
    rubin_sum = (tmp_path / "rubin-sum.fits").read_bytes()
    with fits.open(tmp_path / "rubin-sum.fits") as hdus:
        last = hdus[-1]._data_offset  # the compressed tiles of the last amplifier
    date_card = hsc_sum.index(b"DATE-OBS=")
    cases = {
        "empty.fits": (b"", "Formatter 'fits': the file is empty."),
        "notes.fits": (b"observing notes\n" * 20, "Formatter 'fits': the primary header does not parse"),
        "hsc-truncated.fits": (hsc_sum[:-2880], "Formatter 'fits': truncated: HDU 0 declares data up to byte"),
        "hsc-header-cut.fits": (hsc_sum[:2000], "Formatter 'fits': the primary header does not parse"),
        "hsc-garbled-card.fits": (hsc_sum[:date_card + 11] + b"\x00\xff\x01" + hsc_sum[date_card + 14:],
                                  "card 'DATE-OBS' does not parse"),
        "hsc-pixel-flipped.fits": (_flip_byte(hsc_sum, len(hsc_sum) - 2880 + 7),
                                   "Formatter 'fits': the data of HDU 0 do not match its DATASUM card"),
        "decam-truncated.fits.fz": (decam[:tiles + 50], "Formatter 'fits': truncated: HDU 1 declares data"),
        "decam-tile-flipped.fits.fz": (_flip_byte(decam, tiles + 100),
                                       "Formatter 'fits': the data of HDU 1 do not match its DATASUM card"),
        "rubin-amp-flipped.fits": (_flip_byte(rubin_sum, last + 40),
                                   "Formatter 'fits': the data of HDU 3 do not match its DATASUM card"),
        "rubin-half.fits": (rubin_sum[:len(rubin_sum) // 2], "Formatter 'fits': "),
        "decam.txt.gz": (decam[:100], "Formatter 'fits': the primary header does not parse"),
    }
    made = {}
    broken = tmp_path / "broken"
    broken.mkdir()
    for name, (content, reason) in cases.items():
        (broken / name).write_bytes(content)
        made[name] = (broken / name, reason)
    return made


@pytest.mark.parametrize("transfer", ["copy", "move"])
def test_broken_real_raws_are_refused_naming_file_and_reason_and_the_repository_is_as_it_was(tmp_path, transfer):
    """Truncated, garbled and bit-flipped copies of real raws (the checksum a camera writes catches a
    flipped pixel or compressed tile of any HDU), and files of other content named as FITS: each is
    refused with its name and reason, stays where it was, and the repository is exactly as it was."""
    cases = hostile_raws(tmp_path)
    with Butler.create(tmp_path / "repo") as butler:
        before = repository_state(butler)
        result = ingest_raws(butler, [path for path, _ in cases.values()], transfer=transfer, processes=1)
        assert result.refs == []
        reasons = {Path(f.path).name: f.reason for f in result.failures}
        assert sorted(reasons) == sorted(cases)
        for name, (path, reason) in cases.items():
            assert reason in reasons[name], (name, reasons[name])
            assert path.exists()
        assert repository_state(butler) == before


def test_the_unbroken_copies_ingest_and_their_checksums_are_kept(tmp_path):
    """The same raws unbroken, with their checksums, ingest (so the refusals above are the damage's);
    the datastore's copy is the file byte for byte and still passes astropy's checksum check."""
    hsc = write_raw(tmp_path / "hsc.fits", header_of("fitsheader-hsc.yaml"))
    with fits.open(hsc) as hdus:
        hdus.writeto(tmp_path / "good" / "hsc.fits" if (tmp_path / "good").mkdir() is None else None, checksum=True)
    decam = write_decam_fz(tmp_path / "good" / "decam.fits.fz", header_of("fitsheader-decam-raw_dec050441_25.yaml"))
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, [tmp_path / "good"], processes=1)
        assert result.failures == [] and len(result.refs) == 2
        for ref in result.refs:
            stored = Path(str(butler.get_uri(ref)).removeprefix("file://"))
            source = decam if ref.data_id["instrument"] == "DECam" else tmp_path / "good" / "hsc.fits"
            assert stored.read_bytes() == source.read_bytes()
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # astropy warns of a checksum that does not match
                with fits.open(stored, checksum=True) as hdus:
                    [hdu.data for hdu in hdus]


def test_real_raws_through_the_command_line_are_found_by_their_translated_metadata(tmp_path):
    """A night's worth of real raws (every camera above, DECam's fpacked) through ``skybutler
    ingest-raws``: each is found by a where-clause on the values the translator gives it (day_obs,
    exposure, physical_filter, detector) and by none other's, and ``define-visits`` defines a visit
    for each science exposure of a camera with a layout and skips SDSS's, which has none."""
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    raws = tmp_path / "raws"
    raws.mkdir()
    files = {name: write_raw(raws / f"{name}.fits", header_of(name)) for name in INGESTED
             if name != "fitsheader-decam-raw_dec050441_25.yaml"}
    files["dec050441"] = write_decam_fz(raws / "dec050441.fits.fz", header_of("fitsheader-decam-raw_dec050441_25.yaml"))
    files["megaprime-14"] = write_raw(raws / "megaprime-14.fits", header_of("fitsheader-megaprime.yaml"),
                                      extension={"EXTNAME": "ccd14", "INHERIT": True})
    infos = {}
    for name, path in files.items():
        with fits.open(path) as hdus:
            header = dict(hdus[0].header) | {k: v for k, v in hdus[-1].header.items() if k not in hdus[0].header}
        infos[name] = translated(path, header)
    repo = tmp_path / "repo"
    runner = CliRunner()
    assert runner.invoke(cli, ["create", str(repo)]).exit_code == 0
    out = runner.invoke(cli, ["ingest-raws", str(repo), str(raws), "-j", "1"])
    assert out.exit_code == 0, out.output
    with Butler(repo) as butler:
        refs = list(butler.query_datasets("raw", collections=..., find_first=False))
        assert len(refs) == len(files)
        for name, info in infos.items():
            where = (f"instrument = '{info.instrument}' AND exposure = {info.exposure_id} AND detector = "
                     f"{info.detector_num} AND day_obs = {info.observing_day} AND physical_filter = "
                     f"'{info.physical_filter}'")
            (ref,) = list(butler.query_datasets("raw", where, collections=..., find_first=False))
            assert (ref.data_id["exposure"], ref.data_id["detector"]) == (info.exposure_id, info.detector_num), name
            other = butler.query_datasets("raw", f"instrument = '{info.instrument}' AND day_obs = {info.observing_day}"
                                          f" AND exposure != {info.exposure_id}", collections=..., find_first=False)
            assert all(r.data_id["exposure"] != info.exposure_id for r in other)
    out = runner.invoke(cli, ["define-visits", str(repo)])
    assert out.exit_code == 0, out.output
    with Butler(repo) as butler:
        science = {(i.instrument, i.exposure_id) for i in infos.values() if i.observation_type == "science"}
        with_layout = {(i, e) for i, e in science if i != "Imager on SDSS 2.5m"}
        visits = {(i, e) for i, e in science if butler.get_record("visit", instrument=i, id=e) is not None}
        assert visits == with_layout and len(visits) >= 5
        assert "Imager on SDSS 2.5m" in out.output and "no focal-plane layout" in out.output
        for info in infos.values():
            if (info.instrument, info.exposure_id) in visits:
                region = butler.get_record("visit_detector_region", instrument=info.instrument,
                                           visit=info.exposure_id, detector=info.detector_num)
                assert region is not None and region["region"] is not None
