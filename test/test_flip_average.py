"""Flip averaging ("Ours²"): the mirrored pair's outputs are un-mirrored, u negated, then averaged."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from jointperception.models.weights import load_model
from jointperception.runtime.backends import TorchBackend
from jointperception.runtime.pipeline import PerceptionPipeline, unmirror_outputs

NETWORK = (72, 48)  # pads to 96x64: the un-mirroring must ignore the right-hand padding
CAMERA = (144, 96)  # (W, H), twice the network size


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    return TorchBackend(load_model()[0])  # the bundled trained model


def _texture(seed: int, width: int, height: int, sigma: float = 1.5) -> np.ndarray:
    """Blurred colour noise stretched to the full 0..255 range, (height, width, 3) uint8."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), sigma), None, 0, 255, cv2.NORM_MINMAX)


def test_unmirror_outputs_restores_the_original_frame() -> None:
    width, padded = 5, 8
    rng = np.random.default_rng(0)
    truth = {"mask_prob": rng.random((1, 1, 3, padded)), "flow": rng.normal(size=(1, 2, 3, padded))}
    # what an ideal network outputs for the mirrored pair: mirrored maps, u with the opposite sign
    mirrored = {name: value.copy() for name, value in truth.items()}
    for value in mirrored.values():
        value[..., :width] = value[..., :width][..., ::-1]
    mirrored["flow"][:, 0, :, :width] *= -1.0
    restored = unmirror_outputs(mirrored, width)
    for name, value in truth.items():
        np.testing.assert_array_equal(restored[name][..., :width], value[..., :width])


def test_symmetric_pair_gives_symmetric_mask_and_antisymmetric_u(backend: TorchBackend) -> None:
    half = _texture(1, CAMERA[0] // 2, CAMERA[1])
    first = np.concatenate([half, half[:, ::-1]], axis=1)  # left-right symmetric
    zoom = cv2.getRotationMatrix2D(((CAMERA[0] - 1) / 2, (CAMERA[1] - 1) / 2), 0.0, 1.06)
    zoomed_left = cv2.warpAffine(first, zoom, CAMERA, borderMode=cv2.BORDER_REFLECT_101)[:, : CAMERA[0] // 2]
    second = np.concatenate([zoomed_left, zoomed_left[:, ::-1]], axis=1)  # exactly symmetric too
    # the flow refinement after the average is not exactly mirror-equivariant (it breaks this
    # symmetry by more than the tolerance below): it is off here, so the check is of the average itself
    plain = PerceptionPipeline(backend, NETWORK, refine=False).infer_pair(first, second)
    averaged = PerceptionPipeline(backend, NETWORK, flip_average=True, refine=False).infer_pair(first, second)

    u_plain, u_avg = plain.flow[..., 0], averaged.flow[..., 0]
    # precondition: the network alone is not mirror-equivariant, so the check below can fail
    assert np.abs(u_plain + u_plain[:, ::-1]).max() > 0.05
    np.testing.assert_allclose(u_avg, -u_avg[:, ::-1], atol=1e-3)  # u(x) = -u(W - 1 - x)
    np.testing.assert_allclose(averaged.flow[..., 1], averaged.flow[..., 1][:, ::-1], atol=1e-3)
    # the averaged cues are symmetric (the residual cue is not averaged: it keeps one component
    # of the averaged flow, which need not be symmetric)
    for cue in (averaged.segmentation_probability, averaged.moving_probability):
        np.testing.assert_allclose(cue, cue[:, ::-1], atol=1e-4)
    # the zoom moves each half outwards: u points away from the centre column
    assert u_avg[:, : CAMERA[0] // 2].mean() < 0 < u_avg[:, CAMERA[0] // 2 :].mean()


def test_horizontal_translation_keeps_its_sign(backend: TorchBackend) -> None:
    shift = 8  # pixels to the right at camera resolution
    wide = _texture(2, CAMERA[0] + shift, CAMERA[1], sigma=5.0)
    first, second = wide[:, shift:], wide[:, :-shift]  # content moves right by `shift`
    first, second = np.ascontiguousarray(first), np.ascontiguousarray(second)
    plain = PerceptionPipeline(backend, NETWORK).infer_pair(first, second)
    averaged = PerceptionPipeline(backend, NETWORK, flip_average=True).infer_pair(first, second)
    inner = np.s_[8:-8, 8:-8]
    u_plain, u_avg = plain.flow[inner][..., 0].mean(), averaged.flow[inner][..., 0].mean()
    assert u_plain > shift / 2
    # un-mirroring without negating u would average +u with -u and give about 0 here
    assert u_avg > shift / 2 and abs(u_avg - u_plain) < shift / 4


def test_flip_average_is_off_by_default(backend: TorchBackend) -> None:
    assert PerceptionPipeline(backend, NETWORK).flip_average is False
