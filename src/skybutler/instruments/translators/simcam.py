"""The astro-metadata-translator translator for SimCam raw headers (needs the ``instruments`` extra).

Real cameras (HSC, DECam, ...) are understood by the translators that ship with
astro-metadata-translator; this one lets SimCam plug into the same mechanism, so
:func:`~skybutler.instruments.headers.read_observation_metadata` has a single
code path.  Importing this module registers the translator under ``SimCam``.

Besides mapping keywords it checks that keywords which repeat information agree
(``CCDNUM``/``DETECTOR``, ``EXPID``/``SEQNUM``/``DATE-OBS``, ``DATE-END``/``EXPTIME``,
``ALTITUDE``/``ZD``) and raises ``ValueError`` naming the contradiction.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import astropy.units as u
from astro_metadata_translator import FitsTranslator, cache_translation
from astro_metadata_translator.translators.helpers import (
    altaz_from_degree_headers,
    tracking_from_degree_headers,
)
from astropy.coordinates import AltAz, Angle, EarthLocation, SkyCoord
from astropy.time import Time, TimeDelta

from ..simcam import SITE_HEIGHT, SITE_LATITUDE, SITE_LONGITUDE, SimCam

__all__ = ["OBSERVATION_TYPES", "SimCamTranslator"]

#: The observation types SimCam writes; anything else in OBSTYPE is an error.
OBSERVATION_TYPES = ("science", "bias", "flat", "dark")

_SIMCAM = SimCam()
_DAY_OFFSET = TimeDelta(12 * 3600.0, format="sec", scale="tai")


@functools.cache
def _site() -> EarthLocation:
    """The site, made once (~0.7 ms each time; every exposure asks for it, twice)."""
    return EarthLocation.from_geodetic(SITE_LONGITUDE * u.deg, SITE_LATITUDE * u.deg, SITE_HEIGHT * u.m)


class SimCamTranslator(FitsTranslator):
    """Translate SimCam raw headers (``INSTRUME = 'SimCam'``) to standard properties."""

    name = "SimCam"
    supported_instrument = "SimCam"

    _const_map = {
        "boresight_rotation_coord": "sky",
        "has_simulated_content": True,
        "temperature": 283.15 * u.K,
        "pressure": 743.0 * u.hPa,
        "relative_humidity": 15.0,
        "focus_z": 0.0 * u.mm,
        "observing_day_offset": _DAY_OFFSET,
    }

    _trivial_map: dict[str, str | list[str] | tuple[Any, ...]] = {
        "instrument": "INSTRUME",
        "telescope": "TELESCOP",
        "physical_filter": "FILTER",
        "object": "OBJECT",
        "science_program": "PROGRAM",
        "observation_id": "OBSID",
        "exposure_group": "GROUPID",
        "observation_counter": "SEQNUM",
        "detector_group": "RAFTNAME",
        "exposure_time": ("EXPTIME", {"unit": u.s}),
        "exposure_time_requested": ("EXPTIME", {"unit": u.s}),
        "dark_time": ("DARKTIME", {"unit": u.s}),
    }

    @classmethod
    def can_translate(cls, header: Mapping[str, Any], filename: str | None = None) -> bool:
        """SimCam headers say ``INSTRUME = 'SimCam'``."""
        return str(header.get("INSTRUME", "")).strip() == cls.supported_instrument

    # -- where and when ------------------------------------------------------------

    @cache_translation
    def to_location(self) -> EarthLocation:
        """The SimCam site (fixed; SimCam never moves)."""
        return _site()

    @cache_translation
    def to_datetime_begin(self) -> Time:
        """Shutter open, from DATE-OBS (TIMESYS TAI), returned on the TAI scale."""
        begin = super().to_datetime_begin()
        if begin is None:
            raise KeyError("missing DATE-OBS")
        return begin.tai

    @cache_translation
    def to_datetime_end(self) -> Time:
        """Shutter close: DATE-END if given (checked against EXPTIME), else begin + EXPTIME."""
        begin = self.to_datetime_begin()
        exptime = self.to_exposure_time().to_value(u.s)
        computed = begin + TimeDelta(exptime, format="sec", scale="tai")
        end = super().to_datetime_end()
        if end is None:
            return computed
        end = end.tai
        if end < begin:
            raise ValueError(f"DATE-END {end.isot} is before DATE-OBS {begin.isot}")
        if abs((end - computed).to_value(u.s)) > 0.5:
            raise ValueError(
                f"DATE-END {end.isot} contradicts DATE-OBS {begin.isot} + EXPTIME {exptime} s"
            )
        return end

    # -- identity ----------------------------------------------------------------

    @cache_translation
    def to_exposure_id(self) -> int:
        """EXPID, checked against SEQNUM and the night of DATE-OBS (day_obs * 100000 + seq)."""
        self._require("EXPID")
        exposure_id = int(self._header["EXPID"])
        self._used_these_cards("EXPID")
        seq_num = self.to_observation_counter()
        if exposure_id % 100_000 != seq_num:
            raise ValueError(f"EXPID {exposure_id} contradicts SEQNUM {seq_num}")
        day_obs = self.to_observing_day()
        if exposure_id // 100_000 != day_obs:
            raise ValueError(f"EXPID {exposure_id} contradicts the observing night {day_obs} of DATE-OBS")
        return exposure_id

    @cache_translation
    def to_visit_id(self) -> int:
        """One exposure is one visit for SimCam."""
        return self.to_exposure_id()

    @cache_translation
    def to_detector_num(self) -> int:
        """CCDNUM, checked against the detector name in DETECTOR."""
        self._require("CCDNUM")
        num = int(self._header["CCDNUM"])
        self._used_these_cards("CCDNUM")
        try:
            expected = _SIMCAM.detector(num).full_name
        except Exception as exc:
            raise ValueError(f"CCDNUM {num} is not a SimCam detector") from exc
        if self.is_key_ok("DETECTOR") and str(self._header["DETECTOR"]).strip() != expected:
            raise ValueError(f"DETECTOR {self._header['DETECTOR']!r} contradicts CCDNUM {num} ({expected})")
        return num

    @cache_translation
    def to_detector_name(self) -> str:
        """The sensor name within its raft (``S11``)."""
        return _SIMCAM.detector(self.to_detector_num()).full_name.split("_")[-1]

    @cache_translation
    def to_detector_unique_name(self) -> str:
        """The full detector name (``R00_S11``)."""
        return _SIMCAM.detector(self.to_detector_num()).full_name

    @cache_translation
    def to_detector_serial(self) -> str:
        """A made-up but stable serial number."""
        return f"SIMCAM-{self.to_detector_num():03d}"

    @cache_translation
    def to_detector_exposure_id(self) -> int:
        """Exposure and detector packed into one integer."""
        return self.to_exposure_id() * _SIMCAM.detector_max + self.to_detector_num()

    @cache_translation
    def to_observation_type(self) -> str:
        """OBSTYPE, lower case; must be one of science/bias/flat/dark."""
        self._require("OBSTYPE")
        obstype = str(self._header["OBSTYPE"]).strip().lower()
        self._used_these_cards("OBSTYPE")
        if obstype not in OBSERVATION_TYPES:
            raise ValueError(f"OBSTYPE {obstype!r} is not one of {', '.join(OBSERVATION_TYPES)}")
        return obstype

    @cache_translation
    def to_observation_reason(self) -> str:
        """REASON if present, else 'science' for science exposures and 'calibration' otherwise."""
        if self.is_key_ok("REASON"):
            self._used_these_cards("REASON")
            return str(self._header["REASON"])
        return "science" if self.to_observation_type() == "science" else "calibration"

    # -- pointing ------------------------------------------------------------------

    @cache_translation
    def to_tracking_radec(self) -> SkyCoord | None:
        """RA/DEC in degrees; required for science, None for calibrations without them."""
        self._require_for_science("RA", "DEC")
        return tracking_from_degree_headers(self, ("RADESYS",), (("RA", "DEC"),))

    @cache_translation
    def to_altaz_begin(self) -> AltAz | None:
        """AZIMUTH with ALTITUDE (or ZD); if both are given they must agree."""
        self._require_for_science("AZIMUTH")
        if not self.is_key_ok("ZD"):
            self._require_for_science("ALTITUDE")
        if self.are_keys_ok(["ALTITUDE", "ZD"]):
            alt, zd = float(self._header["ALTITUDE"]), float(self._header["ZD"])
            if abs(alt + zd - 90.0) > 0.01:
                raise ValueError(f"ALTITUDE {alt} contradicts ZD {zd}")
        return altaz_from_degree_headers(
            self, (("ALTITUDE", "AZIMUTH"), ("ZD", "AZIMUTH")), self.to_datetime_begin(), is_zd={"ZD"}
        )

    @cache_translation
    def to_boresight_airmass(self) -> float | None:
        """AIRMASS; required for science, None for calibrations without it."""
        if self.is_key_ok("AIRMASS"):
            self._used_these_cards("AIRMASS")
            return float(self._header["AIRMASS"])
        self._require_for_science("AIRMASS")
        return None

    @cache_translation
    def to_boresight_rotation_angle(self) -> Angle | None:
        """ROTPA (position angle of detector +y, east of north); None for calibrations."""
        if self.is_key_ok("ROTPA"):
            self._used_these_cards("ROTPA")
            return Angle(float(self._header["ROTPA"]) * u.deg)
        self._require_for_science("ROTPA")
        return None

    # -- helpers -------------------------------------------------------------------

    def _require(self, key: str) -> None:
        """Raise a KeyError that names the missing keyword."""
        if not self.is_key_ok(key):
            raise KeyError(f"missing header keyword {key}")

    def _require_for_science(self, *keys: str) -> None:
        """Raise a KeyError naming pointing keywords a science exposure lacks."""
        missing = [k for k in keys if not self.is_key_ok(k)]
        if missing and self.to_observation_type() == "science":
            raise KeyError(f"missing header keyword {'/'.join(missing)} (required for science exposures)")
