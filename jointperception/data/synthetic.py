"""Procedural video sequences with exact ground truth for flow, occlusion, masks and layers.

A textured background moves with a global camera motion (affine or quadratic); 1..max_objects
textured star-shaped objects move with their own affine + small quadratic motion, clearly
different from the camera's, and occlude each other by a random depth order. Frames are rendered
by inverting each layer's motion (see ``scene_motion``), so the ground truth is exact:
  flow_forward[t](p)  = f_L,t(p)               L = layer visible at p in frame t
  flow_backward[t](p) = M_L,t^{-1}(p) - p      L = layer visible at p in frame t + 1
  occlusion: the moved point leaves [0, W-1] x [0, H-1] or a nearer layer covers it there.
Photometric changes (gain, blur, noise) are applied to the rendered frames and change no GT;
the "real" motion profile (``motion_profiles``) adds large motions, thin bars and camera
degradations (``degradations``: motion blur, tone changes, JPEG).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from jointperception.data.degradations import degrade
from jointperception.data.motion_profiles import motion_profile
from jointperception.data.scene_layers import (
    SceneLayer,
    pixel_grid,
    render_frame,
    top_depth,
)
from jointperception.data.scene_sampling import TextureSource, sample_scene
from jointperception.data.textures import make_texture
from jointperception.errors import ConfigError

CAMERA_MOTIONS = ("affine", "quadratic", "random")
MIN_SIZE = 32  # px: smallest frame side
MAX_FRAMES = 16  # compounded per-frame motions stay invertible over the frame up to this length
MAX_OBJECTS = 254  # layer ids are uint8


@dataclass(frozen=True)
class SyntheticSequence:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    flow_forward: np.ndarray  # (T-1, H, W, 2) float32: frame t -> t+1, on frame t pixels
    flow_backward: np.ndarray  # (T-1, H, W, 2) float32: frame t+1 -> t, on frame t+1 pixels
    occlusion_forward: np.ndarray  # (T-1, H, W) bool: pixels of t not visible in t+1
    occlusion_backward: np.ndarray  # (T-1, H, W) bool: pixels of t+1 not visible in t
    masks: np.ndarray  # (T, H, W) bool: moving objects (layers > 0)
    layers: np.ndarray  # (T, H, W) uint8: 0 = background, objects 1..N


def _check_arguments(seed: int, num_frames: int, height: int, width: int, max_objects: int,
                     max_translation: float, camera_motion: str) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed: must be an integer >= 0, got {seed!r}")
    if not 2 <= num_frames <= MAX_FRAMES:
        raise ConfigError(f"num_frames: must be in 2..{MAX_FRAMES}, got {num_frames}")
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ConfigError(f"frame size: height and width must be >= {MIN_SIZE}, got {height}x{width}")
    if not 1 <= max_objects <= MAX_OBJECTS:
        raise ConfigError(f"max_objects: must be in 1..{MAX_OBJECTS}, got {max_objects}")
    if not max_translation > 0:
        raise ConfigError(f"max_translation: must be > 0, got {max_translation}")
    if camera_motion not in CAMERA_MOTIONS:
        raise ConfigError(f"camera_motion: must be one of {', '.join(CAMERA_MOTIONS)}, got {camera_motion!r}")


def _step_ground_truth(layers: list[SceneLayer], t: int, ids: np.ndarray, next_ids: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flows (H, W, 2) float32 and occlusions (H, W) bool of step t -> t+1 (forward, backward)."""
    height, width = ids.shape
    x, y = pixel_grid(height, width)
    ids, next_ids = ids.reshape(-1), next_ids.reshape(-1)
    forward = np.stack(layers[0].motion.displacement((x, y), t), axis=1)  # background everywhere,
    source = np.stack(layers[0].motion.inverse_step((x, y), t), axis=1)  # then objects on their pixels
    for layer_id, layer in enumerate(layers[1:], start=1):
        here = np.flatnonzero(ids == layer_id)
        forward[here] = np.stack(layer.motion.displacement((x[here], y[here]), t), axis=1)
        there = np.flatnonzero(next_ids == layer_id)
        source[there] = np.stack(layer.motion.inverse_step((x[there], y[there]), t), axis=1)
    backward = source - np.stack((x, y), axis=1)
    depth = np.array([layer.depth for layer in layers], np.int32)
    occlusions = []
    for flow, own, frame in ((forward, ids, t + 1), (backward, next_ids, t)):
        tx, ty = x + flow[:, 0], y + flow[:, 1]
        outside = (tx < 0) | (tx > width - 1) | (ty < 0) | (ty > height - 1)
        occlusions.append((outside | (top_depth(layers, tx, ty, frame) > depth[own])).reshape(height, width))
    return forward.reshape(height, width, 2), backward.reshape(height, width, 2), occlusions[0], occlusions[1]


