"""Instrument descriptions: detectors, filters, focal-plane layout, and a registry.

An :class:`Instrument` is plain data, so adding a new camera is either one small
Python module (subclass :class:`Instrument`, give its fields defaults, decorate the
class with :func:`register_instrument_class`) or one YAML file loaded with
:meth:`Instrument.from_yaml`.  The YAML shape is::

    name: MyCam                  # instrument name, the `instrument` dimension key
    pixel_scale: 0.2             # arcsec per (unbinned) pixel
    visit_max: 100000000         # optional; visit IDs are below this (exclusive)
    exposure_max: 100000000      # optional; exposure IDs are below this (default visit_max)
    class_name: mypkg.MyCam      # optional; recorded in the instrument record
    detector_defaults:           # optional; merged into every detector entry
      nx: 4096                   # pixels along x (columns)
      ny: 4096                   # pixels along y (rows)
      pixel_size: 15.0           # microns
      purpose: SCIENCE
    detectors:                   # one entry per detector
      - {id: 0, full_name: R00_S00, raft: R00, offset_x: -0.1, offset_y: 0.0}
      - {id: 1, full_name: R00_S01, raft: R00, offset_x: 0.1, offset_y: 0.0, yaw: 90, serial: "A-12"}
    filters:                     # physical filter name -> band
      MyCam-g: g
      MyCam-r: r
    location:                    # optional; the site, used when headers do not say
      {longitude: -70.7494, latitude: -30.2444, height: 2650.0}
    headers:                     # optional; how to read raw headers of a camera that
      match: {INSTRUME: MyCam}   # astro-metadata-translator does not know (see
      cards: {...}               # HeaderRules below and docs/user-guide.md)

``offset_x``/``offset_y`` place the detector centre on the focal plane, in
degrees from the boresight along the focal plane's x/y axes; ``yaw`` (degrees,
counter-clockwise from the focal plane's x axis to the detector's pixel x axis)
turns the detector on it.  A detector whose position is not known has no offsets
(``offset_x: null``): it is described and ingested, but has no sky region.  The
focal plane's +y axis points at the exposure's sky rotation angle (east of north)
and its +x axis 90 degrees west of that, or east with ``flip_x: true``.  Together
with the pointing they give each detector's TAN WCS (:meth:`Instrument.wcs_header`).

``serial`` is the detector's serial number; ``raft`` and ``name_in_raft`` split
``full_name`` as the Rubin butler's ``detector`` record does (``name_in_raft``
defaults to ``full_name`` without its ``raft`` prefix and separator).
``visit_max`` and ``exposure_max`` (default: ``visit_max``) are exclusive upper
bounds of the camera's visit and exposure IDs, as in the Rubin universe.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InstrumentError, UnknownInstrumentError

__all__ = [
    "Detector",
    "HeaderRules",
    "Instrument",
    "Site",
    "get_instrument",
    "known_instruments",
    "register_instrument",
    "register_instrument_class",
    "shipped_instrument",
]


class Detector(BaseModel):
    """One sensor: its identity (dimension record fields) and its place on the focal plane."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(ge=0)
    full_name: str
    purpose: str = "SCIENCE"
    raft: str | None = None
    name_in_raft: str | None = None  # default: full_name without its raft prefix
    serial: str | None = None
    offset_x: float | None = 0.0  # degrees from the boresight along the focal plane's x; None: unknown
    offset_y: float | None = 0.0  # degrees from the boresight along the focal plane's y; None: unknown
    yaw: float = 0.0  # degrees from the focal plane's x axis to the pixel x axis, counter-clockwise
    nx: int = Field(default=2048, gt=0)  # unbinned pixel columns
    ny: int = Field(default=2048, gt=0)  # unbinned pixel rows
    pixel_size: float = 10.0  # microns

    @model_validator(mode="after")
    def _fill_name_in_raft(self) -> Detector:
        if self.name_in_raft is None:
            name = self.full_name
            if self.raft and name.startswith(self.raft) and len(name) > len(self.raft):
                name = name[len(self.raft):].lstrip("_")
            object.__setattr__(self, "name_in_raft", name)
        if (self.offset_x is None) != (self.offset_y is None):
            raise ValueError(f"detector {self.full_name!r}: give both offset_x and offset_y, or neither")
        return self

    @property
    def placed(self) -> bool:
        """Whether the detector's position on the focal plane is known."""
        return self.offset_x is not None


