"""Translate raw headers into :class:`ObservationMetadata`, offline.

:func:`read_observation_metadata` reads only the header of a raw FITS file and
translates it with astro-metadata-translator's ``ObservationInfo``: the cameras the
library knows (HSC, Suprime-Cam, DECam, MegaPrime, SDSS), Rubin's cameras (through
``obs_lsst`` when it is installed, else through :mod:`.translators.rubin`), SimCam, and
every camera whose description carries its own header rules
(:class:`~skybutler.instruments.instrument.HeaderRules`).

The library is an optional dependency (the ``instruments`` extra), imported only when a
header is translated, and translation never touches the network: both are
:mod:`.translator_library`'s.

The observing day (``day_obs``) is the translator's own: each camera has its rule
(Subaru and CFHT count from midnight Hawaii time, DECam and Rubin from noon).

Anything that stops a file from being described (it is not FITS, no translator
claims its header, a required keyword is missing, two keywords contradict each
other, the camera has no description, its filter or detector is not the
description's) raises a :class:`~skybutler.instruments.errors.RawHeaderError`
naming the file and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import astropy.units as u

from .errors import (
    InstrumentError,
    RawHeaderError,
    UnknownInstrumentError,
    UnknownRawInstrumentError,
)
from .instrument import Instrument, get_instrument, registry_version
from .metadata import ObservationMetadata
from .translator_library import _described_translators, _library, _offline_translator, offline

__all__ = ["metadata_from_header", "offline", "read_all_observation_metadata", "read_observation_metadata",
           "translator_for"]

#: Properties every raw file must yield; the others may be None (e.g. for a bias).
_REQUIRED = {
    "instrument",
    "exposure_id",
    "detector_num",
    "physical_filter",
    "datetime_begin",
    "datetime_end",
    "exposure_time",
    "observation_type",
    "observation_id",
    "observing_day",
}
#: Science exposures must also say where the telescope pointed.
_SCIENCE_REQUIRED = {"tracking_radec", "altaz_begin", "boresight_rotation_angle", "boresight_airmass"}
_OPTIONAL = {
    "can_see_sky",
    "dark_time",
    "has_simulated_content",
    "exposure_group",
    "observation_counter",
    "observation_reason",
    "observing_day_offset",
    "science_program",
    "object",
    "tracking_radec",
    "altaz_begin",
    "boresight_rotation_angle",
    "boresight_airmass",
}


class _InOrder(set):
    """A set of property names that iterates in name order.  ObservationInfo translates its subset
    in the subset's iteration order and reports the first required property it cannot; a plain set's
    order changes from process to process (string hashing), and so would a header's reason."""

    def __iter__(self) -> Any:
        return iter(sorted(set.__iter__(self)))


def metadata_from_header(header: Any, filename: str | Path = "<header>") -> ObservationMetadata:
    """Translate an already-read header (any dict-like) into :class:`ObservationMetadata`.

    The properties of the exposure (its identity, times, pointing, observing day, ...) are the
    same in every file of it, and are most of the cost: they are translated once per exposure, and
    a later file whose header holds the same values in every card that translation read (recorded
    as it ran, the exposure's identity included) takes them over; only its own detector and filter
    are translated.  Any difference in those cards and the file is translated in full.
    """
    filename = str(filename)
    header = dict(header)
    amt = _library()
    with offline():
        translator_class = translator_for(header, filename)
        _check_described(translator_class(header, filename=filename), filename)
        amt.fix_header(header, translator_class=translator_class, filename=filename)
        memo = _same_exposure(translator_class, header)
        own = _own_properties(translator_class, header, filename, _PER_FILE)
        if memo is not None and own is not None:
            meta = memo.model_copy(update={"detector": own["detector_num"], "physical_filter": own["physical_filter"]})
            _check_against_instrument(meta, filename, False, translator_class, header)  # times checked
            return meta
        meta, reads = _translate(amt, translator_class, header, filename, own)
        if reads is not None:  # they include the cards the exposure's identity was read from
            _EXPOSURES.pop(key := (translator_class, meta.instrument, meta.exposure_id), None)
            _EXPOSURES[key] = (reads, meta)  # the latest last
            if len(_EXPOSURES) > _EXPOSURES_KEPT:
                del _EXPOSURES[next(iter(_EXPOSURES))]
    _check_against_instrument(meta, filename, True, translator_class, header)
    return meta


