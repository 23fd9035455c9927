"""PerceptionPipeline: pre/post-processing, output contract and input validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jointperception.config import ModelConfig
from jointperception.errors import InputError
from jointperception.models import build_model
from jointperception.models.normalize import NETWORK_STRIDE, normalize_images
from jointperception.runtime.backends import TorchBackend
from jointperception.runtime.mask_memory import MaskMemory
from jointperception.runtime.motion_layers import source_masks, split_layers
from jointperception.runtime.pipeline import (
    PerceptionPipeline,
    padded_size,
    preprocess,
    restore_flow,
    restore_probability,
)

NETWORK_SIZE = (96, 48)  # (W, H); H is padded to 64


@pytest.fixture(scope="module")
def pipeline() -> PerceptionPipeline:
    torch.manual_seed(0)
    return PerceptionPipeline(TorchBackend(build_model(ModelConfig())), network_size=NETWORK_SIZE)


def _frames(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return first, np.roll(first, 2, axis=1)


def test_padded_size_rounds_up_to_stride() -> None:
    assert padded_size((320, 240)) == (320, 256)
    assert padded_size((33, 1)) == (2 * NETWORK_STRIDE, NETWORK_STRIDE)


def test_preprocess_resizes_pads_by_replication_and_normalises() -> None:
    frame = np.random.default_rng(1).integers(0, 256, (48, 96, 3), dtype=np.uint8)
    net = preprocess(frame, NETWORK_SIZE)
    assert net.shape == (1, 3, 64, 96) and net.dtype == np.float32
    expected = normalize_images(torch.from_numpy(frame.transpose(2, 0, 1)[None].copy())).numpy()
    np.testing.assert_allclose(net[:, :, :48], expected, rtol=0, atol=1e-6)
    # bottom padding repeats the last image row
    np.testing.assert_array_equal(net[:, :, 48:], np.repeat(net[:, :, 47:48], 16, axis=2))
    # a large frame is shrunk to the network size first
    big = np.random.default_rng(2).integers(0, 256, (301, 517, 3), dtype=np.uint8)
    assert preprocess(big, NETWORK_SIZE).shape == (1, 3, 64, 96)


def test_restore_flow_crops_padding_and_scales_by_size_ratio() -> None:
    w_net, h_net = NETWORK_SIZE
    w_pad, h_pad = padded_size(NETWORK_SIZE)
    flow = np.full((1, 2, h_pad, w_pad), 1000.0, np.float32)  # padding holds garbage
    flow[0, 0, :h_net, :w_net] = 2.0
    flow[0, 1, :h_net, :w_net] = -3.0
    camera = (101, 77)  # (W, H), odd
    out = restore_flow(flow, NETWORK_SIZE, camera)
    assert out.shape == (77, 101, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], 2.0 * 101 / w_net, rtol=1e-5)
    np.testing.assert_allclose(out[..., 1], -3.0 * 77 / h_net, rtol=1e-5)


def test_restore_flow_keeps_spatial_layout() -> None:
    w_pad, h_pad = padded_size(NETWORK_SIZE)
    flow = np.zeros((1, 2, h_pad, w_pad), np.float32)
    flow[0, 0, :, : NETWORK_SIZE[0] // 2] = 1.0  # left half moves right
    out = restore_flow(flow, NETWORK_SIZE, (192, 96))
    assert out[:, :90, 0].min() == pytest.approx(2.0)
    assert out[:, 102:, 0].max() == pytest.approx(0.0)


def test_restore_probability_same_size_is_crop_only() -> None:
    w_pad, h_pad = padded_size(NETWORK_SIZE)
    prob = np.random.default_rng(3).random((1, 1, h_pad, w_pad)).astype(np.float32)
    out = restore_probability(prob, NETWORK_SIZE, NETWORK_SIZE)
    np.testing.assert_array_equal(out, prob[0, 0, :48, :96])
    assert not np.shares_memory(out, prob)


@pytest.mark.parametrize("height,width", [(77, 101), (48, 96), (130, 250)])
def test_outputs_at_camera_resolution(pipeline: PerceptionPipeline, height: int, width: int) -> None:
    first, second = _frames(height, width)
    out = pipeline.infer_pair(first, second)
    assert out.mask.shape == (height, width) and out.mask.dtype == bool
    assert out.mask_probability.shape == (height, width) and out.mask_probability.dtype == np.float32
    assert out.flow.shape == (height, width, 2) and out.flow.dtype == np.float32
    assert out.occlusion.shape == (height, width) and out.occlusion.dtype == bool
    assert out.layers.shape == (height, width) and out.layers.dtype == np.uint8
    assert np.isfinite(out.flow).all()
    assert 0.0 <= out.mask_probability.min() and out.mask_probability.max() <= 1.0
    np.testing.assert_array_equal(out.mask, out.mask_probability > pipeline.mask_threshold)
    # the published mask is the fused rule of runtime.motion_layers (bilinear resizing is linear)
    cues = out.segmentation_probability + out.moving_probability + out.residual_probability
    np.testing.assert_allclose(out.mask_probability, cues / 3.0, atol=1e-5)
    assert 0.0 <= out.residual_probability.min() and out.residual_probability.max() <= 1.0
    areas = np.bincount(out.layers.ravel())
    assert out.layers.max() < 5 and areas[0] == areas.max()  # K <= 5 layers; 0 is the largest
    assert out.latency_ms > 0.0


def test_sources_without_the_residual_cue_skip_it(pipeline: PerceptionPipeline) -> None:
    first, second = _frames(48, 96, seed=2)
    branch_only = PerceptionPipeline(pipeline.backend, network_size=NETWORK_SIZE, mask_source="segmentation")
    out = branch_only.infer_pair(first, second)
    assert out.residual_probability is None
    np.testing.assert_array_equal(out.mask, out.segmentation_probability > branch_only.mask_threshold)
    with pytest.raises(ValueError, match="residual cue"):
        source_masks(out, 0.5)


@pytest.mark.parametrize("mask_source", ["fused", "segmentation"])
def test_mask_memory_filters_only_the_published_mask(pipeline: PerceptionPipeline, mask_source: str) -> None:
    pipe = PerceptionPipeline(pipeline.backend, network_size=NETWORK_SIZE, mask_source=mask_source)
    first, second = _frames(60, 100, seed=5)  # resized to the network size and back
    plain = [pipe.infer_pair(first, second), pipe.infer_pair(second, first)]  # a stream: (newest, previous)
    memory, no_memory = MaskMemory(0.7), MaskMemory(0.0)
    kept = [pipe.infer_pair(first, second, memory), pipe.infer_pair(second, first, memory)]
    unkept = [pipe.infer_pair(first, second, no_memory), pipe.infer_pair(second, first, no_memory)]
    # the first frame of a stream has nothing to carry; weight 0 never carries anything
    np.testing.assert_allclose(kept[0].mask_probability, plain[0].mask_probability, atol=1e-6)
    np.testing.assert_allclose(unkept[1].mask_probability, plain[1].mask_probability, atol=1e-6)
    assert np.abs(kept[1].mask_probability - plain[1].mask_probability).max() > 1e-3
    np.testing.assert_array_equal(kept[1].mask, kept[1].mask_probability > pipe.mask_threshold)
    for cue in ("segmentation_probability", "moving_probability", "flow"):  # the pair's own, unfiltered
        np.testing.assert_allclose(getattr(kept[1], cue), getattr(plain[1], cue), atol=1e-6, err_msg=cue)


def test_a_network_pass_is_finished_with_the_settings_it_started_with(pipeline: PerceptionPipeline) -> None:
    """run_network snapshots the settings: the node's network thread may change them for the next
    pair while the publish thread finishes this one."""
    pipe = PerceptionPipeline(pipeline.backend, network_size=NETWORK_SIZE, mask_threshold=0.1)
    first, second = _frames(48, 96, seed=6)
    expected = pipe.infer_pair(first, second)
    network_pass = pipe.run_network(first, second)
    pipe.mask_threshold, pipe.mask_source, pipe.refine = 1.0, "segmentation", False
    finished = pipe.finish(network_pass)
    assert expected.mask.any()  # threshold 1.0 would have cleared it
    np.testing.assert_array_equal(finished.mask, expected.mask)
    np.testing.assert_array_equal(finished.flow, expected.flow)
    assert finished.residual_probability is not None  # the fused source's cue, not the segmentation source's
    assert not pipe.finish(pipe.run_network(first, second)).mask.any()  # a new pass takes the new settings


def test_results_are_fresh_arrays(pipeline: PerceptionPipeline) -> None:
    first, second = _frames(48, 96, seed=4)  # equal to the network size: no resize copies
    a = pipeline.infer_pair(first, second)
    saved = {name: getattr(a, name).copy() for name in ("mask", "mask_probability", "segmentation_probability", "moving_probability",
                                                "residual_probability", "flow", "occlusion", "layers")}
    for name in saved:
        getattr(a, name)[...] = 1
    b = pipeline.infer_pair(first, second)
    for name, value in saved.items():
        np.testing.assert_allclose(getattr(b, name), value, atol=1e-5, err_msg=name)
        assert not np.shares_memory(getattr(a, name), getattr(b, name))


def test_bad_frames_raise_input_error(pipeline: PerceptionPipeline) -> None:
    first, second = _frames(40, 50)
    bad = {
        "grayscale": (first[..., 0], second),
        "four channels": (np.dstack([first, first[..., :1]]), second),
        "float": (first.astype(np.float32), second),
        "NaN": (np.full(first.shape, np.nan, np.float32), second),
        "size mismatch": (first, second[:-1]),
        "not an array": (first.tolist(), second),
    }
    messages = {}
    for case, (a, b) in bad.items():
        with pytest.raises(InputError) as info:
            pipeline.infer_pair(a, b)
        messages[case] = str(info.value)
    assert "NaN" in messages["NaN"]
    assert "differ in size" in messages["size mismatch"]
    assert "uint8" in messages["float"]
    assert "(H, W, 3)" in messages["grayscale"]


def test_bad_network_size_raises() -> None:
    with pytest.raises(InputError):
        PerceptionPipeline(TorchBackend(build_model(ModelConfig())), network_size=(0, 48))


@pytest.mark.parametrize("fp16,channels_last,tolerance", [
    (False, True, 1e-5),
    pytest.param(True, False, 2e-2, marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 needs CUDA")),
])
def test_torch_backend_options_match_fp32(fp16: bool, channels_last: bool, tolerance: float) -> None:
    device = "cuda" if fp16 else "cpu"
    torch.manual_seed(1)
    model = build_model(ModelConfig())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    image1 = preprocess(_frames(64, 96)[0], (96, 64))
    image2 = preprocess(_frames(64, 96)[1], (96, 64))
    reference = TorchBackend(model).infer(image1, image2)
    other_model = build_model(ModelConfig())
    other_model.load_state_dict(state)
    other = TorchBackend(other_model, device, fp16=fp16, channels_last=channels_last).infer(image1, image2)
    # InstanceNorm over an untrained net's near-constant flow amplifies rounding: layers get 1e-4
    for key, atol in (("mask_prob", tolerance), ("flow", tolerance), ("occlusion_prob", tolerance),
                      ("layer_prob", max(tolerance, 1e-4))):
        assert other[key].dtype == np.float32 and other[key].shape == reference[key].shape
        np.testing.assert_allclose(other[key], reference[key], atol=atol, err_msg=key)


class RecordingBackend:
    """The real backend, recording every flow its motion-layer head is given."""

    def __init__(self, backend: TorchBackend) -> None:
        self.backend, self.name, self.device, self.input_size = backend, backend.name, backend.device, None
        self.head_flows: list[np.ndarray] = []

    def infer(self, image1: np.ndarray, image2: np.ndarray, layers: bool = True) -> dict[str, np.ndarray]:
        return self.backend.infer(image1, image2, layers)

    def motion_layers(self, flow: np.ndarray) -> np.ndarray:
        self.head_flows.append(flow.copy())
        return self.backend.motion_layers(flow)


def test_layers_come_from_the_refined_flow(pipeline: PerceptionPipeline) -> None:
    """With the refinement on, the layers are the graph's layer head run on the refined flow (the
    published one); with refined_layers off, the graph's own layers over its raw flow."""
    recording = RecordingBackend(pipeline.backend)
    first, second = _frames(48, 96, seed=7)
    refined = PerceptionPipeline(recording, NETWORK_SIZE).infer_pair(first, second)
    (head_flow,) = recording.head_flows
    np.testing.assert_allclose(restore_flow(head_flow, NETWORK_SIZE, (96, 48)), refined.flow, atol=1e-6)
    ids, _ = split_layers(pipeline.backend.motion_layers(head_flow), 48, 96)
    np.testing.assert_array_equal(refined.layers, ids)
    assert "layer_prob" not in PerceptionPipeline(recording, NETWORK_SIZE).run_network(first, second).raw

    graph = PerceptionPipeline(recording, NETWORK_SIZE, refined_layers=False)
    from_graph = graph.infer_pair(first, second)
    assert len(recording.head_flows) == 1  # the head did not run again
    np.testing.assert_array_equal(from_graph.flow, refined.flow)
    raw = graph.run_network(first, second).raw
    np.testing.assert_array_equal(from_graph.layers, split_layers(raw["layer_prob"], 48, 96)[0])
    assert not np.array_equal(from_graph.layers, refined.layers), "the refinement should move some layer here"


def test_max_layers_merges_the_smallest_moving_layers_into_background(pipeline: PerceptionPipeline) -> None:
    first, second = _frames(48, 96, seed=5)
    every = pipeline.infer_pair(first, second).layers
    pipeline.max_layers = 2
    try:
        two = pipeline.infer_pair(first, second).layers
    finally:
        pipeline.max_layers = None
    assert every.max() >= 2, "the untrained motion net should give more than two layers here"
    np.testing.assert_array_equal(two, np.where(every == 1, 1, 0))
    with pytest.raises(InputError, match="max_layers must be >= 2"):
        PerceptionPipeline(pipeline.backend, NETWORK_SIZE, max_layers=1)