class Site(BaseModel):
    """Where a telescope stands (geodetic; degrees east, degrees north, metres)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    longitude: float = Field(ge=-180, le=360)
    latitude: float = Field(ge=-90, le=90)
    height: float = 0.0


class HeaderRules(BaseModel):
    """How to read the raw headers of a camera no installed translator knows.

    ``match`` gives header cards and the values (compared as stripped strings)
    that identify the camera's files.  ``cards`` maps standard properties to the
    header card holding each: ``exposure_id``, ``detector_num``, ``physical_filter``,
    ``exposure_time`` and ``observation_id`` are required; ``observation_type``,
    ``dark_time``, ``object``, ``science_program``, ``observation_counter``,
    ``exposure_group``, ``observation_reason``, ``ra``, ``dec`` (degrees),
    ``altitude``, ``azimuth``, ``rotation_angle`` (degrees) and ``airmass`` are
    optional.  Times come from the FITS standard cards ``DATE-OBS``/``DATE-END``
    (with ``TIMESYS``; the end defaults to begin + exposure time).
    ``observation_types`` maps the observation-type card's values to skybutler's
    (``OBJECT: science``); ``observing_day_offset`` is the hours after midnight
    TAI at which a new observing day begins.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: dict[str, str] = Field(min_length=1)
    cards: dict[str, str]
    observation_types: dict[str, str] = Field(default_factory=dict)
    observing_day_offset: float = Field(default=0.0, ge=-24, le=24)

    REQUIRED_CARDS: ClassVar[tuple[str, ...]] = ("exposure_id", "detector_num", "physical_filter", "exposure_time", "observation_id")
    OPTIONAL_CARDS: ClassVar[tuple[str, ...]] = ("observation_type", "dark_time", "object", "science_program", "observation_counter",
                      "exposure_group", "observation_reason", "ra", "dec", "altitude", "azimuth",
                      "rotation_angle", "airmass")

    @model_validator(mode="after")
    def _check_cards(self) -> HeaderRules:
        missing = [c for c in self.REQUIRED_CARDS if c not in self.cards]
        if missing:
            raise ValueError(f"headers.cards lacks {', '.join(missing)}")
        unknown = sorted(set(self.cards) - set(self.REQUIRED_CARDS) - set(self.OPTIONAL_CARDS))
        if unknown:
            raise ValueError(f"headers.cards has unknown properties {', '.join(unknown)}")
        return self


