"""Real FITS images: every WCS kind, compressed files, HDUs, footprints and sky queries.

Oracles are astropy itself on the full image (``all_pix2world`` at the matching pixel,
``SkyCoord.transform_to(ICRS)``) and brute force in plain Python; the images are built
here with astropy, one per WCS kind.
"""

from __future__ import annotations

import bz2
import gzip
import io
import warnings
from pathlib import Path
from typing import Any

import astropy
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import ICRS, BarycentricMeanEcliptic, SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skybutler import Butler
from skybutler.errors import FormatterError, InvalidFileError
from skybutler.formats import get_formatter, get_storage_class

MAS = 1.0 / 3600 / 1000  # one milli-arcsecond in degrees
N_X, N_Y = 120, 90


def _wcs_header(ctype: tuple[str, str], crval: tuple[float, float], cdelt: float = 2e-4,
                crpix: tuple[float, float] = (60.5, 45.5), **cards: Any) -> fits.Header:
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = ctype
    header["CRVAL1"], header["CRVAL2"] = crval
    header["CRPIX1"], header["CRPIX2"] = crpix
    header["CD1_1"], header["CD1_2"] = -cdelt, 0.1 * cdelt
    header["CD2_1"], header["CD2_2"] = -0.05 * cdelt, cdelt
    for key, value in cards.items():
        header[key.replace("__", "-")] = value
    return header


def tan() -> fits.Header:
    return _wcs_header(("RA---TAN", "DEC--TAN"), (150.1, 2.2), RADESYS="ICRS", EXPTIME=30.0, FILTER="r")


def sip() -> fits.Header:
    h = _wcs_header(("RA---TAN-SIP", "DEC--TAN-SIP"), (210.8, 54.3), cdelt=3e-4)
    h.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 2e-5, "A_1_1": -1e-5, "A_0_2": 3e-6,
              "B_2_0": -4e-6, "B_1_1": 1.5e-5, "B_0_2": 2e-5})
    return h


def tpv() -> fits.Header:
    h = _wcs_header(("RA---TPV", "DEC--TPV"), (35.0, -4.5), cdelt=7e-5)
    h.update({"PV1_0": 0.0, "PV1_1": 1.0, "PV1_2": 0.0, "PV1_4": 2e-3, "PV1_5": -1e-3, "PV1_7": 5e-3,
              "PV2_0": 0.0, "PV2_1": 1.0, "PV2_2": 0.0, "PV2_4": -3e-3, "PV2_6": 1e-3, "PV2_10": 4e-3})
    return h


def zpn() -> fits.Header:
    h = _wcs_header(("RA---ZPN", "DEC--ZPN"), (83.6, 22.0), cdelt=1e-3, crpix=(300.0, -200.0))
    h.update({"PV2_0": 0.0, "PV2_1": 1.0, "PV2_2": 0.0, "PV2_3": 42.0})
    return h


def car() -> fits.Header:
    return _wcs_header(("RA---CAR", "DEC--CAR"), (0.0, 0.0), cdelt=0.05, crpix=(-1000.0, -500.0))


def ait() -> fits.Header:
    return _wcs_header(("RA---AIT", "DEC--AIT"), (266.4, -28.9), cdelt=0.02, crpix=(10.0, 100.0))


def hpx() -> fits.Header:
    return _wcs_header(("RA---HPX", "DEC--HPX"), (0.0, 0.0), cdelt=0.1, crpix=(-200.0, -150.0))


def galactic() -> fits.Header:
    return _wcs_header(("GLON-TAN", "GLAT-TAN"), (0.0, 0.0), cdelt=1e-3)


def ecliptic() -> fits.Header:
    return _wcs_header(("ELON-SIN", "ELAT-SIN"), (120.0, 30.0), cdelt=5e-4)


def fk4() -> fits.Header:
    return _wcs_header(("RA---TAN", "DEC--TAN"), (10.68, 41.27), RADESYS="FK4", EQUINOX=1950.0)


def helioprojective() -> fits.Header:
    h = _wcs_header(("HPLN-TAN", "HPLT-TAN"), (0.0, 0.0), cdelt=6e-4)
    h["CUNIT1"] = h["CUNIT2"] = "deg"
    h["DATE-OBS"] = "2020-01-01T00:00:00"
    return h


def alternates() -> fits.Header:
    """A primary TAN and two alternates: galactic (A) and a shifted, rotated TAN (B)."""
    h = tan()
    alt_a = WCS(galactic())
    alt_b = WCS(_wcs_header(("RA---TAN", "DEC--TAN"), (150.3, 2.1), cdelt=2.5e-4, crpix=(10.0, 20.0)))
    h.update(alt_a.to_header(key="A"))
    h.update(alt_b.to_header(key="B"))
    return h


def alternates_only() -> fits.Header:
    h = fits.Header()
    h.update(WCS(sip()).to_header(key="A", relax=True))
    return h


def swapped() -> fits.Header:
    """Declination on the first pixel axis, right ascension on the second."""
    return _wcs_header(("DEC--TAN", "RA---TAN"), (-30.0, 45.0), cdelt=2e-4)


