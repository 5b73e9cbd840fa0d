"""Standard observation metadata of one raw file, read from its header.

:func:`read_observation_metadata` reads only the header of a raw FITS file and
translates it with astro-metadata-translator's ``ObservationInfo``: cameras the
library knows (HSC, DECam, ...) work out of the box, and SimCam plugs in through
:class:`~skybutler.instruments.translator.SimCamTranslator`.  The result is an
:class:`ObservationMetadata`, the instrument-independent shape ingest builds
dimension records from (see :mod:`.records`).

Anything that stops a file from being described (it is not FITS, no translator
claims its header, a required keyword is missing, two keywords contradict each
other, its filter or detector is not the instrument's) raises a
:class:`~skybutler.instruments.errors.RawHeaderError` naming the file and reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import astropy.units as u
from astro_metadata_translator import MetadataTranslator, ObservationInfo
from astropy.time import Time, TimeDelta
from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import translator as _translator  # noqa: F401  (registers SimCamTranslator)
from .errors import InstrumentError, RawHeaderError, UnknownInstrumentError, UnknownRawInstrumentError
from .instrument import get_instrument

__all__ = [
    "ObservationMetadata",
    "compute_day_obs",
    "metadata_from_header",
    "read_all_observation_metadata",
    "read_observation_metadata",
]

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
}
#: Science exposures must also say where the telescope pointed.
_SCIENCE_REQUIRED = {"tracking_radec", "altaz_begin", "boresight_rotation_angle", "boresight_airmass"}
_OPTIONAL = {
    "dark_time",
    "exposure_group",
    "observation_counter",
    "observation_reason",
    "science_program",
    "object",
    "tracking_radec",
    "altaz_begin",
    "boresight_rotation_angle",
    "boresight_airmass",
}

_DAY_OFFSET = TimeDelta(12 * 3600.0, format="sec", scale="tai")


def compute_day_obs(begin: Time) -> int:
    """The observing night (YYYYMMDD) of an exposure: the TAI date of ``begin - 12h``."""
    return int((begin.tai - _DAY_OFFSET).strftime("%Y%m%d"))


class ObservationMetadata(BaseModel):
    """What skybutler needs to know about one raw exposure of one detector.

    Angles are in degrees, times in seconds; pointing fields are ``None`` for
    exposures that do not see the sky (biases, darks, often flats).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    instrument: str
    exposure_id: int
    detector: int
    day_obs: int = Field(ge=10000101, le=99991231)
    group: str
    seq_num: int
    obs_id: str
    observation_type: str
    observation_reason: str = "unknown"
    science_program: str = ""
    target_name: str = ""
    physical_filter: str
    datetime_begin: Time
    datetime_end: Time
    exposure_time: float
    dark_time: float
    tracking_ra: float | None = None
    tracking_dec: float | None = None
    sky_angle: float | None = None
    azimuth: float | None = None
    zenith_angle: float | None = None
    airmass: float | None = None

    @field_validator("datetime_begin", "datetime_end", mode="before")
    @classmethod
    def _tai(cls, value: Any) -> Time:
        return (value if isinstance(value, Time) else Time(value, scale="tai")).tai

    @field_validator("observation_type")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


def metadata_from_header(header: Any, filename: str | Path = "<header>") -> ObservationMetadata:
    """Translate an already-read header (any dict-like) into :class:`ObservationMetadata`."""
    filename = str(filename)
    header = dict(header)
    try:
        translator_class = MetadataTranslator.determine_translator(header, filename=filename)
    except Exception as exc:  # ValueError if none matches; some translators' probes raise KeyError
        instrument = header.get("INSTRUME", "<no INSTRUME keyword>")
        detail = "" if isinstance(exc, ValueError) else f" ({type(exc).__name__}: {exc})"
        raise UnknownRawInstrumentError(
            filename, f"no header translator understands instrument {instrument!r}{detail}"
        ) from exc
    try:
        required = set(_REQUIRED)
        if translator_class(header, filename=filename).to_observation_type() == "science":
            required |= _SCIENCE_REQUIRED
    except Exception:
        pass  # a bad observation type is reported, with its reason, by ObservationInfo below
    try:
        info = ObservationInfo(
            header,
            filename=filename,
            translator_class=translator_class,
            required=required,
            subset=_REQUIRED | _OPTIONAL,
            quiet=True,
        )
    except Exception as exc:  # the library wraps the real cause; report that
        raise RawHeaderError(filename, _reason(exc)) from exc
    meta = _from_info(info, filename)
    _check_against_instrument(meta, filename)
    return meta


def read_observation_metadata(path: str | Path) -> ObservationMetadata:
    """Read the header (only) of a raw file and translate it (see module docstring)."""
    return metadata_from_header(_read_header(path), path)


def read_all_observation_metadata(path: str | Path) -> list[ObservationMetadata]:
    """Metadata of every detector in a raw file (multi-extension cameras such as DECam)."""
    primary = _read_header(path)
    try:
        translator_class = MetadataTranslator.determine_translator(primary, filename=str(path))
    except Exception:
        return [metadata_from_header(primary, path)]  # raises the usual error
    try:
        headers = list(translator_class.determine_translatable_headers(str(path), primary))
    except Exception as exc:
        raise RawHeaderError(path, f"cannot read headers: {exc}") from exc
    return [metadata_from_header(h, path) for h in headers]


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


def _from_info(info: ObservationInfo, filename: str) -> ObservationMetadata:
    """Map the library's standard properties onto our field names."""
    radec = info.tracking_radec
    altaz = info.altaz_begin
    zenith = None if altaz is None else 90.0 - float(altaz.alt.to_value(u.deg))
    exposure_time = _seconds(info.exposure_time)
    dark_time = _seconds(info.dark_time)
    begin = info.datetime_begin.tai
    try:
        return ObservationMetadata(
            instrument=info.instrument,
            exposure_id=info.exposure_id,
            detector=info.detector_num,
            day_obs=compute_day_obs(begin),
            group=info.exposure_group if info.exposure_group is not None else str(info.exposure_id),
            seq_num=info.observation_counter if info.observation_counter is not None else 0,
            obs_id=info.observation_id,
            observation_type=info.observation_type,
            observation_reason=info.observation_reason or "unknown",
            science_program=info.science_program or "",
            target_name=info.object or "",
            physical_filter=info.physical_filter,
            datetime_begin=begin,
            datetime_end=info.datetime_end.tai,
            exposure_time=exposure_time,
            dark_time=dark_time if dark_time is not None else exposure_time,
            tracking_ra=None if radec is None else float(radec.icrs.ra.deg),
            tracking_dec=None if radec is None else float(radec.icrs.dec.deg),
            sky_angle=_degrees(info.boresight_rotation_angle),
            azimuth=None if altaz is None else float(altaz.az.to_value(u.deg)),
            zenith_angle=zenith,
            airmass=None if info.boresight_airmass is None else float(info.boresight_airmass),
        )
    except Exception as exc:
        raise RawHeaderError(filename, f"translated metadata are invalid: {exc}") from exc


def _check_against_instrument(meta: ObservationMetadata, filename: str) -> None:
    """If skybutler knows the instrument, its filter and detector must exist there."""
    if meta.datetime_end < meta.datetime_begin:
        raise RawHeaderError(filename, "observation ends before it begins")
    try:
        instrument = get_instrument(meta.instrument)
    except UnknownInstrumentError:
        return  # a camera the translator knows but skybutler has no description of yet
    try:
        instrument.band_of(meta.physical_filter)
        instrument.detector(meta.detector)
    except InstrumentError as exc:
        raise RawHeaderError(filename, str(exc)) from exc