class Instrument(BaseModel):
    """A camera: name, detectors, physical filters and pixel scale.

    Subclasses give the fields defaults so ``MyCam()`` builds the camera.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    detectors: list[Detector]
    filters: dict[str, str]  # physical filter -> band
    pixel_scale: float = Field(gt=0)  # arcsec per unbinned pixel
    visit_max: int = Field(default=2**31 - 1, gt=0)  # visit IDs are below this
    exposure_max: int | None = Field(default=None, gt=0)  # exposure IDs are below this; default visit_max
    class_name: str | None = None  # defaults to this object's Python class path
    location: Site | None = None  # the site, for headers that do not give it
    headers: HeaderRules | None = None  # a header translator of its own
    layout: Literal["measured", "approximate", "none"] = "measured"  # how good the detector offsets are
    flip_x: bool = False  # the focal plane's +x points east (not west) of its +y
    # What the header translator's rotation angle is: the sky position angle of the focal plane's
    # +y ("sky"), or the angle of the instrument rotator ("rotator", Suprime-Cam's INR-STR), which
    # turns against the sky with the parallactic angle: the sky angle is the two added.
    rotation: Literal["sky", "rotator"] = "sky"
    doc: str = ""  # where the description's facts come from

    @model_validator(mode="after")
    def _check(self) -> Instrument:
        ids = [d.id for d in self.detectors]
        if len(set(ids)) != len(ids):
            raise ValueError(f"instrument {self.name!r} has duplicate detector ids")
        names = [d.full_name for d in self.detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"instrument {self.name!r} has duplicate detector names")
        if not self.detectors:
            raise ValueError(f"instrument {self.name!r} has no detectors")
        if self.exposure_max is None:
            object.__setattr__(self, "exposure_max", self.visit_max)
        return self

    # -- lookups --------------------------------------------------------------

    @property
    def detector_max(self) -> int:
        """One more than the largest detector id (the packing base for detector IDs)."""
        return max(d.id for d in self.detectors) + 1

    @property
    def python_class_name(self) -> str:
        """The class path recorded in the ``instrument`` record."""
        if self.class_name:
            return self.class_name
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}"

    def detector(self, detector_id: int) -> Detector:
        """The detector with this id (raises :class:`InstrumentError` if unknown)."""
        for det in self.detectors:
            if det.id == detector_id:
                return det
        raise InstrumentError(f"instrument {self.name!r} has no detector {detector_id}")

    def band_of(self, physical_filter: str) -> str:
        """The band a physical filter belongs to (raises if the filter is unknown)."""
        try:
            return self.filters[physical_filter]
        except KeyError:
            known = ", ".join(sorted(self.filters))
            raise InstrumentError(
                f"instrument {self.name!r} has no physical filter {physical_filter!r} (known: {known})"
            ) from None

    def filter_for_band(self, band: str) -> str:
        """The (first) physical filter of a band."""
        for name, b in self.filters.items():
            if b == band:
                return name
        raise InstrumentError(f"instrument {self.name!r} has no filter for band {band!r}")

    # -- dimension records ----------------------------------------------------

    def dimension_records(self) -> dict[str, list[dict[str, Any]]]:
        """Records for the elements ``instrument``, ``band``, ``physical_filter``, ``detector``."""
        return {
            "instrument": [
                {
                    "name": self.name,
                    "class_name": self.python_class_name,
                    "detector_max": self.detector_max,
                    "visit_max": self.visit_max,
                    "exposure_max": self.exposure_max,
                }
            ],
            "band": [{"name": b} for b in sorted(set(self.filters.values()))],
            "physical_filter": [
                {"instrument": self.name, "name": f, "band": b} for f, b in sorted(self.filters.items())
            ],
            "detector": [
                {
                    "instrument": self.name,
                    "id": d.id,
                    "full_name": d.full_name,
                    "purpose": d.purpose,
                    "raft": d.raft,
                    "name_in_raft": d.name_in_raft,
                }
                for d in sorted(self.detectors, key=lambda d: d.id)
            ],
        }

    # -- geometry ---------------------------------------------------------------

    def sky_angle(self, rotation: float, altitude: float | None, azimuth: float | None,
                  dec: float | None, latitude: float | None) -> float | None:
        """The sky position angle (degrees east of north) of the focal plane's +y for the header
        translator's rotation angle: itself, or for a ``rotator`` camera the rotator angle plus the
        parallactic angle of a pointing at ``altitude``/``azimuth`` (degrees, azimuth east of north)
        and declination ``dec`` from a site at ``latitude``; None when one of those is unknown."""
        if self.rotation == "sky":
            return rotation
        if None in (altitude, azimuth, dec, latitude):
            return None
        alt, az, dec_r, lat = (math.radians(v) for v in (altitude, azimuth, dec, latitude))
        # The parallactic angle, from the pole-zenith-target triangle: negative east of the meridian.
        q = -math.atan2(math.sin(az) * math.cos(lat) * math.cos(alt),
                        math.sin(lat) - math.sin(dec_r) * math.sin(alt))
        return (rotation + math.degrees(q)) % 360.0

    def wcs_header(
        self,
        detector_id: int,
        ra: float,
        dec: float,
        sky_angle: float,
        binning: float = 1.0,
    ) -> dict[str, Any]:
        """FITS keywords of the TAN WCS of one detector for a pointing.

        ``ra``/``dec`` is the boresight (degrees), ``sky_angle`` the position
        angle of the detector +y axis, east of north (degrees); ``binning`` is how
        many unbinned pixels make one stored pixel.  Every detector shares the
        boresight as reference point and differs only in ``CRPIX``, so the whole
        focal plane is one consistent gnomonic projection.
        """
        det = self.detector(detector_id)
        if not det.placed:
            raise InstrumentError(f"detector {det.full_name} of {self.name} has no known position on the focal plane")
        scale = self.pixel_scale * binning / 3600.0  # degrees per stored pixel
        nx, ny = det.nx / binning, det.ny / binning
        theta = math.radians(sky_angle)
        cos_t, sin_t = math.cos(theta), math.sin(theta)
        # Sky (east, north) of one degree along the focal plane's +x and +y: +y points at
        # position angle theta, +x at theta - 90 (west when north is up), or theta + 90 if flipped.
        flip = -1.0 if self.flip_x else 1.0
        fx = (-cos_t * flip, sin_t * flip)
        fy = (sin_t, cos_t)
        # A pixel step turns by the detector's yaw on the focal plane.
        yaw = math.radians(det.yaw)
        cos_y, sin_y = math.cos(yaw), math.sin(yaw)
        px = (cos_y, sin_y)  # one pixel along x, in focal-plane units of one pixel
        py = (-sin_y, cos_y)
        cd = [[scale * (fx[i] * px[0] + fy[i] * px[1]), scale * (fx[i] * py[0] + fy[i] * py[1])] for i in (0, 1)]
        # The boresight (focal-plane origin) in pixels: the centre minus the offset turned back by the yaw.
        ox, oy = det.offset_x / scale, det.offset_y / scale
        return {
            "WCSAXES": 2,
            "CTYPE1": "RA---TAN",
            "CTYPE2": "DEC--TAN",
            "CUNIT1": "deg",
            "CUNIT2": "deg",
            "RADESYS": "ICRS",
            "EQUINOX": 2000.0,
            "CRVAL1": float(ra),
            "CRVAL2": float(dec),
            "CRPIX1": (nx + 1) / 2.0 - (cos_y * ox + sin_y * oy),
            "CRPIX2": (ny + 1) / 2.0 - (-sin_y * ox + cos_y * oy),
            "CD1_1": cd[0][0],
            "CD1_2": cd[0][1],
            "CD2_1": cd[1][0],
            "CD2_2": cd[1][1],
        }

    # -- construction from files ---------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The YAML shape of this description (what :meth:`from_dict` reads back)."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["class_name"] = self.python_class_name
        for detector, entry in zip(self.detectors, data["detectors"]):
            if not detector.placed:  # kept as null: left out, the offsets would default to the boresight
                entry["offset_x"] = entry["offset_y"] = None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Instrument:
        """Build an instrument from the YAML shape documented in this module."""
        if not isinstance(data, dict):
            raise InstrumentError(f"{source}: an instrument description must be a mapping")
        data = dict(data)
        defaults = data.pop("detector_defaults", None) or {}
        detectors = data.get("detectors") or []
        if not isinstance(detectors, list):
            raise InstrumentError(f"{source}: 'detectors' must be a list")
        data["detectors"] = [{**defaults, **d} for d in detectors]
        try:
            return cls(**data)
        except ValidationError as exc:
            raise InstrumentError(f"{source}: invalid instrument description: {exc}") from exc
        except ValueError as exc:
            raise InstrumentError(f"{source}: {exc}") from exc

    @classmethod
    def from_yaml(cls, path: str | Path, register: bool = True) -> Instrument:
        """Load an instrument from a YAML file and (by default) register it by name."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise InstrumentError(f"{path}: cannot read instrument YAML: {exc}") from exc
        instrument = cls.from_dict(data, source=str(path))
        if register:
            register_instrument(instrument)
        return instrument


