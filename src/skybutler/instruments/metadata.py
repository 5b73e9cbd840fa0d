"""Standard observation metadata of one raw file: what ingest builds records from.

:class:`ObservationMetadata` is the instrument-independent shape that
:mod:`.headers` translates every raw header into (through astro-metadata-translator)
and :mod:`.records` turns into dimension records.  It needs no optional
dependency, so records and ingest results can be handled without the
``instruments`` extra.
"""

from __future__ import annotations

from typing import Any

from astropy.time import Time
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ObservationMetadata"]


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
    day_obs_offset: float = 0.0  # seconds after midnight TAI at which the camera's observing day begins
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
    can_see_sky: bool | None = None  # None: the translator cannot tell
    has_simulated: bool = False  # some content of the file is simulated

    @field_validator("datetime_begin", "datetime_end", mode="before")
    @classmethod
    def _tai(cls, value: Any) -> Time:
        return (value if isinstance(value, Time) else Time(value, scale="tai")).tai

    @field_validator("observation_type")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()
