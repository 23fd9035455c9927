"""Parametric fit, EM loss, MotionLayerNet, classical EM and layer scores, with the bad-input list:
NaN/Inf flow, all-zero flow, more layers than motions, rank-deficient fits (tiny / empty layers)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jointperception.config import MotionConfig
from jointperception.errors import ModelFileError
from jointperception.eval.classical_em import classical_em
from jointperception.eval.layer_metrics import foreground_j, matched_layer_iou
from jointperception.losses.motion_em import (
    design_matrix,
    em_loss,
    fit_layers_l1,
    parametric_flow,
    random_quadratic_flow,
    weighted_fit,
)
from jointperception.models import build_motion_model
from jointperception.models.motionnet import MotionLayerNet, layers_from_logits
from jointperception.models.weights import load_motion_model, save_weights

H, W = 32, 48


def two_motion_flow() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flow (2, H, W) of a quadratic background and an affine square object; layer ids (H, W); θ (2, 2, 6)."""
    theta = torch.tensor([[[1.0, 0.5, -0.2, 0.3, 0.1, -0.1], [-0.5, 0.2, 0.4, 0.0, -0.2, 0.1]],
                          [[-3.0, 1.0, 0.0, 0.0, 0.0, 0.0], [2.0, 0.0, -1.0, 0.0, 0.0, 0.0]]])
    layers = torch.zeros(H, W, dtype=torch.int64)
    layers[8:20, 10:26] = 1
    fields = parametric_flow(design_matrix(H, W), theta[None])[0].reshape(2, 2, H, W)  # (K, 2, H, W)
    flow = torch.where(layers == 1, fields[1], fields[0])
    return flow, layers, theta


