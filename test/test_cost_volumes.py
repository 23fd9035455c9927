"""The decoder's warped cost volumes (model.cost_volumes): what each level matches, the exact
start from a network without them, and the export path (ONNX Runtime parity, TensorRT operators)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_helpers import lively_model

from jointperception.config import ModelConfig
from jointperception.export.onnx import read_onnx_model
from jointperception.export.onnx_cache import cached_onnx
from jointperception.eval.parity import MIN_MASK_AGREEMENT, parity_check
from jointperception.export.tensorrt_ops import check_tensorrt_compatibility
from jointperception.models import build_model
from jointperception.models.blocks import backward_warp
from jointperception.models.flow_branch import COST_VOLUME_RADII, local_correlation
from jointperception.models.weights import initial_model, load_model, save_weights

NETWORK_SIZE = (96, 64)


def _pair(seed: int = 0, height: int = 64, width: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, 3, height, width, generator=generator) for _ in range(2))


def test_every_cost_volume_level_widens_its_decoder_input_by_its_window() -> None:
    plain, matched = build_model(ModelConfig()), build_model(ModelConfig(cost_volumes=True))
    for stride, radius in COST_VOLUME_RADII.items():
        grown = matched.flow_decoder.inputs[str(stride)][0].in_channels - plain.flow_decoder.inputs[str(stride)][0].in_channels
        assert grown == (2 * radius + 1) ** 2, stride
    assert matched.flow_decoder.inputs["2"][0].in_channels == plain.flow_decoder.inputs["2"][0].in_channels
    outputs = matched.train()(*_pair())
    assert outputs["flow"].shape == (1, 2, 64, 96)
    assert [tuple(f.shape[-2:]) for f in outputs["flow_pyramid"]] == [(8, 12), (2, 3), (4, 6), (8, 12), (16, 24),
                                                                      (32, 48), (64, 96)]


def test_cost_volume_matches_features_warped_by_the_running_flow() -> None:
    """c_s(p, d) = <m1(p), m2(p + flow(p) / s + d)>: a decoder level's volume equals the cosine
    correlation of image 1's features with image 2's backward-warped by flow / s."""
    model = lively_model(3, ModelConfig(cost_volumes=True))
    image1, image2 = _pair(1)
    with torch.no_grad():
        _, _, matching = model.flow_encoder(image1, image2)
        flow = torch.randn(1, 2, 8, 12) * 10.0
        volume = model.flow_decoder._cost_volume(matching, 8, flow)
        expected = local_correlation(matching[0][8], backward_warp(matching[1][8], flow / 8), COST_VOLUME_RADII[8])
        coarsest = model.flow_decoder._cost_volume(matching, 32, None)
    assert torch.allclose(volume, expected)
    assert coarsest.shape == (1, (2 * COST_VOLUME_RADII[32] + 1) ** 2, 2, 3)
    assert torch.allclose(coarsest, local_correlation(matching[0][32], matching[1][32], COST_VOLUME_RADII[32]))


def test_a_network_without_cost_volumes_starts_the_new_one_exactly(tmp_path: Path) -> None:
    """Every tensor carries over and the widened inputs start at zero, so step 0 of training
    computes what the source network computed; the new coarse matching layers are the only fresh ones."""
    source = lively_model(5)
    path = save_weights(tmp_path / "plain.safetensors", source, ModelConfig(), {})
    started = initial_model(str(path), ModelConfig(cost_volumes=True), "train.init_from").eval()
    image1, image2 = _pair(2)
    with torch.no_grad():
        before, after = source(image1, image2), started(image1, image2)
    for key in ("flow", "mask_logits", "occlusion_logits"):
        assert torch.equal(before[key], after[key]), key
    decoder_input = started.flow_decoder.inputs["8"][0].weight
    assert decoder_input[:, -(2 * COST_VOLUME_RADII[8] + 1) ** 2:].abs().max() == 0
    with pytest.raises(Exception, match="train.init_from"):
        initial_model(str(path), ModelConfig(width="small", cost_volumes=True), "train.init_from")


@pytest.mark.slow
def test_cost_volume_network_exports_with_parity_and_tensorrt_operators(tmp_path: Path) -> None:
    cfg = ModelConfig(cost_volumes=True)
    weights = save_weights(tmp_path / "matched.safetensors", lively_model(1, cfg), cfg, {"note": "untrained"})
    static = cached_onnx(weights, NETWORK_SIZE, cache_dir=tmp_path / "onnx-cache")
    assert json.loads(read_onnx_model(static).metadata["model_config"])["cost_volumes"] is True
    report = parity_check(static, load_model(weights)[0], NETWORK_SIZE, threads=1)
    assert report.failures() == [] and min(report.agreement.values()) >= MIN_MASK_AGREEMENT
    assert check_tensorrt_compatibility(static) == []
