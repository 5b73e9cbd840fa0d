"""The packaged cameras' detectors and focal-plane layouts, against independent oracles:
astro-metadata-translator's own translation of each camera's headers (names, rafts, numbers),
astropy's sky geometry (where each detector lands for a pointing), and the cameras'
published fields of view."""

from __future__ import annotations

import itertools
import math

import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

import camera_headers as ch
from skybutler.dimensions import regions
from skybutler.ingest.visits import detector_corners
from skybutler.instruments import get_instrument

amt = pytest.importorskip("astro_metadata_translator", reason="the translators are the oracle")


def _decam_header(detector: int) -> dict:
    from astro_metadata_translator.translators import DecamTranslator

    header = ch.decam(detector=detector)
    header["DETPOS"] = DecamTranslator.detector_names.get(detector, "N30")  # 61 (N30) is not in its table
    return header


BUILDERS = {
    "HSC": lambda d: ch.hsc(detector=d),
    "SuprimeCam": lambda d: ch.suprimecam(detector=d),
    "DECam": _decam_header,
    "MegaPrime": lambda d: ch.megaprime(detector=d),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_detector_is_named_as_the_translator_names_it(name) -> None:
    """Number, full name, raft (the translator's detector group) and name in raft (its detector
    name) of every detector are what astro-metadata-translator makes of that detector's header."""
    camera = get_instrument(name)
    for det in camera.detectors:
        info = amt.ObservationInfo(BUILDERS[name](det.id), filename=f"{name}-{det.id}.fits")
        assert info.detector_num == det.id
        assert (det.full_name, det.raft, det.name_in_raft) == (
            info.detector_unique_name,
            info.detector_group, info.detector_name), det


def test_record_fields_follow_the_rubin_definitions() -> None:
    records = get_instrument("DECam").dimension_records()
    (instrument,) = records["instrument"]
    assert (instrument["visit_max"], instrument["exposure_max"], instrument["detector_max"]) == (10**7, 10**7, 63)
    s29 = next(r for r in records["detector"] if r["id"] == 1)
    assert (s29["full_name"], s29["raft"], s29["name_in_raft"], s29["purpose"]) == ("S29", "S", "29", "SCIENCE")
    focus = [r["id"] for r in get_instrument("HSC").dimension_records()["detector"] if r["purpose"] == "FOCUS"]
    assert focus == list(range(104, 112))
    assert get_instrument("MegaPrime").detector(3).serial == "8261144"


# -- serial numbers ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["DECam", "MegaPrime", "SuprimeCam"])
def test_every_described_detector_has_a_distinct_serial(name) -> None:
    serials = [d.serial for d in get_instrument(name).detectors if d.placed or name != "MegaPrime"]
    assert all(serials) and len(set(serials)) == len(serials)


@pytest.mark.parametrize(("name", "detector", "serial"), [
    # The DETECTOR card of CCDNUM 25 (S1) in a 2012 raw header shipped as astro-metadata-translator's
    # test data (tests/data/fitsheader-decam.yaml); the description took its serials from another
    # raw (DECam_00200666, 2013), so the two agree only if the description is right.
    ("DECam", 25, "S3-111_107419-8-3"),
    # Suprime-Cam's DETECTOR (its translator's detector serial) is the CCD's call name since the
    # 2008 CCD replacement: the names of the translator's own table, from the observatory's CCD page.
    ("SuprimeCam", 0, "nausicaa"),
    ("SuprimeCam", 9, "san"),
])
def test_serials_match_independent_sources(name, detector, serial) -> None:
    assert get_instrument(name).detector(detector).serial == serial


def test_suprimecam_serials_are_what_its_translator_reads_from_a_header() -> None:
    """The translator reads DETECTOR as the serial; since 2008 it holds the call name that the
    translator's own table gives each DET-ID."""
    camera = get_instrument("SuprimeCam")
    for det in camera.detectors:
        header = ch.suprimecam(detector=det.id)
        info = amt.ObservationInfo(header, filename="s.fits")
        header["DETECTOR"] = info.detector_name
        assert amt.ObservationInfo(header, filename="s.fits").detector_serial == det.serial


# -- geometry ------------------------------------------------------------------------------

RA, DEC, ANGLE = 150.0, 2.0, 30.0

#: Published fields of view: the largest angular distance (degrees) from the boresight to a
#: science detector's corner lies in this range (DECam: 2.2 degrees across; MegaCam: about
#: 1 x 1 degree; Suprime-Cam: 34' x 27'). HSC's 1.5 degree field is nominal: its outermost
#: CCDs are partly vignetted, so there it bounds the detector centres instead (up to ~3% beyond
#: 0.75 degrees: the layout uses the nominal pixel scale, and the distortion shrinks the edge).
FIELDS = {"HSC": (0.72, 0.85), "DECam": (1.05, 1.15), "MegaPrime": (0.64, 0.74), "SuprimeCam": (0.34, 0.40)}


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_layout_fills_the_published_field_without_overlaps(name) -> None:
    camera = get_instrument(name)
    assert camera.layout == "approximate"
    placed = [d for d in camera.detectors if d.placed]
    polygons = {d.id: detector_corners(camera, d.id, RA, DEC, ANGLE) for d in placed}
    centre = SkyCoord(RA, DEC, unit="deg")
    if name == "HSC":
        wcs = {d.id: WCS(camera.wcs_header(d.id, RA, DEC, ANGLE)) for d in placed}
        points = {i: [tuple(w.wcs_pix2world([[(d.nx - 1) / 2, (d.ny - 1) / 2]], 0)[0])]
                  for (i, w), d in zip(wcs.items(), placed)}
    else:
        points = polygons
    farthest = max(centre.separation(SkyCoord([p[0] for p in pts], [p[1] for p in pts], unit="deg")).deg.max()
                   for i, pts in points.items() if camera.detector(i).purpose == "SCIENCE")
    low, high = FIELDS[name]
    assert low < farthest < high
    shapes = {i: regions.polygon(c) for i, c in polygons.items()}
    touching = [(a, b) for a, b in itertools.combinations(sorted(shapes), 2) if shapes[a].overlaps(shapes[b])]
    assert touching == []


@pytest.mark.parametrize(("name", "detector"), [
    ("HSC", 0), ("HSC", 49), ("HSC", 100), ("HSC", 102), ("DECam", 1), ("DECam", 62),
    ("MegaPrime", 0), ("MegaPrime", 35), ("SuprimeCam", 8),
])
def test_detector_lands_where_its_offset_and_yaw_put_it(name, detector) -> None:
    """Through astropy's WCS of the detector: its centre lies atan(r) from the boresight at the
    position angle of its focal-plane offset (+y at the rotation angle, +x 90 degrees west of
    it, or east for a flipped camera), and its pixel +y axis is turned by its yaw."""
    camera = get_instrument(name)
    det = camera.detector(detector)
    wcs = WCS(camera.wcs_header(detector, RA, DEC, ANGLE))
    cx, cy = (det.nx - 1) / 2.0, (det.ny - 1) / 2.0  # 0-based centre pixel
    centre = wcs.pixel_to_world(cx, cy)
    boresight = SkyCoord(RA, DEC, unit="deg")
    r = math.hypot(det.offset_x, det.offset_y)
    assert boresight.separation(centre).deg == pytest.approx(math.degrees(math.atan(math.radians(r))), abs=1e-6)
    sign = 1.0 if camera.flip_x else -1.0
    expected_pa = ANGLE + math.degrees(math.atan2(sign * det.offset_x, det.offset_y))
    assert _angle_diff(boresight.position_angle(centre).deg, expected_pa) < 1e-3
    up = wcs.pixel_to_world(cx, cy + 100)
    expected_up = ANGLE + (-sign) * det.yaw
    assert _angle_diff(centre.position_angle(up).deg, expected_up) < 0.05  # TAN convergence off-axis


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def test_detectors_without_a_published_position_have_no_region() -> None:
    from skybutler.instruments import InstrumentError

    camera = get_instrument("MegaPrime")
    corners = [d.id for d in camera.detectors if not d.placed]
    assert corners == [36, 37, 38, 39]
    with pytest.raises(InstrumentError, match="no known position"):
        camera.wcs_header(36, RA, DEC, ANGLE)


# -- the layout against real headers' own WCS --------------------------------------------------

#: WCS cards of two published raw headers (astro-metadata-translator's test data): DECam
#: exposure 229388, CCD S1 (a TPV solution; its distortion terms are left out here), and HSC
#: frame HSCA04090107, CCD 1_07 (the header's "rough estimation"). Pixels are those of the raw
#: file; the centre pixel given is the centre of the CCD's imaging area in it.
REAL_HEADERS = {
    "DECam": {
        "detector": 25, "centre": (57 + 1023.5, 51 + 2047.5),
        "wcs": {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 2151.2, "CRPIX2": 14826.0,
                "CRVAL1": 42.819958, "CRVAL2": -0.001583, "CD1_1": -1.8249413473e-07, "CD1_2": 7.28535892432e-05,
                "CD2_1": -7.2849900453899e-05, "CD2_2": -1.82181666096e-07},
        "cards": {"TELRA": "02:51:16.790", "TELDEC": "-00:00:05.699", "OBS-LONG": 70.81489, "OBS-LAT": -30.16606},
    },
    "HSC": {
        "detector": 37, "centre": (1072.5, 2137.5),
        "wcs": {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": -3220.833, "CRPIX2": 17801.167,
                "CRVAL1": 21.1572375, "CRVAL2": 1.25975833333, "CD1_1": 2.89152716465347e-21,
                "CD1_2": 4.72222222222222e-05, "CD2_1": -4.7222222222222e-05, "CD2_2": 2.89152716465347e-21},
        "cards": {"RA2000": "01:24:37.737", "DEC2000": "+01:15:35.13", "INST-PA": 0.0},
    },
    # Suprime-Cam frame SUPA00535770, CCD nausicaa (a corrected image; WCS from the Subaru
    # toolkit). Its WCS is north up while the translator's rotation angle is the rotator's
    # (INR-STR, 45 degrees): the parallactic angle of the pointing (the header's altitude and
    # azimuth) turns it back, so this checks the rotation too.
    "SuprimeCam": {
        "detector": 0, "centre": (1024.5, 2048.5),
        "wcs": {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 5321.0, "CRPIX2": -35.0,
                "CRVAL1": 206.7403125, "CRVAL2": -10.73319167, "CD1_1": -5.611e-05, "CD1_2": 0.0,
                "CD2_1": 0.0, "CD2_2": 5.611e-05},
        "cards": {"RA2000": "13:46:57.675", "DEC2000": "-10:43:59.49", "INR-STR": 45.241, "DATE-OBS": "2007-04-23",
                  "UT-STR": "08:02:27.204", "UT-END": "08:05:47.000", "MJD-STR": 54213.335036,
                  "MJD-END": 54213.337348, "MJD": 54213.335036, "AZIMUTH": 132.649, "ALTITUDE": 46.971},
    },
}


@pytest.mark.parametrize("name", sorted(REAL_HEADERS))
def test_detector_lands_where_a_real_headers_wcs_puts_it(name) -> None:
    """The focal plane's orientation on the sky (and DECam's flip): at the pointing and rotation
    astro-metadata-translator reads from a real header, the layout puts the detector's centre
    within 2 arcminutes of where that header's own WCS puts it (the detectors lie 0.25-0.9
    degrees from the boresight; a wrong orientation or flip moves them by several arcminutes)."""
    from skybutler.instruments import metadata_from_header

    real = REAL_HEADERS[name]
    header = {**BUILDERS[name](real["detector"]), **real["cards"]}
    info = amt.ObservationInfo(header, filename=f"{name}.fits")
    meta = metadata_from_header(header, f"{name}.fits")  # the sky angle ingest records
    camera = get_instrument(name)
    ours = WCS(camera.wcs_header(real["detector"], info.tracking_radec.ra.deg, info.tracking_radec.dec.deg,
                                 meta.sky_angle))
    det = camera.detector(real["detector"])
    mine = ours.pixel_to_world((det.nx - 1) / 2.0, (det.ny - 1) / 2.0)
    theirs = WCS(real["wcs"]).wcs_pix2world([real["centre"]], 1)[0]
    separation = mine.separation(SkyCoord(*theirs, unit="deg"))
    assert separation.arcmin < 2.0, separation.arcmin
    assert SkyCoord(*theirs, unit="deg").separation(info.tracking_radec).deg > (0.2 if name == "SuprimeCam" else 0.7)
    # The detector's pixel +y points where the header's WCS points it (within a degree).
    up = [real["centre"][0], real["centre"][1] + 200]
    theirs_up = SkyCoord(*WCS(real["wcs"]).wcs_pix2world([up], 1)[0], unit="deg")
    mine_up = ours.pixel_to_world((det.nx - 1) / 2.0, (det.ny - 1) / 2.0 + 200)
    assert _angle_diff(mine.position_angle(mine_up).deg,
                       SkyCoord(*theirs, unit="deg").position_angle(theirs_up).deg) < 1.0


def test_suprimecam_regions_turn_with_the_rotator() -> None:
    """Suprime-Cam's rotator angle (INR-STR) tracks the parallactic angle: a rotator a degree further
    turns the recorded sky angle (from which every region is drawn) by a degree, and the sky angle
    is the rotator angle plus the parallactic angle, whose oracle is astropy: the position angle
    of the zenith seen from the target."""
    from astropy.coordinates import AltAz, EarthLocation
    from astropy.time import Time

    from skybutler.instruments import metadata_from_header

    cards = REAL_HEADERS["SuprimeCam"]["cards"]
    base = metadata_from_header({**ch.suprimecam(detector=0), **cards}, "a.fits")
    turned = metadata_from_header({**ch.suprimecam(detector=0), **cards, "INR-STR": cards["INR-STR"] + 1.0}, "b.fits")
    assert _angle_diff(turned.sky_angle, base.sky_angle + 1.0) < 1e-9
    site = get_instrument("SuprimeCam").location
    where = EarthLocation.from_geodetic(site.longitude, site.latitude, site.height)
    frame = AltAz(obstime=Time(cards["MJD-STR"], format="mjd", scale="utc"), location=where)
    target = SkyCoord(alt=cards["ALTITUDE"], az=cards["AZIMUTH"], unit="deg", frame=frame)
    zenith = SkyCoord(alt=90.0, az=0.0, unit="deg", frame=frame)
    parallactic = target.icrs.position_angle(zenith.icrs).deg
    assert _angle_diff(base.sky_angle, cards["INR-STR"] + parallactic) < 0.05


def test_megacam_corners_are_where_its_header_map_puts_them() -> None:
    """MegaCam's raw primary header carries a map of its CCDs "North on top, East to the left":
    ccd00 top left, ccd08 top right, ccd27 bottom left, ccd35 bottom right; rows 00-08, 09-17,
    18-26, 27-35 from north to south. At the translator's rotation (0) the layout puts them there."""
    info = amt.ObservationInfo(ch.megaprime(), filename="m.fits")
    angle = info.boresight_rotation_angle.deg
    assert angle == 0.0
    camera = get_instrument("MegaPrime")
    boresight = SkyCoord(RA, DEC, unit="deg")

    def east_north(detector: int) -> tuple[float, float]:
        det = camera.detector(detector)
        centre = WCS(camera.wcs_header(detector, RA, DEC, angle)).pixel_to_world((det.nx - 1) / 2, (det.ny - 1) / 2)
        east, north = boresight.spherical_offsets_to(centre)
        return east.deg, north.deg

    quadrants = {d: tuple(v > 0 for v in east_north(d)) for d in (0, 8, 27, 35)}
    assert quadrants == {0: (True, True), 8: (False, True), 27: (True, False), 35: (False, False)}
    assert east_north(4)[1] > east_north(13)[1] > 0 > east_north(22)[1] > east_north(31)[1]


@pytest.mark.parametrize(("change", "message"), [
    ({"detectors": [{"id": 1, "full_name": "A", "offset_x": 0.1, "offset_y": None}]}, "give both offset_x and offset_y"),
    ({"exposure_max": 0}, "exposure_max"),
    ({"detectors": [{"id": 1, "full_name": "A", "yaw": "sideways"}]}, "yaw"),
])
def test_a_bad_layout_is_refused_with_the_reason(change, message) -> None:
    from skybutler.instruments import Instrument, InstrumentError

    description = {"name": "BadCam", "pixel_scale": 0.2, "filters": {"B-r": "r"},
                   "detectors": [{"id": 1, "full_name": "A"}], **change}
    with pytest.raises(InstrumentError, match=message):
        Instrument.from_dict(description, source="badcam.yaml")


def test_name_in_raft_defaults_to_the_name_without_its_raft() -> None:
    from skybutler.instruments import Instrument

    camera = Instrument.from_dict({"name": "RaftCam", "pixel_scale": 0.2, "filters": {"R-r": "r"}, "detectors": [
        {"id": 0, "full_name": "R12_S01", "raft": "R12"}, {"id": 1, "full_name": "N7", "raft": "N"},
        {"id": 2, "full_name": "ccd2"}, {"id": 3, "full_name": "X_Y", "raft": "X", "name_in_raft": "own"}]})
    assert [d.name_in_raft for d in camera.detectors] == ["S01", "7", "ccd2", "own"]
    assert [r["name_in_raft"] for r in camera.dimension_records()["detector"]] == ["S01", "7", "ccd2", "own"]