def three_axes() -> fits.Header:
    """A 2-D image whose WCS has a third, degenerate axis (WCSAXES = 3, a frequency)."""
    h = tan()
    h["WCSAXES"] = 3
    h["CTYPE3"], h["CRVAL3"], h["CRPIX3"], h["CDELT3"], h["CUNIT3"] = "FREQ", 1.4e9, 1.0, 1e6, "Hz"
    return h


def tnx() -> fits.Header:
    """An IRAF TNX header: a TAN core and a polynomial in the WAT cards (wcslib reads it as TPD)."""
    h = _wcs_header(("RA---TNX", "DEC--TNX"), (150.0, 2.0), cdelt=7e-5)
    h["WAT0_001"] = "system=image"
    for axis, text in ((1, 'wtype=tnx axtype=ra lngcor = "3. 3. 3. 2. -0.1 0.1 -0.1 0.1 1e-5 2e-4 -3e-4 5e-5 1e-4 -2e-4 "'),
                       (2, 'wtype=tnx axtype=dec latcor = "3. 3. 3. 2. -0.1 0.1 -0.1 0.1 -2e-5 1e-4 3e-4 -5e-5 2e-4 1e-4 "')):
        for start in range(0, len(text), 68):
            h[f"WAT{axis}_{start // 68 + 1:03d}"] = text[start:start + 68]
    return h


def dss() -> fits.Header:
    """The plate-solution header of a Digitized Sky Survey scan shipped with astropy's tests."""
    path = Path(astropy.__file__).parent / "wcs" / "tests" / "data" / "dss.14.29.56-62.41.05.fits.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = fits.getheader(path)
    for key in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND"):
        header.remove(key, ignore_missing=True)
    return header


WCS_KINDS = {"tan": tan, "sip": sip, "tpv": tpv, "zpn": zpn, "car": car, "ait": ait, "hpx": hpx,
             "galactic": galactic, "ecliptic": ecliptic, "fk4": fk4, "helioprojective": helioprojective,
             "alternates": alternates, "alternates_only": alternates_only, "dss": dss, "tnx": tnx,
             "three_axes": three_axes, "swapped": swapped}


def make_image(header: fits.Header, n_x: int = N_X, n_y: int = N_Y, dtype: Any = np.float32) -> fits.PrimaryHDU:
    data = (np.arange(n_x * n_y) % 1009).reshape(n_y, n_x).astype(dtype)
    return fits.PrimaryHDU(data=data, header=header)


def astropy_wcs(header: fits.Header, key: str = " ") -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(header, key=key)


def write_file(path: Path, hdus: Any, compress: str | None = None) -> Path:
    buffer = io.BytesIO()
    (hdus if isinstance(hdus, fits.HDUList) else fits.HDUList([hdus])).writeto(buffer, output_verify="silentfix")
    raw = buffer.getvalue()
    if compress == "gzip":
        raw = gzip.compress(raw)
    elif compress == "bzip2":
        raw = bz2.compress(raw)
    path.write_bytes(raw)
    return path


def read(path: Path, formatter: str = "fits", component: str | None = None, **parameters: Any) -> Any:
    with open(path, "rb") as stream:
        return get_formatter(formatter).read(stream, component=component, parameters=parameters or None)


def world(wcs: WCS, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if wcs.naxis > 2:  # a degenerate third axis: its first pixel
            return np.array(wcs.all_pix2world(xs, ys, np.zeros_like(xs), 0)[:2])
        return np.array(wcs.all_pix2world(xs, ys, 0))


def assert_same_sky(a: np.ndarray, b: np.ndarray, tolerance: float = MAS) -> None:
    """Longitudes compared on the sphere (wrapped, scaled by cos(lat)), latitudes directly."""
    d_lon = (a[0] - b[0] + 180.0) % 360.0 - 180.0
    assert np.nanmax(np.abs(d_lon * np.cos(np.radians(b[1])))) < tolerance
    assert np.nanmax(np.abs(a[1] - b[1])) < tolerance
    assert np.array_equal(np.isnan(a), np.isnan(b))


BOXES = [(0, 0, 30, 20), (17, 11, 95, 80), (90, 60, N_X, N_Y)]


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


def _icrs(header: fits.Header, xs: np.ndarray, ys: np.ndarray, key: str = " ") -> SkyCoord:
    wcs = astropy_wcs(header, key)
    wcs = wcs if wcs.naxis == 2 else wcs.celestial
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if wcs.wcs.ctype[0].startswith("ELON"):  # FITS ecliptic axes: the mean ecliptic of J2000
            lon, lat = wcs.all_pix2world(xs, ys, 0)
            return SkyCoord(lon * u.deg, lat * u.deg, frame=BarycentricMeanEcliptic(equinox="J2000")) \
                .transform_to(ICRS())
        return wcs.pixel_to_world(xs, ys).transform_to(ICRS())


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


# -- compressed files and HDUs ------------------------------------------------------


@pytest.mark.parametrize("compress", [None, "gzip", "bzip2", "tile"])
def test_compressed_files_read_and_cut_out(tmp_path: Path, compress: str | None) -> None:
    header = sip()
    image = make_image(header, dtype=np.int32)
    if compress == "tile":
        path = tmp_path / "image.fits.fz"
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(image.data, header=header, tile_shape=(10, N_X))]) \
            .writeto(path)
    else:
        path = write_file(tmp_path / "image.fits", image, compress)
    np.testing.assert_array_equal(read(path, "fits", "data"), image.data)
    box = (5, 7, 60, 33)
    cut = read(path, bbox=box)
    np.testing.assert_array_equal(cut.data, image.data[7:33, 5:60])
    xs, ys = np.array([0.0, 54.0]), np.array([0.0, 25.0])
    assert_same_sky(world(astropy_wcs(cut.header), xs, ys), world(astropy_wcs(header), xs + 5, ys + 7))
    validate(path)
    # The same bytes through an in-memory stream (an object store's file object).
    with open(path, "rb") as f:
        stream = io.BytesIO(f.read())
    np.testing.assert_array_equal(get_formatter("fits").read(stream, component="data"), image.data)
    assert not stream.closed


