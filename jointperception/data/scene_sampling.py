"""Draw a random synthetic scene: camera motion, background and textured objects.

Everything is drawn from one ``numpy.random.Generator`` in a fixed order, so a seed fixes the
scene. Objects start near the middle of the frame, and their trajectories are centred there.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from jointperception.data.motion_profiles import SMALL, MotionProfile
from jointperception.data.scene_layers import BarShape, SceneLayer, StarShape
from jointperception.data.scene_motion import (
    InverseDivergedError,
    LayerMotion,
    sample_camera_motion,
    sample_object_motion,
)
from jointperception.data.textures import make_texture
from jointperception.errors import ConfigError

RADIUS_RANGE = (0.10, 0.22)  # object radius r0, fraction of min(H, W)
HARMONICS = (2, 3, 4, 5)  # k of the outline r(phi); |a_k| <= HARMONIC_AMPLITUDE / k
HARMONIC_AMPLITUDE = 0.35
CENTRE_SPREAD = 0.25  # trajectory midpoints within +-25 % of the frame size around its centre
TRAVEL_FRACTION = 0.5  # a long sequence moves an object by at most this fraction of min(H, W)
TEXTURE_MARGIN = 2.0  # px of texture beyond the area a layer ever shows
CAMERA_ATTEMPTS = 50  # redraws of a camera motion whose inverse does not converge
MAX_EXTENT_FACTOR = 3.0  # the background texture spans at most this many frame sizes
BAR_HALF_WIDTH = (1.0, 4.0)  # px: thin bars are 2..8 px wide
BAR_HALF_LENGTH = (0.15, 0.45)  # fraction of min(H, W)

TextureSource = Callable[[np.random.Generator, int, int], np.ndarray]  # (rng, h, w) -> (h, w, 3) float32 0..255


def _background_extent(motion: LayerMotion, num_frames: int, height: int, width: int) -> tuple[float, float, float, float]:
    """Canonical bounding box (x0, y0, x1, y1) of everything the background shows in any frame."""
    xs = np.arange(0, width, 4, dtype=np.float32)
    ys = np.arange(0, height, 4, dtype=np.float32)
    x = np.concatenate([xs, xs, np.zeros_like(ys), np.full_like(ys, width - 1), [width - 1.0]]).astype(np.float32)
    y = np.concatenate([np.zeros_like(xs), np.full_like(xs, height - 1), ys, ys, [height - 1.0]]).astype(np.float32)
    boxes = [motion.to_canonical((x, y), t) for t in range(num_frames)]
    return (min(float(b[0].min()) for b in boxes), min(float(b[1].min()) for b in boxes),
            max(float(b[0].max()) for b in boxes), max(float(b[1].max()) for b in boxes))


def _textured(rng: np.random.Generator, textures: TextureSource, motion: LayerMotion,
              extent: tuple[float, float, float, float], depth: int, shape: StarShape | None) -> SceneLayer:
    x0, y0, x1, y1 = extent
    x0, y0 = x0 - TEXTURE_MARGIN, y0 - TEXTURE_MARGIN
    width = math.ceil(x1 + TEXTURE_MARGIN - x0) + 1
    height = math.ceil(y1 + TEXTURE_MARGIN - y0) + 1
    return SceneLayer(motion=motion, texture=textures(rng, height, width), origin=(x0, y0), depth=depth, shape=shape)


def _invertible_camera(rng: np.random.Generator, num_frames: int, height: int, width: int, max_translation: float,
                       quadratic: bool, profile: MotionProfile) -> tuple[LayerMotion, tuple[float, float, float, float]]:
    """A camera motion whose T-step inverse converges over the whole frame, and its canonical
    extent. Compounded quadratic terms can make the inverse diverge far from the centre (large
    frames, long sequences); such draws are redrawn from the same generator (deterministic)."""
    limit = MAX_EXTENT_FACTOR * max(height, width)
    for _ in range(CAMERA_ATTEMPTS):
        camera = sample_camera_motion(rng, height, width, max_translation, quadratic, profile)
        try:
            extent = _background_extent(camera, num_frames, height, width)
        except InverseDivergedError:  # redraw: this motion is not invertible over the frame
            continue
        x0, y0, x1, y1 = extent
        if np.isfinite(extent).all() and max(x1 - x0, y1 - y0) <= limit:
            return camera, extent
    raise ConfigError(
        f"no invertible camera motion for {num_frames} frames of {width}x{height} in {CAMERA_ATTEMPTS} draws; "
        "use fewer frames"
    )


def sample_scene(rng: np.random.Generator, num_frames: int, height: int, width: int, max_objects: int,
                 max_translation: float, camera_motion: str, textures: TextureSource = make_texture,
                 profile: MotionProfile = SMALL) -> list[SceneLayer]:
    """Layers of a random scene: [background, object 1, ..., object N], N in 1..max_objects.

    camera_motion: "affine" | "quadratic" | "random" (either, with equal odds); textures: draws
    each layer's texture (procedural by default, or a ``PhotoTextures`` pool); profile: the
    motion ranges and the share of thin bars among the objects.
    """
    quadratic = camera_motion == "quadratic" or (camera_motion == "random" and rng.random() < 0.5)
    camera, extent = _invertible_camera(rng, num_frames, height, width, max_translation, quadratic, profile)
    layers = [_textured(rng, textures, camera, extent, 0, None)]
    count = int(rng.integers(1, max_objects + 1))
    depths = rng.permutation(count) + 1
    object_translation = min(max_translation, TRAVEL_FRACTION * min(height, width) / (num_frames - 1))
    for depth in depths:
        thin = profile.thin_fraction > 0 and rng.random() < profile.thin_fraction
        shape_draw = _bar if thin else _star
        radius, make_shape = shape_draw(rng, min(height, width))
        mid = ((width - 1) / 2 + rng.uniform(-CENTRE_SPREAD, CENTRE_SPREAD) * width,
               (height - 1) / 2 + rng.uniform(-CENTRE_SPREAD, CENTRE_SPREAD) * height)
        motion = sample_object_motion(rng, mid, radius, object_translation, camera, num_frames, profile=profile)
        shape = make_shape(motion.centre)
        r = shape.max_radius
        extent = (motion.centre[0] - r, motion.centre[1] - r, motion.centre[0] + r, motion.centre[1] + r)
        layers.append(_textured(rng, textures, motion, extent, int(depth), shape))
    return layers


ShapeAt = Callable[[tuple[float, float]], "StarShape | BarShape"]  # canonical centre -> outline


def _star(rng: np.random.Generator, side: int) -> tuple[float, ShapeAt]:
    """A star outline's radius r0 (px) and its maker; draws r0 and the harmonics."""
    radius = rng.uniform(*RADIUS_RANGE) * side
    harmonics = tuple((k, float(rng.uniform(-1, 1) * HARMONIC_AMPLITUDE / k), float(rng.uniform(0, 2 * np.pi)))
                      for k in HARMONICS)
    return radius, lambda centre: StarShape(centre=centre, radius=float(radius), harmonics=harmonics)


def _bar(rng: np.random.Generator, side: int) -> tuple[float, ShapeAt]:
    """A thin bar's half length (its motion's size scale, px) and its maker."""
    half_length = rng.uniform(*BAR_HALF_LENGTH) * side
    half_width, angle = rng.uniform(*BAR_HALF_WIDTH), rng.uniform(0.0, np.pi)
    return half_length, lambda centre: BarShape(centre=centre, half_length=float(half_length),
                                                half_width=float(half_width), angle=float(angle))