# -- registry ---------------------------------------------------------------------

_CLASSES: dict[str, type[Instrument]] = {}
_INSTANCES: dict[str, Instrument] = {}
_VERSION = 0

InstrumentT = TypeVar("InstrumentT", bound=type[Instrument])


def register_instrument_class(cls: InstrumentT) -> InstrumentT:
    """Register an :class:`Instrument` subclass whose defaults describe a camera.

    Usable as a class decorator; the camera's name is taken from an instance.
    """
    global _VERSION
    instance = cls()
    _CLASSES[instance.name] = cls
    _INSTANCES[instance.name] = instance
    _VERSION += 1
    return cls


def register_instrument(instrument: Instrument) -> Instrument:
    """Register an already-built instrument (e.g. one loaded from YAML) under its name."""
    global _VERSION
    _INSTANCES[instrument.name] = instrument
    _VERSION += 1
    return instrument


def registry_version() -> int:
    """A number that changes whenever this process registers an instrument, for caches of what
    depends on the registered cameras (the header translator chosen for a header)."""
    return _VERSION


#: The Rubin butler's instrument classes (``butler register-instrument REPO CLASS``) of the
#: cameras skybutler ships, so that its commands work unchanged.
RUBIN_INSTRUMENT_CLASSES = {
    "lsst.obs.subaru.HyperSuprimeCam": "HSC",
    "lsst.obs.decam.DarkEnergyCamera": "DECam",
    "lsst.obs.cfht.MegaPrime": "MegaPrime",
    "lsst.obs.lsst.LsstCam": "LSSTCam",
    "lsst.obs.lsst.LsstComCam": "LSSTComCam",
    "lsst.obs.lsst.Latiss": "LATISS",
}