def test_tile_compressed_cutout_reads_only_its_tiles(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 60000, size=(2000, 500)).astype(np.int32)
    path = tmp_path / "big.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, tile_shape=(10, 500))]).writeto(path)

    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, size: int = -1) -> bytes:
            out = super().read(size)
            Counting.read_bytes += len(out)
            return out

    stream = Counting(path.read_bytes())
    cut = get_formatter("fits").read(stream, component="data", parameters={"bbox": (0, 1000, 500, 1010)})
    np.testing.assert_array_equal(cut, data[1000:1010])
    assert Counting.read_bytes < path.stat().st_size / 4


def make_raw(n_amps: int = 4) -> fits.HDUList:
    primary = fits.PrimaryHDU(header=fits.Header({"DATE-OBS": "2026-03-01T01:02:03", "MJD-OBS": 61100.04,
                                                  "EXPTIME": 15.0, "FILTER": "g", "INSTRUME": "SimCam"}))
    hdus = [primary]
    for amp in range(n_amps):
        header = _wcs_header(("RA---TAN", "DEC--TAN"), (150.0, 2.0), crpix=(60.5 - 40 * amp, 45.5))
        header["EXTNAME"] = f"AMP{amp:02d}"
        header["INHERIT"] = True
        hdus.append(fits.ImageHDU(np.full((N_Y, 40), amp, dtype=np.uint16), header=header))
    hdus.append(fits.BinTableHDU(Table({"a": [1, 2]}), name="CATALOG"))
    return fits.HDUList(hdus)


def test_hdus_by_name_and_index_with_inherited_header(tmp_path: Path) -> None:
    path = write_file(tmp_path / "raw.fits", make_raw(), "gzip")
    amp = read(path, hdu="AMP02")
    assert amp.data.dtype == np.uint16 and np.all(amp.data == 2)
    assert amp.header["DATE-OBS"] == "2026-03-01T01:02:03" and amp.header["EXPTIME"] == 15.0
    np.testing.assert_array_equal(read(path, "fits", "data", hdu=3), amp.data)
    np.testing.assert_array_equal(read(path, "fits", "data", hdu=("AMP02", 1)), amp.data)
    assert read(path, "fits", "header", hdu="amp01")["EXTNAME"] == "AMP01"
    with pytest.raises(FormatterError, match=r"no HDU 'AMP07'.*4:AMP03"):
        read(path, hdu="AMP07")
    with pytest.raises(FormatterError, match=r"HDU 5 \(CATALOG\) is a BinTableHDU, not an image"):
        read(path, hdu="CATALOG")
    with pytest.raises(FormatterError, match=r"HDU 0 \(PRIMARY\) holds a 0-D array"):
        read(path, hdu=0)


def test_multi_extension_image(tmp_path: Path) -> None:
    sc = get_storage_class("MultiExtensionImage")
    raw = sc.check(make_raw())
    fmt = get_formatter("fits-mef")
    path = tmp_path / "raw.fits"
    with open(path, "wb") as stream:
        fmt.write(raw, stream)
    whole = read(path, "fits-mef")
    assert [h.name for h in whole] == ["PRIMARY", "AMP00", "AMP01", "AMP02", "AMP03", "CATALOG"]
    assert whole["AMP03"].header["MJD-OBS"] == 61100.04
    headers = read(path, "fits-mef", "headers")
    assert len(headers) == 6 and headers[2]["FILTER"] == "g"
    cut = read(path, "fits-mef", hdu="AMP01", bbox=(0, 0, 10, 10))
    assert cut.data.shape == (10, 10) and np.all(cut.data == 1)
    facts = sc.extract_metadata(raw)
    assert facts == sc.extract_metadata(headers) | {}  # the same facts from the headers alone
    assert facts["n_hdus"] == 6 and facts["n_images"] == 4
    # The union footprint holds every amplifier's corners.
    from skybutler.dimensions import regions as sky

    for amp in range(4):
        header = raw[amp + 1].header
        for corner in _icrs(header, np.array([0.0, 39.0]), np.array([0.0, N_Y - 1.0])):
            assert facts["region"].contains(sky.point(corner.ra.deg, corner.dec.deg))


