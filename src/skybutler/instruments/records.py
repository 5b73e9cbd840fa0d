"""Dimension records derived from one raw file's :class:`ObservationMetadata`.

Ingest turns every raw file into records for ``exposure``, ``day_obs`` and
``group`` (plus the instrument's own records from
:meth:`Instrument.dimension_records`); the field names here are those of the
default dimension universe.
"""

from __future__ import annotations

from typing import Any

from astropy.time import Time, TimeDelta

from skybutler.timespan import Timespan

from .metadata import ObservationMetadata

__all__ = ["day_obs_record", "day_obs_timespan", "exposure_record", "group_record"]

_ONE_DAY = TimeDelta(86400.0, format="sec", scale="tai")


def exposure_record(meta: ObservationMetadata) -> dict[str, Any]:
    """The ``exposure`` record (one per exposure, identical for all its detectors)."""
    return {
        "instrument": meta.instrument,
        "id": meta.exposure_id,
        "physical_filter": meta.physical_filter,
        "day_obs": meta.day_obs,
        "group": meta.group,
        "obs_id": meta.obs_id,
        "seq_num": meta.seq_num,
        "seq_start": meta.seq_num,
        "seq_end": meta.seq_num,
        "exposure_time": meta.exposure_time,
        "dark_time": meta.dark_time,
        "observation_type": meta.observation_type,
        "observation_reason": meta.observation_reason,
        "science_program": meta.science_program,
        "target_name": meta.target_name,
        "tracking_ra": meta.tracking_ra,
        "tracking_dec": meta.tracking_dec,
        "sky_angle": meta.sky_angle,
        "azimuth": meta.azimuth,
        "zenith_angle": meta.zenith_angle,
        "airmass": meta.airmass,
        "has_simulated": meta.has_simulated,
        "can_see_sky": meta.can_see_sky,
        "timespan": Timespan(meta.datetime_begin, meta.datetime_end),
    }


def day_obs_timespan(day_obs: int, offset: float = 12 * 3600.0) -> Timespan:
    """The observing day ``day_obs`` as ``[YYYY-MM-DDT00:00 TAI + offset, +24h)``.

    ``offset`` (seconds) is the camera's own rule, from its header translator: 12 h
    for SimCam, Rubin's cameras and DECam, 0 for Subaru's and CFHT's cameras.
    """
    text = str(day_obs)
    begin = Time(f"{text[:4]}-{text[4:6]}-{text[6:]}T00:00:00", scale="tai") + TimeDelta(offset, format="sec",
                                                                                         scale="tai")
    return Timespan(begin, begin + _ONE_DAY)


def day_obs_record(meta: ObservationMetadata) -> dict[str, Any]:
    """The ``day_obs`` record of the night the exposure was taken in."""
    return {"instrument": meta.instrument, "id": meta.day_obs,
            "timespan": day_obs_timespan(meta.day_obs, meta.day_obs_offset)}


def group_record(meta: ObservationMetadata) -> dict[str, Any]:
    """The ``group`` record the exposure belongs to."""
    return {"instrument": meta.instrument, "name": meta.group}
