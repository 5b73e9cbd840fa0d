"""Instruments: camera descriptions, raw-header translation, and the simulated SimCam.

- :class:`Instrument` / :class:`Detector` describe a camera (one module or one YAML
  file per camera) and give its ``instrument``/``band``/``physical_filter``/``detector``
  dimension records; :func:`get_instrument` looks a camera up by name.
- camera descriptions ship as YAML under ``instruments/cameras/`` (HSC, Suprime-Cam,
  DECam, MegaPrime, SDSS, LSSTCam, LSSTComCam, LATISS), loaded by the one generic
  :class:`Instrument`; :func:`builtin_camera_names` lists them.
- :func:`read_observation_metadata` turns a raw file's header into
  :class:`ObservationMetadata` (via astro-metadata-translator, the ``instruments``
  extra, imported only when a header is read), and
  :func:`exposure_record` / :func:`day_obs_record` / :func:`group_record` turn that
  into dimension records.
- :class:`SimCam` and :mod:`.simulate` write realistic raw FITS files for demos and tests.
"""

from .errors import InstrumentError, RawHeaderError, UnknownInstrumentError, UnknownRawInstrumentError
from .headers import metadata_from_header, offline, read_all_observation_metadata, read_observation_metadata
from .instrument import (
    Detector,
    HeaderRules,
    Instrument,
    Site,
    builtin_camera_names,
    get_instrument,
    known_instruments,
    register_instrument,
    register_instrument_class,
)
from .metadata import ObservationMetadata
from .records import day_obs_record, day_obs_timespan, exposure_record, group_record
from .simcam import SimCam, simcam_exposure_id, simcam_obs_id
from .simulate import ExposureSpec, glint_detectors, glint_trail, plan_night, simulate_night, write_exposure
from .sky import star_catalog


def __getattr__(name: str) -> object:
    """``SimCamTranslator`` needs astro-metadata-translator: imported when asked for."""
    if name == "SimCamTranslator":
        from ..extras import require

        require("astro_metadata_translator", "the SimCam header translator")
        from .translators import SimCamTranslator

        return SimCamTranslator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Detector",
    "ExposureSpec",
    "HeaderRules",
    "Instrument",
    "InstrumentError",
    "ObservationMetadata",
    "RawHeaderError",
    "SimCam",
    "SimCamTranslator",
    "Site",
    "builtin_camera_names",
    "offline",
    "UnknownInstrumentError",
    "UnknownRawInstrumentError",
    "day_obs_record",
    "day_obs_timespan",
    "exposure_record",
    "get_instrument",
    "glint_detectors",
    "glint_trail",
    "group_record",
    "known_instruments",
    "metadata_from_header",
    "plan_night",
    "read_all_observation_metadata",
    "read_observation_metadata",
    "register_instrument",
    "register_instrument_class",
    "simcam_exposure_id",
    "simcam_obs_id",
    "simulate_night",
    "star_catalog",
    "write_exposure",
]