def test_fits_table(tmp_path: Path) -> None:
    sc = get_storage_class("FitsTable")
    table = Table({"id": np.arange(5), "flux": np.linspace(1, 2, 5) * u.nJy, "band": list("ugriz")})
    fmt = get_formatter("fits-table")
    path = tmp_path / "cat.fits"
    with open(path, "wb") as stream:
        fmt.write(sc.check(table), stream)
    back = read(path, "fits-table")
    assert back.colnames == ["id", "flux", "band"] and back["flux"].unit == u.nJy
    assert list(back["band"]) == list("ugriz")
    arrow = read(path, "fits-table", columns=["flux", "id"], **{"as": "arrow"})
    assert arrow.column_names == ["flux", "id"] and arrow.num_rows == 5
    assert read(path, "fits-table", "columns") == ["id", "flux", "band"]
    assert sc.extract_metadata(read(path, "fits-table", "header")) == sc.extract_metadata(table)
    with pytest.raises(FormatterError, match=r"unknown column\(s\) \['nope'\]"):
        read(path, "fits-table", columns=["nope"])


# -- validation at ingest -------------------------------------------------------------


def validate(path: Path, formatter: str = "fits") -> None:
    with open(path, "rb") as stream:
        get_formatter(formatter).validate(stream)



@pytest.mark.parametrize(("formatter", "storage_class"), [("fits", "Image"), ("fits-mef", "MultiExtensionImage"),
                                                          ("fits-table", "FitsTable")])
def test_checksum_cards_read_with_an_object_are_not_written_with_it(tmp_path: Path, formatter: str,
                                                                  storage_class: str) -> None:
    """An object read from a file with checksums, its pixels changed, is written without the old
    CHECKSUM/DATASUM (they describe other bytes): the file passes the check its ingest makes."""
    source = tmp_path / "source.fits"
    table = Table({"flux": [1.0, 2.0]})
    (fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)]) if formatter == "fits-table"
     else make_raw(2)).writeto(source, checksum=True)
    with fits.open(source) as hdus:
        if formatter == "fits-table":
            obj = Table.read(hdus[1])
            obj.meta["DATASUM"] = hdus[1].header["DATASUM"]
            obj["flux"] *= 2
        else:
            hdus.readall()
            obj = fits.HDUList([hdu.copy() for hdu in hdus]) if formatter == "fits-mef" else hdus[1].copy()
            for hdu in obj if formatter == "fits-mef" else [obj]:
                if hdu.data is not None and hdu.is_image:
                    hdu.data = hdu.data + 1
    path = tmp_path / "written.fits"
    with open(path, "wb") as stream:
        get_formatter(formatter).write(get_storage_class(storage_class).check(obj), stream)
    validate(path, formatter)
    with fits.open(path) as hdus:
        assert not any("DATASUM" in hdu.header or "CHECKSUM" in hdu.header for hdu in hdus)


def test_a_datasum_card_must_match_the_data(tmp_path: Path) -> None:
    """The FITS checksum convention: each HDU's data, summed, match its DATASUM (astropy's own sum)."""
    path = tmp_path / "summed.fits"
    make_raw(2).writeto(path, checksum=True)
    validate(path, "fits-mef")
    with fits.open(path) as hdus:
        at = hdus[2]._data_offset + 11
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(FormatterError, match=r"the data of HDU 2 do not match its DATASUM card \(\d+; they sum to"):
        validate(path, "fits-mef")

def test_validation_refuses_bad_files(tmp_path: Path) -> None:
    good = write_file(tmp_path / "good.fits", make_image(tan()))
    validate(good)
    text = tmp_path / "notes.fits"
    text.write_text("this is not FITS\n" * 200)
    with pytest.raises(FormatterError, match=r"the primary header does not parse"):
        validate(text)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[:2880 + 4000])
    with pytest.raises(FormatterError, match=r"truncated: HDU 0 declares data up to byte"):
        validate(truncated)
    for kind, pack in (("gzip", gzip.compress), ("bzip2", bz2.compress)):
        packed = bytearray(pack(good.read_bytes()))
        packed[len(packed) // 2] ^= 0xFF
        corrupt = tmp_path / "corrupt.fits.gz"
        corrupt.write_bytes(bytes(packed))
        with pytest.raises(FormatterError, match=f"the {kind} stream is corrupt"):
            validate(corrupt)
        whole = tmp_path / "whole.fits.gz"
        whole.write_bytes(pack(good.read_bytes()[:2880 + 4000]))
        with pytest.raises(FormatterError, match=r"truncated: HDU 0"):
            validate(whole)
    table_only = write_file(tmp_path / "table.fits", fits.HDUList([fits.PrimaryHDU(),
                                                                   fits.BinTableHDU(Table({"a": [1]}))]))
    with pytest.raises(FormatterError, match=r"the file holds no 2-D image HDU"):
        validate(table_only)
    validate(table_only, "fits-table")
    with pytest.raises(FormatterError, match=r"the file holds no table HDU"):
        validate(good, "fits-table")
    bad_wcs = make_image(tan())
    bad_wcs.header["CTYPE1"], bad_wcs.header["CTYPE2"] = "RA---TAN", "RA---TAN"
    with pytest.raises(FormatterError, match=r"HDU 0 \(PRIMARY\): astropy cannot parse the primary WCS"):
        validate(write_file(tmp_path / "bad_wcs.fits", bad_wcs))
    bad_alt = make_image(alternates())
    bad_alt.header["CTYPE2B"] = "RA---TAN"
    with pytest.raises(FormatterError, match=r"astropy cannot parse the WCS 'B'"):
        validate(write_file(tmp_path / "bad_alt.fits", bad_alt))
    tiles = tmp_path / "tiles.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(make_image(tan(), dtype=np.int32).data,
                                                       tile_shape=(10, N_X))]).writeto(tiles)
    validate(tiles)
    with fits.open(tiles, disable_image_compression=True) as hdus:  # where the compressed tiles lie
        table = hdus[1]
        start = hdus.fileinfo(1)["datLoc"] + table.header["NAXIS1"] * table.header["NAXIS2"]
    broken = bytearray(tiles.read_bytes())
    broken[start + 50:start + 450] = b"\xa5" * 400
    tiles.write_bytes(bytes(broken))
    with pytest.raises(FormatterError, match=r"HDU 1 .*compressed tiles cannot be decoded"):
        validate(tiles)


