"""The HEALPix index column every catalog product carries: ``_healpix_29``.

One definition for HATS publication and SQL loading alike, computed by the ``hats``
package itself (NESTED scheme, order 29), so our partitions, searches and the
community's readers agree on every row's pixel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..extras import require

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

__all__ = ["HEALPIX_COLUMN", "HEALPIX_ORDER", "healpix_index"]

#: Name and order of the index column (the HATS convention).
HEALPIX_COLUMN = "_healpix_29"
HEALPIX_ORDER = 29


def healpix_index(ra: ArrayLike, dec: ArrayLike) -> np.ndarray:
    """NESTED order-29 HEALPix index (int64) of each (ra, dec) position, in degrees."""
    spatial_index = require("hats.pixel_math.spatial_index", "the HEALPix index of a catalog")
    return spatial_index.compute_spatial_index(ra, dec, HEALPIX_ORDER)
