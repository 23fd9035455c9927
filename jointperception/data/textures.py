"""Smooth procedural colour textures for synthetic layers.

A texture is a (h, w, 3) float32 image, values in [0, 255]; the continuous texture seen by the
renderer is its bilinear interpolation (mirrored beyond the border). It is coloured multi-octave
noise plus stripes, discs and a straight edge (drawn with OpenCV), blurred with sigma BLUR_SIGMA
so that bilinear re-sampling of a rendered frame stays well under a grey level of the exact value.
"""
from __future__ import annotations

import cv2
import numpy as np

NOISE_CELLS = (32, 16, 8, 4)  # octave cell sizes, pixels, coarse to fine
BLUR_SIGMA = 1.0  # px: final Gaussian blur; softens every drawn edge
SHIFT = 4  # sub-pixel bits of OpenCV drawing coordinates


def _noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Multi-octave coloured value noise: (h, w, 3) float32, zero mean, std ~ 25.

    Octaves are summed on a pyramid (each level is upsampled to the next and added to).
    """
    total = np.zeros((1, 1, 3), np.float32)
    for cell in NOISE_CELLS:
        shape = (height // cell + 2, width // cell + 2)
        total = cv2.resize(total, shape[::-1], interpolation=cv2.INTER_LINEAR)
        amplitude = np.float32(rng.uniform(0.2, 1.0) * 6.0 * np.sqrt(cell))
        total += amplitude * rng.standard_normal(shape + (3,), dtype=np.float32)
    return cv2.resize(total, (width, height), interpolation=cv2.INTER_CUBIC)


def _colour(rng: np.random.Generator, spread: float) -> tuple[float, float, float]:
    r, g, b = rng.uniform(-spread, spread, size=3)
    return (float(r), float(g), float(b))


def _point(x: float, y: float) -> tuple[int, int]:
    return (int(round(x * (1 << SHIFT))), int(round(y * (1 << SHIFT))))


def _draw_shapes(rng: np.random.Generator, overlay: np.ndarray) -> None:
    """Stripes, discs and a half-plane, each an additive colour offset, drawn into overlay (h, w, 3)."""
    height, width = overlay.shape[:2]
    size = float(max(height, width))
    if rng.random() < 0.6:  # parallel stripes, period 6..24 px
        angle, period = rng.uniform(0.0, np.pi), rng.uniform(6.0, 24.0)
        colour = _colour(rng, 40.0)
        direction, normal = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
        centre = np.array([width / 2.0, height / 2.0])
        for offset in np.arange(-size, size, period):
            a = centre + offset * normal - 2 * size * direction
            b = centre + offset * normal + 2 * size * direction
            cv2.line(overlay, _point(*a), _point(*b), colour, max(1, int(period / 2)), cv2.LINE_8, SHIFT)
    if rng.random() < 0.5:  # one straight edge: a half-plane
        angle, offset = rng.uniform(0.0, 2 * np.pi), rng.uniform(-0.3, 0.3) * size
        normal, direction = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
        base = np.array([width / 2.0, height / 2.0]) + offset * normal
        corners = [base - 2 * size * direction, base + 2 * size * direction,
                   base + 2 * size * direction + 2 * size * normal, base - 2 * size * direction + 2 * size * normal]
        polygon = np.array([_point(*c) for c in corners], np.int32)
        cv2.fillConvexPoly(overlay, polygon, _colour(rng, 50.0), cv2.LINE_8, SHIFT)
    for _ in range(int(rng.integers(1, 5))):  # discs
        centre = _point(rng.uniform(0, width), rng.uniform(0, height))
        radius = int(rng.uniform(3.0, 0.3 * min(height, width) + 4.0) * (1 << SHIFT))
        cv2.circle(overlay, centre, radius, _colour(rng, 60.0), -1, cv2.LINE_8, SHIFT)


def make_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random smooth texture: (height, width, 3) float32 in [0, 255]."""
    texture = _noise(rng, height, width)
    texture += rng.uniform(50.0, 205.0, size=3).astype(np.float32)
    overlay = np.zeros_like(texture)
    _draw_shapes(rng, overlay)
    texture += overlay
    texture = cv2.GaussianBlur(texture, (0, 0), BLUR_SIGMA)
    return np.clip(texture, 0.0, 255.0, out=texture)


REMAP_COLUMNS = 4096  # cv2.remap needs every side of its maps below 32767


def sample_texture(texture: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup at texture pixel coordinates x, y (any equal shape S) float32 -> (*S, 3) float32.

    The points are laid out in rows of REMAP_COLUMNS for cv2.remap, whatever S is, so long point
    lists and large frames work alike.
    """
    count = x.size
    rows = max(-(-count // REMAP_COLUMNS), 1)
    pad = rows * REMAP_COLUMNS - count

    def blocks(values: np.ndarray) -> np.ndarray:
        return np.pad(values.reshape(-1).astype(np.float32), (0, pad)).reshape(rows, REMAP_COLUMNS)

    sampled = cv2.remap(texture, blocks(x), blocks(y), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return sampled.reshape(-1, texture.shape[2])[:count].reshape(*x.shape, texture.shape[2])
