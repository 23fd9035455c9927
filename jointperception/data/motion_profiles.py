"""How far synthetic layers move per frame: the "small" home-ground profile and the "real" one.

A profile fixes the ranges of the camera's and the objects' per-frame motion (``scene_motion``
draws from them) and what else a scene of that profile holds (thin bars, camera degradations).

The "real" profile is chosen to cover the displacements of real video at 320 px width: the GT of
the Sintel and FlyingChairs pairs has p95 17-41 px and p99 28-59 px there. Translations are drawn
as ``draw_translation`` below: a share ``small_fraction`` uniform in the disk of radius
``small_radius`` px (the home ground, where the network must stay accurate), the rest log-uniform
in magnitude between ``small_radius`` and the profile's maximum, in a uniform direction. A calm
camera (the same share) also keeps its rotation, zoom and perspective to ``calm_reach`` of the
ranges, since real footage holds still about half the time: half the pixels of the Sintel,
FlyingChairs and DAVIS pairs move less than 4 px. ``benchmarks/motion_histogram.py`` measures the
GT magnitudes this gives and plots them beside the real suites.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from jointperception.config import MOTION_PROFILES as PROFILES
from jointperception.errors import ConfigError


@dataclass(frozen=True)
class MotionProfile:
    camera_translation: float  # largest camera translation, fraction of max_translation
    camera_rotation_deg: float  # camera roll per frame, +- degrees
    camera_zoom: float  # camera scale change per frame, +- fraction
    camera_perspective: float  # quadratic (perspective-like) terms, +- fraction of the half frame size
    object_rotation_deg: float  # object rotation per frame, +- degrees
    object_zoom: float  # object scale change per frame, +- fraction
    object_quadratic: float  # object quadratic terms, +- fraction of its radius
    log_uniform: bool  # translation magnitudes: log-uniform tail (True) or uniform in the disk (False)
    small_fraction: float  # log_uniform: share of draws uniform in the small disk (calm cameras too)
    small_radius: float  # log_uniform: px radius of the small disk, where the tail starts
    calm_reach: float  # log_uniform: a calm camera's rotation / zoom / perspective, fraction of the ranges
    thin_fraction: float  # share of objects that are thin bars instead of star shapes
    degradations: bool  # motion blur, gamma / contrast changes and JPEG artefacts on the frames


SMALL = MotionProfile(camera_translation=0.5, camera_rotation_deg=1.5, camera_zoom=0.02, camera_perspective=0.01,
                      object_rotation_deg=4.0, object_zoom=0.03, object_quadratic=0.02, log_uniform=False,
                      small_fraction=1.0, small_radius=0.0, calm_reach=1.0, thin_fraction=0.0, degradations=False)
REAL = MotionProfile(camera_translation=0.75, camera_rotation_deg=5.0, camera_zoom=0.08, camera_perspective=0.03,
                     object_rotation_deg=15.0, object_zoom=0.10, object_quadratic=0.04, log_uniform=True,
                     small_fraction=0.5, small_radius=4.0, calm_reach=0.2, thin_fraction=0.25, degradations=True)


def motion_profile(name: str) -> MotionProfile:
    """The profile called ``name`` (one of PROFILES); ConfigError otherwise."""
    if name not in PROFILES:
        raise ConfigError(f"motion profile: must be one of {', '.join(PROFILES)}, got {name!r}")
    return SMALL if name == "small" else REAL


def draw_calm(rng: np.random.Generator, profile: MotionProfile) -> bool:
    """Whether a camera moves calmly (small translation, calm_reach of the other ranges); never
    for a profile without a log-uniform tail (it draws nothing then)."""
    return profile.log_uniform and bool(rng.random() < profile.small_fraction)


def draw_translation(rng: np.random.Generator, profile: MotionProfile, largest: float,
                     calm: bool | None = None) -> np.ndarray:
    """A per-frame translation (2,) in px, |b| <= largest, drawn as the profile says; ``calm``
    forces the small disk (True) or the tail (False) instead of drawing the choice."""
    angle = rng.uniform(0.0, 2 * np.pi)
    if not profile.log_uniform or largest <= profile.small_radius:
        magnitude = largest * np.sqrt(rng.uniform())
    elif calm if calm is not None else rng.random() < profile.small_fraction:
        magnitude = profile.small_radius * np.sqrt(rng.uniform())
    else:
        magnitude = math.exp(rng.uniform(math.log(profile.small_radius), math.log(largest)))
    return np.array([magnitude * np.cos(angle), magnitude * np.sin(angle)])
