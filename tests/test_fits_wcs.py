"""Real FITS images of every WCS kind: cut-outs, the WCS component, footprints, sky-to-pixel.

Oracles are astropy itself on the full image (``all_pix2world`` at the matching pixel,
``SkyCoord.transform_to(ICRS)``); the images are built with astropy, one per WCS kind
(:mod:`fits_images`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from fits_images import (
    BOXES,
    MAS,
    N_X,
    N_Y,
    WCS_KINDS,
    _icrs,
    _wcs_header,
    alternates,
    assert_same_sky,
    astropy_wcs,
    dss,
    galactic,
    helioprojective,
    make_image,
    read,
    tan,
    tnx,
    world,
    write_file,
)
from skybutler.errors import FormatterError
from skybutler.formats import get_formatter, get_storage_class

# -- cut-outs -------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(WCS_KINDS))
@pytest.mark.parametrize("box", BOXES)
def test_cutout_wcs_matches_full_image(tmp_path: Path, kind: str, box: tuple[int, int, int, int]) -> None:
    header = WCS_KINDS[kind]()
    path = write_file(tmp_path / "image.fits", make_image(header))
    x0, y0, x1, y1 = box
    xs, ys = np.meshgrid(np.arange(x1 - x0, step=7.0), np.arange(y1 - y0, step=5.0))
    xs, ys = np.append(xs.ravel(), [x1 - x0 - 1]), np.append(ys.ravel(), [y1 - y0 - 1])
    cut = read(path, bbox=box)
    np.testing.assert_array_equal(cut.data, make_image(header).data[y0:y1, x0:x1])
    for key in [k for k in " ABCDEFGHIJKLMNOPQRSTUVWXYZ" if f"CTYPE1{k.strip()}" in header]:
        expected = world(astropy_wcs(header, key), xs + x0, ys + y0)
        assert_same_sky(world(astropy_wcs(cut.header, key), xs, ys), expected)      # the header
        component = read(path, "fits", "wcs", bbox=box, wcs_key=key)                 # the component
        assert_same_sky(world(component, xs, ys), expected)
        assert component.pixel_shape[:2] == (x1 - x0, y1 - y0)


def test_cutout_of_a_header_whose_primary_wcs_cards_have_no_value(tmp_path: Path) -> None:
    """Rubin's raws carry ``CTYPE1 =``, ``CRVAL1 =``, ... with no value, beside real alternate
    WCSs: such cards are no WCS.  The oracle is astropy's WCS of the header without them."""
    header = fits.Header([(card, None) for card in ("WCSAXES", "CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1",
                                                    "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "EQUINOX")])
    header.update(WCS(tan()).to_header(key="A"))
    path = write_file(tmp_path / "image.fits", make_image(header))
    def valued(header: fits.Header) -> fits.Header:  # astropy's WCS fails on a card with no value
        return fits.Header([card for card in header.cards if type(card.value).__name__ != "Undefined"])

    x0, y0, x1, y1 = box = (17, 11, 95, 80)
    xs, ys = np.meshgrid(np.arange(x1 - x0, step=7.0), np.arange(y1 - y0, step=5.0))
    expected = world(astropy_wcs(valued(header), "A"), xs.ravel() + x0, ys.ravel() + y0)
    cut = read(path, bbox=box)
    np.testing.assert_array_equal(cut.data, make_image(header).data[y0:y1, x0:x1])
    assert_same_sky(world(astropy_wcs(valued(cut.header), "A"), xs.ravel(), ys.ravel()), expected)
    assert_same_sky(world(read(path, "fits", "wcs", bbox=box), xs.ravel(), ys.ravel()), expected)
    with pytest.raises(FormatterError, match="no WCS with key ' '; WCS keys present: 'A'"):
        read(path, "fits", "wcs", wcs_key=" ")


def test_tnx_cutout_replaces_its_wat_cards(tmp_path: Path) -> None:
    path = write_file(tmp_path / "tnx.fits", make_image(tnx()))
    header = read(path, "fits", "header", bbox=(10, 20, 60, 70))
    assert header["CTYPE1"] == "RA---TAN" and "WAT1_001" not in header and header["CQDIS1"] == "TPD"
    assert header["CRPIX1"] == pytest.approx(tnx()["CRPIX1"] - 10)
    full = astropy_wcs(tnx())
    plain = tnx()
    plain["CTYPE1"], plain["CTYPE2"] = "RA---TAN", "DEC--TAN"
    for key in [k for k in plain if k.startswith("WAT")]:
        del plain[key]
    # The distortion is there: the TNX image is not its TAN core.
    assert np.abs(world(full, np.array([0.0]), np.array([0.0])) -
                  world(astropy_wcs(plain), np.array([0.0]), np.array([0.0]))).max() > 10 * MAS


def test_dss_cutout_drops_the_plate_cards_it_replaced(tmp_path: Path) -> None:
    path = write_file(tmp_path / "dss.fits", make_image(dss(), 100, 100))
    header = read(path, "fits", "header", bbox=(20, 10, 90, 60))
    assert "CNPIX1" not in header and "AMDX1" not in header
    assert header["NAXIS1"] == 70 and header["NAXIS2"] == 50
    assert header["LTV1"] == -20 and header["LTV2"] == -10
    assert header["DATE-OBS"] == dss()["DATE-OBS"]  # the image's own cards are kept as they were


@pytest.mark.parametrize("kind", sorted(WCS_KINDS))
def test_full_wcs_component_is_astropys(tmp_path: Path, kind: str) -> None:
    header = WCS_KINDS[kind]()
    path = write_file(tmp_path / "image.fits", make_image(header))
    xs, ys = np.array([0.0, 50.0, N_X - 1.0]), np.array([0.0, 30.0, N_Y - 1.0])
    key = " " if kind != "alternates_only" else "A"
    assert_same_sky(world(read(path, "fits", "wcs"), xs, ys), world(astropy_wcs(header, key), xs, ys), 1e-10)


def test_wcs_key_errors(tmp_path: Path) -> None:
    path = write_file(tmp_path / "image.fits", make_image(alternates()))
    with pytest.raises(FormatterError, match=r"no WCS with key 'C'.*' ', 'A', 'B'"):
        read(path, "fits", "wcs", wcs_key="C")
    with pytest.raises(FormatterError, match="one letter"):
        read(path, "fits", "wcs", wcs_key="AB")


# -- footprints -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tan", "sip", "tpv", "zpn", "car", "hpx", "galactic", "ecliptic", "fk4", "dss",
                                  "alternates", "alternates_only", "tnx", "three_axes", "swapped"])
def test_footprint_is_icrs(kind: str) -> None:
    from skybutler.dimensions import regions as sky

    header = WCS_KINDS[kind]()
    facts = get_storage_class("Image").extract_metadata(make_image(header))
    key = "A" if kind == "alternates_only" else " "
    centre = _icrs(header, np.array([(N_X - 1) / 2]), np.array([(N_Y - 1) / 2]), key)
    assert facts["footprint_problem"] is None
    assert SkyCoord(facts["ra_center"] * u.deg, facts["dec_center"] * u.deg).separation(centre[0]).deg < MAS
    corners = _icrs(header, np.array([0.0, N_X - 1, N_X - 1, 0.0]), np.array([0.0, 0.0, N_Y - 1, N_Y - 1]), key)
    for corner in corners:
        assert facts["region"].contains(sky.point(corner.ra.deg, corner.dec.deg))
    # Nothing a degree beyond the image is inside its footprint.
    far = _icrs(header, np.array([-0.5 * N_X, 1.5 * N_X]), np.array([N_Y / 2, N_Y / 2]), key)
    for point in far:
        if np.isfinite(point.ra.deg) and kind not in ("car", "hpx"):
            assert not facts["region"].contains(sky.point(point.ra.deg, point.dec.deg))
    assert facts["wcs_frame"] == {"galactic": "galactic", "ecliptic": "barycentricmeanecliptic", "fk4": "fk4",
                                  "dss": "fk5"}.get(kind, "icrs")


def test_galactic_centre_is_not_stored_as_ra_dec_zero() -> None:
    facts = get_storage_class("Image").extract_metadata(make_image(galactic()))
    expected = SkyCoord(0 * u.deg, 0 * u.deg, frame="galactic").icrs
    assert facts["ra_center"] == pytest.approx(expected.ra.deg, abs=1e-6)
    assert facts["dec_center"] == pytest.approx(expected.dec.deg, abs=1e-6)


def test_no_footprint_for_solar_or_missing_wcs() -> None:
    sc = get_storage_class("Image")
    solar = sc.extract_metadata(make_image(helioprojective()))
    assert solar["region"] is None and solar["ra_center"] is None
    assert solar["wcs_frame"] == "helioprojective" and "no fixed sky position" in solar["footprint_problem"]
    bare = sc.extract_metadata(np.zeros((4, 4), np.int16))
    assert bare["region"] is None and bare["footprint_problem"] == "no WCS"


def test_all_sky_map_gets_a_region_holding_everything() -> None:
    from skybutler.dimensions import regions as sky

    header = _wcs_header(("RA---AIT", "DEC--AIT"), (0.0, 0.0), cdelt=-1.0, crpix=(180.5, 90.5))
    facts = get_storage_class("Image").extract_metadata(make_image(header, 360, 180))
    assert facts["footprint_problem"] is None
    for ra, dec in [(0, 0), (179, 0), (90, 85), (270, -85)]:
        assert facts["region"].contains(sky.point(ra, dec))


@pytest.mark.parametrize("kind", ["tan", "sip", "tpv", "galactic", "ecliptic", "fk4", "swapped", "dss", "three_axes"])
def test_sky_to_pixel_inverts_astropys_sky_position(kind: str) -> None:
    from skybutler.formats.footprints import sky_to_pixel

    header = WCS_KINDS[kind]()
    position = _icrs(header, np.array([30.3]), np.array([40.7]))[0]
    x, y = sky_to_pixel(astropy_wcs(header), position.ra.deg, position.dec.deg)
    assert abs(x - 30.3) < 1e-4 and abs(y - 40.7) < 1e-4
    assert sky_to_pixel(astropy_wcs(helioprojective()), 10.0, 10.0) is None


@pytest.mark.parametrize("kind", sorted(WCS_KINDS))
def test_ingest_builds_each_wcs_from_its_cards_alone_as_astropy_does_from_the_whole_header(tmp_path: Path,
                                                                                            kind: str) -> None:
    """Ingest's one-pass check builds each WCS from the header's WCS cards only (a raw's other
    cards are most of astropy's cost): the WCS, and the file's facts, are astropy's of the whole
    header, among many unrelated cards."""
    from skybutler.formats import examine_file
    from skybutler.formats.fits_wcs import wcs_keys

    header = WCS_KINDS[kind]()
    for n in range(150):
        header[f"JUNK{n:04d}"] = (n * 1.5, "an unrelated card")
    header["OBJECT"], header["TELESCOP"], header["DETSIZE"] = "field", "4m", "[1:120,1:90]"
    path = write_file(tmp_path / f"{kind}.fits", make_image(header))
    examined = examine_file(path, get_formatter("fits"), get_storage_class("Image"))
    (checked,) = examined.checked.images.values()
    xs, ys = np.meshgrid(np.linspace(-0.5, N_X - 0.5, 7), np.linspace(-0.5, N_Y - 0.5, 5))
    for key in wcs_keys(header):
        assert_same_sky(world(checked.wcs[key], xs.ravel(), ys.ravel()),
                        world(astropy_wcs(header, key), xs.ravel(), ys.ravel()))
    assert examined.facts == get_storage_class("Image").extract_metadata(make_image(header))