#: A raw file's own properties: those that differ between the files of one exposure.
_PER_FILE = ("detector_num", "physical_filter")
#: (translator, instrument, exposure) -> (the cards its translation read, identity included, with
#: their values; the result), the exposure translated latest last.
_EXPOSURES: dict[tuple, tuple[dict[str, Any], ObservationMetadata]] = {}
#: Exposures remembered (files come exposure by exposure; a few are enough).
_EXPOSURES_KEPT = 16
_ABSENT = object()


def _same_exposure(translator_class: type, header: dict[str, Any]) -> ObservationMetadata | None:
    """The translation of a remembered exposure whose every card read has the same value in ``header``
    (the latest first: a file is most often of the exposure of the file before it)."""
    for (chosen, _, _), (reads, meta) in reversed(_EXPOSURES.items()):
        if chosen is translator_class and all(header.get(card, _ABSENT) == value for card, value in reads.items()):
            return meta
    return None


class ReadRecorder(dict):
    """A header that notes every card a translator reads (its value, or that it is absent);
    reading it whole (iterating, copying) is noted as ``whole``: then nothing can be reused."""

    def __init__(self, data: dict[str, Any]):
        super().__init__(data)
        self.read: dict[str, Any] = {}
        self.whole = False

    def _note(self, key: Any) -> None:
        if key not in self.read:
            self.read[key] = dict.get(self, key, _ABSENT)

    def __getitem__(self, key: Any) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key: Any) -> bool:
        self._note(key)
        return super().__contains__(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._note(key)
        super().__setitem__(key, value)

    def _whole(self, name: str) -> Any:
        self.whole = True
        return getattr(super(), name)

    def __iter__(self) -> Any:
        return self._whole("__iter__")()

    def __len__(self) -> int:
        return self._whole("__len__")()

    def keys(self) -> Any:
        return self._whole("keys")()

    def items(self) -> Any:
        return self._whole("items")()

    def values(self) -> Any:
        return self._whole("values")()

    def copy(self) -> dict[str, Any]:
        return self._whole("copy")()

    def pop(self, *args: Any) -> Any:
        return self._whole("pop")(*args)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._whole("update")(*args, **kwargs)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._note(key)
        return super().setdefault(key, default)

    def __delitem__(self, key: Any) -> None:
        self._whole("__delitem__")(key)


def _own_properties(translator_class: type, header: dict[str, Any], filename: str,
                    names: tuple[str, ...]) -> dict[str, Any] | None:
    """The properties ``names`` of a file, or None if one cannot be translated (the full translation
    says why)."""
    translator = translator_class(header, filename=filename)
    try:
        return {name: getattr(translator, f"to_{name}")() for name in names}
    except Exception:
        return None


def _translate(amt: Any, translator_class: type, header: dict[str, Any], filename: str,
               own: dict[str, Any] | None) -> tuple[ObservationMetadata, dict[str, Any] | None]:
    """The full translation, and the cards its exposure's properties read (None: not reusable).

    With ``own`` (the file's detector and filter, translated already) the exposure's properties
    are translated through a recording header; without, every property as one translation."""
    recorder = ReadRecorder(header) if own is not None else header
    required = set(_REQUIRED)
    try:
        if translator_class(recorder, filename=filename).to_observation_type() == "science":
            required |= _SCIENCE_REQUIRED
    except Exception:
        pass  # a bad observation type is reported, with its reason, by ObservationInfo below
    subset = _REQUIRED | _OPTIONAL
    if own is not None:
        required, subset = required - set(_PER_FILE), subset - set(_PER_FILE)
    try:
        info = amt.ObservationInfo(recorder, filename=filename, translator_class=translator_class,
                                   required=required, subset=_InOrder(subset), quiet=True)
    except Exception as exc:  # the library wraps the real cause; report that
        reason = _reason(exc)
        raise RawHeaderError(filename, reason + _missing_cards(translator_class, header, filename, exc, reason)) \
            from exc
    if own is None:
        return _from_info(info, filename, info.detector_num, info.physical_filter), None
    meta = _from_info(info, filename, own["detector_num"], own["physical_filter"])
    return meta, None if recorder.whole else recorder.read


def read_observation_metadata(path: str | Path) -> ObservationMetadata:
    """Read the header (only) of a raw file and translate it (see module docstring)."""
    return metadata_from_header(_read_header(path), path)


def read_all_observation_metadata(path: str | Path) -> list[ObservationMetadata]:
    """Metadata of every detector in a raw file (multi-extension cameras such as DECam)."""
    primary = _read_header(path)
    translator_class = translator_for(primary, str(path))
    try:
        with offline():
            headers = list(translator_class.determine_translatable_headers(str(path), primary))
    except Exception as exc:
        raise RawHeaderError(path, f"cannot read headers: {exc}") from exc
    return [metadata_from_header(h, path) for h in headers]


def translator_for(header: dict[str, Any], filename: str) -> type:
    """The translator class for a header (offline-safe), or :class:`UnknownRawInstrumentError`.

    Choosing asks every translator whether it claims the header, and reads a few cards to
    answer; the choice is remembered with the cards it read (through a recording header), so a
    later header with the same values in those cards gets the same translator without asking,
    until another camera is registered in this process."""
    amt = _library()
    if _CHOSEN.get("version") != registry_version():
        _described_translators()
        _CHOSEN.clear()
        _EXPOSURES.clear()  # a translation may use a camera's description (its rotator, its site)
        _CHOSEN["version"] = registry_version()
    for reads, chosen in _CHOSEN.get("choices", ()):
        if all(header.get(card, _ABSENT) == value for card, value in reads.items()):
            return chosen
    recorder = ReadRecorder(header)
    try:
        found = amt.MetadataTranslator.determine_translator(recorder, filename=filename)
    except Exception as exc:  # ValueError if none matches; some translators' probes raise KeyError
        instrument = header.get("INSTRUME", "<no INSTRUME keyword>")
        detail = "" if isinstance(exc, ValueError) else f" ({type(exc).__name__}: {exc})"
        raise UnknownRawInstrumentError(
            filename, f"no header translator understands instrument {instrument!r}{detail}{_what_to_do(header)}"
        ) from exc
    chosen = _offline_translator(found)
    if not recorder.whole:
        choices = _CHOSEN.setdefault("choices", [])
        choices.insert(0, (recorder.read, chosen))
        del choices[_CHOICES_KEPT:]
    return chosen


#: The translators chosen lately, with the cards each choice read; and the registry version they hold for.
_CHOSEN: dict[str, Any] = {}
#: Choices remembered (one or two per camera being ingested).
_CHOICES_KEPT = 16


#: Cards only Rubin's cameras (their test stands and simulated cameras too) write.
_RUBIN_CARDS = ("RAFTBAY", "CCDSLOT", "CONTRLLR", "DAYOBS")


def _what_to_do(header: dict[str, Any]) -> str:
    """For a camera no translator knows: where a Rubin camera's translator is, and how to describe any
    other camera so that its raws can be read."""
    from .instrument import builtin_camera_names
    from .translators import OBS_LSST

    if OBS_LSST or not any(card in header for card in _RUBIN_CARDS):
        return (f"; skybutler reads the raws of {', '.join(builtin_camera_names())} and of every camera "
                "registered with a 'headers:' section in its description (the cards that identify its files "
                "and hold its exposure, detector, filter, ...): describe the camera in a YAML file and run "
                "'skybutler register-instrument REPO FILE' (or Butler.register_instrument), as the user "
                "guide's 'A camera of one's own' shows")
    return ("; it is a Rubin camera's header: skybutler translates LSSTCam, LSSTComCam and LATISS itself, and "
            "Rubin's other cameras (test stands, simulated cameras) through the translators of Rubin's "
            "obs_lsst package, which is not on PyPI: install the LSST Science Pipelines (which provide "
            "lsst.obs.lsst) into this environment")


# -- internals -----------------------------------------------------------------------


def _read_header(path: str | Path) -> dict[str, Any]:
    """The primary header merged with the first extension's, as a plain dict."""
    from astropy.io import fits

    path = Path(path)
    if not path.exists():
        raise RawHeaderError(path, "file does not exist")
    try:
        with fits.open(path, lazy_load_hdus=True, memmap=False) as hdul:
            header = dict(hdul[0].header)
            if header.get("EXTEND") and header.get("NAXIS", 0) == 0 and len(hdul) > 1:
                for key, value in hdul[1].header.items():
                    header.setdefault(key, value)
    except Exception as exc:  # astropy raises OSError, ValueError, ... for broken files
        raise RawHeaderError(path, f"not a readable FITS file ({type(exc).__name__}: {exc})") from exc
    header.pop("COMMENT", None)
    header.pop("HISTORY", None)
    return header


def _missing_cards(translator_class: type, header: dict[str, Any], filename: str, exc: BaseException,
                   reason: str) -> str:
    """The cards the property that failed looked for and did not find (those ``reason`` does
    not name already), as `` (looked for and did not find: DATE-BEG, ZD)``: a translator often
    says only that it could not determine the property.  Some are alternatives it tried first."""
    outer = str(exc)
    if "property '" not in outer:
        return ""
    prop = outer.split("property '")[1].split("'")[0]
    missing = [card for card in _absent_cards(translator_class, header, filename, prop) if card not in reason]
    return f" (looked for and did not find: {', '.join(missing)})" if missing else ""


def _absent_cards(translator_class: type, header: dict[str, Any], filename: str, prop: str) -> list[str]:
    """The cards the translator looked for, and did not find, while translating ``prop``."""
    probe = ReadRecorder(header)
    try:
        getattr(translator_class(probe, filename=filename), f"to_{prop}")()
    except Exception:  # the failure being explained, if any
        pass
    return [str(card) for card, value in probe.read.items() if value is _ABSENT]


def _reason(exc: BaseException) -> str:
    """The innermost message of an exception chain (what actually went wrong)."""
    messages = []
    while exc is not None:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        messages.append(str(text))
        exc = exc.__cause__ or exc.__context__
    inner = messages[-1]
    outer = messages[0]
    prop = ""
    if "property '" in outer:
        prop = outer.split("property '")[1].split("'")[0]
    return f"cannot determine {prop}: {inner}" if prop else inner


def _degrees(value: Any) -> float | None:
    """An angle or quantity in degrees, or None."""
    if value is None:
        return None
    return float(u.Quantity(value).to_value(u.deg))


def _seconds(value: Any) -> float | None:
    """A time quantity in seconds, or None."""
    if value is None:
        return None
    return float(u.Quantity(value).to_value(u.s))


def _from_info(info: Any, filename: str, detector: int, physical_filter: str) -> ObservationMetadata:
    """Map the library's standard properties onto our field names."""
    radec = info.tracking_radec
    altaz = info.altaz_begin
    zenith = None if altaz is None else 90.0 - float(altaz.alt.to_value(u.deg))
    exposure_time = _seconds(info.exposure_time)
    dark_time = _seconds(info.dark_time)
    offset = info.observing_day_offset
    try:
        return ObservationMetadata(
            instrument=info.instrument,
            exposure_id=info.exposure_id,
            detector=detector,
            day_obs=info.observing_day,
            day_obs_offset=0.0 if offset is None else float(offset.to_value(u.s)),
            group=info.exposure_group if info.exposure_group is not None else str(info.exposure_id),
            seq_num=info.observation_counter if info.observation_counter is not None else 0,
            obs_id=info.observation_id,
            observation_type=info.observation_type,
            observation_reason=info.observation_reason or "unknown",
            science_program=info.science_program or "",
            target_name=info.object or "",
            physical_filter=physical_filter,
            datetime_begin=info.datetime_begin.tai,
            datetime_end=info.datetime_end.tai,
            exposure_time=exposure_time,
            dark_time=dark_time if dark_time is not None else exposure_time,
            tracking_ra=None if radec is None else float(radec.icrs.ra.deg),
            tracking_dec=None if radec is None else float(radec.icrs.dec.deg),
            sky_angle=_sky_angle(info, radec, altaz),
            azimuth=None if altaz is None else float(altaz.az.to_value(u.deg)),
            zenith_angle=zenith,
            airmass=None if info.boresight_airmass is None else float(info.boresight_airmass),
            can_see_sky=info.can_see_sky,
            has_simulated=bool(info.has_simulated_content),
        )
    except Exception as exc:
        raise RawHeaderError(filename, f"translated metadata are invalid: {exc}") from exc


def _sky_angle(info: Any, radec: Any, altaz: Any) -> float | None:
    """The sky position angle of the focal plane's +y: the translator's rotation angle, or for a camera
    whose translator gives its rotator's angle, that plus the parallactic angle (see
    :meth:`Instrument.sky_angle`)."""
    rotation = _degrees(info.boresight_rotation_angle)
    camera = get_instrument(info.instrument)
    if rotation is None or camera.rotation == "sky":
        return rotation
    site = camera.location
    return camera.sky_angle(rotation, None if altaz is None else float(altaz.alt.to_value(u.deg)),
                            None if altaz is None else float(altaz.az.to_value(u.deg)),
                            None if radec is None else float(radec.icrs.dec.deg),
                            None if site is None else site.latitude)


def _check_described(translator: Any, filename: str) -> None:
    """The camera must have a description (checked first: it is the reason, not a missing card)."""
    try:
        name = translator.to_instrument()
    except Exception:
        return  # reported with its reason by the full translation
    try:
        get_instrument(name)
    except UnknownInstrumentError:
        raise RawHeaderError(
            filename,
            f"camera {name!r} has a header translator but no skybutler description "
            "(describe it in a YAML file and run 'skybutler register-instrument REPO FILE')",
        ) from None


def _check_against_instrument(meta: ObservationMetadata, filename: str, times: bool = True,
                              translator_class: type | None = None, header: dict[str, Any] | None = None) -> None:
    """The file's filter and detector must be in its camera's description (and, with ``times``, its
    exposure must end after it begins).  An unknown detector the translator made up because the
    header lacks the card it reads the detector from (MegaPrime's ``ccd99`` for a primary header
    without EXTNAME) is refused naming that card."""
    if times and meta.datetime_end < meta.datetime_begin:
        raise RawHeaderError(filename, "observation ends before it begins")
    instrument: Instrument = get_instrument(meta.instrument)
    try:
        instrument.band_of(meta.physical_filter)
    except InstrumentError as exc:
        raise RawHeaderError(filename, str(exc)) from exc
    try:
        instrument.detector(meta.detector)
    except InstrumentError as exc:
        message = str(exc)
        absent = [] if header is None or translator_class is None else _absent_cards(
            translator_class, header, filename, "detector_num")
        if absent:
            message += (f": the header has no {', '.join(absent)}, the card(s) its translator reads the detector "
                        f"from, and {meta.detector} is the translator's stand-in (a raw file is one detector's "
                        "image, with that detector's header)")
        raise RawHeaderError(filename, message) from exc
