"""Time literals of the where-language: ``T'[format/]value[/scale]'`` and ``T'begin/end'``.

The rules are those the Rubin butler documents for its query language, so that an
expression means the same instant in both:

- the format is guessed from the value when not given: a number with a decimal point
  is an MJD, ``2024-01-11`` / ``2024-01-11 00:59`` / ``2024-01-11T00:59:40.5`` is ISO,
  ``+2024-01-11T00:59:40`` is FITS, ``2024:011:00:59:40`` is year:day-of-year;
- without a scale, ISO, FITS, year:day and unix times are **UTC**, cxcsec times are TT,
  and every other format (MJD, JD, ...) is **TAI**; ``/tai``, ``/utc``, ... overrides;
- a time zone is not part of a literal: ``Z`` is refused (times are UTC already),
  ``+00:00`` is accepted and ignored.

skybutler adds one form of its own: ``T'begin/end'`` with two times is a half-open
timespan.  Instants are kept as canonical ISO strings on the TAI scale.
"""

from __future__ import annotations

import functools
import re
import warnings

from astropy.time import Time
from astropy.time.core import ScaleValueError
from astropy.utils.exceptions import AstropyWarning

from ..timespan import NS_MAX, NS_MIN, ns_to_time

#: The shapes a value may take (the format is guessed from the first that matches).
_SHAPES = (
    ("mjd", re.compile(r"-?(\d+\.\d*|\.\d+)")),
    ("iso", re.compile(r"\d+-\d+-\d+([ Tt]\d+:\d+(:\d+(\.\d*)?)?)?")),
    ("fits", re.compile(r"\+\d+-\d+-\d+(T\d+:\d+:\d+(\.\d*)?)?")),
    ("yday", re.compile(r"\d+:\d+(:\d+:\d+(:\d+(\.\d*)?)?)?")),
)
_UTC_FORMATS = ("iso", "isot", "fits", "yday", "unix")


@functools.cache
def _stored_range() -> tuple[Time, Time]:
    """The earliest and latest instants the registry stores (a second inside the values that
    mean an unbounded side of a timespan)."""
    return ns_to_time(NS_MIN + 10**9), ns_to_time(NS_MAX - 10**9)


def canonical_time(t: Time) -> str:
    """``t`` as a canonical ISO string on the TAI scale (nanoseconds, trailing zeros dropped).

    A time before or after those the registry stores (about 1824 to 2116) is clipped to the
    first or last of them, as the Rubin butler clips its times: it then compares with every
    stored time, and with an unbounded side of a timespan, as the time itself would."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        warnings.filterwarnings("ignore", module="erfa")
        earliest, latest = _stored_range()
        tai = t.tai
        tai = (earliest if tai < earliest else latest if tai > latest else tai).copy()
        tai.precision = 9
        text = tai.to_value("isot")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _shape(value: str) -> str | None:
    for fmt, pattern in _SHAPES:
        if pattern.fullmatch(value):
            return fmt
    return None


def parse_one_time(content: str) -> str:
    """Interpret ``[format/]value[/scale]``; a canonical TAI ISO string.

    Raises ValueError with a message a user can act on.
    """
    text = content.strip().replace("+00:00", "")
    if text.upper().endswith("Z"):
        raise ValueError(f"{content!r}: a time literal has no time zone; drop the 'Z' (times without a "
                         "scale are UTC) or give a scale: T'2024-01-11T00:59:40/utc'")
    parts = text.split("/")
    fmt = scale = None
    if len(parts) > 1 and parts[0].lower() in Time.FORMATS and not parts[0][:1].isdigit():
        fmt = parts.pop(0).lower()
    if len(parts) > 1 and parts[-1].lower() in Time.SCALES:
        scale = parts.pop().lower()
    if len(parts) != 1:
        raise ValueError(f"cannot read time {content!r}: expected [format/]value[/scale], e.g. "
                         "T'2024-01-11T00:59:40', T'mjd/60320.5/tai' or T'2024-01-11/utc'")
    value = parts[0].strip()
    shape = _shape(value)
    if shape is None:
        hint = " (an MJD needs a decimal point: T'60320.0')" if re.fullmatch(r"-?\d+", value) else ""
        raise ValueError(f"{value!r} is not a time{hint}: use ISO (2024-01-11T00:59:40), an MJD "
                         "(60320.5), FITS (+2024-01-11T00:59:40) or year:day (2024:011:00:59:40)")
    if fmt is None:
        fmt = "isot" if shape == "iso" and "t" in value.lower() else shape
    if scale is None:
        scale = "utc" if fmt in _UTC_FORMATS else ("tt" if fmt == "cxcsec" else "tai")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            warnings.filterwarnings("ignore", module="erfa")
            t = Time(float(value) if shape == "mjd" else value, format=fmt, scale=scale)
            return canonical_time(t)
    except ScaleValueError:  # 'local': a clock with no relation to TAI
        raise ValueError(f"{content!r}: a time on scale {scale!r} cannot be compared with the registry's "
                         "TAI times; give tai, utc, tt or another scale astropy converts") from None
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"{value!r} is not a time in format {fmt!r}") from None


def parse_time_literal(content: str) -> str | tuple[str, str]:
    """Interpret the text inside ``T'...'``: one instant, or a ``begin/end`` timespan.

    Returns a canonical TAI ISO string, or a (begin, end) pair.  Raises ValueError.
    """
    halves = content.split("/")
    if len(halves) == 2 and all(_shape(h.strip().replace("+00:00", "")) for h in halves):
        begin, end = parse_one_time(halves[0]), parse_one_time(halves[1])
        if Time(begin, scale="tai") > Time(end, scale="tai"):
            raise ValueError(f"timespan ends ({end}) before it begins ({begin})")
        return begin, end
    return parse_one_time(content)
