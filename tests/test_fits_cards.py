"""Headers read block by block (skybutler.formats.fits_cards) and WCSs built from their cards
(fits_wcs.build_wcs_of_cards), against astropy's own reading of the same bytes.

Oracles: astropy's ``Header.fromstring`` card values, astropy's ``WCS`` built from the whole
header and its ``all_pix2world``; the headers are the test cameras' (tests/camera_headers.py)
with a WCS, written by astropy, and hostile cards and files written here byte by byte.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import wcs_to_celestial_frame

import camera_headers as ch
from skybutler.errors import FormatterError
from skybutler.formats.fits_cards import BLOCK, read_header
from skybutler.formats.fits_wcs import build_wcs_of_cards
from skybutler.formats.footprints import celestial_frame

CAMERAS = {"hsc": ch.hsc, "suprimecam": ch.suprimecam, "decam": ch.decam, "megaprime": ch.megaprime,
           "sdss": ch.sdss, "lsstcam": ch.lsstcam, "lsstcomcam": ch.lsstcomcam, "latiss": ch.latiss}
WCS_CARDS = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.1, "CRVAL2": 2.2, "CRPIX1": 32.5,
             "CRPIX2": 30.5, "CD1_1": -4.7e-05, "CD1_2": 1.1e-06, "CD2_1": 1.3e-06, "CD2_2": 4.7e-05,
             "RADESYS": "ICRS", "EQUINOX": 2000.0}


def _astropy(data: bytes) -> fits.Header:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fits.Header.fromstring(data)


def _same_cards(data: bytes) -> None:
    """read_header gives astropy's keyword, value and value type for every card, first card wins."""
    ours = read_header(io.BytesIO(data))
    theirs = _astropy(data)
    assert [c.keyword for c in ours.cards] == [c.keyword for c in theirs.cards]
    for mine, card in zip(ours.cards, theirs.cards):
        assert type(mine.value) is type(card.value) and mine.value == card.value, (card.image, mine.value)
    for keyword in set(theirs) - {"COMMENT", "HISTORY", ""}:  # commentary: astropy gives all their cards
        assert ours[keyword] == theirs[keyword] and type(ours[keyword]) is type(theirs[keyword])


