"""Sky maps: tracts and patches tiling the whole sky, registered as dimension records.

The one kind shipped is ``rings``: the sky is cut into declination bands of equal
height ``h = 180 / (rings + 1)`` degrees; the two polar caps (``|dec| > 90 - h/2``)
are one tract each, and each of the ``rings`` bands between them is split in RA
into as many tracts as make them roughly square at the band's widest edge.
Tract IDs run from the south cap (0) northwards, RA-ascending within a band.
Every tract is split into ``patches x patches`` patches in (RA, Dec); patch ID
``= cell_y * patches + cell_x``.

Regions are lon/lat boxes: a tract's or patch's *inner* box tiles the sky with no
gaps and no overlap, and the region stored in the registry is the inner box
dilated by ``tract_overlap`` (tracts) or ``patch_overlap`` (patches) degrees on
each side, so neighbours overlap a little and an object near a boundary lies
wholly inside at least one of them.

The sky map's configuration is stored too, as the ``skyMap`` dataset (storage
class ``Dict``, RUN ``skymaps``), so :func:`load_skymap` can rebuild it later.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import lsst.sphgeom as sphgeom

from ..errors import SkybutlerError

__all__ = ["SKYMAP_RUN", "RingsSkyMap", "find_patches", "find_tracts", "load_skymap", "register_skymap",
           "write_skymap"]

#: The RUN holding every sky map's ``skyMap`` configuration dataset.
SKYMAP_RUN = "skymaps"
SKYMAP_KINDS = ("rings",)


@dataclass(frozen=True)
class RingsSkyMap:
    """A ``rings`` tessellation (see the module doc)."""

    name: str
    rings: int = 17  # bands between the polar caps: 10-degree tracts, 414 of them
    patches: int = 8
    tract_overlap: float = 0.25  # degrees added on each side of a tract's inner box
    patch_overlap: float = 0.02  # degrees added on each side of a patch's inner box

    def __post_init__(self) -> None:
        if self.rings < 1:
            raise SkybutlerError(f"sky map {self.name!r}: rings must be at least 1, got {self.rings}")
        if not 1 <= self.patches <= 1000:
            raise SkybutlerError(f"sky map {self.name!r}: patches must be in 1..1000, got {self.patches}")
        if self.tract_overlap < 0 or self.patch_overlap < 0:
            raise SkybutlerError(f"sky map {self.name!r}: overlaps must not be negative")

    # -- configuration ----------------------------------------------------------------

    kind = "rings"

    def config(self) -> dict[str, Any]:
        """The configuration that rebuilds this sky map (stored as the ``skyMap`` dataset)."""
        return {"kind": self.kind, **asdict(self)}

    @property
    def hash(self) -> str:
        """A digest of the geometry (not the name): two sky maps with the same hash agree."""
        geometry = {k: v for k, v in self.config().items() if k != "name"}
        return hashlib.sha1(json.dumps(geometry, sort_keys=True).encode()).hexdigest()

    # -- geometry ---------------------------------------------------------------------

    @property
    def ring_height(self) -> float:
        return 180.0 / (self.rings + 1)

    @cached_property
    def _bands(self) -> list[tuple[float, float, int, int]]:
        """(dec_min, dec_max, n_tracts, first tract id) per band, south cap first."""
        h = self.ring_height
        bands = [(-90.0, -90.0 + h / 2, 1)]
        for i in range(self.rings):
            low = -90.0 + h / 2 + i * h
            high = low + h
            widest = 0.0 if low < 0.0 < high else min(abs(low), abs(high))
            bands.append((low, high, max(1, math.ceil(360.0 * math.cos(math.radians(widest)) / h))))
        bands.append((90.0 - h / 2, 90.0, 1))
        out, first = [], 0
        for low, high, n in bands:
            out.append((low, high, n, first))
            first += n
        return out

    @property
    def n_tracts(self) -> int:
        low, high, n, first = self._bands[-1]
        return first + n

    def _band_of_tract(self, tract: int) -> tuple[float, float, int, int]:
        if not 0 <= tract < self.n_tracts:
            raise SkybutlerError(f"sky map {self.name!r} has no tract {tract} (0..{self.n_tracts - 1})")
        for band in self._bands:
            if band[3] <= tract < band[3] + band[2]:
                return band
        raise AssertionError("unreachable")

    def tract_bounds(self, tract: int) -> tuple[float, float, float, float]:
        """The inner box of a tract as (ra_min, ra_max, dec_min, dec_max) degrees."""
        low, high, n, first = self._band_of_tract(tract)
        width = 360.0 / n
        j = tract - first
        return j * width, (j + 1) * width, low, high

    @staticmethod
    def _box(ra_min: float, ra_max: float, dec_min: float, dec_max: float, margin: float) -> sphgeom.Box:
        if ra_max - ra_min >= 360.0:
            box = sphgeom.Box(sphgeom.NormalizedAngleInterval.full(),
                              sphgeom.AngleInterval.fromDegrees(dec_min, dec_max))
        else:
            box = sphgeom.Box.fromDegrees(ra_min, dec_min, ra_max, dec_max)
        return box.dilatedBy(sphgeom.Angle.fromDegrees(margin)) if margin > 0 else box

    def tract_region(self, tract: int) -> sphgeom.Box:
        """The tract's region: its inner box dilated by ``tract_overlap``."""
        return self._box(*self.tract_bounds(tract), self.tract_overlap)

    def patch_bounds(self, tract: int, cell_x: int, cell_y: int) -> tuple[float, float, float, float]:
        ra_min, ra_max, dec_min, dec_max = self.tract_bounds(tract)
        dx, dy = (ra_max - ra_min) / self.patches, (dec_max - dec_min) / self.patches
        return (ra_min + cell_x * dx, ra_min + (cell_x + 1) * dx, dec_min + cell_y * dy, dec_min + (cell_y + 1) * dy)

    def patch_region(self, tract: int, patch: int) -> sphgeom.Box:
        cell_y, cell_x = divmod(patch, self.patches)
        return self._box(*self.patch_bounds(tract, cell_x, cell_y), self.patch_overlap)

    def _inner_tract(self, ra: float, dec: float) -> int:
        ra %= 360.0
        for low, high, n, first in self._bands:
            if dec < high or high == 90.0:
                return first + min(int(ra / (360.0 / n)), n - 1)
        raise AssertionError("unreachable")

    def find_tracts(self, ra: float, dec: float) -> list[int]:
        """Tracts whose region contains (ra, dec): the one whose inner box does first."""
        inner = self._inner_tract(ra, dec)
        point = sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(ra, dec))
        margin = self.tract_overlap
        candidates = set()
        for low, high, n, first in self._bands:
            if low - margin - 1e-9 <= dec <= high + margin + 1e-9:
                candidates.update(range(first, first + n))
        others = sorted(t for t in candidates - {inner} if self.tract_region(t).contains(point))
        return [inner, *others]

    def find_patches(self, tract: int, ra: float, dec: float) -> list[int]:
        """Patches of ``tract`` whose region contains (ra, dec)."""
        point = sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(ra, dec))
        return [p for p in range(self.patches**2) if self.patch_region(tract, p).contains(point)]

    # -- records ------------------------------------------------------------------------

    def records(self) -> dict[str, list[dict[str, Any]]]:
        """The ``skymap``, ``tract`` and ``patch`` records of this sky map."""
        skymap = {"name": self.name, "hash": self.hash, "tract_max": self.n_tracts,
                  "patch_nx_max": self.patches, "patch_ny_max": self.patches}
        tracts, patches = [], []
        for tract in range(self.n_tracts):
            tracts.append({"skymap": self.name, "id": tract, "region": self.tract_region(tract)})
            for cell_y in range(self.patches):
                for cell_x in range(self.patches):
                    box = self._box(*self.patch_bounds(tract, cell_x, cell_y), self.patch_overlap)
                    patches.append({"skymap": self.name, "tract": tract, "id": cell_y * self.patches + cell_x,
                                    "cell_x": cell_x, "cell_y": cell_y, "region": box})
        return {"skymap": [skymap], "tract": tracts, "patch": patches}


