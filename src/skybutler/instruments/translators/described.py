"""Translators made from a camera description's header rules (``headers:`` in its YAML).

A camera no installed translator knows is described in one YAML file; its
``headers`` section (:class:`~skybutler.instruments.instrument.HeaderRules`) names
the cards that identify its files and the card of each standard property.  This
module turns those rules into an astro-metadata-translator class, registered under
the instrument's name, so the camera's raws ingest through the same path as every
other camera's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import astropy.units as u
from astro_metadata_translator import FitsTranslator, cache_translation
from astro_metadata_translator.translators.helpers import altaz_from_degree_headers, tracking_from_degree_headers
from astropy.coordinates import Angle, EarthLocation
from astropy.time import TimeDelta

from ..instrument import HeaderRules, Instrument

__all__ = ["translator_from_rules"]

_MADE: dict[str, tuple[HeaderRules, type]] = {}

#: Optional properties that are None when the rules name no card for them.
_OPTIONAL_TRIVIAL = ("object", "science_program", "observation_counter", "exposure_group", "observation_reason")

#: Properties read from one card as they are (with a unit for times).
_TRIVIAL = {
    "exposure_id": {},
    "detector_num": {},
    "physical_filter": {},
    "observation_id": {},
    "object": {},
    "science_program": {},
    "observation_counter": {},
    "exposure_group": {},
    "observation_reason": {},
    "exposure_time": {"unit": u.s},
    "dark_time": {"unit": u.s},
}


def translator_from_rules(instrument: Instrument) -> type:
    """The translator class of a described camera (made once per rules; replaced if they change)."""
    rules = instrument.headers
    if rules is None:
        raise ValueError(f"instrument {instrument.name!r} has no header rules")
    made = _MADE.get(instrument.name)
    if made is not None and made[0] == rules:
        return made[1]
    cls = _make(instrument.name, rules, instrument.location)
    _MADE[instrument.name] = (rules, cls)
    return cls


def _make(name: str, rules: HeaderRules, site: Any) -> type:
    cards = rules.cards
    trivial: dict[str, Any] = {}
    for prop, options in _TRIVIAL.items():
        if prop in cards:
            trivial[prop] = (cards[prop], options) if options else cards[prop]
    if "dark_time" not in cards:
        trivial["dark_time"] = (cards["exposure_time"], {"unit": u.s})
    absent = {prop: None for prop in _OPTIONAL_TRIVIAL if prop not in cards}
    offset = TimeDelta(rules.observing_day_offset * 3600.0, format="sec", scale="tai")
    location = None if site is None else EarthLocation.from_geodetic(
        site.longitude * u.deg, site.latitude * u.deg, site.height * u.m)

    class DescribedTranslator(FitsTranslator):
        _const_map = {"boresight_rotation_coord": "sky", "observing_day_offset": offset, "instrument": name,
                      **absent}
        _trivial_map = trivial

        @classmethod
        def can_translate(cls, header: Mapping[str, Any], filename: str | None = None) -> bool:
            return all(str(header.get(card, "")).strip() == value for card, value in rules.match.items())

        @cache_translation
        def to_location(self) -> EarthLocation:
            try:
                return super().to_location()  # OBSGEO-X/Y/Z
            except KeyError:
                if location is None:
                    raise KeyError("no OBSGEO-X/Y/Z cards and no location in the camera description") from None
                return location

        @cache_translation
        def to_datetime_end(self) -> Any:
            end = super().to_datetime_end()
            return end if end is not None else self.to_datetime_begin() + self.to_exposure_time()

        @cache_translation
        def to_observation_type(self) -> str:
            if "observation_type" not in cards:
                return "science"
            value = str(self._header[cards["observation_type"]]).strip()
            self._used_these_cards(cards["observation_type"])
            return rules.observation_types.get(value, value.lower())

        @cache_translation
        def to_detector_name(self) -> str:
            return str(self.to_detector_num())

        @cache_translation
        def to_tracking_radec(self) -> Any:
            if "ra" not in cards or "dec" not in cards or not self.are_keys_ok([cards["ra"], cards["dec"]]):
                return None
            return tracking_from_degree_headers(self, ("RADESYS",), ((cards["ra"], cards["dec"]),))

        @cache_translation
        def to_altaz_begin(self) -> Any:
            if "altitude" not in cards or "azimuth" not in cards:
                return None
            if not self.are_keys_ok([cards["altitude"], cards["azimuth"]]):
                return None
            return altaz_from_degree_headers(self, ((cards["altitude"], cards["azimuth"]),),
                                             self.to_datetime_begin())

        @cache_translation
        def to_boresight_rotation_angle(self) -> Angle | None:
            if "rotation_angle" not in cards or not self.is_key_ok(cards["rotation_angle"]):
                return None
            return Angle(float(self._header[cards["rotation_angle"]]) * u.deg)

        @cache_translation
        def to_boresight_airmass(self) -> float | None:
            if "airmass" not in cards or not self.is_key_ok(cards["airmass"]):
                return None
            return float(self._header[cards["airmass"]])

    DescribedTranslator.__name__ = DescribedTranslator.__qualname__ = f"Described{name}Translator"
    # Registered under the camera's name (a class statement cannot take it as a variable).
    return type(f"{name}HeaderRules", (DescribedTranslator,), {"name": name, "supported_instrument": name})
