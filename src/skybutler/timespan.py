"""Half-open time intervals, the unit of observation times and calibration validity.

A :class:`Timespan` is ``[begin, end)`` with astropy ``Time`` bounds; either bound
may be ``None`` for an unbounded side.  The registry stores bounds as integer
nanoseconds on the TAI scale since 1970-01-01 TAI, so comparisons in SQL are exact
integer comparisons and need no time-zone or leap-second logic.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from .errors import TimespanError

if TYPE_CHECKING:
    from astropy.time import Time

#: TAI nanoseconds bounds used for unbounded sides in the database.
NS_MIN = -(2**62)
NS_MAX = 2**62
#: A bound of a timespan read from the registry whose ``Time`` is not made yet.
_UNMADE = object()


@functools.cache
def _epoch() -> Time:
    """1970-01-01 TAI; astropy is imported on the first time conversion, not with this module
    (a command that reads no time, such as ``query-collections``, never pays for it)."""
    from astropy.time import Time

    return Time("1970-01-01T00:00:00", scale="tai", format="isot")


def _time_class() -> type[Time]:
    from astropy.time import Time

    return Time


@functools.cache
def _epoch_jd() -> tuple[float, float]:
    """The two parts of the epoch's Julian date (each read of ``Time.jd1`` makes an array)."""
    epoch = _epoch()
    return float(epoch.jd1), float(epoch.jd2)


def time_to_ns(t: Time) -> int:
    """Convert an astropy ``Time`` to integer TAI nanoseconds since 1970-01-01 TAI."""
    tai = t if t.scale == "tai" else t.tai  # (``.tai`` of a TAI time is a copy of it)
    epoch_jd1, epoch_jd2 = _epoch_jd()
    # Keep astropy's two parts apart: their sum as one float (~2e4 days) holds only ~0.1 us.
    # The whole-day difference is exact; the fractional one is below a few days.
    whole = float(tai.jd1) - epoch_jd1
    days = math.floor(whole)
    fraction = (whole - days) + (float(tai.jd2) - epoch_jd2)
    return int(days) * 86_400_000_000_000 + int(round(fraction * 86_400e9))


def ns_to_time(ns: int) -> Time:
    """Convert integer TAI nanoseconds since 1970-01-01 TAI back to a ``Time``."""
    days, rem = divmod(int(ns), 86_400_000_000_000)
    epoch = _epoch()
    return _time_class()(epoch.jd1 + days, epoch.jd2 + rem / 86_400e9, format="jd", scale="tai")


def to_time(value: Any) -> Time:
    """Interpret ``value`` (``Time``, ISO string, datetime, or MJD float) as a ``Time``."""
    Time = _time_class()
    if isinstance(value, Time):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Time(value, format="mjd", scale="tai")
    try:
        return Time(value, scale="tai")
    except (ValueError, TypeError):
        raise ValueError(f"cannot read {value!r} as a time; use ISO (2026-03-01T00:00:00), a datetime, "
                         "an astropy Time or an MJD number") from None