# -- the repository: ingest, put, facts, sky queries -------------------------------------


def _pointed(ra: float, dec: float, frame: str = "icrs", size: tuple[int, int] = (N_X, N_Y)) -> fits.PrimaryHDU:
    """A small TAN image centred on (ra, dec) of ``frame``, 0.2 arcmin pixels, slightly rotated."""
    if frame == "galactic":
        header = _wcs_header(("GLON-TAN", "GLAT-TAN"), (ra, dec), cdelt=3e-3)
    else:
        header = _wcs_header(("RA---TAN", "DEC--TAN"), (ra, dec), cdelt=3e-3, RADESYS="ICRS")
    header["CRPIX1"], header["CRPIX2"] = (size[0] + 1) / 2, (size[1] + 1) / 2
    return make_image(header, *size)


def _covers(hdu: fits.PrimaryHDU, ra: float, dec: float) -> bool:
    """Brute force: does the image hold a pixel at ICRS (ra, dec)?  (astropy's world_to_pixel)."""
    wcs = _WCS_OF.get(id(hdu)) or _WCS_OF.setdefault(id(hdu), astropy_wcs(hdu.header))
    if not wcs.has_celestial or wcs.wcs.ctype[0].startswith("HPLN"):
        return False
    x, y = wcs.world_to_pixel(SkyCoord(ra * u.deg, dec * u.deg, frame="icrs"))
    n_y, n_x = hdu.data.shape
    return bool(-0.5 <= x < n_x - 0.5 and -0.5 <= y < n_y - 0.5)


_WCS_OF: dict[int, WCS] = {}


@pytest.fixture
def images(butler, tmp_path):
    """Images of visit 1, detectors 0..3 and visit 2, detectors 0..3: five ingested (plain, gzip,
    bzip2, tile-compressed, gzip named .fits), three put; one galactic, one helioprojective."""
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "Image")
    rng = np.random.default_rng(7)
    made: dict[tuple[int, int], fits.PrimaryHDU] = {}
    ingested = []
    ways = {0: None, 2: "gzip", 4: "bzip2", 6: "tile", 7: "gzip-as-fits"}
    for n, (visit, detector) in enumerate([(v, d) for v in (1, 2) for d in range(4)]):
        if n == 6:
            hdu = make_image(helioprojective())
        elif n == 5:
            hdu = _pointed(0.1, 0.2, "galactic")
        else:
            hdu = _pointed(150.0 + rng.uniform(-0.3, 0.3), 2.0 + rng.uniform(-0.3, 0.3))
        made[(visit, detector)] = hdu
        data_id = {"instrument": "Cam", "visit": visit, "detector": detector}
        if n not in ways:
            butler.put(hdu, "calexp", data_id)
            continue
        way = ways[n]
        if way == "tile":
            path = tmp_path / f"in{n}.fits.fz"
            fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(hdu.data, header=hdu.header)]).writeto(path)
        else:
            suffix = {None: ".fits", "gzip": ".fits.gz", "bzip2": ".fits.bz2", "gzip-as-fits": ".fits"}[way]
            path = write_file(tmp_path / f"in{n}{suffix}", hdu, "gzip" if way == "gzip-as-fits" else way)
        ingested.append((path, data_id))
    refs = butler.ingest("calexp", ingested, run="run/a")
    _WCS_OF.clear()  # cached by object id: only while these images are alive
    yield butler, made, refs
    _WCS_OF.clear()


def test_ingested_files_keep_their_full_suffix_and_read_back(images):
    butler, made, refs = images
    suffixes = sorted(Path(r.artifact.path).name.split(".", 1)[1] for r in refs)
    assert suffixes == ["fits", "fits", "fits.bz2", "fits.fz", "fits.gz"]
    for ref in refs:
        key = (ref.data_id["visit"], ref.data_id["detector"])
        np.testing.assert_array_equal(butler.get(ref, component="data"), made[key].data)
        cut = butler.get(ref, parameters={"bbox": (3, 4, 50, 40)})
        np.testing.assert_array_equal(cut.data, made[key].data[4:40, 3:50])


