"""Synthetic scenes: the ground truth must be exact, consistent and deterministic."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from jointperception.data.scene_layers import pixel_grid
from jointperception.data.scene_motion import LayerMotion
from jointperception.data.scene_sampling import sample_scene
from jointperception.data.synthetic import render_sequence
from jointperception.errors import ConfigError

H, W = 96, 128


def _grid() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    return xx, yy


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample image (H, W, C) bilinearly at p + flow(p) -> (H, W, C) float32."""
    xx, yy = _grid()
    return cv2.remap(image.astype(np.float32), xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).reshape(image.shape)


def _same_surface(layers_here: np.ndarray, layers_there: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Pixels whose whole bilinear footprint at p + flow(p) shows their own layer -> (H, W) bool."""
    xx, yy = _grid()
    x0 = np.clip(np.floor(xx + flow[..., 0]).astype(int), 0, W - 1)
    y0 = np.clip(np.floor(yy + flow[..., 1]).astype(int), 0, H - 1)
    same = np.ones((H, W), bool)
    for yi in (y0, np.minimum(y0 + 1, H - 1)):
        for xi in (x0, np.minimum(x0 + 1, W - 1)):
            same &= layers_there[yi, xi] == layers_here
    return same


CASES = [(seed, camera) for seed in (0, 1, 2, 5) for camera in ("affine", "quadratic")]


@pytest.mark.parametrize("seed,camera", CASES)
def test_gt_flow_warps_one_frame_onto_the_other(seed: int, camera: str) -> None:
    seq = render_sequence(seed, 3, H, W, photometric=False, camera_motion=camera)
    for t in range(2):
        directions = (
            (seq.frames[t], seq.frames[t + 1], seq.flow_forward[t], seq.occlusion_forward[t],
             seq.layers[t], seq.layers[t + 1]),
            (seq.frames[t + 1], seq.frames[t], seq.flow_backward[t], seq.occlusion_backward[t],
             seq.layers[t + 1], seq.layers[t]),
        )
        for here, there, flow, occlusion, layers_here, layers_there in directions:
            visible = ~occlusion
            error = np.abs(_warp(there, flow) - here).mean(axis=2)
            assert error[visible].mean() < 1.5  # every visible pixel, layer edges included
            inner = visible & _same_surface(layers_here, layers_there, flow)
            assert inner.mean() > 0.6
            assert error[inner].mean() < 1.0  # acceptance: < 1 grey level off layer edges
            zero_error = np.abs(there.astype(np.float32) - here).mean(axis=2)[inner].mean()
            assert zero_error > 4 * error[inner].mean()  # a wrong flow is clearly worse


@pytest.mark.parametrize("seed", [0, 3, 4])
def test_forward_and_backward_flow_cancel(seed: int) -> None:
    seq = render_sequence(seed, 2, H, W, photometric=False, camera_motion="quadratic")
    forward, backward = seq.flow_forward[0], seq.flow_backward[0]
    inner = ~seq.occlusion_forward[0] & _same_surface(seq.layers[0], seq.layers[1], forward)
    round_trip = np.linalg.norm(forward + _warp(backward, forward), axis=2)[inner]
    assert round_trip.max() < 0.1
    assert round_trip.mean() < 0.01


@pytest.mark.parametrize("seed", range(6))
def test_occlusion_matches_the_layers_where_points_land(seed: int) -> None:
    seq = render_sequence(seed, 2, H, W, photometric=False)
    xx, yy = _grid()
    for flow, occlusion, here, there in ((seq.flow_forward[0], seq.occlusion_forward[0], seq.layers[0], seq.layers[1]),
                                         (seq.flow_backward[0], seq.occlusion_backward[0], seq.layers[1], seq.layers[0])):
        tx, ty = xx + flow[..., 0], yy + flow[..., 1]
        outside = (tx < 0) | (tx > W - 1) | (ty < 0) | (ty > H - 1)
        assert occlusion[outside].all()
        inside_occluded = occlusion & ~outside
        assert inside_occluded.any()  # every object moves against the background: something is covered
        landed = there[np.clip(np.rint(ty).astype(int), 0, H - 1), np.clip(np.rint(tx).astype(int), 0, W - 1)]
        assert (landed[~occlusion] == here[~occlusion]).mean() > 0.97
        assert (landed[inside_occluded] != here[inside_occluded]).mean() > 0.8


def test_occlusion_is_a_small_fraction() -> None:
    fractions = [render_sequence(seed, 2, H, W).occlusion_forward.mean() for seed in range(8)]
    assert 0.0 < min(fractions) and max(fractions) < 0.4


def test_shapes_dtypes_and_masks() -> None:
    seq = render_sequence(11, 4, H, W)
    expected = {
        "frames": ((4, H, W, 3), np.uint8), "flow_forward": ((3, H, W, 2), np.float32),
        "flow_backward": ((3, H, W, 2), np.float32), "occlusion_forward": ((3, H, W), np.bool_),
        "occlusion_backward": ((3, H, W), np.bool_), "masks": ((4, H, W), np.bool_), "layers": ((4, H, W), np.uint8),
    }
    for name, (shape, dtype) in expected.items():
        value = getattr(seq, name)
        assert value.shape == shape and value.dtype == dtype, name
    np.testing.assert_array_equal(seq.masks, seq.layers > 0)
    assert seq.masks.any() and not seq.masks.all()
    assert np.isfinite(seq.flow_forward).all() and np.isfinite(seq.flow_backward).all()


def test_deterministic_per_seed_and_photometric_changes_no_gt() -> None:
    a, b = render_sequence(7, 3, H, W), render_sequence(7, 3, H, W)
    for name in ("frames", "flow_forward", "flow_backward", "occlusion_forward", "occlusion_backward", "layers"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    other = render_sequence(8, 3, H, W)
    assert not np.array_equal(a.frames, other.frames) and not np.array_equal(a.flow_forward, other.flow_forward)
    clean = render_sequence(7, 3, H, W, photometric=False)
    for name in ("flow_forward", "flow_backward", "occlusion_forward", "occlusion_backward", "layers"):
        np.testing.assert_array_equal(getattr(a, name), getattr(clean, name))
    assert np.abs(a.frames.astype(int) - clean.frames).mean() > 1.0


@pytest.mark.parametrize("seed", range(12))
def test_objects_move_clearly_against_the_camera(seed: int) -> None:
    seq = render_sequence(seed, 2, H, W, photometric=False)
    layers = sample_scene(np.random.default_rng(seed), 2, H, W, 4, 8.0, "random")  # the same draws
    camera = np.stack(layers[0].motion.displacement(pixel_grid(H, W), 0), axis=1).reshape(H, W, 2)
    for layer_id in range(1, len(layers)):
        pixels = seq.layers[0] == layer_id
        if pixels.sum() > 20:
            relative = np.linalg.norm(seq.flow_forward[0][pixels] - camera[pixels], axis=1)
            assert np.median(relative) > 1.0
    assert np.abs(seq.flow_forward[0][seq.layers[0] > 0]).max() <= 8.0 * 1.5  # translation + rotation


@pytest.mark.parametrize("camera,quadratic", [("affine", False), ("quadratic", True)])
def test_background_flow_is_affine_or_quadratic(camera: str, quadratic: bool) -> None:
    seq = render_sequence(3, 2, H, W, photometric=False, camera_motion=camera)
    xx, yy = _grid()
    background = seq.layers[0] == 0
    x, y = xx[background] / W, yy[background] / H
    flow = seq.flow_forward[0][background]
    affine = np.stack([np.ones_like(x), x, y], axis=1)
    full = np.concatenate([affine, np.stack([x * x, x * y, y * y], axis=1)], axis=1)
    residual = {name: np.abs(design @ np.linalg.lstsq(design, flow, rcond=None)[0] - flow).max()
                for name, design in (("affine", affine), ("quadratic", full))}
    assert residual["quadratic"] < 1e-3
    assert (residual["affine"] > 0.05) == quadratic


def test_quadratic_inverse_undoes_the_motion() -> None:
    motion = LayerMotion(centre=(40.0, 30.0), translation=(3.0, -2.0), linear=((0.02, -0.05), (0.05, 0.02)),
                         quadratic=((1.0, -0.8, 0.5), (-0.6, 0.9, 1.0)), scale=25.0)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 80, 500).astype(np.float32), rng.uniform(0, 60, 500).astype(np.float32)
    for t in (0, 3):
        fx, fy = motion.displacement((x, y), t)
        bx, by = motion.inverse_step((x + fx, y + fy), t)
        assert np.abs(bx - x).max() < 2e-3 and np.abs(by - y).max() < 2e-3
    px, py = x, y
    for t in range(3):  # follow the points for three frames, then map them back to frame 0
        fx, fy = motion.displacement((px, py), t)
        px, py = px + fx, py + fy
    cx, cy = motion.to_canonical((px, py), 3)
    assert np.abs(cx - x).max() < 5e-3 and np.abs(cy - y).max() < 5e-3


@pytest.mark.parametrize("kwargs", [
    {"num_frames": 1}, {"num_frames": 17}, {"height": 16}, {"max_objects": 0}, {"max_translation": 0.0},
    {"camera_motion": "shaky"}, {"seed": -1},
])
def test_bad_arguments_raise_config_error(kwargs: dict) -> None:
    arguments = {"seed": 0, "num_frames": 2, "height": H, "width": W} | kwargs
    seed, frames, height, width = (arguments.pop(k) for k in ("seed", "num_frames", "height", "width"))
    with pytest.raises(ConfigError):
        render_sequence(seed, frames, height, width, **arguments)


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_acceptance_warp_error_below_one_grey_level_on_every_visible_pixel(seed: int) -> None:
    """Issue #2 criterion at the demo resolution (240x320): warping frame t+1 by the forward GT
    flow reproduces frame t with mean abs error < 1 grey level over ALL non-occluded pixels,
    layer edges included (at 96x128 edges are a larger share; see the test above)."""
    height, width = 240, 320
    seq = render_sequence(seed, 2, height, width, photometric=False)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    flow = seq.flow_forward[0]
    warped = cv2.remap(seq.frames[1].astype(np.float32), xx + flow[..., 0], yy + flow[..., 1],
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    visible = ~seq.occlusion_forward[0]
    error = np.abs(warped - seq.frames[0]).mean(axis=2)[visible].mean()
    assert error < 1.0
    assert np.abs(seq.frames[1].astype(np.float32) - seq.frames[0]).mean(axis=2)[visible].mean() > 4 * error


def test_large_frames_and_long_sequences_render() -> None:
    """Regression: 640x480 sequences used to hit cv2.remap's 32767-point limit and diverging
    camera inverses; every frame must now render with finite ground truth."""
    seq = render_sequence(4, 12, 480, 640)
    assert seq.frames.shape == (12, 480, 640, 3)
    assert np.isfinite(seq.flow_forward).all() and np.isfinite(seq.flow_backward).all()