class Timespan:
    """A half-open interval ``[begin, end)``; ``None`` means unbounded on that side.

    Immutable; each bound is an astropy ``Time`` (or None), whatever it was given as (see
    :func:`to_time`).  A plain class rather than a pydantic model: every repository open
    builds some, and pydantic alone takes longer to import than a trivial command may run.
    One read from the registry (:meth:`from_ns`) keeps its integer bounds and makes its
    ``Time`` bounds only when they are asked for: an astropy time costs about half a
    millisecond to make, and an import or export of many records only moves the integers.
    """

    __slots__ = ("_begin", "_end", "_ns")

    def __init__(self, begin: Any = None, end: Any = None):
        try:
            b = None if begin is None else to_time(begin)
            e = None if end is None else to_time(end)
        except ValueError as err:
            raise TimespanError(f"invalid timespan ({begin!r}, {end!r}): {err}") from None
        if b is not None and e is not None and e < b:
            raise TimespanError(f"invalid timespan ({begin!r}, {end!r}): timespan end {e.isot} is before its "
                                f"begin {b.isot}")
        object.__setattr__(self, "_begin", b)
        object.__setattr__(self, "_end", e)
        object.__setattr__(self, "_ns", None)

    @property
    def begin(self) -> Time | None:
        """The first instant inside (None: unbounded), made from the stored bounds when first read."""
        if self._begin is _UNMADE:
            object.__setattr__(self, "_begin", None if self._ns[0] <= NS_MIN else ns_to_time(self._ns[0]))
        return self._begin

    @property
    def end(self) -> Time | None:
        """The first instant after it (None: unbounded), made from the stored bounds when first read."""
        if self._end is _UNMADE:
            object.__setattr__(self, "_end", None if self._ns[1] >= NS_MAX else ns_to_time(self._ns[1]))
        return self._end

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Timespan is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Timespan is immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple:
        return Timespan.from_ns, self.to_ns()

    @classmethod
    def from_ns(cls, begin_ns: int | None, end_ns: int | None) -> Timespan:
        """Build from stored integer bounds (the ``NS_MIN``/``NS_MAX`` sentinels, or None, mean
        unbounded); the ``Time`` bounds are made when first asked for."""
        for bound in (begin_ns, end_ns):
            if bound is not None and (not hasattr(bound, "__index__") or isinstance(bound, bool)):
                raise TimespanError(f"invalid timespan bounds ({begin_ns!r}, {end_ns!r}): integer nanoseconds "
                                    "expected")
        begin = NS_MIN if begin_ns is None or begin_ns <= NS_MIN else int(begin_ns)
        end = NS_MAX if end_ns is None or end_ns >= NS_MAX else int(end_ns)
        if end < begin:
            raise TimespanError(f"invalid timespan ({ns_to_time(begin).isot}, {ns_to_time(end).isot}): timespan "
                                "end is before its begin")
        span = object.__new__(cls)
        object.__setattr__(span, "_begin", _UNMADE)
        object.__setattr__(span, "_end", _UNMADE)
        object.__setattr__(span, "_ns", (begin, end))
        return span

    def to_ns(self) -> tuple[int, int]:
        """The bounds as integer TAI nanoseconds, with sentinels for unbounded sides."""
        if self._ns is None:
            object.__setattr__(self, "_ns", (NS_MIN if self._begin is None else time_to_ns(self._begin),
                                             NS_MAX if self._end is None else time_to_ns(self._end)))
        return self._ns

    def overlaps(self, other: Timespan) -> bool:
        """Whether the two half-open intervals share any instant."""
        b1, e1 = self.to_ns()
        b2, e2 = other.to_ns()
        return b1 < e2 and b2 < e1 and b1 < e1 and b2 < e2

    def contains(self, t: Time) -> bool:
        """Whether the instant ``t`` lies in ``[begin, end)``."""
        b, e = self.to_ns()
        ns = time_to_ns(to_time(t))
        return b <= ns < e

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timespan) and self.to_ns() == other.to_ns()

    def __hash__(self) -> int:
        return hash(self.to_ns())

    def __repr__(self) -> str:
        b = "-inf" if self.begin is None else self.begin.tai.isot
        e = "+inf" if self.end is None else self.end.tai.isot
        return f"Timespan({b}, {e})"

    __str__ = __repr__


def as_timespan(value: Any) -> Timespan | None:
    """The :class:`Timespan` a lookup's ``timespan=`` argument stands for.

    A skybutler ``Timespan`` is itself; an astropy ``Time`` is the instant ``[t, t]``, which
    a validity range overlaps when it holds ``t`` (``begin <= t < end``); a Rubin butler
    ``Timespan`` (or anything with ``begin``/``end`` times, None for an unbounded side) is
    read through those.  An empty Rubin timespan overlaps nothing and is refused, as is any
    other value, by name."""
    if value is None or isinstance(value, Timespan):
        return value
    if isinstance(value, _time_class()):
        if not value.isscalar:
            raise TimespanError("timespan= takes one time, not an array of times")
        return Timespan(value, value)
    is_empty = getattr(value, "isEmpty", None)
    if callable(is_empty) and is_empty():
        raise TimespanError("timespan= is an empty timespan, which overlaps no validity range")
    if hasattr(value, "begin") and hasattr(value, "end"):
        return Timespan(value.begin, value.end)
    raise TimespanError(f"timespan= takes a skybutler Timespan, an astropy Time or a Rubin Timespan, not "
                        f"{type(value).__name__}")
