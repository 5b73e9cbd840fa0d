"""Translators for Rubin's cameras (LSSTCam, LSSTComCam, LATISS), used when ``obs_lsst`` is absent.

Written from the public description of Rubin raw headers (the camera's header
service): every file carries ``INSTRUME``, ``OBSID`` (``MC_O_20250101_000123``),
``DAYOBS`` and ``SEQNUM`` (the observing day and the exposure's number in it),
``CONTRLLR`` (which controller took it, ``O`` for the observatory), ``MJD-BEG`` /
``MJD-END`` (TAI), ``EXPTIME`` / ``DARKTIME``, ``IMGTYPE``, ``RAFTBAY`` / ``CCDSLOT``
(the detector), ``FILTER`` (and ``GRATING`` for LATISS), the pointing ``RA`` / ``DEC``
/ ``ROTPA`` (degrees), ``AZSTART`` / ``ELSTART`` / ``AMSTART``, ``OBS-LONG`` /
``OBS-LAT`` / ``OBS-ELEV`` (east-positive), and the weather ``AIRTEMP`` (C),
``PRESSURE`` (hPa) and ``HUMIDITY`` (%).

Rules (those Rubin uses): the exposure ID is ``DAYOBS * 100000 + SEQNUM``; an
exposure taken by a controller other than ``O`` adds 1000 years to DAYOBS per step of
the controller's index (``OCHPS``: ``C`` adds 1000, so ``MC_C_20190319_000001`` is
3019031900001), so it never collides with an observatory exposure; the pointing is
``RASTART`` / ``DECSTART`` (``RA`` / ``DEC`` is the requested one, off by up to a
fraction of a degree), and there is none for a bias, dark or flat, nor when
``TRACKSYS`` is ``LOCAL``; the observing day begins at 12:00 TAI; the physical filter of LATISS is
``<filter>~<grating>``, an empty slot (``empty_1``) named ``empty``; detectors are
numbered as in the camera descriptions
(``lsstcam.yaml``: science rafts R01..R43 in order, nine sensors each, then the
corner rafts' guider and wavefront sensors).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import astropy.units as u
from astro_metadata_translator import FitsTranslator, cache_translation
from astro_metadata_translator.translators.helpers import altaz_from_degree_headers, tracking_from_degree_headers
from astropy.coordinates import Angle, EarthLocation
from astropy.time import Time, TimeDelta

from ..instrument import get_instrument

__all__ = ["LatissTranslator", "LsstCamTranslator", "LsstComCamTranslator"]

_ROLLOVER = TimeDelta(12 * 3600.0, format="sec", scale="tai")
_CONTROLLERS = "OCHPS"
_SITE = EarthLocation.from_geodetic(-70.749417 * u.deg, -30.244639 * u.deg, 2663.0 * u.m)
_IMAGE_TYPES = {"object": "science", "skyexp": "science", "zero": "bias"}


def _slot(value: Any) -> str:
    """A filter or grating wheel's card as its physical filter part: an empty slot (``empty``,
    ``empty_1``, ``NONE``, blank) is ``empty``, as Rubin names it."""
    text = str(value).strip()
    if not text or text.upper() in ("NONE", "UNKNOWN") or re.fullmatch(r"empty_?\d*", text, re.IGNORECASE):
        return "empty"
    return text


class _RubinTranslator(FitsTranslator):
    """What the three cameras' headers share."""

    supported_instrument: str = ""
    #: The INSTRUME values of the camera's files, lower case (ComCam's files say ``ComCam``).
    instrument_names: frozenset[str] = frozenset()
    _const_map = {"boresight_rotation_coord": "sky", "observing_day_offset": _ROLLOVER}
    _trivial_map: dict[str, str | list[str] | tuple[Any, ...]] = {
        "observation_id": "OBSID",
        "observation_counter": "SEQNUM",
        "object": ("OBJECT", {"default": "UNKNOWN"}),
        "science_program": ("PROGRAM", {"default": "unknown"}),
        "observation_reason": ("REASON", {"default": "unknown"}),
        "telescope": ("TELESCOP", {"default": "Simonyi Survey Telescope"}),
        "exposure_time": ("EXPTIME", {"unit": u.s}),
        "exposure_time_requested": ("EXPTIME", {"unit": u.s}),
        # The weather the header service records (NaN when a header lacks it).
        "temperature": ("AIRTEMP", {"unit": u.deg_C, "default": math.nan, "minimum": -10.0, "maximum": 40.0}),
        "pressure": ("PRESSURE", {"unit": u.hPa, "default": math.nan, "minimum": 700.0, "maximum": 800.0}),
        "relative_humidity": ("HUMIDITY", {"default": math.nan, "minimum": 0.0, "maximum": 100.0}),
    }

    def _text(self, card: str, default: str | None = None) -> str:
        """The card's value as stripped text, marked used; ``default`` where the header lacks it
        (none: a missing card is an error naming it)."""
        if not self.is_key_ok(card):
            if default is None:
                raise KeyError(f"missing header keyword {card}")
            return default
        self._used_these_cards(card)
        return str(self._header[card]).strip()

    @classmethod
    def can_translate(cls, header: Mapping[str, Any], filename: str | None = None) -> bool:
        name = str(header.get("INSTRUME", "")).strip().lower()
        return name == cls.supported_instrument.lower() or name in cls.instrument_names

    @cache_translation
    def to_instrument(self) -> str:
        return self.supported_instrument

    @cache_translation
    def to_location(self) -> EarthLocation:
        if self.are_keys_ok(["OBS-LONG", "OBS-LAT", "OBS-ELEV"]):
            self._used_these_cards("OBS-LONG", "OBS-LAT", "OBS-ELEV")
            return EarthLocation.from_geodetic(float(self._header["OBS-LONG"]) * u.deg,
                                               float(self._header["OBS-LAT"]) * u.deg,
                                               float(self._header["OBS-ELEV"]) * u.m)
        return _SITE

    @cache_translation
    def to_datetime_begin(self) -> Time:
        for card in ("MJD-BEG", "MJD-OBS"):
            if self.is_key_ok(card):
                self._used_these_cards(card)
                return Time(float(self._header[card]), format="mjd", scale="tai")
        raise KeyError("missing header keyword MJD-BEG (or MJD-OBS)")

    @cache_translation
    def to_datetime_end(self) -> Time:
        if self.is_key_ok("MJD-END"):
            self._used_these_cards("MJD-END")
            return Time(float(self._header["MJD-END"]), format="mjd", scale="tai")
        return self.to_datetime_begin() + self.to_exposure_time()

    @cache_translation
    def to_dark_time(self) -> u.Quantity:
        if self.is_key_ok("DARKTIME"):
            self._used_these_cards("DARKTIME")
            return float(self._header["DARKTIME"]) * u.s
        return self.to_exposure_time()

    @cache_translation
    def to_observing_day(self) -> int:
        """DAYOBS when the header has it (it is what the exposure ID is made of)."""
        if self.is_key_ok("DAYOBS"):
            self._used_these_cards("DAYOBS")
            return int(str(self._header["DAYOBS"]).replace("-", ""))
        return super().to_observing_day()

    @cache_translation
    def to_exposure_id(self) -> int:
        if not self.is_key_ok("SEQNUM"):
            raise KeyError("missing header keyword SEQNUM")
        seq_num = int(self._header["SEQNUM"])
        if not 0 <= seq_num < 100_000:
            raise ValueError(f"SEQNUM {seq_num} is not in [0, 100000)")
        controller = self._text("CONTRLLR", "O") or "O"
        index = _CONTROLLERS.find(controller)
        if index < 0:
            raise ValueError(f"CONTRLLR {controller!r} is not one of {', '.join(_CONTROLLERS)}")
        self._used_these_cards("SEQNUM")
        return (index * 1000_00_00 + self.to_observing_day()) * 100_000 + seq_num

    @cache_translation
    def to_visit_id(self) -> int:
        return self.to_exposure_id()

    @cache_translation
    def to_exposure_group(self) -> str:
        if self.is_key_ok("GROUPID"):
            self._used_these_cards("GROUPID")
            return str(self._header["GROUPID"]).strip()
        return str(self.to_exposure_id())

    @cache_translation
    def to_observation_type(self) -> str:
        value = self._text("IMGTYPE").lower()
        return _IMAGE_TYPES.get(value, value)

    @cache_translation
    def to_physical_filter(self) -> str:
        return _slot(self._text("FILTER", "empty"))

    @cache_translation
    def to_detector_group(self) -> str:
        return self._text("RAFTBAY")

    @cache_translation
    def to_detector_name(self) -> str:
        return self._text("CCDSLOT")

    @cache_translation
    def to_detector_unique_name(self) -> str:
        return f"{self.to_detector_group()}_{self.to_detector_name()}"

    @cache_translation
    def to_detector_num(self) -> int:
        name = self.to_detector_unique_name()
        for det in get_instrument(self.supported_instrument).detectors:
            if det.full_name == name:
                return det.id
        raise ValueError(f"RAFTBAY/CCDSLOT {name} is not a detector of {self.supported_instrument}")

    @cache_translation
    def to_detector_serial(self) -> str:
        return self._text("LSST_NUM", "unknown")

    @cache_translation
    def to_detector_exposure_id(self) -> int:
        return self.to_exposure_id() * 1000 + self.to_detector_num()

    def _on_sky(self) -> bool:
        """Whether the exposure looked at the sky: not a bias, dark or flat, nor tracking LOCAL."""
        if self.is_key_ok("TRACKSYS") and str(self._header["TRACKSYS"]).strip().lower() == "local":
            self._used_these_cards("TRACKSYS")
            return False
        return self.to_observation_type() not in ("bias", "dark", "flat")

    @cache_translation
    def to_tracking_radec(self) -> Any:
        pairs = tuple(p for p in (("RASTART", "DECSTART"), ("RA", "DEC")) if self.are_keys_ok(list(p)))
        if not pairs or not self._on_sky():
            return None
        return tracking_from_degree_headers(self, ("RADESYS",), pairs)

    @cache_translation
    def to_altaz_begin(self) -> Any:
        if not self.are_keys_ok(["ELSTART", "AZSTART"]) or self.to_observation_type() in ("bias", "dark"):
            return None
        return altaz_from_degree_headers(self, (("ELSTART", "AZSTART"),), self.to_datetime_begin())

    @cache_translation
    def to_boresight_airmass(self) -> float | None:
        for card in ("AMSTART", "AIRMASS"):
            if self.is_key_ok(card):
                self._used_these_cards(card)
                return float(self._header[card])
        return None

    @cache_translation
    def to_boresight_rotation_angle(self) -> Angle | None:
        if not self.is_key_ok("ROTPA"):
            return None
        self._used_these_cards("ROTPA")
        return Angle(float(self._header["ROTPA"]) * u.deg)


class LsstCamTranslator(_RubinTranslator):
    """LSSTCam on the Simonyi Survey Telescope (``OBSID`` ``MC_...``)."""

    name = "LSSTCam"
    supported_instrument = "LSSTCam"


class LsstComCamTranslator(_RubinTranslator):
    """The commissioning camera, one raft R22 (``OBSID`` ``CC_...``)."""

    name = "LSSTComCam"
    supported_instrument = "LSSTComCam"
    instrument_names = frozenset({"comcam"})

    @cache_translation
    def to_detector_group(self) -> str:
        return "R22"


class LatissTranslator(_RubinTranslator):
    """LATISS on the Auxiliary Telescope: one detector, filter and grating (``OBSID`` ``AT_...``)."""

    name = "LATISS"
    supported_instrument = "LATISS"

    @cache_translation
    def to_detector_group(self) -> str:
        return "RXX"

    @cache_translation
    def to_detector_name(self) -> str:
        return "S00"

    @cache_translation
    def to_physical_filter(self) -> str:
        return f"{super().to_physical_filter()}~{_slot(self._text('GRATING', 'empty'))}"
