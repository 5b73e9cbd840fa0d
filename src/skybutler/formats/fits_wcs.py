"""World coordinate systems of FITS images: building them, and cut-outs that keep them right.

Every WCS in a header (the primary one and the alternates A..Z) is built by astropy
(wcslib), which understands far more than the standard cards: SIP, TPV, TNX/ZPX and
DSS plate solutions (CNPIX/PPO/AMDX cards) and IRAF's WAT cards, both turned into a polynomial
distortion (TPD).  A
cut-out slices each of them with ``WCS.slice`` and writes the sliced WCS back into
the header in its place, so the cut-out's header describes the cut-out whatever kind
of WCS it held: shifting CRPIX by hand is wrong for a plate solution, whose reference
comes from the plate cards.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from ..errors import FormatterError
from .fits_cards import FitsHeader

ALT_KEYS = " ABCDEFGHIJKLMNOPQRSTUVWXYZ"
"""The primary WCS (blank) and the 26 alternate WCS letters."""

_PER_AXIS = r"(CTYPE|CRPIX|CRVAL|CDELT|CUNIT|CROTA|CRDER|CSYER|CNAME|CPDIS|CQDIS|CPERR|CQERR)\d+"
_MATRIX = r"(CD|PC|PV|PS)\d+_\d+"
_GLOBAL = r"(LONPOLE|LATPOLE|WCSNAME|WCSAXES|RADESYS|RADECSYS|EQUINOX|RESTFRQ|RESTFREQ|RESTWAV|SPECSYS|SSYSOBS|" \
          r"VELOSYS|ZSOURCE|SSYSSRC|VELANGL)"
_PRIMARY_ONLY = re.compile(
    r"^(PC\d{3}\d{3}|CD\d{3}\d{3}|(A|B|AP|BP)_(ORDER|DMAX|\d+_\d+)|(DP|DQ)\d+(\..*)?|"
    r"CNPIX\d|PPO\d+|AMDX\d+|AMDY\d+|XPIXELSZ|YPIXELSZ|PLTRA[HMS]|PLTDEC(SN|[DMS]))$"
)
"""Cards of the primary WCS only: old-style matrices, SIP, distortion records, and the DSS plate
solution (which the sliced WCS replaces, as a polynomial distortion astropy writes itself)."""

_IRAF_WAT = re.compile(r"^WAT\d_\d{3}$")
"""IRAF's world-attribute cards: a TNX/ZPX distortion, which the sliced WCS carries as a polynomial."""

_TIME_CARDS = re.compile(r"^(DATE-\w+|MJD-\w+|MJDREF\w*|DATEREF|TIMESYS|TIMEUNIT|TREFPOS|TREFDIR|PLEPHEM|"
                         r"OBSGEO-\w|JEPOCH|BEPOCH|TSTART|TSTOP|XPOSURE|TELAPSE)$")
"""Observation cards astropy writes with every WCS; the image's own values are kept."""


_WCS_CARD = re.compile(
    r"^(NAXIS|ZNAXIS|WCS|C[A-Z]{2,4}\d|CD\d|PC\d|PV\d|PS\d|PROJP|AP?_|BP?_|DP\d|DQ\d|D2IM|AXISCORR|WAT\d|LT[VM]|"
    r"LONPOLE|LATPOLE|RADE|EQUINOX|EPOCH|VELREF|SPECSYS|SSYS|VELOSYS|ZSOURCE|VELANGL|REST|DATE|MJD|TIM|TREF|"
    r"PLEPHEM|TSTART|TSTOP|XPOSURE|TELAPSE|[JB]EPOCH|OBSGEO|OBSORBIT|PPO|AMD[XY]|[XY]PIXELSZ|PLT|DSUN|HGL[NT]|"
    r"CRL[NT]|RSUN|[BC]_RADIUS|B(LON|LAT|DIS)_OBS)")
"""Keywords a WCS may be built from (wcslib's standard, time and solar keywords with their
alternates, SIP, TPV, distortion records and tables, IRAF's and the DSS plate cards, the axis
lengths), matched by prefix, so generously."""


