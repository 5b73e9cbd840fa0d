"""Pixel-level pieces of a simulated raw image, each vectorised with numpy.

Stars are drawn as small pixel-integrated Gaussian stamps (never full-frame
Gaussians) added with ``np.add.at``; the flat-field and bias patterns depend
only on the detector and the seed, so flats and biases of a night really do
calibrate its science exposures.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .instrument import Detector
from .sky import erf

__all__ = ["add_cosmic_rays", "add_stars", "add_trail", "bias_pattern", "flat_pattern"]


def add_stars(image: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray, sigma: float) -> None:
    """Add Gaussian stars (pixel-integrated, so undersampled PSFs keep their flux) in place.

    ``x``/``y`` are 0-based pixel centres (column, row), ``flux`` total counts.
    """
    if len(x) == 0:
        return
    half = max(2, int(math.ceil(5.0 * sigma)))
    offsets = np.arange(-half, half + 1)
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    cols = ix[:, None] + offsets[None, :]  # (n, w)
    rows = iy[:, None] + offsets[None, :]
    norm = 1.0 / (math.sqrt(2.0) * sigma)
    px = 0.5 * (erf((cols + 0.5 - x[:, None]) * norm) - erf((cols - 0.5 - x[:, None]) * norm))
    py = 0.5 * (erf((rows + 0.5 - y[:, None]) * norm) - erf((rows - 0.5 - y[:, None]) * norm))
    stamps = flux[:, None, None] * py[:, :, None] * px[:, None, :]  # (n, rows, cols)
    rr = np.broadcast_to(rows[:, :, None], stamps.shape)
    cc = np.broadcast_to(cols[:, None, :], stamps.shape)
    ny, nx = image.shape
    inside = (rr >= 0) & (rr < ny) & (cc >= 0) & (cc < nx)
    np.add.at(image, (rr[inside], cc[inside]), stamps[inside])


def add_trail(image: np.ndarray, x0: float, y0: float, angle: float, width: float, peak: float) -> None:
    """Add a straight satellite/glint trail through (x0, y0) at ``angle`` radians, in place."""
    ny, nx = image.shape
    yy = np.arange(ny, dtype=float)[:, None] - y0
    xx = np.arange(nx, dtype=float)[None, :] - x0
    distance = xx * math.sin(angle) - yy * math.cos(angle)
    image += peak * np.exp(-0.5 * (distance / width) ** 2)


def add_cosmic_rays(image: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Add ``count`` short, sharp cosmic-ray tracks (1-6 pixels long), in place."""
    if count <= 0:
        return
    ny, nx = image.shape
    lengths = rng.integers(1, 7, count)
    angles = rng.uniform(0.0, math.pi, count)
    x0, y0 = rng.uniform(0, nx, count), rng.uniform(0, ny, count)
    energy = rng.uniform(800.0, 4000.0, count)
    steps = np.arange(6)
    xs = x0[:, None] + steps[None, :] * np.cos(angles)[:, None]
    ys = y0[:, None] + steps[None, :] * np.sin(angles)[:, None]
    used = steps[None, :] < lengths[:, None]
    cols, rows = xs.astype(int), ys.astype(int)
    inside = used & (cols >= 0) & (cols < nx) & (rows >= 0) & (rows < ny)
    values = np.broadcast_to(energy[:, None], xs.shape)
    np.add.at(image, (rows[inside], cols[inside]), values[inside])


@lru_cache(maxsize=64)
def flat_pattern(det: Detector, pixel_scale: float, size: int, seed: int) -> np.ndarray:
    """Relative response of each pixel: vignetting x per-detector gradient x pixel QE.

    Vignetting follows the distance from the boresight on the focal plane, so it
    is continuous across detectors; the result is read-only and cached.
    """
    binning = det.nx / size
    scale = pixel_scale * binning / 3600.0
    ny = int(round(det.ny / binning))
    fx = det.offset_x + (np.arange(size) - (size - 1) / 2.0) * scale
    fy = det.offset_y + (np.arange(ny) - (ny - 1) / 2.0) * scale
    r2 = fx[None, :] ** 2 + fy[:, None] ** 2
    vignetting = 1.0 - 0.2 * r2 / 0.15**2
    rng = np.random.default_rng([seed, det.id, 0xF1A7])
    gx, gy = rng.uniform(-0.03, 0.03, 2)
    u = np.linspace(-0.5, 0.5, size)[None, :]
    v = np.linspace(-0.5, 0.5, ny)[:, None]
    gradient = 1.0 + gx * u + gy * v
    qe = 1.0 + 0.01 * rng.standard_normal((ny, size))
    pattern = (vignetting * gradient * qe).astype(np.float64)
    pattern.setflags(write=False)
    return pattern


@lru_cache(maxsize=64)
def bias_pattern(detector_id: int, ny: int, nx_data: int, nx_overscan: int, seed: int) -> np.ndarray:
    """Bias level in ADU over data + overscan: a per-detector level, a slow drift along
    rows (seen in the overscan too) and fixed column structure in the data section."""
    rng = np.random.default_rng([seed, detector_id, 0xB1A5])
    level = 1000.0 + 25.0 * detector_id + rng.uniform(-5.0, 5.0)
    rows = level + np.linspace(0.0, 3.0, ny)[:, None]
    columns = np.concatenate([1.5 * rng.standard_normal(nx_data), np.zeros(nx_overscan)])
    pattern = rows + columns[None, :]
    pattern.setflags(write=False)
    return pattern