def make_skymap(name: str, kind: str = "rings", **config: Any) -> RingsSkyMap:
    """A sky map object from its kind and configuration values."""
    if kind not in SKYMAP_KINDS:
        raise SkybutlerError(f"unknown sky map kind {kind!r}; known: {', '.join(SKYMAP_KINDS)}")
    try:
        return RingsSkyMap(name=name, **config)
    except TypeError as err:
        raise SkybutlerError(f"invalid configuration for a {kind} sky map: {err}") from None


#: Patch records inserted between two progress reports.
_PATCHES_PER_STEP = 1000


def register_skymap(butler, name: str, kind: str = "rings", *, progress: Callable[[int, int], None] | None = None,
                    **config: Any) -> tuple[RingsSkyMap, bool]:
    """Insert a sky map's skymap/tract/patch records (with regions) and its ``skyMap`` dataset.

    Returns (sky map, whether it was new).  Registering the same geometry again is a
    no-op; a different geometry under an existing name is an error.  ``progress(done,
    total)`` is told the patch records inserted so far (tens of thousands take seconds),
    all in one transaction still.  Through ``Butler.register_skymap`` (through a server, the
    server registers it, with :func:`write_skymap`).
    """
    return butler.register_skymap(name, kind, progress=progress, **config)


def write_skymap(butler, name: str, kind: str = "rings", *, progress: Callable[[int, int], None] | None = None,
                 **config: Any) -> tuple[RingsSkyMap, bool]:
    """:func:`register_skymap` in the repository ``butler`` opened itself."""
    skymap = make_skymap(name, kind, **config)
    existing = butler.get_record("skymap", name=name)
    if existing is not None:
        if existing["hash"] != skymap.hash:
            raise SkybutlerError(f"sky map {name!r} is already registered with a different configuration "
                                 f"(hash {existing['hash']}, given {skymap.hash})")
        return skymap, False
    records = skymap.records()
    patches = records["patch"]
    with butler.transaction():  # the put's file goes with the rows if the block fails or is killed
        butler.insert_records("skymap", records["skymap"])
        butler.insert_records("tract", records["tract"])
        for start in range(0, len(patches), _PATCHES_PER_STEP):
            butler.insert_records("patch", patches[start:start + _PATCHES_PER_STEP])
            if progress is not None:
                progress(min(start + _PATCHES_PER_STEP, len(patches)), len(patches))
        if not any(d.name == "skyMap" for d in butler.query_dataset_types("skyMap")):
            butler.register_dataset_type("skyMap", ["skymap"], "Dict")
        butler.put(skymap.config(), "skyMap", skymap=name, run=SKYMAP_RUN)
    return skymap, True


def load_skymap(butler, name: str) -> RingsSkyMap:
    """Rebuild a registered sky map from its stored ``skyMap`` configuration."""
    config = dict(butler.get("skyMap", skymap=name, collections=SKYMAP_RUN))
    return make_skymap(config.pop("name"), **config)


def find_tracts(skymap: RingsSkyMap, ra: float, dec: float) -> list[int]:
    """Tract IDs of ``skymap`` containing (ra, dec) degrees, the one whose inner box does first."""
    return skymap.find_tracts(ra, dec)


def find_patches(skymap: RingsSkyMap, tract: int, ra: float, dec: float) -> list[int]:
    """Patch IDs of ``tract`` containing (ra, dec) degrees."""
    return skymap.find_patches(tract, ra, dec)