@dataclass(frozen=True)
class CheckedHeader:
    """An image HDU's header (with the primary cards it inherits) and the WCS of each of its keys,
    as ingest's check built them: the file's facts take the WCS from here, not from a second build."""

    header: Any
    wcs: dict[str, Any] = field(default_factory=dict)


def _key_pattern(key: str) -> re.Pattern[str]:
    suffix = re.escape(key.strip())
    return re.compile(rf"^({_PER_AXIS}|{_MATRIX}|{_GLOBAL}){suffix}$")


_KEY_CARDS = {key: frozenset([f"{card}{axis}{key.strip()}" for card in ("CTYPE", "CRPIX", "CRVAL") for axis in (1, 2)]
                              + (["CD1_1", "PC1_1", "CNPIX1"] if key == " " else []))
              for key in ALT_KEYS}
"""The cards whose presence says that a header has the WCS of each key."""


def wcs_keys(header: Any) -> list[str]:
    """The WCS keys (blank for the primary, A..Z) with cards of a value in ``header`` (Rubin's raws
    carry ``CTYPE1 =`` and the like with no value: no WCS)."""
    present = set(header.keys())  # one pass over the cards: a lookup per name is slow on astropy's Header
    return [key for key, names in _KEY_CARDS.items()
            if any(header.get(name) is not None for name in present.intersection(names))]


@functools.lru_cache(maxsize=4096)
def is_wcs_keyword(keyword: str) -> bool:
    """Whether a WCS may be built from cards of this keyword (:data:`_WCS_CARD`); raws repeat their
    keywords, so the answer is remembered."""
    return _WCS_CARD.match(keyword) is not None


def check_key(header: Any, key: Any) -> str:
    """Validate the ``wcs_key`` parameter against the keys the header has."""
    if not isinstance(key, str) or len(key) != 1 or key.upper() not in ALT_KEYS:
        raise FormatterError(f"wcs_key must be ' ' (the primary WCS) or one letter A-Z, not {key!r}")
    key = key.upper()
    if key not in wcs_keys(header):
        found = ", ".join(repr(k) for k in wcs_keys(header)) or "none"
        raise FormatterError(f"the header has no WCS with key {key!r}; WCS keys present: {found}")
    return key


def default_key(header: Any) -> str:
    """The primary WCS if the header has one, else its first alternate (a header of alternates only)."""
    keys = wcs_keys(header)
    return keys[0] if keys else " "


