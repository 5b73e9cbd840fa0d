"""Define visits from ingested exposures: one visit per science exposure.

:func:`define_visits` turns every science exposure (with a pointing) into a
``visit`` whose ID is the exposure ID, plus its ``visit_definition`` row and one
``visit_detector_region`` per detector of the camera whose position is known.
Regions come from the camera description, not from the files: each detector's TAN WCS for the
exposure's pointing (:meth:`Instrument.wcs_header` with the exposure record's
``tracking_ra``/``tracking_dec``/``sky_angle``) maps its four pixel corners onto
the sky.  A TAN projection maps straight pixel edges onto great circles, so the
polygon through the corners is the detector's footprint exactly; the visit region
is the convex hull of all detectors' corners.  The timespan is the exposure's.

It is idempotent: visits that exist already are left alone, so it can run after
every night's ingest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..dimensions import DimensionRecord
from ..dimensions import regions as sky
from ..instruments import Instrument, get_instrument
from .instruments import load_repository_instruments

__all__ = ["VisitResult", "define_visits", "detector_corners", "make_visits", "tan_pixel_to_sky"]

#: Observation types that become visits.
VISIT_OBSERVATION_TYPES = ("science",)


@dataclass
class VisitResult:
    """Visit IDs defined by :func:`define_visits`, and those that existed already."""

    defined: list[tuple[str, int]] = field(default_factory=list)
    existing: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, int, str]] = field(default_factory=list)  # (instrument, exposure, reason)
    # camera -> its detectors without a known focal-plane position: no visit_detector_region
    unplaced: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        text = f"{len(self.defined)} visit(s) defined, {len(self.existing)} already defined"
        text += f", {len(self.skipped)} exposure(s) skipped" if self.skipped else ""
        for camera, names in sorted(self.unplaced.items()):
            text += (f"; {camera} detector(s) {', '.join(names)} have no published focal-plane position: "
                     "no region (their raws are ingested all the same)")
        return text


def tan_pixel_to_sky(wcs: dict[str, Any], x: float, y: float) -> tuple[float, float]:
    """(ra, dec) degrees of 1-based pixel (x, y) through a TAN WCS given as FITS keywords
    (CRPIXi, CRVALi, CDi_j): the gnomonic deprojection, without astropy for speed."""
    dx, dy = x - wcs["CRPIX1"], y - wcs["CRPIX2"]
    xi = math.radians(wcs["CD1_1"] * dx + wcs["CD1_2"] * dy)  # towards increasing RA
    eta = math.radians(wcs["CD2_1"] * dx + wcs["CD2_2"] * dy)  # towards the north
    ra0, dec0 = math.radians(wcs["CRVAL1"]), math.radians(wcs["CRVAL2"])
    denominator = math.cos(dec0) - eta * math.sin(dec0)
    ra = ra0 + math.atan2(xi, denominator)
    dec = math.atan2(math.sin(dec0) + eta * math.cos(dec0), math.hypot(xi, denominator))
    return math.degrees(ra) % 360.0, math.degrees(dec)


def detector_corners(instrument: Instrument, detector_id: int, ra: float, dec: float,
                     sky_angle: float) -> list[tuple[float, float]]:
    """(ra, dec) of the four outer pixel corners of a detector for a pointing."""
    det = instrument.detector(detector_id)
    wcs = instrument.wcs_header(detector_id, ra, dec, sky_angle)
    lo_x, hi_x, lo_y, hi_y = 0.5, det.nx + 0.5, 0.5, det.ny + 0.5  # pixel edges, 1-based centres
    return [tan_pixel_to_sky(wcs, x, y) for x, y in ((lo_x, lo_y), (hi_x, lo_y), (hi_x, hi_y), (lo_x, hi_y))]


def _visit_records(instrument: Instrument, exposure: DimensionRecord) -> tuple[dict, list[dict]]:
    ra, dec, angle = exposure["tracking_ra"], exposure["tracking_dec"], exposure["sky_angle"] or 0.0
    per_detector = []
    corners: list[tuple[float, float]] = []
    for det in sorted((d for d in instrument.detectors if d.placed), key=lambda d: d.id):
        points = detector_corners(instrument, det.id, ra, dec, angle)
        corners += points
        per_detector.append({"instrument": instrument.name, "visit": exposure["exposure"], "detector": det.id,
                             "region": sky.polygon(points)})
    visit = {
        "instrument": instrument.name,
        "id": exposure["exposure"],
        "physical_filter": exposure["physical_filter"],
        "day_obs": exposure["day_obs"],
        "exposure_time": exposure["exposure_time"],
        "observation_type": exposure["observation_type"],
        "science_program": exposure["science_program"],
        "target_name": exposure["target_name"],
        "zenith_angle": exposure["zenith_angle"],
        "region": sky.polygon(corners),
        "timespan": exposure["timespan"],
    }
    return visit, per_detector


def define_visits(butler, *, instrument: str | None = None, exposures: Iterable[int] | None = None,
                  where: str | None = None, observation_types: Sequence[str] = VISIT_OBSERVATION_TYPES
                  ) -> VisitResult:
    """Define a visit (ID = exposure ID) for each science exposure not yet in a visit.

    ``instrument`` limits it to one camera; ``exposures`` to these exposure IDs;
    ``where`` (a query expression on exposures, when the butler supports queries)
    further selects exposures.  Through ``Butler.define_visits`` (through a server, the server
    defines them, with :func:`make_visits`).
    """
    return butler.define_visits(instrument=instrument, exposures=exposures, where=where,
                                observation_types=observation_types)


def make_visits(butler, *, instrument: str | None = None, exposures: Iterable[int] | None = None,
                where: str | None = None, observation_types: Sequence[str] = VISIT_OBSERVATION_TYPES) -> VisitResult:
    """:func:`define_visits` in the repository ``butler`` opened itself."""
    records = butler.registry.dimensions.fetch_all("exposure")
    if instrument is not None:
        records = [r for r in records if r["instrument"] == instrument]
    if exposures is not None:
        wanted = set(exposures)
        records = [r for r in records if r["exposure"] in wanted]
    if where:
        query = getattr(butler, "query_data_ids", None)
        if query is None:
            raise NotImplementedError("this butler cannot evaluate where-expressions yet")
        chosen = {(d["instrument"], d["exposure"]) for d in query(["exposure"], where=where)}
        records = [r for r in records if (r["instrument"], r["exposure"]) in chosen]
    result = VisitResult()
    load_repository_instruments(butler)  # each camera as the repository describes it
    existing = {(r["instrument"], r["visit"]) for r in butler.registry.dimensions.fetch_all("visit")}
    visits, definitions, detector_regions = [], [], []
    for exposure in sorted(records, key=lambda r: (r["instrument"], r["exposure"])):
        key = (exposure["instrument"], exposure["exposure"])
        if exposure["observation_type"] not in observation_types:
            continue
        if key in existing:
            result.existing.append(key)
            continue
        if exposure["tracking_ra"] is None or exposure["tracking_dec"] is None:
            result.skipped.append((*key, "no pointing (tracking_ra/tracking_dec)"))
            continue
        camera = get_instrument(exposure["instrument"])
        if camera.layout == "none" or not any(d.placed for d in camera.detectors):
            result.skipped.append((*key, f"camera {camera.name} has no focal-plane layout in its description "
                                         "(detector offsets), so its sky regions cannot be computed"))
            continue
        unplaced = [d.full_name for d in sorted(camera.detectors, key=lambda d: d.id) if not d.placed]
        if unplaced:
            result.unplaced[camera.name] = unplaced
        visit, per_detector = _visit_records(camera, exposure)
        visits.append(visit)
        definitions.append({"instrument": key[0], "exposure": key[1], "visit": key[1]})
        detector_regions += per_detector
        result.defined.append(key)
    if visits:
        with butler.registry.transaction():
            butler.insert_records("visit", visits, skip_existing=True)
            butler.insert_records("visit_definition", definitions, skip_existing=True)
            butler.insert_records("visit_detector_region", detector_regions, skip_existing=True)
    return result