def test_ingested_and_put_images_have_the_same_facts(images):
    butler, made, refs = images
    sc = get_storage_class("Image")
    for ref in butler.query_datasets("calexp", collections="run/a"):
        facts = butler.get_metadata(ref)
        expected = sc.extract_metadata(made[(ref.data_id["visit"], ref.data_id["detector"])])
        assert facts.keys() == expected.keys()
        for key, value in expected.items():
            if key == "region":
                assert (value is None) == (facts[key] is None)
                if value is not None:
                    assert facts[key].encode() == value.encode()
            elif isinstance(value, float):
                assert facts[key] == pytest.approx(value, abs=1e-12)
            else:
                assert facts[key] == value, key
    assert butler.query_datasets("calexp", where="calexp.n_x > 0", collections="run/a").count() == 8


def test_which_images_cover_a_position_matches_brute_force(images):
    butler, made, _ = images
    rng = np.random.default_rng(3)
    galactic_centre = SkyCoord(0.1 * u.deg, 0.2 * u.deg, frame="galactic").icrs
    points = [(150.0 + rng.uniform(-0.6, 0.6), 2.0 + rng.uniform(-0.6, 0.6)) for _ in range(40)]
    points += [(galactic_centre.ra.deg, galactic_centre.dec.deg), (0.0, 0.0), (0.1, 0.2)]
    for ra, dec in points:
        where = f"calexp.region OVERLAPS POINT({float(ra)!r}, {float(dec)!r})"
        found = {(r.data_id["visit"], r.data_id["detector"])
                 for r in butler.query_datasets("calexp", where=where, collections="run/a")}
        expected = {key for key, hdu in made.items() if _covers(hdu, ra, dec)}
        assert found == expected, (ra, dec)
        # The same question about data IDs, through the first-found dataset of each.
        ids = {(d["visit"], d["detector"]) for d in butler.query_data_ids(["visit", "detector"], where=where,
                                                                          collections="run/a")}
        assert ids == expected


def test_region_fact_needs_a_constant_region(images):
    from skybutler.errors import QueryError

    butler, _, _ = images
    with pytest.raises(QueryError, match="constant region"):
        list(butler.query_datasets("calexp", where="calexp.region OVERLAPS visit.region", collections="run/a"))


def test_bad_files_are_refused_at_ingest_and_nothing_changes(butler, tmp_path):
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "Image")
    good = write_file(tmp_path / "good.fits", _pointed(150.0, 2.0))
    text = tmp_path / "notes.fits"
    text.write_text("not FITS at all\n" * 300)
    corrupt = tmp_path / "corrupt.fits.gz"
    packed = bytearray(gzip.compress(good.read_bytes()))
    packed[len(packed) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(packed))
    table = write_file(tmp_path / "table.fits", fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"a": [1]}))]))
    before = set(butler.datastore.walk())
    for bad, pattern in [(text, r"notes\.fits: Formatter 'fits': the primary header does not parse"),
                         (corrupt, r"corrupt\.fits\.gz: Formatter 'fits': the gzip stream is corrupt"),
                         (table, r"table\.fits: Formatter 'fits': the file holds no 2-D image HDU")]:
        with pytest.raises(InvalidFileError, match=pattern):
            butler.ingest("calexp", [(good, {"instrument": "Cam", "visit": 1, "detector": 0}),
                                     (bad, {"instrument": "Cam", "visit": 1, "detector": 1})], run="run/a")
    assert set(butler.datastore.walk()) == before
    assert not butler.collections.exists("run/a") or \
        butler.query_datasets("calexp", collections="run/a").count() == 0


def test_extract_metadata_backfills_stored_datasets(images, tmp_path):
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    butler, made, _ = images
    refs = list(butler.query_datasets("calexp", collections="run/a"))
    expected = {r.id: butler.get_metadata(r) for r in refs}
    table = butler.registry.metadata.table("Image")
    with butler.registry.db.transaction() as conn:  # as if stored before facts were extracted
        conn.execute(table.delete())
    assert butler.query_datasets("calexp", where="calexp.n_x > 0", collections="run/a").count() == 0
    assert butler.extract_metadata("calexp", collections="run/a") == 8
    assert butler.extract_metadata("calexp", collections="run/a") == 0  # nothing left without facts
    assert {r.id: butler.get_metadata(r)["ra_center"] for r in refs} == \
        {i: f["ra_center"] for i, f in expected.items()}
    centre = made[(1, 0)].header["CRVAL1"], made[(1, 0)].header["CRVAL2"]
    where = f"calexp.region OVERLAPS POINT({centre[0]!r}, {centre[1]!r})"
    assert (1, 0) in {(r.data_id["visit"], r.data_id["detector"])
                      for r in butler.query_datasets("calexp", where=where, collections="run/a")}
    with butler.registry.db.transaction() as conn:
        conn.execute(table.delete().where(table.c.n_x.isnot(None)))
    butler.close()
    result = CliRunner().invoke(cli, ["extract-metadata", str(tmp_path / "repo"), "calexp", "-c", "run/a",
                                      "--where", "visit = 1"])
    assert result.exit_code == 0, result.output
    assert "4 dataset(s)" in result.output
    again = Butler(tmp_path / "repo", collections=["run/a"])
    assert again.query_datasets("calexp", where="calexp.n_x > 0").count() == 4
    again.close()