def _blocks(images: list[str], end: bool = True) -> bytes:
    text = "".join(image.ljust(80)[:80] for image in images) + ("END".ljust(80) if end else "")
    return text.ljust(-(-len(text) // BLOCK) * BLOCK).encode("ascii")


@pytest.mark.parametrize("camera", sorted(CAMERAS))
def test_every_test_camera_header_reads_as_astropy_reads_it(camera: str) -> None:
    header = fits.Header()
    for key, value in {**CAMERAS[camera](), **WCS_CARDS}.items():
        header[key] = value
    header.add_comment("a comment / with a slash")
    header.add_history("reduced")
    header["BLANKSTR"] = "   "
    header["QUOTED"] = "it's 'quoted'"
    _same_cards(fits.PrimaryHDU(np.zeros((4, 4), np.int16), header).header.tostring().encode())


HOSTILE_CARDS = [
    "INT     =                   42 / the answer", "NEG     =                  -17", "PLUS    =                  +17",
    "ZEROS   =                  007", "BIG     = 123456789012345678901234567890", "NEGZERO =                 -0.0",
    "REAL    =               1.5E+3", "DEXP    =               1.5D-3", "LOWEXP  =               1.5e-3",
    "DOT     =                   1.", "LEAD    =                  .25", "FREEREAL=  3.25/no space",
    "LOGT    =                    T", "LOGF    =                    F / false", "STR     = 'plain   '",
    "EMPTY   = ''", "SPACES  = '    '", "LEADSP  = '  lead'", "QUOTES  = 'it''s'", "ENDQ    = 'abc'''",
    "SLASH   = 'a/b' / c/d", "COLON   = '10:00:28.600'", "CPLX    = (1.5, -2.0)", "UNDEF   =                    / none",
    "DP1     = 'NAXES: 2'", "DP1     = 'AXIS.1: 1'", "HIERARCH ESO DET CHIP = 'CCD 1' / hierarch",
    "LONG    = 'a long string that goes on and on and on and on and on and on&'",
    "CONTINUE  'and continues here'", "COMMENT   free text ' with = signs", "HISTORY done", "        blank keyword",
    "DUP     =                    1", "DUP     =                    2", "lower   =                    3",
]


def test_hostile_cards_read_as_astropy_reads_them() -> None:
    _same_cards(_blocks(HOSTILE_CARDS))
    _same_cards(_blocks(HOSTILE_CARDS))  # again: the cards parsed lately are remembered by their image
    for image in HOSTILE_CARDS:  # alone, so each card's own path (fast or astropy's) is taken
        if not image.startswith(("CONTINUE", "LONG")):
            _same_cards(_blocks([image]))


@pytest.mark.parametrize("cards, match", [
    (["BAD     = what is this"], "'BAD' does not parse"),
    (["BAD     = 1.5.5"], "'BAD' does not parse"),
])
def test_a_card_whose_value_is_in_no_format_is_named(cards: list[str], match: str) -> None:
    for _ in range(2):  # a card that failed is not remembered
        with pytest.raises(ValueError, match=match):
            read_header(io.BytesIO(_blocks(cards)))


def test_a_header_without_end_or_cut_short_fails_as_astropy_fails() -> None:
    for data in (_blocks(["INT     =                    1"], end=False), _blocks(["A       = 1"] * 40)[:BLOCK + 100],
                 b""):
        with pytest.raises((ValueError, OSError, EOFError)):
            _astropy_fromfile(data)
        with pytest.raises((ValueError, OSError, EOFError)):
            read_header(io.BytesIO(data))


def _astropy_fromfile(data: bytes) -> fits.Header:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fits.Header.fromfile(io.BytesIO(data), padding=True)


def test_non_ascii_and_odd_padding_go_to_astropy() -> None:
    """Bytes outside printable ASCII, or text after END: read by astropy, as before."""
    data = bytearray(_blocks(["STR     = 'cafe'", "INT     = 5"]))
    data[14] = 0xE9  # the 'e' of cafe
    ours, theirs = read_header(io.BytesIO(bytes(data))), _astropy_fromfile(bytes(data))
    assert dict(ours) == dict(theirs)
    junk = bytearray(_blocks(["INT     = 5"]))
    junk[-10:] = b"XXXXXXXXXX"
    assert dict(read_header(io.BytesIO(bytes(junk)))) == dict(_astropy_fromfile(bytes(junk)))


def test_the_stream_is_left_at_the_data() -> None:
    data = _blocks(["INT     = 5"] * 40) + b"\1" * BLOCK
    stream = io.BytesIO(data)
    read_header(stream)
    assert stream.tell() == 2 * BLOCK


# -- WCSs built from a header's cards ----------------------------------------------------------

POINTINGS = [(150.1, 2.2), (0.0, 0.0), (359.9999, -0.5), (12.0, 89.9999), (200.0, 90.0), (45.0, -90.0),
             (300.0, -89.5), (180.0, 45.0)]
SIP = {"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 1e-6, "A_0_2": -2e-6, "B_1_1": 3e-6, "A_1_1": 0.0, "B_2_0": 0.0,
       "B_0_2": 1e-6}
TIMES = {"DATE-OBS": "2024-03-01T06:00:00.5", "MJD-OBS": 60370.25002, "DATE": "2024-03-02T00:00:00",
         "TIMESYS": "TAI", "DATE-BEG": "2024-03-01T06:00:00", "MJD-END": 60370.2504}
KINDS = {
    "TAN": ("RA---TAN", "DEC--TAN", {}), "SIN": ("RA---SIN", "DEC--SIN", {}), "ZEA": ("RA---ZEA", "DEC--ZEA", {}),
    "NCP": ("RA---NCP", "DEC--NCP", {}), "CAR": ("RA---CAR", "DEC--CAR", {}), "MER": ("RA---MER", "DEC--MER", {}),
    "galactic": ("GLON-TAN", "GLAT-TAN", {"RADESYS": None, "EQUINOX": None}),
    "FK4 with times": ("RA---TAN", "DEC--TAN", {"RADESYS": "FK4", "EQUINOX": 1950.0, **TIMES}),
    "ecliptic": ("ELON-TAN", "ELAT-TAN", {"RADESYS": None}),
    "ICRS by default": ("RA---TAN", "DEC--TAN", {"RADESYS": None, "EQUINOX": None}),
    "FK5 by its equinox": ("RA---TAN", "DEC--TAN", {"RADESYS": None}),
    "CDELT and CROTA": ("RA---TAN", "DEC--TAN", {"CD1_1": None, "CD1_2": None, "CD2_1": None, "CD2_2": None,
                                                "CDELT1": -5e-5, "CDELT2": 5e-5, "CROTA2": 30.0}),
    "PC and LONPOLE": ("RA---TAN", "DEC--TAN", {"CD1_1": None, "CD1_2": None, "CD2_1": None, "CD2_2": None,
                                               "CDELT1": -5e-5, "CDELT2": 5e-5, "PC1_1": 0.8, "PC1_2": 0.6,
                                               "PC2_1": -0.6, "PC2_2": 0.8, "LONPOLE": 170.0}),
    "SIP": ("RA---TAN-SIP", "DEC--TAN-SIP", SIP),
    "TPV": ("RA---TPV", "DEC--TPV", {"PV1_1": 1.0, "PV2_1": 1.0, "PV1_4": 1e-3}),
}


def _header(kind: str, crval: tuple[float, float]) -> fits.Header:
    ctype1, ctype2, extra = KINDS[kind]
    header = fits.Header()
    header["NAXIS"], header["NAXIS1"], header["NAXIS2"] = 2, 4000, 2000
    for key, value in {**WCS_CARDS, "CTYPE1": ctype1, "CTYPE2": ctype2, **extra}.items():
        if value is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = value
    header["CRVAL1"], header["CRVAL2"] = crval
    return header


def _ours(header: fits.Header, key: str = " ") -> object:
    return build_wcs_of_cards(read_header(io.BytesIO(header.tostring().encode())), key)


def _pixels() -> tuple[np.ndarray, np.ndarray]:
    x, y = np.meshgrid(np.linspace(-0.5, 3999.5, 9), np.linspace(-0.5, 1999.5, 7))
    return x.ravel(), y.ravel()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_wcs_built_from_the_cards_is_astropys_wcs_of_the_header(kind: str) -> None:
    x, y = _pixels()
    for crval in POINTINGS:
        header = _header(kind, crval)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                oracle = WCS(header)
            except ValueError:  # NCP on the equator: astropy refuses it, and so do we
                with pytest.raises(FormatterError, match="astropy cannot parse the primary WCS"):
                    _ours(header)
                continue
            ours = _ours(header)
            assert ours.to_header_string() == oracle.to_header_string(), (kind, crval)
            assert ours.pixel_shape == oracle.pixel_shape == (4000, 2000)
            np.testing.assert_array_equal(ours.all_pix2world(x, y, 0), oracle.all_pix2world(x, y, 0))
            if kind != "ecliptic":  # astropy takes ELON/ELAT for ICRS; footprints use the ecliptic
                assert celestial_frame(ours).is_equivalent_frame(wcs_to_celestial_frame(oracle)), kind
            if kind not in ("SIP", "TPV"):
                assert ours.sip is None and oracle.sip is None
            else:
                assert (ours.sip is None) == (oracle.sip is None)


def test_an_alternate_wcs_is_astropys() -> None:
    header = _header("TAN", (10.0, 20.0))
    for key in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        header[key + "A"] = header[key] * 2 if isinstance(header[key], float) else header[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _ours(header, "A").to_header_string() == WCS(header, key="A").to_header_string()


def test_a_bad_wcs_fails_as_astropy_fails() -> None:
    for kind, crval in (("TAN", (10.0, 95.0)), ("TAN", (10.0, -91.0))):
        header = _header(kind, crval)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                WCS(header)
                oracle_error = None
            except Exception as exc:
                oracle_error = exc
        if oracle_error is None:
            assert _ours(header).to_header_string() == WCS(header).to_header_string()
        else:
            with pytest.raises(FormatterError, match="astropy cannot parse the primary WCS"):
                _ours(header)
    header = _header("TAN", (10.0, 20.0))
    header["CTYPE1"] = "RA---XYZ"
    with pytest.raises(FormatterError, match="astropy cannot parse the primary WCS"):
        _ours(header)


# -- hostile raws at ingest --------------------------------------------------------------------


def _raw_bytes(detector: int) -> bytes:
    header = fits.Header()
    for key, value in {**ch.hsc(detector=detector), **WCS_CARDS}.items():
        if key not in ("SIMPLE", "BITPIX", "NAXIS"):
            header[key] = value
    header.add_comment("cafe au lait")
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.zeros((8, 8), np.int16), header).writeto(buffer)
    return buffer.getvalue()


def _damaged(data: bytes, how: str) -> bytes:
    end = data.index(b"END" + b" " * 77)
    if how == "no END":  # the END card blanked, and the file cut after the header
        return data[:end] + b" " * (BLOCK - end % BLOCK)
    if how == "cut in the header":
        return data[:end - 100]
    if how == "unparsable card":
        at = data.index(b"EXPTIME =")
        return data[:at] + b"EXPTIME = thirty".ljust(80) + data[at + 80:]
    raise AssertionError(how)


HOSTILE_RAWS = {"no END": "primary header does not parse", "cut in the header": "primary header does not parse",
                "unparsable card": "card 'EXPTIME' does not parse"}


def test_hostile_raws_are_refused_by_name_and_the_others_go_in(tmp_path) -> None:
    from skybutler import Butler
    from skybutler.ingest import ingest_raws

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    good = [incoming / f"good_{d}.fits" for d in range(3)]
    for detector, path in enumerate(good):
        path.write_bytes(_raw_bytes(detector))
    bad = {}
    for detector, how in enumerate(HOSTILE_RAWS, start=10):
        bad[how] = incoming / f"bad_{detector}.fits"
        bad[how].write_bytes(_damaged(_raw_bytes(detector), how))
    odd = incoming / "non_ascii.fits"  # a non-ASCII byte in a comment: astropy reads it as '?', and so do we
    data = bytearray(_raw_bytes(20))
    data[data.index(b"cafe") + 3] = 0xE9
    odd.write_bytes(bytes(data))
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, incoming, transfer="copy", processes=1)
        failures = {f.path: f.reason for f in result.failures}
        assert set(failures) == {str(p) for p in bad.values()}, failures
        for how, path in bad.items():
            assert HOSTILE_RAWS[how] in failures[str(path)], (how, failures[str(path)])
        assert sorted(ref.data_id["detector"] for ref in result.refs) == [0, 1, 2, 20]
        before = butler.query_datasets("raw", collections="HSC/raw/all").count()
        for how, path in bad.items():  # one call with a bad file among good ones: nothing goes in
            with pytest.raises(Exception, match=f"{path.name}.*{HOSTILE_RAWS[how]}"):
                butler.ingest("raw", [(good[0], {"instrument": "HSC", "exposure": 904024, "detector": 30}),
                                      (path, {"instrument": "HSC", "exposure": 904024, "detector": 31})],
                              run="HSC/raw/all", transfer="copy")
        assert butler.query_datasets("raw", collections="HSC/raw/all").count() == before
