"""Instrument descriptions: detectors, filters, focal-plane layout, and a registry.

An :class:`Instrument` is plain data, so adding a new camera is either one small
Python module (subclass :class:`Instrument`, give its fields defaults, decorate the
class with :func:`register_instrument_class`) or one YAML file loaded with
:meth:`Instrument.from_yaml`.  The YAML shape is::

    name: MyCam                  # instrument name, the `instrument` dimension key
    pixel_scale: 0.2             # arcsec per (unbinned) pixel
    visit_max: 99999999          # optional; largest exposure/visit ID
    class_name: mypkg.MyCam      # optional; recorded in the instrument record
    detector_defaults:           # optional; merged into every detector entry
      nx: 4096                   # pixels along x (columns)
      ny: 4096                   # pixels along y (rows)
      pixel_size: 15.0           # microns
      purpose: SCIENCE
    detectors:                   # one entry per detector
      - {id: 0, full_name: R00_S00, raft: R00, offset_x: -0.1, offset_y: 0.0}
      - {id: 1, full_name: R00_S01, raft: R00, offset_x: 0.1, offset_y: 0.0}
    filters:                     # physical filter name -> band
      MyCam-g: g
      MyCam-r: r

``offset_x``/``offset_y`` place the detector centre on the focal plane, in
degrees from the boresight along the detector's pixel x/y axes (detectors are
assumed aligned with the focal plane).  Together with the pointing and the sky
rotation angle they give each detector's TAN WCS (:meth:`Instrument.wcs_header`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InstrumentError, UnknownInstrumentError

__all__ = [
    "Detector",
    "Instrument",
    "get_instrument",
    "known_instruments",
    "register_instrument",
    "register_instrument_class",
]


class Detector(BaseModel):
    """One sensor: its identity (dimension record fields) and its place on the focal plane."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(ge=0)
    full_name: str
    purpose: str = "SCIENCE"
    raft: str | None = None
    offset_x: float = 0.0  # degrees from the boresight along pixel x
    offset_y: float = 0.0  # degrees from the boresight along pixel y
    nx: int = Field(default=2048, gt=0)  # unbinned pixel columns
    ny: int = Field(default=2048, gt=0)  # unbinned pixel rows
    pixel_size: float = 10.0  # microns


class Instrument(BaseModel):
    """A camera: name, detectors, physical filters and pixel scale.

    Subclasses give the fields defaults so ``MyCam()`` builds the camera.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    detectors: list[Detector]
    filters: dict[str, str]  # physical filter -> band
    pixel_scale: float = Field(gt=0)  # arcsec per unbinned pixel
    visit_max: int = 2**31 - 1
    class_name: str | None = None  # defaults to this object's Python class path

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
                }
                for d in sorted(self.detectors, key=lambda d: d.id)
            ],
        }

    # -- geometry ---------------------------------------------------------------

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
        scale = self.pixel_scale * binning / 3600.0  # degrees per stored pixel
        nx, ny = det.nx / binning, det.ny / binning
        theta = math.radians(sky_angle)
        cos_t, sin_t = math.cos(theta), math.sin(theta)
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
            "CRPIX1": (nx + 1) / 2.0 - det.offset_x / scale,
            "CRPIX2": (ny + 1) / 2.0 - det.offset_y / scale,
            # +y points at position angle theta, +x at theta - 90 (east left when north up).
            "CD1_1": -scale * cos_t,
            "CD1_2": scale * sin_t,
            "CD2_1": scale * sin_t,
            "CD2_2": scale * cos_t,
        }

    # -- construction from files ---------------------------------------------

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

InstrumentT = TypeVar("InstrumentT", bound=type[Instrument])


def register_instrument_class(cls: InstrumentT) -> InstrumentT:
    """Register an :class:`Instrument` subclass whose defaults describe a camera.

    Usable as a class decorator; the camera's name is taken from an instance.
    """
    instance = cls()
    _CLASSES[instance.name] = cls
    _INSTANCES[instance.name] = instance
    return cls


def register_instrument(instrument: Instrument) -> Instrument:
    """Register an already-built instrument (e.g. one loaded from YAML) under its name."""
    _INSTANCES[instrument.name] = instrument
    return instrument


def get_instrument(name: str) -> Instrument:
    """The registered instrument of this name (raises :class:`UnknownInstrumentError`)."""
    _ensure_builtins()
    try:
        return _INSTANCES[name]
    except KeyError:
        known = ", ".join(sorted(_INSTANCES)) or "none"
        raise UnknownInstrumentError(f"unknown instrument {name!r} (known: {known})") from None


def known_instruments() -> list[str]:
    """Names of all registered instruments."""
    _ensure_builtins()
    return sorted(_INSTANCES)


def _ensure_builtins() -> None:
    """Import the camera modules shipped with skybutler so they register themselves."""
    from . import simcam  # noqa: F401  (import registers SimCam)