def test_import_extracts_facts(images, tmp_path, make_butler):
    from skybutler.repository_transfer import export_datasets, import_datasets

    butler, _, _ = images
    refs = list(butler.query_datasets("calexp", collections="run/a"))
    export_datasets(butler, refs, tmp_path / "export")
    target = make_butler("target")
    assert import_datasets(target, tmp_path / "export") == 8
    for ref in refs:
        assert target.get_metadata(ref)["n_x"] == butler.get_metadata(ref)["n_x"]
        assert target.get_metadata(ref)["ra_center"] == butler.get_metadata(ref)["ra_center"]


def test_multi_extension_raw_in_the_repository(butler, tmp_path):
    butler.register_dataset_type("mef", ["instrument", "visit", "detector"], "MultiExtensionImage")
    path = write_file(tmp_path / "raw.fits.gz", make_raw(), "gzip")
    ref = butler.ingest("mef", [(path, {"instrument": "Cam", "visit": 1, "detector": 0})], run="run/a")[0]
    assert ref.artifact.path.endswith(".fits.gz")
    amp = butler.get(ref, parameters={"hdu": "AMP03"})
    assert np.all(amp.data == 3) and amp.header["FILTER"] == "g"
    assert len(butler.get(ref)) == 6
    with pytest.raises(FormatterError, match=r"mef_Cam_1_0\.fits\.gz: no HDU 'AMP07' in the file \(HDUs: 0:PRIMARY"):
        butler.get(ref, parameters={"hdu": "AMP07"})
    facts = butler.get_metadata(ref)
    assert facts["n_images"] == 4 and facts["filter"] == "g" and facts["region"] is not None
    put = butler.put(make_raw(), "mef", {"instrument": "Cam", "visit": 1, "detector": 1})
    assert butler.get_metadata(put)["ra_center"] == pytest.approx(facts["ra_center"], abs=1e-9)


def test_ingested_raws_have_facts_and_footprints(tmp_path):
    from skybutler.ingest import ingest_raws
    from skybutler.instruments import simulate_night

    night = tmp_path / "night"
    night.mkdir()
    simulate_night(night, day_obs=20260301, n_science=1, n_bias=1, n_flat=0, bands=("g",), size=32)
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, night)
        assert result.ok and result.refs
        science = 0
        for ref in result.refs:
            facts = butler.get_metadata(ref)
            assert facts["n_x"] > 0 and facts["dtype"]
            with fits.open(butler.get_uri(ref).removeprefix("file://")) as hdus:
                image = next(h for h in hdus if h.is_image and h.header.get("NAXIS") == 2)
                has_wcs = "CTYPE1" in image.header
            assert (facts["region"] is not None) == has_wcs
            if has_wcs:
                science += 1
                where = f"raw.region OVERLAPS POINT({facts['ra_center']!r}, {facts['dec_center']!r})"
                found = {r.id for r in butler.query_datasets("raw", where=where, collections="SimCam/raw/all")}
                assert ref.id in found
        assert science > 0  # the science raws carry a WCS
        assert butler.query_datasets("raw", where="raw.n_x > 0", collections="SimCam/raw/all").count() == \
            len(result.refs)


def test_cutouts_around_a_position_from_every_covering_image(images, tmp_path):
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    butler, made, _ = images
    grid = [(150.0 + i * 0.1, 2.0 + j * 0.1) for i in range(-3, 4) for j in range(-3, 4)]
    ra, dec = max(grid, key=lambda p: sum(_covers(hdu, *p) for hdu in made.values()))
    expected = {key for key, hdu in made.items() if _covers(hdu, ra, dec)}
    assert len(expected) >= 2
    cutouts = butler.get_cutouts("calexp", ra, dec, 21, collections="run/a")
    assert {(r.data_id["visit"], r.data_id["detector"]) for r, _ in cutouts} == expected
    target = SkyCoord(ra * u.deg, dec * u.deg)
    for ref, cut in cutouts:
        full = made[(ref.data_id["visit"], ref.data_id["detector"])]
        x, y = astropy_wcs(full.header).world_to_pixel(target)
        x0, y0 = round(float(x)) - 10, round(float(y)) - 10   # 21 pixels centred on the position's pixel
        x1, y1 = min(x0 + 21, N_X), min(y0 + 21, N_Y)
        x0, y0 = max(x0, 0), max(y0, 0)                       # clipped at the edges
        np.testing.assert_array_equal(cut.data, full.data[y0:y1, x0:x1])
        cx, cy = astropy_wcs(cut.header).world_to_pixel(target)
        assert abs(cx - (x - x0)) < 1e-6 and abs(cy - (y - y0)) < 1e-6
    pytest.importorskip("fastapi")
    from server_helpers import running_server
    from skybutler.access import Access

    access = Access(butler.registry.access)
    access.grant("*", "*", "*", "read")
    with running_server(butler.root) as url:  # the same cut-outs through a server
        remote = Butler(url, token=access.create_token("ana")).get_cutouts("calexp", ra, dec, 21, collections="run/a")
    assert [r.id for r, _ in remote] == [r.id for r, _ in cutouts]
    for (_, there), (_, here) in zip(remote, cutouts):
        np.testing.assert_array_equal(there.data, here.data)
        assert there.header["CRPIX1"] == here.header["CRPIX1"]
    butler.close()
    result = CliRunner().invoke(cli, ["cutouts", str(tmp_path / "repo"), "calexp", str(ra), str(dec), "--size", "21",
                                      "-c", "run/a", "-o", str(tmp_path / "cut"), "--json"])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "cut").glob("*.fits"))
    assert len(written) == len(expected)
    with fits.open(written[0]) as hdus:
        assert hdus[0].data.shape == cutouts[0][1].data.shape and "CRPIX1" in hdus[0].header


