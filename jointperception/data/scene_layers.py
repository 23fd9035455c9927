"""Textured scene layers with analytic shapes, and exact per-point visibility.

A layer is a texture moving with a ``LayerMotion``; an object layer covers the continuous points
whose frame-0 (canonical) position lies in its outline: a star shape
    |X - c| < r(phi) = r0 (1 + sum_k a_k cos(k phi + phi_k)),
or a thin bar (a rotated rectangle a few pixels wide: poles, cables, limbs),
so coverage and depth order can be evaluated exactly at any point of any frame.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from jointperception.data.scene_motion import LayerMotion
from jointperception.data.textures import sample_texture

BBOX_MARGIN = 2.0  # px added around the forward-mapped outline of an object
BBOX_SAMPLES = 64  # points on the bounding circle pushed through the motion


@dataclass(frozen=True)
class StarShape:
    centre: tuple[float, float]  # c: canonical (frame-0) centre, pixels
    radius: float  # r0, pixels
    harmonics: tuple[tuple[int, float, float], ...]  # (k, a_k, phi_k)

    @property
    def max_radius(self) -> float:
        return self.radius * (1.0 + sum(abs(a) for _, a, _ in self.harmonics))

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Inside test for canonical points x, y (N,) float32 -> (N,) bool."""
        dx, dy = x - np.float32(self.centre[0]), y - np.float32(self.centre[1])
        phi = np.arctan2(dy, dx)
        boundary = np.ones_like(phi)
        for k, amplitude, phase in self.harmonics:
            boundary += np.float32(amplitude) * np.cos(np.float32(k) * phi + np.float32(phase))
        return dx * dx + dy * dy < (np.float32(self.radius) * boundary) ** 2


@dataclass(frozen=True)
class BarShape:
    centre: tuple[float, float]  # c: canonical (frame-0) centre, pixels
    half_length: float  # pixels along the bar
    half_width: float  # pixels across it
    angle: float  # radians, direction of the bar's length

    @property
    def max_radius(self) -> float:
        return float(np.hypot(self.half_length, self.half_width))

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Inside test for canonical points x, y (N,) float32 -> (N,) bool."""
        dx, dy = x - np.float32(self.centre[0]), y - np.float32(self.centre[1])
        c, s = np.float32(np.cos(self.angle)), np.float32(np.sin(self.angle))
        return (np.abs(c * dx + s * dy) < self.half_length) & (np.abs(c * dy - s * dx) < self.half_width)


@dataclass(frozen=True)
class SceneLayer:
    motion: LayerMotion
    texture: np.ndarray  # (h, w, 3) float32 in [0, 255]
    origin: tuple[float, float]  # canonical position of texture pixel (0, 0)
    depth: int  # 0 = background; larger is nearer the camera
    shape: StarShape | BarShape | None = None  # None: the layer covers everything (background)

    def _object_shape(self) -> StarShape | BarShape:
        if self.shape is None:
            raise ValueError("the background layer covers every point; it has no shape")
        return self.shape

    def bbox(self, t: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) containing the object in frame t: its bounding circle pushed through M_0..M_{t-1}."""
        shape = self._object_shape()
        angles = np.linspace(0.0, 2 * np.pi, BBOX_SAMPLES, endpoint=False)
        r = shape.max_radius
        x = (shape.centre[0] + r * np.cos(angles)).astype(np.float32)
        y = (shape.centre[1] + r * np.sin(angles)).astype(np.float32)
        for step in range(t):
            fx, fy = self.motion.displacement((x, y), step)
            x, y = x + fx, y + fy
        return (float(x.min()) - BBOX_MARGIN, float(y.min()) - BBOX_MARGIN,
                float(x.max()) + BBOX_MARGIN, float(y.max()) + BBOX_MARGIN)

    def colour(self, canonical_x: np.ndarray, canonical_y: np.ndarray) -> np.ndarray:
        """Texture at canonical points (N,) -> (N, 3) float32."""
        x = (canonical_x - np.float32(self.origin[0]))[None]
        y = (canonical_y - np.float32(self.origin[1]))[None]
        return sample_texture(self.texture, x, y)[0]

    def cover(self, x: np.ndarray, y: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which points x, y (N,) of frame t this object covers -> (index (M,) int, canonical x, y (M,))."""
        x0, y0, x1, y1 = self.bbox(t)
        candidates = np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
        cx, cy = self.motion.to_canonical((x[candidates], y[candidates]), t)
        inside = self._object_shape().contains(cx, cy)
        return candidates[inside], cx[inside], cy[inside]


@functools.lru_cache(maxsize=8)
def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres (x, y), each (H * W,) float32, row-major, read-only (cached)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    x, y = xx.reshape(-1), yy.reshape(-1)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def render_frame(layers: list[SceneLayer], t: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame t by backward mapping -> (image (H, W, 3) float32, ids (H, W) uint8).

    ``layers[0]`` is the background; the id of layer i is i. Objects are painted far to near.
    """
    x, y = pixel_grid(height, width)
    background = layers[0]
    bx, by = background.motion.to_canonical((x, y), t)
    image = sample_texture(background.texture, (bx - np.float32(background.origin[0])).reshape(height, width),
                           (by - np.float32(background.origin[1])).reshape(height, width))
    ids = np.zeros(height * width, np.uint8)
    flat_image = image.reshape(-1, 3)
    for layer_id in sorted(range(1, len(layers)), key=lambda i: layers[i].depth):
        index, cx, cy = layers[layer_id].cover(x, y, t)
        flat_image[index] = layers[layer_id].colour(cx, cy)
        ids[index] = layer_id
    return image, ids.reshape(height, width)


def top_depth(layers: list[SceneLayer], x: np.ndarray, y: np.ndarray, t: int) -> np.ndarray:
    """Depth of the nearest layer covering each point x, y (N,) of frame t -> (N,) int32 (0 = background)."""
    depth = np.zeros(x.shape, np.int32)
    for layer in layers[1:]:
        index, _, _ = layer.cover(x, y, t)
        depth[index] = np.maximum(depth[index], layer.depth)
    return depth