def camera_name(name: str) -> str:
    """A camera's skybutler name, given that name or the Rubin butler's instrument class of it."""
    return RUBIN_INSTRUMENT_CLASSES.get(name, name)


def get_instrument(name: str) -> Instrument:
    """The registered instrument of this name (raises :class:`UnknownInstrumentError`)."""
    _ensure_builtins(name)
    try:
        return _INSTANCES[name]
    except KeyError:
        known = ", ".join(known_instruments()) or "none"
        raise UnknownInstrumentError(f"unknown instrument {name!r} (known: {known})") from None


def shipped_instrument(name: str) -> Instrument:
    """skybutler's own description of camera ``name`` (its packaged YAML or class), whatever this
    process has registered under that name since (a repository's older copy, say)."""
    from . import simcam  # noqa: F401  (import registers SimCam)

    if name in _CLASSES:
        return _CLASSES[name]()
    entry = _builtin_files().get(name)
    if entry is None:
        raise UnknownInstrumentError(f"skybutler ships no camera {name!r} (it ships: "
                                     f"{', '.join(sorted({*_builtin_files(), *_CLASSES}))})")
    data = yaml.load(entry.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return Instrument.from_dict(data, source=f"skybutler/instruments/cameras/{entry.name}")


def known_instruments() -> list[str]:
    """Names of all registered instruments."""
    _ensure_builtins()
    return sorted(_INSTANCES)


def instruments_with_header_rules() -> list[Instrument]:
    """Registered and packaged cameras whose descriptions carry header rules (without
    loading every packaged description: only files that have a ``headers:`` section)."""
    for name, entry in _builtin_files().items():
        if name not in _INSTANCES and "\nheaders:" in entry.read_text():
            _ensure_builtins(name)
    return [i for i in _INSTANCES.values() if i.headers is not None]


def builtin_camera_names() -> list[str]:
    """Names of the camera descriptions shipped as YAML under ``instruments/cameras/``."""
    return sorted(_builtin_files())


def _builtin_files() -> dict[str, Any]:
    """Instrument name -> packaged YAML file (the name is the file's first line, ``name: X``)."""
    global _BUILTIN_FILES
    if _BUILTIN_FILES is None:
        files = {}
        for entry in resources.files(__package__).joinpath("cameras").iterdir():
            if entry.name.endswith(".yaml"):
                first = entry.read_text().split("\n", 1)[0]
                if first.startswith("name:"):
                    files[yaml.safe_load(first)["name"]] = entry
        _BUILTIN_FILES = files
    return _BUILTIN_FILES


_BUILTIN_FILES: dict[str, Any] | None = None


def _ensure_builtins(name: str | None = None) -> None:
    """Register SimCam and the packaged YAML camera ``name`` (all of them if None), once."""
    global _VERSION
    from . import simcam  # noqa: F401  (import registers SimCam)

    wanted = _builtin_files() if name is None else {name: _builtin_files()[name]} if name in _builtin_files() else {}
    for cam_name, entry in wanted.items():
        if cam_name not in _INSTANCES:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            data = yaml.load(entry.read_text(), Loader=loader)
            _INSTANCES[cam_name] = Instrument.from_dict(data, source=f"skybutler/instruments/cameras/{entry.name}")
            _VERSION += 1