def build_wcs(header: Any, key: str = " ", fobj: Any = None) -> Any:
    """The astropy WCS of ``key`` in ``header`` (``fobj``: the HDUList, for distortion lookup tables)."""
    from astropy.wcs import WCS

    blank = {card.keyword for card in header.cards if is_wcs_keyword(card.keyword) and _no_value(card.value)}
    if blank:  # a WCS card without a value (``CRVAL1 =``) is no card: astropy's WCS would fail on it
        header = header.copy()
        for keyword in blank:
            header.remove(keyword, ignore_missing=True, remove_all=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return WCS(header, fobj=fobj, key=key)
    except Exception as exc:
        label = "primary WCS" if key == " " else f"WCS {key!r}"
        raise FormatterError(f"astropy cannot parse the {label}: {str(exc).strip() or type(exc).__name__}") \
            from exc


def _no_value(value: Any) -> bool:
    return value is None or type(value).__name__ == "Undefined"  # astropy's UNDEFINED


_NOT_PLAIN = re.compile(r"^((A|B|AP|BP)_|CPDIS|CQDIS|CPERR|CQERR|DP\d|DQ\d|D2IM|AXISCORR|PV\d|PS\d|WAT\d|CNPIX|PPO|"
                        r"AMD[XY]|PLT|[XY]PIXELSZ)")
"""Cards astropy's ``WCS`` reads itself rather than through wcslib (SIP, distortion records and
lookup tables, SCAMP's PV, IRAF's and DSS's plate solutions): a header with any of them is built
by ``WCS`` in full."""


def build_wcs_of_cards(header: FitsHeader, key: str = " ") -> Any:
    """The astropy WCS ``key`` of a 2-D image's header read block by block, built from its WCS cards.

    astropy's ``WCS(header)`` takes ~1.2 ms, most of it turning the header into text and back and
    looking for distortions; wcslib itself parses the cards in ~60 us.  So a plain WCS (none of
    :data:`_NOT_PLAIN`'s cards, no SIP or table CTYPE) is parsed by wcslib (``Wcsprm``) into an
    empty ``WCS`` and fixed and set as ``WCS`` does; any other is built by ``WCS`` in full.  Both
    give the same WCS (tests/test_fits_cards.py compares them on every kind of WCS)."""
    from astropy.io import fits

    cards = [card for card in header.cards if is_wcs_keyword(card.keyword) and not _no_value(card.value)]
    text = "".join(card.image for card in cards)
    ctypes = [str(card.value) for card in cards if card.keyword.startswith("CTYPE")]
    naxes = (header.get("NAXIS1"), header.get("NAXIS2"))
    plain = (header.get("NAXIS") == 2 and all(isinstance(n, int) and not isinstance(n, bool) for n in naxes)
             and not any(_NOT_PLAIN.match(card.keyword) for card in cards)
             and not any("-SIP" in ctype.upper() or "-TAB" in ctype.upper() for ctype in ctypes))
    if plain:
        from astropy.wcs import WCS, Wcsprm

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prm = Wcsprm(header=text.encode("ascii"), key=key, relax=True, warnings=False)
                if prm.naxis == 2:
                    wcs = WCS(naxis=2)
                    wcs.wcs = prm
                    wcs.fix()
                    wcs.wcs.set()
                    wcs.pixel_shape = naxes if any(naxes) else None
                    return wcs
        except Exception:  # astropy's own build says what is wrong
            pass
    return build_wcs(fits.Header.fromstring(text), key)


def sliced_wcs(wcs: Any, box: tuple[int, int, int, int]) -> Any:
    """``wcs`` of the cut-out ``box = (x_min, y_min, x_max, y_max)``, by astropy's WCS slicing."""
    x_min, y_min, x_max, y_max = box
    extra = wcs.naxis - 2
    if extra > 0:  # more WCS axes than pixel axes (WCSAXES = 3 on a 2-D image): they stay whole
        wcs = wcs.deepcopy()
        shape = tuple(wcs.pixel_shape or (0, 0))[:2]
        wcs.pixel_shape = (*shape, *(1,) * extra)
    view = (*(slice(None),) * max(extra, 0), slice(y_min, y_max), slice(x_min, x_max))  # numpy order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sliced = wcs.slice(view)
    if sliced.naxis == 2:
        sliced.pixel_shape = (x_max - x_min, y_max - y_min)
    return sliced


def cutout_header(header: Any, box: tuple[int, int, int, int], fobj: Any = None) -> Any:
    """A copy of ``header`` describing the cut-out ``box``: size, every WCS sliced, IRAF LTV offsets."""
    from astropy.io import fits

    x_min, y_min, x_max, y_max = box
    cut = header.copy()
    cut["NAXIS1"] = x_max - x_min
    cut["NAXIS2"] = y_max - y_min
    for key in wcs_keys(header):
        sliced = sliced_wcs(build_wcs(header, key, fobj), box)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            written = sliced.to_header(relax=True, key=None if key == " " else key)
        _remove_wcs_cards(cut, key)
        for card in written.cards:
            if _TIME_CARDS.match(card.keyword) and card.keyword in cut:
                continue
            cut.append(fits.Card.fromstring(card.image), end=True)
    cut["LTV1"] = (header.get("LTV1", 0) - x_min, "cut-out offset: logical = physical + LTV")
    cut["LTV2"] = (header.get("LTV2", 0) - y_min, "cut-out offset: logical = physical + LTV")
    return cut


def _remove_wcs_cards(header: Any, key: str) -> None:
    pattern = _key_pattern(key)
    iraf = key == " " and str(header.get("CTYPE1", "")).endswith(("-TNX", "-ZPX"))
    doomed = {card.keyword for card in header.cards
              if pattern.match(card.keyword) or (key == " " and _PRIMARY_ONLY.match(card.keyword))
              or (iraf and _IRAF_WAT.match(card.keyword))}
    for keyword in doomed:
        header.remove(keyword, ignore_missing=True, remove_all=True)
