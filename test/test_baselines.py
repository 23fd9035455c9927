"""OpenCV flow peers on known translations; classical motion segmentation on synthetic flow."""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from jointperception.classical.opencv_flow import (
    classical_motion_segmentation,
    classical_reference,
    dis_flow,
    farneback_flow,
)
from jointperception.errors import InputError
from jointperception.eval.metrics import jaccard

H, W = 96, 128
MARGIN = 16  # interior: away from pixels that leave the image or enter it


def texture(seed: int, height: int = H, width: int = W) -> np.ndarray:
    """Smooth random RGB texture: (height, width, 3) uint8."""
    noise = np.random.default_rng(seed).uniform(0, 255, size=(height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255.0
    return smooth.astype(np.uint8)


def translate(image: np.ndarray, u: float, v: float) -> np.ndarray:
    """Content moves by (u, v): dst(x, y) = src(x - u, y - v)."""
    matrix = np.float32([[1, 0, u], [0, 1, v]])
    size = (image.shape[1], image.shape[0])
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def dis_medium(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
    return dis_flow(image1, image2, "medium")


@pytest.mark.parametrize(("method", "tolerance"), [(dis_medium, 0.3), (farneback_flow, 0.5)])
def test_flow_peers_recover_a_known_translation(method: Callable[..., np.ndarray], tolerance: float) -> None:
    shift = np.array([3.4, -2.3])
    image1 = texture(0)
    flow = method(image1, translate(image1, *shift))
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    interior = flow[MARGIN:-MARGIN, MARGIN:-MARGIN]
    epe = np.linalg.norm(interior - shift, axis=2)
    assert epe.max() < tolerance


@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
def test_dis_presets_accept_rgb_and_gray(preset: str) -> None:
    image1 = texture(1)
    image2 = translate(image1, 1.0, 1.0)
    rgb = dis_flow(image1, image2, preset)
    gray1, gray2 = (cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (image1, image2))
    gray = dis_flow(gray1, gray2, preset)
    np.testing.assert_allclose(rgb, gray, atol=1e-5)
    assert np.median(np.abs(rgb[MARGIN:-MARGIN, MARGIN:-MARGIN] - 1.0)) < 0.5


def test_flow_peers_reject_bad_input() -> None:
    image = texture(2)
    with pytest.raises(InputError):
        dis_flow(image, image, "slow")
    with pytest.raises(InputError):
        dis_flow(image, image[:-1])
    with pytest.raises(InputError):
        farneback_flow(image.astype(np.float32), image)


def affine_field(height: int = H, width: int = W) -> np.ndarray:
    """Background motion: translation + zoom + a little rotation, (H, W, 2) float32 px."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs, ys = xs - width / 2, ys - height / 2
    return np.stack([1.5 + 0.03 * xs - 0.01 * ys, -0.8 + 0.01 * xs + 0.03 * ys], axis=2)


def moving_square() -> tuple[np.ndarray, np.ndarray]:
    flow = affine_field()
    flow += np.random.default_rng(3).normal(scale=0.1, size=flow.shape).astype(np.float32)
    square = np.zeros((H, W), dtype=bool)
    square[30:60, 50:80] = True
    flow[square] += np.array([4.0, 3.0], dtype=np.float32)
    return flow, square


def test_classical_segmentation_finds_a_differently_moving_square() -> None:
    flow, square = moving_square()
    mask = classical_motion_segmentation(flow)
    assert mask.shape == (H, W) and mask.dtype == bool
    assert jaccard(mask, square) > 0.9


def test_classical_segmentation_is_empty_without_independent_motion() -> None:
    assert not classical_motion_segmentation(np.zeros((H, W, 2), dtype=np.float32)).any()
    assert not classical_motion_segmentation(affine_field()).any()
    noisy = affine_field() + np.random.default_rng(4).normal(scale=0.05, size=(H, W, 2)).astype(np.float32)
    assert classical_motion_segmentation(noisy).mean() < 0.01


def test_classical_segmentation_survives_non_finite_flow() -> None:
    flow, square = moving_square()
    rng = np.random.default_rng(5)
    broken = rng.random((H, W)) < 0.05
    flow[broken, 0] = np.nan
    flow[rng.random((H, W)) < 0.02, 1] = np.inf
    flow[0, 0] = (1e30, -1e30)
    mask = classical_motion_segmentation(flow)
    assert not mask[broken].any()  # missing flow is background
    assert jaccard(mask, square) > 0.7
    assert not classical_motion_segmentation(np.full((H, W, 2), np.nan, dtype=np.float32)).any()
    assert not classical_motion_segmentation(np.full((1, 2, 2), np.inf)).any()
    with pytest.raises(InputError):
        classical_motion_segmentation(np.zeros((H, W, 3), dtype=np.float32))


def test_classical_reference_segments_a_moving_patch_in_images() -> None:
    background, foreground = texture(6, H + 20, W + 20), texture(7, 32, 32)
    image1 = background[10:10 + H, 10:10 + W].copy()
    image2 = background[10:10 + H, 8:8 + W].copy()  # background moves by (+2, 0)
    image1[30:62, 40:72] = foreground
    image2[34:66, 45:77] = foreground  # the patch moves by (+5, +4)
    mask, flow = classical_reference(image1, image2)
    truth = np.zeros((H, W), dtype=bool)
    truth[30:62, 40:72] = True
    assert flow.shape == (H, W, 2)
    assert np.median(flow[~truth][:, 0]) == pytest.approx(2.0, abs=0.3)
    assert jaccard(mask, truth) > 0.8