def one_hot_logits(layers: torch.Tensor, num_layers: int, scale: float = 20.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(layers, num_layers).permute(2, 0, 1)[None].float() * scale


def test_design_matrix_rows_and_coordinates():
    design = design_matrix(H, W, "quadratic")
    assert design.shape == (H * W, 6)
    assert design[:, 1].min() == -1 and design[:, 1].max() == 1 and design[:, 2].min() == -1
    assert torch.allclose(design[:, 3], design[:, 1] ** 2) and torch.allclose(design[:, 4], design[:, 1] * design[:, 2])
    assert design_matrix(H, W, "affine").shape == (H * W, 3)
    with pytest.raises(ValueError, match="motion model"):
        design_matrix(H, W, "cubic")


def test_weighted_fit_recovers_each_layer_exactly():
    flow, layers, theta = two_motion_flow()
    weights = torch.nn.functional.one_hot(layers.flatten(), 2).T[None].float()  # (1, K, N)
    fitted = weighted_fit(design_matrix(H, W), flow.flatten(1)[None], weights)
    assert torch.allclose(fitted[0, 0], theta[0], atol=1e-3)  # background: the whole frame minus the object
    model_flow = parametric_flow(design_matrix(H, W), fitted)[0].reshape(2, 2, H, W)
    assert (model_flow[1][:, layers == 1] - flow[:, layers == 1]).abs().max() < 1e-3  # object: its own square


def test_l1_fit_ignores_outliers_that_pull_the_l2_fit():
    flow, _, theta = two_motion_flow()
    background = parametric_flow(design_matrix(H, W), theta[None, :1])[0, 0]  # (2, N)
    corrupted = background.clone()
    corrupted[:, ::7] += 25.0  # 14 % gross outliers
    weights = torch.ones(1, 1, H * W)
    l2 = weighted_fit(design_matrix(H, W), corrupted[None], weights)[0, 0]
    l1 = fit_layers_l1(design_matrix(H, W), corrupted[None], weights, iterations=10)[0, 0]
    assert (l1 - theta[0]).abs().max() < 0.1 * (l2 - theta[0]).abs().max()


def test_rank_deficient_fits_stay_finite():
    design = design_matrix(H, W)
    flow = torch.randn(1, 2, H * W)
    tiny = torch.zeros(1, 3, H * W)
    tiny[0, 0, 5] = 1.0  # one-pixel layer: 12 unknowns, 2 equations
    tiny[0, 1] = 1.0  # full layer; layer 2 stays empty
    theta = fit_layers_l1(design, flow, tiny)
    assert torch.isfinite(theta).all()
    assert theta[0, 2].abs().max() == 0  # empty layer -> θ = 0 (ridge only)
    single_row = weighted_fit(design_matrix(1, W), torch.randn(1, 2, W), torch.ones(1, 1, W))  # y, y², xy = 0
    assert torch.isfinite(single_row).all()


def test_em_loss_prefers_true_layers_and_detaches_theta():
    flow, layers, _ = two_motion_flow()
    right = one_hot_logits(layers, 3).requires_grad_()
    wrong = one_hot_logits(torch.zeros_like(layers), 3)
    loss_right, metrics = em_loss(right, flow[None])
    loss_wrong, _ = em_loss(wrong, flow[None])
    assert metrics["residual"] < 0.01 < float(loss_wrong)
    assert float(loss_right.detach()) < float(loss_wrong)
    loss_right.backward()
    assert right.grad is not None and torch.isfinite(right.grad).all()


def test_em_loss_is_invariant_to_global_quadratic_flow():
    flow, layers, _ = two_motion_flow()
    logits = one_hot_logits(layers, 2, scale=2.0)  # soft assignments
    extra = random_quadratic_flow(1, H, W, torch.Generator().manual_seed(3), scale=4.0)
    base, _ = em_loss(logits, flow[None], irls_iterations=0)
    shifted, _ = em_loss(logits, flow[None] + extra, irls_iterations=0)
    assert extra.abs().max() > 1.0
    assert math.isclose(float(base), float(shifted), rel_tol=1e-3, abs_tol=1e-4)


def test_layer_mass_term_prefers_merging_a_motion_split_over_two_layers():
    flow, layers, _ = two_motion_flow()
    merged = one_hot_logits(layers, 3)
    split = layers.clone()
    split[(layers == 0) & (torch.arange(W) < W // 2)] = 2  # background cut into two layers with one motion
    split = one_hot_logits(split, 3)
    plain = [float(em_loss(logits, flow[None], entropy_weight=0.0)[0]) for logits in (merged, split)]
    gamma = [float(em_loss(logits, flow[None], entropy_weight=0.0, mass_weight=0.05)[0]) for logits in (merged, split)]
    assert math.isclose(plain[0], plain[1], abs_tol=1e-3)  # the paper's data term cannot tell them apart
    assert gamma[0] + 0.01 < gamma[1]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_flow_is_sanitised_everywhere(bad):
    flow, layers, _ = two_motion_flow()
    flow[:, :4, :4] = bad
    flow[0, 20, 30] = bad
    logits = MotionLayerNet(3)(flow[None])
    assert torch.isfinite(logits).all()
    loss, metrics = em_loss(logits, flow[None])
    loss.backward()
    assert math.isfinite(metrics["loss"]) and metrics["residual"] < 10.0
    result = classical_em(flow, num_layers=3)
    assert torch.isfinite(result.theta).all() and torch.isfinite(result.probabilities).all()
    assert foreground_j(result.layers.numpy(), layers.numpy() > 0) > 0.9


def test_all_zero_flow():
    zero = torch.zeros(2, H, W)
    logits = MotionLayerNet(4)(zero[None])
    assert torch.isfinite(logits).all() and layers_from_logits(logits).shape == (1, H, W)
    loss, metrics = em_loss(logits, zero[None])
    assert math.isfinite(float(loss)) and metrics["residual"] == 0.0
    result = classical_em(zero, num_layers=4)
    assert (result.layers == 0).all()  # one motion: everything is background


def test_more_layers_than_motions():
    flow, layers, _ = two_motion_flow()
    result = classical_em(flow, num_layers=5)
    assert matched_layer_iou(result.layers.numpy(), layers.numpy()) > 0.9
    assert foreground_j(result.layers.numpy(), layers.numpy() > 0) > 0.95
    loss, _ = em_loss(one_hot_logits(layers, 5), flow[None])  # layers 2..4 empty
    assert math.isfinite(float(loss))


def test_classical_em_segments_two_motions_with_background_as_zero():
    flow, layers, _ = two_motion_flow()
    result = classical_em(flow, num_layers=2)
    assert torch.equal(result.layers, layers)  # largest layer (the background) is 0
    assert 1 <= result.iterations <= 50


def test_motion_layer_net_shapes_and_sizes():
    net = build_motion_model(MotionConfig(num_layers=5, levels=3, base_width=8))
    assert net.stride == 16
    for height, width in ((64, 80), (128, 160)):
        assert net(torch.randn(2, 2, height, width)).shape == (2, 5, height, width)
    with pytest.raises(ValueError, match="num_layers"):
        MotionLayerNet(6)


def test_layers_from_logits_puts_largest_first():
    labels = torch.tensor([[[2, 2, 2, 2], [1, 1, 0, 3]]])
    logits = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    assert layers_from_logits(logits).tolist() == [[[0, 0, 0, 0], [1, 1, 2, 3]]]


def test_matched_layer_iou_is_permutation_invariant_and_counts_missed_layers():
    gt = np.array([[0, 0, 1, 1], [0, 0, 2, 2]])
    assert matched_layer_iou(gt, gt) == 1.0
    assert matched_layer_iou((gt + 1) % 3, gt) == 1.0
    merged = np.where(gt == 2, 1, gt)  # layers 1 and 2 merged: IoU 0.5 for one, 0 for the other
    assert math.isclose(matched_layer_iou(merged, gt), (1.0 + 0.5) / 3)


def test_motion_model_file_round_trip(tmp_path):
    cfg = MotionConfig(num_layers=3, base_width=8)
    net = build_motion_model(cfg)
    path = save_weights(tmp_path / "m.safetensors", net, cfg, {"note": "test"})
    loaded, loaded_cfg, meta = load_motion_model(path)
    flow = torch.randn(1, 2, 32, 48)
    assert loaded_cfg == cfg and meta == {"note": "test"}
    assert torch.equal(loaded(flow), net.eval()(flow))
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="bad.safetensors"):
        load_motion_model(tmp_path / "bad.safetensors")
