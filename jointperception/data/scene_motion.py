"""Parametric per-frame motion of one scene layer (camera background or object).

A layer moves by the same polynomial step map every frame, expanded about its current centre
c_t = c_0 + t b (the centre moves with the layer):

    M_t(p) = p + f_t(p),   f_t(p) = b + A u + C m(u / s),   u = p - c_t,
    m(q) = (q_x^2, q_x q_y, q_y^2)

``A`` (2, 2) is the affine part (rotation + scale - identity), ``C`` (2, 3) the quadratic part in
pixels at |q| = 1, ``s`` the layer's size scale. The GT forward flow at p is f_t(p). The Jacobian
of the quadratic part is kept small, so M_t^{-1} is a contraction fixed point:
    u = (I + A)^{-1} (p' - c_t - b - C m(u / s)).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jointperception.data.motion_profiles import SMALL, MotionProfile, draw_calm, draw_translation

Points = tuple[np.ndarray, np.ndarray]  # (x, y) arrays of any equal shape, float32, pixels
# px: the fixed-point iteration stops when no point moves more than this; with the contraction
# factor L <= 0.25 of the motions drawn here the remaining error is <= L / (1 - L) * 4e-3 < 1.5e-3 px
INVERSE_TOLERANCE = 4e-3
INVERSE_MAX_ITERATIONS = 30


class InverseDivergedError(RuntimeError):
    """The fixed-point inverse of a quadratic motion did not converge at some point."""


@dataclass(frozen=True)
class LayerMotion:
    centre: tuple[float, float]  # c_0: expansion point at frame 0, pixels (x, y)
    translation: tuple[float, float]  # b: displacement of the centre per frame, pixels
    linear: tuple[tuple[float, float], tuple[float, float]]  # A: (2, 2), dimensionless
    quadratic: tuple[tuple[float, float, float], tuple[float, float, float]]  # C: (2, 3), pixels
    scale: float  # s: pixels per unit of normalised coordinate q

    def centre_at(self, t: int) -> tuple[float, float]:
        """c_t = c_0 + t b."""
        return (self.centre[0] + t * self.translation[0], self.centre[1] + t * self.translation[1])

    def _quadratic(self, u: np.ndarray, v: np.ndarray) -> Points:
        """C m(u / s) for offsets (u, v) from the centre."""
        (c00, c01, c02), (c10, c11, c12) = (np.array(self.quadratic) / self.scale**2).astype(np.float32)
        uu, uv, vv = u * u, u * v, v * v
        return c00 * uu + c01 * uv + c02 * vv, c10 * uu + c11 * uv + c12 * vv

    def displacement(self, points: Points, t: int) -> Points:
        """f_t(p): forward flow of frame t -> t + 1 at points p of frame t, pixels."""
        cx, cy = self.centre_at(t)
        (a00, a01), (a10, a11) = self.linear
        u, v = points[0] - np.float32(cx), points[1] - np.float32(cy)
        fx = np.float32(self.translation[0]) + np.float32(a00) * u + np.float32(a01) * v
        fy = np.float32(self.translation[1]) + np.float32(a10) * u + np.float32(a11) * v
        if any(any(row) for row in self.quadratic):
            qx, qy = self._quadratic(u, v)
            fx += qx
            fy += qy
        return fx, fy

    def inverse_step(self, points: Points, t: int) -> Points:
        """M_t^{-1}(p'): where the points p' of frame t + 1 were in frame t.

        With B = (I + A)^{-1}, u_lin = B (p' - c_t - b) and D = B C / s^2, iterate
        u <- u_lin - D (u_x^2, u_x u_y, u_y^2) until no point moves by INVERSE_TOLERANCE.
        """
        cx, cy = self.centre_at(t)
        (a00, a01), (a10, a11) = self.linear
        det = (1.0 + a00) * (1.0 + a11) - a01 * a10
        inverse = np.array([[1.0 + a11, -a01], [-a10, 1.0 + a00]]) / det
        rx = points[0] - np.float32(cx + self.translation[0])
        ry = points[1] - np.float32(cy + self.translation[1])
        u_lin = np.float32(inverse[0, 0]) * rx + np.float32(inverse[0, 1]) * ry
        v_lin = np.float32(inverse[1, 0]) * rx + np.float32(inverse[1, 1]) * ry
        if not any(any(row) for row in self.quadratic):
            return u_lin + np.float32(cx), v_lin + np.float32(cy)
        (d00, d01, d02), (d10, d11, d12) = (inverse @ np.array(self.quadratic) / self.scale**2).astype(np.float32)
        u, v = u_lin, v_lin
        for _ in range(INVERSE_MAX_ITERATIONS):
            uu, uv, vv = u * u, u * v, v * v
            new_u = u_lin - (d00 * uu + d01 * uv + d02 * vv)
            new_v = v_lin - (d10 * uu + d11 * uv + d12 * vv)
            change = max(float(np.abs(new_u - u).max(initial=0.0)), float(np.abs(new_v - v).max(initial=0.0)))
            u, v = new_u, new_v
            if change < INVERSE_TOLERANCE:
                return u + np.float32(cx), v + np.float32(cy)
        raise InverseDivergedError(f"inverse of the quadratic motion did not converge (last change {change:.3g} px)")

    def to_canonical(self, points: Points, t: int) -> Points:
        """(M_0^{-1} o ... o M_{t-1}^{-1})(p): frame-0 position of points p seen in frame t."""
        for step in range(t - 1, -1, -1):
            points = self.inverse_step(points, step)
        return points


def _rotation_scale(angle: float, scale: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """A = scale * R(angle) - I."""
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return ((float(c - 1.0), float(-s)), (float(s), float(c - 1.0)))


def _quadratic_terms(rng: np.random.Generator, magnitude: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """C: (2, 3) uniform in [-magnitude, magnitude] pixels."""
    values = rng.uniform(-magnitude, magnitude, size=(2, 3))
    return (tuple(float(v) for v in values[0]), tuple(float(v) for v in values[1]))


def sample_camera_motion(
    rng: np.random.Generator, height: int, width: int, max_translation: float, quadratic: bool,
    profile: MotionProfile = SMALL,
) -> LayerMotion:
    """Background (camera) motion about the image centre, as ``profile`` draws it (the small
    profile: rotation up to 1.5 deg, zoom +-2 %, translation up to max_translation / 2 px per
    frame and, if ``quadratic``, quadratic terms up to 1 % of s = max(H, W) / 2)."""
    scale = max(height, width) / 2.0
    calm = draw_calm(rng, profile)
    reach = profile.calm_reach if calm else 1.0
    rotation, zoom_range = reach * profile.camera_rotation_deg, reach * profile.camera_zoom
    angle = np.deg2rad(rng.uniform(-rotation, rotation))
    zoom = 1.0 + rng.uniform(-zoom_range, zoom_range)
    translation = draw_translation(rng, profile, profile.camera_translation * max_translation, calm)
    perspective = reach * profile.camera_perspective
    quad = _quadratic_terms(rng, perspective * scale) if quadratic else ((0.0,) * 3, (0.0,) * 3)
    return LayerMotion(
        centre=((width - 1) / 2.0, (height - 1) / 2.0),
        translation=(float(translation[0]), float(translation[1])),
        linear=_rotation_scale(angle, zoom),
        quadratic=quad,
        scale=scale,
    )


def _relative_motion(motion: LayerMotion, background: LayerMotion, num_frames: int) -> float:
    """Smallest |b - f_bg,t(c_t)| over the trajectory: how clearly the object moves against the camera."""
    smallest = np.inf
    for t in range(num_frames - 1):
        cx, cy = motion.centre_at(t)
        fx, fy = background.displacement((np.float32([cx]), np.float32([cy])), t)
        smallest = min(smallest, float(np.hypot(motion.translation[0] - fx[0], motion.translation[1] - fy[0])))
    return smallest


def _draw_object_motion(rng: np.random.Generator, mid_centre: tuple[float, float], radius: float,
                        max_translation: float, num_frames: int, profile: MotionProfile) -> LayerMotion:
    translation = draw_translation(rng, profile, max_translation)
    offset = 0.5 * (num_frames - 1) * translation
    angle = np.deg2rad(rng.uniform(-profile.object_rotation_deg, profile.object_rotation_deg))
    return LayerMotion(
        centre=(float(mid_centre[0] - offset[0]), float(mid_centre[1] - offset[1])),
        translation=(float(translation[0]), float(translation[1])),
        linear=_rotation_scale(angle, 1.0 + rng.uniform(-profile.object_zoom, profile.object_zoom)),
        quadratic=_quadratic_terms(rng, profile.object_quadratic * radius),
        scale=radius,
    )


def sample_object_motion(
    rng: np.random.Generator,
    mid_centre: tuple[float, float],
    radius: float,
    max_translation: float,
    background: LayerMotion,
    num_frames: int,
    min_relative: float = 1.5,
    tries: int = 32,
    profile: MotionProfile = SMALL,
) -> LayerMotion:
    """Object motion about its own centre, as ``profile`` draws it (the small profile: rotation up
    to 4 deg, scale +-3 %, translation up to max_translation px per frame, quadratic terms up to
    2 % of the radius).

    The trajectory is centred on ``mid_centre`` (the object passes there half-way through the
    sequence). Of up to ``tries`` draws, the first whose translation differs from the background's
    displacement by >= min_relative px at every frame is kept (else the most different one).
    """
    best = _draw_object_motion(rng, mid_centre, radius, max_translation, num_frames, profile)
    best_relative = _relative_motion(best, background, num_frames)
    for _ in range(tries - 1):
        if best_relative >= min_relative:
            break
        motion = _draw_object_motion(rng, mid_centre, radius, max_translation, num_frames, profile)
        relative = _relative_motion(motion, background, num_frames)
        if relative > best_relative:
            best, best_relative = motion, relative
    return best
