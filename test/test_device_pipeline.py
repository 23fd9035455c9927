"""The GPU pipeline (``runtime.torch_stages.pipeline.DevicePipeline``) run on the CPU device against
the CPU pipeline, end to end on rendered streams with the mask memory.

Stated tolerances (the stages differ where documented: area resize, phase-correlation sub-pixel
peak, the torch flow refinement): flow mean |diff| <= 0.2 px; published mask, occlusion, motion
layers and residual cue equal on >= 98 %, 99.5 %, 95 % and 97 % of pixels; segmentation
probability mean |diff| <= 0.01.
"""
from __future__ import annotations

import numpy as np
import pytest

from jointperception.data.synthetic import render_sequence
from jointperception.errors import InputError
from jointperception.models.weights import DEFAULT_MODEL_PATH
from jointperception.runtime.backends import create_backend
from jointperception.runtime.mask_memory import MaskMemory
from jointperception.runtime.pipeline import PerceptionPipeline
from jointperception.runtime.torch_stages.mask_memory import TorchMaskMemory
from jointperception.runtime.torch_stages.pipeline import DevicePipeline

pytestmark = pytest.mark.slow  # real bundled-model inference on the CPU, tens of seconds

NETWORK = (160, 120)


@pytest.fixture(scope="module")
def pipelines() -> tuple[PerceptionPipeline, DevicePipeline]:
    backend = create_backend("torch", DEFAULT_MODEL_PATH, "cpu")
    return PerceptionPipeline(backend, NETWORK), DevicePipeline(backend, NETWORK)


@pytest.mark.parametrize("seed", [3, 4])
def test_device_pipeline_matches_the_cpu_pipeline(pipelines: tuple[PerceptionPipeline, DevicePipeline],
                                                  seed: int) -> None:
    cpu, device = pipelines
    frames = render_sequence(seed, 3, 240, 320).frames
    cpu_memory, device_memory = MaskMemory(), TorchMaskMemory()
    for index in range(2):
        expected = cpu.infer_pair(frames[index + 1], frames[index], cpu_memory)
        ours = device.infer_pair(frames[index + 1], frames[index], device_memory)
        for name in ("mask", "mask_probability", "flow", "occlusion", "layers", "residual_probability"):
            assert getattr(ours, name).shape == getattr(expected, name).shape, name
            assert getattr(ours, name).dtype == getattr(expected, name).dtype, name
        assert np.abs(ours.flow - expected.flow).mean() <= 0.2
        assert np.mean(ours.mask == expected.mask) >= 0.98 and expected.mask.mean() > 0.01
        assert np.mean(ours.occlusion == expected.occlusion) >= 0.995
        assert np.mean(ours.layers == expected.layers) >= 0.95
        assert np.mean(ours.residual_probability == expected.residual_probability) >= 0.97
        assert np.abs(ours.segmentation_probability - expected.segmentation_probability).mean() <= 0.01


def test_a_host_mask_memory_gives_the_same_as_the_device_one(pipelines: tuple[PerceptionPipeline, DevicePipeline]) -> None:
    _, device = pipelines
    frames = render_sequence(5, 3, 120, 160).frames
    host, on_device = MaskMemory(), TorchMaskMemory()
    for index in range(2):
        a = device.infer_pair(frames[index + 1], frames[index], host)
        b = device.infer_pair(frames[index + 1], frames[index], on_device)
        np.testing.assert_allclose(a.mask_probability, b.mask_probability, atol=1e-5)


def test_the_device_pipeline_is_for_torch_on_cuda_and_without_flip_averaging() -> None:
    assert type(PerceptionPipeline.from_model_file(network_size=NETWORK)) is PerceptionPipeline  # cpu
    backend = create_backend("torch", DEFAULT_MODEL_PATH, "cpu")
    with pytest.raises(InputError, match="flip averaging runs on the CPU pipeline only"):
        DevicePipeline(backend, NETWORK, flip_average=True)
    with pytest.raises(InputError, match="frames differ in size"):
        DevicePipeline(backend, NETWORK).infer_pair(np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8))


def test_onnxruntime_on_tensors_gives_the_torch_backend_s_outputs(pipelines: tuple[PerceptionPipeline, DevicePipeline],
                                                                   tmp_path) -> None:
    """The device pipeline over ONNX Runtime (``infer_tensors``: I/O binding on CUDA, numpy on the CPU)."""
    _, torch_pipeline = pipelines
    backend = create_backend("onnxruntime", DEFAULT_MODEL_PATH, "cpu", input_size=(160, 128), cache_dir=tmp_path)
    frames = render_sequence(6, 2, 120, 160).frames
    ours = DevicePipeline(backend, NETWORK).infer_pair(frames[1], frames[0])
    expected = torch_pipeline.infer_pair(frames[1], frames[0])
    assert np.abs(ours.flow - expected.flow).mean() <= 1e-3
    assert np.mean(ours.mask == expected.mask) >= 0.999