def _photometric(rng: np.random.Generator, images: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Camera-like photometric changes on float32 frames (H, W, 3): a per-sequence gain (+-20 %,
    slight tint), offset and optional blur, then per-frame gain flicker (+-3 %), offset (+-3) and
    Gaussian noise. Frame-to-frame changes stay small, as in real video."""
    base_gain = rng.uniform(0.8, 1.2) * rng.uniform(0.95, 1.05, size=3).astype(np.float32)
    base_offset = rng.uniform(-10.0, 10.0)
    blur_sigma = rng.uniform(0.4, 1.2) if rng.random() < 0.3 else 0.0
    noise_sigma = np.float32(rng.uniform(0.0, 3.0))
    changed = []
    for image in images:
        gain = base_gain * np.float32(rng.uniform(0.97, 1.03))
        image = image * gain + np.float32(base_offset + rng.uniform(-3.0, 3.0))
        if blur_sigma:
            image = cv2.GaussianBlur(image, (0, 0), blur_sigma)
        changed.append(image + noise_sigma * rng.standard_normal(image.shape, dtype=np.float32))
    return tuple(changed)


def render_sequence(seed: int, num_frames: int, height: int, width: int, *, max_objects: int = 4,
                    max_translation: float = 8.0, camera_motion: str = "random",
                    photometric: bool = True, textures: TextureSource = make_texture,
                    motion: str = "small") -> SyntheticSequence:
    """Render a T-frame scene from ``seed`` (deterministic) with exact ground truth.

    max_translation: largest per-frame object translation in pixels (the camera moves up to half
    of it); long sequences cap it at min(H, W) / (2 (T - 1)) so that objects stay in view.
    camera_motion: "affine" | "quadratic" | "random". Scene geometry and GT do not depend on
    ``photometric``. textures: draws each layer's texture (procedural by default; a
    ``PhotoTextures`` pool puts real-photo crops on layers). motion: the motion profile, "small"
    (the home ground) or "real" (``motion_profiles``); its degradations, like the photometric
    changes, apply only with ``photometric``. Raises ConfigError for bad arguments.
    """
    _check_arguments(seed, num_frames, height, width, max_objects, max_translation, camera_motion)
    profile = motion_profile(motion)
    rng = np.random.default_rng(seed)
    layers = sample_scene(rng, num_frames, height, width, max_objects, max_translation, camera_motion, textures,
                          profile)
    images, ids = zip(*(render_frame(layers, t, height, width) for t in range(num_frames)))
    steps = [_step_ground_truth(layers, t, ids[t], ids[t + 1]) for t in range(num_frames - 1)]
    if photometric:
        images = _photometric(rng, images)
        if profile.degradations:
            images = degrade(rng, images)
    frames = np.stack([np.clip(np.rint(image), 0, 255).astype(np.uint8) for image in images])
    layer_ids = np.stack(ids)
    return SyntheticSequence(
        frames=frames,
        flow_forward=np.stack([step[0] for step in steps]),
        flow_backward=np.stack([step[1] for step in steps]),
        occlusion_forward=np.stack([step[2] for step in steps]),
        occlusion_backward=np.stack([step[3] for step in steps]),
        masks=layer_ids > 0,
        layers=layer_ids,
    )
