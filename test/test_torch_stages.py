"""The GPU path's torch stages, run on the CPU device, against the OpenCV / numpy stages of the CPU
path on the same inputs (real network outputs of the bundled model on rendered pairs).

Stated tolerances:
- resize + normalise: mean |diff| <= 1.5 grey levels / 255 / std at a shrinking size, exact at the network size;
- pre-alignment: the exact known shift of a translated frame; on rendered pairs the whole-pixel
  shift within 1 px of OpenCV's on >= 80 % of pairs (sub-pixel peaks differ, see torch_stages.prealign);
- motion layers: identical ids and moving probability (<= 1e-6);
- residual cue: >= 99 % equal pixels (float32 fit on the device vs float64 on the CPU);
- mask memory: <= 1e-5 after three frames;
- camera-size restore: <= 1e-4 (bilinear, the same pixel centres).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jointperception.data.synthetic import render_sequence
from jointperception.classical import prealign as cpu_prealign
from jointperception.runtime.mask_memory import MaskMemory
from jointperception.runtime.motion_layers import residual_mask as cpu_residual_mask
from jointperception.runtime.motion_layers import split_layers as cpu_split_layers
from jointperception.runtime.pipeline import _to_camera, preprocess
from jointperception.runtime.torch_stages import frames
from jointperception.runtime.torch_stages.layers import split_layers
from jointperception.runtime.torch_stages.mask_memory import TorchMaskMemory
from jointperception.runtime.torch_stages.prealign import dominant_translation
from jointperception.runtime.torch_stages.residual import residual_mask

pytestmark = pytest.mark.slow  # real bundled-model inference on the CPU, tens of seconds

CPU = torch.device("cpu")
NETWORK = (160, 120)  # (W, H); pads to 160x128


@pytest.fixture(scope="module")
def network_outputs() -> list[dict[str, np.ndarray]]:
    """Bundled-model outputs (1, C, 128, 160) of three rendered pairs (torch, CPU)."""
    from jointperception.runtime.backends import create_backend
    from jointperception.models.weights import DEFAULT_MODEL_PATH

    backend = create_backend("torch", DEFAULT_MODEL_PATH, "cpu")
    outputs = []
    for seed in (3, 4, 5):
        first, second = render_sequence(seed, 2, NETWORK[1], NETWORK[0]).frames
        outputs.append(backend.infer(preprocess(first, NETWORK), preprocess(second, NETWORK)))
    return outputs


def test_preprocess_matches_opencv() -> None:
    frame = render_sequence(1, 2, 250, 330).frames[0]
    ours = frames.normalise(frames.resize_to_network(frames.upload(frame, CPU), NETWORK)).numpy()
    reference = preprocess(frame, NETWORK)
    assert ours.shape == reference.shape == (1, 3, 128, 160)
    assert np.abs(ours - reference).mean() <= 1.5 / 255 / 0.225
    same_size = render_sequence(2, 2, 120, 160).frames[0]
    np.testing.assert_allclose(frames.normalise(frames.resize_to_network(frames.upload(same_size, CPU), NETWORK)).numpy(),
                               preprocess(same_size, NETWORK), atol=1e-5)


def test_prealignment_finds_a_known_shift_and_mostly_agrees_with_opencv() -> None:
    frame = render_sequence(9, 2, 240, 320).frames[0]
    for dx, dy in ((7, -3), (-12, 5), (0, 0)):
        shifted = cpu_prealign.shift_frame(frame, -dx, -dy)
        assert tuple(dominant_translation(frames.upload(frame, CPU), frames.upload(shifted, CPU)).tolist()) == (dx, dy)
        np.testing.assert_array_equal(
            frames.shift_image(frames.upload(shifted, CPU), torch.tensor([dx, dy]))[0].permute(1, 2, 0).numpy(),
            cpu_prealign.shift_frame(shifted, dx, dy))
    close = total = 0
    for seed in range(10):
        first, second = render_sequence(seed, 2, 240, 320).frames
        for dx, dy in ((0, 0), (7, -3), (-12, 5)):
            second_shifted = cpu_prealign.shift_frame(second, -dx, -dy)
            reference = np.array(cpu_prealign.dominant_translation(first, second_shifted))
            ours = dominant_translation(frames.upload(first, CPU), frames.upload(second_shifted, CPU)).numpy()
            close += int(np.abs(ours - reference).max() <= 1)
            total += 1
    assert close >= 0.8 * total, f"{close} of {total}"


def test_motion_layers_match(network_outputs: list[dict[str, np.ndarray]]) -> None:
    for raw in network_outputs:
        ids, moving = cpu_split_layers(raw["layer_prob"], NETWORK[1], NETWORK[0])
        ours_ids, ours_moving = split_layers(torch.from_numpy(raw["layer_prob"]), NETWORK[1], NETWORK[0])
        np.testing.assert_array_equal(ours_ids.numpy(), ids)
        np.testing.assert_allclose(ours_moving.numpy(), moving, atol=1e-6)


def test_residual_cue_matches(network_outputs: list[dict[str, np.ndarray]]) -> None:
    movers = 0
    for raw in network_outputs:
        support = raw["mask_prob"] + cpu_split_layers(raw["layer_prob"], NETWORK[1], NETWORK[0])[1]
        reference = cpu_residual_mask(raw["flow"], NETWORK[1], NETWORK[0], support)
        ours = residual_mask(torch.from_numpy(raw["flow"]), NETWORK[1], NETWORK[0], torch.from_numpy(support)).numpy()
        assert ours.shape == reference.shape and set(np.unique(ours)) <= {0.0, 1.0}
        assert np.mean(ours == reference) >= 0.99
        movers += int(reference.any())
    assert movers >= 2  # the cue found a mover, so the comparison means something


def test_mask_memory_matches(network_outputs: list[dict[str, np.ndarray]]) -> None:
    cpu_memory, torch_memory = MaskMemory(0.5), TorchMaskMemory(0.5)
    height, width = NETWORK[1], NETWORK[0]
    for raw in network_outputs:
        probability = raw["mask_prob"][0, 0, :height, :width]
        flow = raw["flow"][0, :, :height, :width]
        occluded = raw["occlusion_prob"][0, 0, :height, :width] > 0.5
        expected = cpu_memory.update(probability, flow.transpose(1, 2, 0), occluded, "fused")
        ours = torch_memory.update(torch.from_numpy(probability), torch.from_numpy(flow), torch.from_numpy(occluded),
                                   "fused")
        np.testing.assert_allclose(ours.numpy(), expected, atol=1e-5)


def test_restore_to_camera_size_matches(network_outputs: list[dict[str, np.ndarray]]) -> None:
    planes = network_outputs[0]["mask_prob"]
    for camera in ((320, 240), (200, 150), NETWORK):
        expected = _to_camera(planes, NETWORK, camera)[..., 0]
        ours = frames.to_camera(torch.from_numpy(planes), NETWORK, camera)[0, 0].numpy()
        np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_flow_refinement_moves_the_flow_as_opencv_does() -> None:
    """The torch refinement is a replacement, not a copy: on rendered pairs with ground truth it
    must improve the network's flow and stay within 0.05 px EPE of OpenCV's refinement."""
    from jointperception.models.weights import DEFAULT_MODEL_PATH
    from jointperception.runtime.backends import create_backend
    from jointperception.classical.flow_refinement import refine_flow as cpu_refine_flow
    from jointperception.runtime.torch_stages.flow_refinement import refine_flow

    backend = create_backend("torch", DEFAULT_MODEL_PATH, "cpu")
    width, height = NETWORK
    for seed in (3, 4):
        sequence = render_sequence(seed, 2, height, width)
        first, second = sequence.frames
        flow = backend.infer(preprocess(first, NETWORK), preprocess(second, NETWORK))["flow"][:, :, :height, :width]
        reference = cpu_refine_flow(first, second, flow[0].transpose(1, 2, 0))
        ours = refine_flow(frames.upload(first, CPU), frames.upload(second, CPU), torch.from_numpy(flow))
        ours = ours[0].numpy().transpose(1, 2, 0)

        def epe(field: np.ndarray) -> float:
            return float(np.linalg.norm(field - sequence.flow_forward[0], axis=2).mean())

        assert epe(ours) < epe(flow[0].transpose(1, 2, 0)), seed
        assert epe(ours) <= epe(reference) + 0.05, (seed, epe(ours), epe(reference))
    nan_flow = torch.full((1, 2, height, width), float("nan"))
    assert torch.isnan(refine_flow(frames.upload(first, CPU), frames.upload(second, CPU), nan_flow)).all()