def test_an_older_image_facts_table_gains_the_new_columns(butler):
    """A repository whose Image facts table predates footprints: the first put adds the columns."""
    old = {"n_x": int, "n_y": int, "dtype": str, "ra_center": float, "dec_center": float}
    butler.registry.metadata.table("Image", old)
    butler.registry.metadata.refresh()
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "Image")
    ref = butler.put(_pointed(150.0, 2.0), "calexp", {"instrument": "Cam", "visit": 1, "detector": 0})
    facts = butler.get_metadata(ref)
    assert facts["region"] is not None and facts["filter"] is None and facts["n_x"] == N_X
    where = "calexp.region OVERLAPS POINT(150.0, 2.0)"
    assert butler.query_datasets("calexp", where=where, collections="run/a").count() == 1


@pytest.mark.parametrize("kind", ["tan", "sip", "tpv", "galactic", "ecliptic", "fk4", "swapped", "dss", "three_axes"])
def test_sky_to_pixel_inverts_astropys_sky_position(kind: str) -> None:
    from skybutler.formats.footprints import sky_to_pixel

    header = WCS_KINDS[kind]()
    position = _icrs(header, np.array([30.3]), np.array([40.7]))[0]
    x, y = sky_to_pixel(astropy_wcs(header), position.ra.deg, position.dec.deg)
    assert abs(x - 30.3) < 1e-4 and abs(y - 40.7) < 1e-4
    assert sky_to_pixel(astropy_wcs(helioprojective()), 10.0, 10.0) is None


def test_cli_get_image_writes_a_cutout_and_prints_headers(butler, tmp_path):
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    butler.register_dataset_type("mef", ["instrument", "visit", "detector"], "MultiExtensionImage")
    butler.put(make_raw(), "mef", {"instrument": "Cam", "visit": 1, "detector": 0})
    butler.close()
    repo, runner = str(tmp_path / "repo"), CliRunner()
    args = ["get-image", repo, "mef", "instrument=Cam", "visit=1", "detector=0", "-c", "run/a"]
    result = runner.invoke(cli, [*args, "--hdu", "AMP02", "--bbox", "1,2,11,7", "-o", str(tmp_path / "c.fits")])
    assert result.exit_code == 0, result.output
    with fits.open(tmp_path / "c.fits") as hdus:
        assert hdus[0].data.shape == (5, 10) and np.all(hdus[0].data == 2)
        assert hdus[0].header["CRPIX1"] == pytest.approx(60.5 - 80 - 1) and hdus[0].header["FILTER"] == "g"
    result = runner.invoke(cli, [*args, "--hdu", "AMP01", "--header"])
    assert result.exit_code == 0 and "EXTNAME = 'AMP01" in result.output and "DATE-OBS" in result.output
    result = runner.invoke(cli, [*args, "--hdu", "AMP09", "--header"])
    assert result.exit_code == 1 and "no HDU 'AMP09'" in result.output
    result = runner.invoke(cli, [*args, "--bbox", "1,2,3", "--header"])
    assert result.exit_code == 1 and "four integers" in result.output


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


def test_each_hdus_data_size_is_the_standards(tmp_path: Path) -> None:
    """FITS section 4.4.1: PCOUNT and GCOUNT size the data of extensions and of random groups
    (whose NAXIS1 is 0), and mean nothing in a primary array.  astropy counts them there too: a
    primary with such stray cards and extensions after it is refused, naming them (astropy would
    not find the extensions); alone, its data are its NAXISn's, as astropy reads them."""
    from skybutler.formats.fits_validation import walk_headers

    groups = fits.GroupData(np.arange(12, dtype=np.float32).reshape(3, 1, 2, 2), parnames=["u", "v"],
                            pardata=[np.ones(3), np.zeros(3)], bitpix=-32)
    table = fits.BinTableHDU.from_columns([fits.Column("x", "E", array=np.arange(3.0))], name="T")
    path = tmp_path / "groups.fits"
    fits.HDUList([fits.GroupsHDU(groups), table]).writeto(path)
    with open(path, "rb") as stream:
        headers, _ = walk_headers(stream, path.name)
    with fits.open(path) as hdus:
        assert [h.get("EXTNAME") for h in headers] == [h.header.get("EXTNAME") for h in hdus] == [None, "T"]

    primary = fits.PrimaryHDU(np.arange(20, dtype=np.int16).reshape(4, 5))
    primary.header["PCOUNT"], primary.header["GCOUNT"] = 1000, 3  # stray cards of a merged header
    alone, followed = tmp_path / "alone.fits", tmp_path / "followed.fits"
    primary.writeto(alone)
    fits.HDUList([primary, table]).writeto(followed)
    with open(alone, "rb") as stream:
        assert len(walk_headers(stream, alone.name)[0]) == 1
    with open(followed, "rb") as stream, pytest.raises(FormatterError, match="PCOUNT/GCOUNT.*not random groups"):
        walk_headers(stream, followed.name)
