"""skybutler's header translation checked by astro-metadata-translator itself: Rubin's cameras
through the library's own test harness, and the files of one exposure, whose exposure
properties are translated once, compared with the library's ObservationInfo of each."""

from __future__ import annotations

import pytest
from astropy.time import Time

import camera_headers as ch
from skybutler.instruments import get_instrument, metadata_from_header

# -- Rubin's cameras through astro-metadata-translator's own checks ---------------------------


def _pointing_consistent(header: dict) -> dict:
    """The header's ELSTART/AZSTART/AMSTART computed by astropy from its RA/DEC at its site and
    MJD-BEG, as a real header service writes them."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.utils import iers

    site = EarthLocation.from_geodetic(header["OBS-LONG"] * u.deg, header["OBS-LAT"] * u.deg, header["OBS-ELEV"] * u.m)
    when = Time(header["MJD-BEG"], format="mjd", scale="tai")
    with iers.conf.set_temp("auto_download", False):
        # A field an hour east of the meridian, 10 degrees north of the zenith: well up.
        ra = (when.sidereal_time("mean", longitude=site.lon).deg + 15.0) % 360.0
        dec = header["OBS-LAT"] + 10.0
        altaz = SkyCoord(ra, dec, unit="deg").transform_to(AltAz(obstime=when, location=site))
    return {**header, "RA": ra, "DEC": dec, "ELSTART": float(altaz.alt.deg), "AZSTART": float(altaz.az.deg),
            "AMSTART": float(altaz.secz)}


@pytest.mark.parametrize(("builder", "name", "unique_name", "physical_filter"), [
    (ch.lsstcam, "LSSTCam", "R22_S11", "r_57"),
    (ch.lsstcomcam, "LSSTComCam", "R22_S11", "i_06"),
    (ch.latiss, "LATISS", "RXX_S00", "SDSSr_65mm~empty"),
], ids=["LSSTCam", "LSSTComCam", "LATISS"])
def test_rubin_headers_pass_astro_metadata_translators_own_checks(builder, name, unique_name, physical_filter):
    """Rubin headers through skybutler's translators (used when obs_lsst is absent), checked by
    astro-metadata-translator's own test harness: every property translates in pedantic mode, the
    result pickles, the times are ordered, and the AltAz and airmass agree with RA/Dec at the site.
    The header is then cut down to the cards the translator used, which must give the same answer,
    and the translator's DAYOBS agrees with astro-metadata-translator's generic observing-day rule."""
    import unittest

    import astropy.units as u
    from astro_metadata_translator import MetadataTranslator, ObservationInfo
    from astro_metadata_translator.tests import MetadataAssertHelper

    from skybutler.instruments.translators import OBS_LSST

    if OBS_LSST:
        pytest.skip("obs_lsst's translators are in use")
    from skybutler.instruments.translators import rubin

    class Check(MetadataAssertHelper, unittest.TestCase):
        def runTest(self):  # noqa: N802 (unittest's name)
            pass

    header = _pointing_consistent(builder())
    translator = {"LSSTCam": rubin.LsstCamTranslator, "LSSTComCam": rubin.LsstComCamTranslator,
                  "LATISS": rubin.LatissTranslator}[name]
    assert MetadataTranslator.determine_translator(header, filename="raw.fits") is translator
    day_obs, seq = int(header["DAYOBS"]), header["SEQNUM"]
    expected = dict(instrument=name, exposure_id=day_obs * 100_000 + seq, visit_id=day_obs * 100_000 + seq,
                    observation_id=header["OBSID"], observing_day=day_obs, observation_counter=seq,
                    detector_unique_name=unique_name, detector_group=unique_name[:3], detector_name=unique_name[4:],
                    detector_num=next(d.id for d in get_instrument(name).detectors if d.full_name == unique_name),
                    physical_filter=physical_filter, observation_type="science", exposure_time=30.0 * u.s,
                    science_program="BLOCK-365", observation_reason="survey", boresight_airmass=header["AMSTART"])
    Check().assertObservationInfo(header, filename="raw.fits", check_wcs=True, check_altaz=True,
                                  translator_class=translator, **expected)
    info = ObservationInfo(header, pedantic=True, translator_class=translator)
    used = info.cards_used
    assert {"DAYOBS", "SEQNUM", "OBSID", "IMGTYPE", "MJD-BEG"} <= used
    minimal = {k: v for k, v in header.items() if k in used or k == "INSTRUME"}
    assert "RAFTBAY" in minimal or name != "LSSTCam"  # the detector's raft is read, not assumed
    assert ObservationInfo(minimal, pedantic=True, translator_class=translator) == info
    generic = MetadataTranslator.to_observing_day(translator(header))  # TAI date, 12 h earlier
    assert generic == day_obs


# -- an exposure's properties are translated once, and reused only for the same cards ---------


@pytest.mark.parametrize("builder", [ch.hsc, ch.decam, ch.lsstcam], ids=["HSC", "DECam", "LSSTCam"])
def test_files_of_one_exposure_translate_as_each_alone(builder) -> None:
    """The oracle is astro-metadata-translator's own ObservationInfo of each header, taken fresh:
    every file of an exposure (the later ones reusing the first one's exposure properties) comes
    out as the library translates it, and a file whose exposure cards differ is translated anew."""
    import astro_metadata_translator as amt

    from skybutler.instruments import headers as translation

    first = builder()
    name = {ch.hsc: "detector", ch.decam: "detector", ch.lsstcam: "slot"}[builder]
    others = [builder(**{name: v}) for v in ((0, 49, 103) if name == "detector" and builder is ch.hsc else
                                              (1, 32, 62) if name == "detector" else ("S00", "S22"))]
    moved = dict(others[-1])
    pointing = "RA" if builder is ch.lsstcam else "TELRA" if builder is ch.decam else "RA2000"
    moved[pointing] = 151.5 if builder is ch.lsstcam else "10:06:00.000"
    translation._EXPOSURES.clear()
    for header in [first, *others, moved]:
        meta = metadata_from_header(header, "f.fits")
        info = amt.ObservationInfo(dict(header), filename="f.fits",  # its site offline as in ingest
                                   translator_class=translation.translator_for(dict(header), "f.fits"))
        assert meta.detector == info.detector_num
        assert meta.physical_filter == info.physical_filter
        assert meta.tracking_ra == pytest.approx(info.tracking_radec.icrs.ra.deg, abs=1e-9)
        assert meta.zenith_angle == pytest.approx(90 - info.altaz_begin.alt.deg, abs=1e-9)
        assert meta.datetime_begin == info.datetime_begin and meta.day_obs == info.observing_day
        assert meta.obs_id == info.observation_id
    assert len(translation._EXPOSURES) == 1  # one exposure: its properties were translated once, then again
