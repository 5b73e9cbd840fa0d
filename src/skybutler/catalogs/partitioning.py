"""HEALPix partitioning of a catalog: counts per fine pixel, the partitions they make, rows' homes.

Pure arithmetic on ``_healpix_29`` values (NESTED, order 29), no file I/O.  A partition is a
HEALPix pixel ``(order, pixel)``; it covers the order-29 range ``[pixel << 2(29-order),
(pixel + 1) << 2(29-order))``.  The layout is a function of the histogram of rows and bytes at
the histogram order only, so a publication grown dataset by dataset and one built at once from
the same rows have the same partitions.

The layout is ours rather than ``hats.pixel_math.partition_stats.generate_alignment``'s
because a partition must respect two limits at once (rows *and* bytes), which that function
cannot express (it thresholds one histogram); the rule is the same: the coarsest pixel (no
coarser than ``lowest_order``) whose rows and bytes are both within the limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .healpix import HEALPIX_ORDER

__all__ = ["Histogram", "Layout", "margin_order", "pixel_range"]


def pixel_range(order: int, pixel: int) -> tuple[int, int]:
    """The half-open range of order-29 indexes inside ``(order, pixel)``."""
    shift = 2 * (HEALPIX_ORDER - order)
    return pixel << shift, (pixel + 1) << shift


@dataclass
class Histogram:
    """Rows and bytes per non-empty pixel at ``order`` (sparse: sorted ``pixels``)."""

    order: int
    pixels: np.ndarray
    rows: np.ndarray
    nbytes: np.ndarray

    @classmethod
    def empty(cls, order: int) -> Histogram:
        return cls(order, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def of(cls, order: int, healpix29: np.ndarray, bytes_per_row: int) -> Histogram:
        """The histogram of rows at these order-29 indexes, each counted ``bytes_per_row`` bytes."""
        pixels, rows = np.unique(healpix29 >> (2 * (HEALPIX_ORDER - order)), return_counts=True)
        rows = rows.astype(np.int64)
        return cls(order, pixels.astype(np.int64), rows, rows * int(bytes_per_row))

    def __add__(self, other: Histogram) -> Histogram:
        pixels = np.concatenate([self.pixels, other.pixels])
        merged, inverse = np.unique(pixels, return_inverse=True)
        rows = np.zeros(len(merged), np.int64)
        nbytes = np.zeros(len(merged), np.int64)
        np.add.at(rows, inverse, np.concatenate([self.rows, other.rows]))
        np.add.at(nbytes, inverse, np.concatenate([self.nbytes, other.nbytes]))
        return Histogram(self.order, merged, rows, nbytes)

    @property
    def total_rows(self) -> int:
        return int(self.rows.sum())


class Layout:
    """A set of non-overlapping partitions, sorted by their order-29 range."""

    def __init__(self, partitions: list[tuple[int, int]]):
        self.partitions = sorted(partitions, key=lambda op: pixel_range(*op)[0])
        ranges = np.array([pixel_range(o, p) for o, p in self.partitions], dtype=np.int64).reshape(-1, 2)
        self.starts, self.ends = ranges[:, 0], ranges[:, 1]

    @classmethod
    def of(cls, hist: Histogram, max_rows: int, max_bytes: int, lowest_order: int = 0) -> Layout:
        """Each partition is the coarsest pixel (order >= ``lowest_order``) holding at most
        ``max_rows`` rows and ``max_bytes`` bytes; a single histogram pixel above the limits
        stays one partition at the histogram order."""
        partitions: list[tuple[int, int]] = []
        pixels, rows, nbytes = hist.pixels, hist.rows, hist.nbytes
        for order in range(lowest_order, hist.order + 1):
            if not len(pixels):
                break
            parents = pixels >> (2 * (hist.order - order))
            unique, first = np.unique(parents, return_index=True)
            sum_rows = np.add.reduceat(rows, first)
            sum_bytes = np.add.reduceat(nbytes, first)
            fits = (sum_rows <= max_rows) & (sum_bytes <= max_bytes) if order < hist.order else \
                np.ones(len(unique), bool)
            partitions += [(order, int(p)) for p in unique[fits]]
            keep = ~np.isin(parents, unique[fits])
            pixels, rows, nbytes = pixels[keep], rows[keep], nbytes[keep]
        return cls(partitions)

    def __len__(self) -> int:
        return len(self.partitions)

    @property
    def highest_order(self) -> int:
        return max((o for o, _ in self.partitions), default=0)

    def locate(self, healpix29: np.ndarray) -> np.ndarray:
        """The index of the partition holding each order-29 index (-1 where none does)."""
        index = np.searchsorted(self.starts, healpix29, side="right") - 1
        inside = (index >= 0) & (healpix29 < self.ends[np.maximum(index, 0)])
        return np.where(inside, index, -1)

    def overlapping(self, start: int, end: int) -> list[int]:
        """Indexes of the partitions that overlap the order-29 range [start, end)."""
        first = max(int(np.searchsorted(self.starts, start, side="right")) - 1, 0)
        last = int(np.searchsorted(self.starts, end, side="left"))
        return [i for i in range(first, last) if self.ends[i] > start and self.starts[i] < end]


def margin_order(width_arcsec: float) -> int:
    """The finest order whose pixels are at least ``width_arcsec`` across (hats's estimate):
    a row within that distance of a partition lies in a pixel of that order touching it."""
    from hats.pixel_math import healpix_shim

    return int(min(HEALPIX_ORDER, healpix_shim.margin2order(np.array([width_arcsec / 60.0]))[0]))


def margin_targets(layout: Layout, healpix29: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows at these order-29 indexes: (row, partition) pairs for each partition other than
    its own that touches the row's pixel at ``order`` (edge or corner): the margins it joins."""
    import cdshealpix

    pixels = (healpix29 >> (2 * (HEALPIX_ORDER - order))).astype(np.uint64)
    neighbours = cdshealpix.nested.neighbours(pixels, order).astype(np.int64)  # (n, 9), -1: none
    shift = 2 * (HEALPIX_ORDER - order)
    rows = np.repeat(np.arange(len(pixels)), neighbours.shape[1])
    flat = neighbours.ravel()
    valid = flat >= 0
    rows, flat = rows[valid], flat[valid]
    # Partitions are at orders <= ``order``: a neighbour pixel lies inside exactly one, or none.
    target = layout.locate(flat << shift)
    own = layout.locate(healpix29)[rows]
    keep = (target >= 0) & (target != own)
    pairs = np.unique(np.stack([rows[keep], target[keep]], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]
