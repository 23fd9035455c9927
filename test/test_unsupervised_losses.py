"""Every Frame Counts losses (losses/photometric.py, occlusion.py, consistency.py, unsupervised.py)
on tiny tensors with known answers, and the training-time occlusion heads."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from jointperception.config import ModelConfig
from jointperception.losses.consistency import feature_consistency_loss
from jointperception.losses.occlusion import occlusion_loss, occlusion_target
from jointperception.losses.photometric import error_mask, photometric_loss, smoothness_loss, ssim
from jointperception.losses.unsupervised import EfcWeights, efc_unlabelled_loss, swap_halves
from jointperception.models import build_model
from jointperception.models.blocks import backward_warp
from jointperception.models.efc_occlusion_heads import EfcOcclusionHeads


def smooth_texture(height: int = 32, width: int = 40, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: random noise blurred to a few-pixel correlation length."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, height // 4, width // 4, generator=generator)
    return F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def shifted_pair(shift: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """image1, image2 = image1 moved ``shift`` px right, and the true flow image1 -> image2."""
    image1 = smooth_texture()
    image2 = torch.roll(image1, shifts=shift, dims=-1)
    flow = torch.zeros(1, 2, *image1.shape[-2:])
    flow[:, 0] = shift
    return image1, image2, flow


def test_ssim_is_one_for_identical_images_and_lower_otherwise() -> None:
    image = smooth_texture()
    assert torch.allclose(ssim(image, image), torch.ones_like(image), atol=1e-5)
    assert ssim(image, smooth_texture(seed=1)).mean() < 0.9


def test_photometric_loss_vanishes_for_the_true_flow_only() -> None:
    image1, image2, flow = shifted_pair()
    interior = (slice(None), slice(None), slice(2, -2), slice(2, -4))  # away from the wrapped columns
    true_loss, metrics = photometric_loss(image1[interior], backward_warp(image2, flow)[interior])
    wrong_loss, _ = photometric_loss(image1[interior], backward_warp(image2, torch.zeros_like(flow))[interior])
    assert true_loss.item() < 1e-4 and metrics["loss_pm"] == true_loss.item()
    assert wrong_loss.item() > 100 * max(true_loss.item(), 1e-6)


def test_photometric_weight_ignores_occluded_pixels_and_doubles_error_pixels() -> None:
    image, other = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)
    plain, _ = photometric_loss(image, other)
    occluded, _ = photometric_loss(image, other, occlusion=torch.ones(1, 1, 8, 8))
    doubled, _ = photometric_loss(image, other, occlusion=torch.zeros(1, 1, 8, 8),
                                  segmentation_inconsistency=torch.ones(1, 1, 8, 8))
    assert occluded.item() == 0.0 and plain.item() > 0
    assert abs(doubled.item() - 2 * plain.item()) < 1e-6


def test_error_mask_is_segmentation_inconsistency_outside_occlusion() -> None:
    seg = torch.tensor([1.0, 1.0, 0.0, 0.0])
    occ = torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert error_mask(seg, occ).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_smoothness_is_zero_for_constant_flow_and_lower_across_image_edges() -> None:
    flat = torch.full((1, 3, 16, 16), 0.5)
    constant = torch.full((1, 2, 16, 16), 3.0)
    assert smoothness_loss(constant, flat)[0].item() == 0.0
    step_flow = constant.clone()
    step_flow[..., 8:] = -3.0
    edge_image = flat.clone()
    edge_image[..., 8:] = 1.0  # the flow discontinuity lies on an image edge
    on_flat = smoothness_loss(step_flow, torch.zeros_like(flat))[0].item()
    on_edge = smoothness_loss(step_flow, edge_image)[0].item()
    assert 0 < on_edge < on_flat


def test_occlusion_target_marks_pixels_without_backward_correspondence() -> None:
    # everything moves 2 px right: the 2 rightmost columns of frame i leave the image
    backward_flow = torch.zeros(1, 2, 6, 10)
    backward_flow[:, 0] = -2.0
    target = occlusion_target(backward_flow)[0, 0]
    assert target[:, 8:].eq(1).all() and target[:, :8].eq(0).all()
    # a square (rows 2-3, cols 2-3 of frame i) moves 2 px right over a still background: in frame
    # i+1 it covers cols 4-5, so frame i's background there has no correspondence
    scene = torch.zeros(1, 2, 6, 10)
    scene[:, 0, 2:4, 4:6] = -2.0
    target = occlusion_target(scene)[0, 0]
    expected = torch.zeros(6, 10)
    expected[2:4, 4:6] = 1.0
    assert torch.equal(target, expected)


def test_occlusion_loss_prefers_the_target_and_penalises_occlusion() -> None:
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2] = 1.0
    right, metrics = occlusion_loss(target * 0.9 + 0.05, target)
    wrong, _ = occlusion_loss(0.95 - target * 0.9, target)
    assert right.item() < wrong.item() and metrics["occ_acc"] == 1.0
    # alpha penalty: with an all-occluded target, more occlusion still costs exp(-O) reward
    none = torch.zeros(1, 1, 4, 4)
    assert occlusion_loss(none + 0.5, none, alpha=0.2)[0] > occlusion_loss(none + 0.5, none, alpha=0.0)[0] - 0.2


def test_consistency_is_zero_for_identical_features_and_masked_by_occlusion() -> None:
    features = torch.randn(2, 8, 6, 7)
    zero_flow = torch.zeros(2, 2, 6, 7)
    assert feature_consistency_loss(features, features, zero_flow)[0].item() < 1e-5
    other = torch.randn(2, 8, 6, 7)
    assert feature_consistency_loss(features, other, zero_flow)[0].item() > 0.5
    assert feature_consistency_loss(features, other, zero_flow, torch.ones(2, 1, 6, 7))[0].item() == 0.0


def test_consistency_follows_the_flow() -> None:
    image1, image2, flow = shifted_pair()
    interior = (slice(None), slice(None), slice(None), slice(2, -4))
    aligned = feature_consistency_loss(image1[interior], image2[interior], flow[interior])[0].item()
    still = feature_consistency_loss(image1[interior], image2[interior], torch.zeros_like(flow)[interior])[0].item()
    assert aligned < 0.2 * still


def test_swap_halves_pairs_each_sample_with_its_reverse() -> None:
    assert swap_halves(torch.arange(6)).tolist() == [3, 4, 5, 0, 1, 2]


def test_efc_total_trains_network_and_heads_in_both_directions() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig()).train()
    heads = EfcOcclusionHeads.for_model(model)
    image1, image2 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    images, others = torch.cat([image1, image2]), torch.cat([image2, image1])
    outputs = model(images * 2 - 1, others * 2 - 1)
    plain, plain_terms = efc_unlabelled_loss(outputs, None, images, EfcWeights(use_occlusion=False, use_consistency=False))
    assert set(plain_terms) == {"loss_pm", "loss_sm", "loss_efc"}
    full, terms = efc_unlabelled_loss(outputs, heads(outputs["decoder_features"]), images, EfcWeights())
    assert {"loss_occ", "loss_cons"} <= set(terms) and torch.isfinite(full)
    full.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.parameters())
    assert model.flow_decoder.predictors["2"].conv.weight.grad.abs().sum() > 0


def test_heads_stay_out_of_the_inference_network() -> None:
    model = build_model(ModelConfig())
    heads = EfcOcclusionHeads.for_model(model)
    assert not set(model.state_dict()) & {f"heads.{k}" for k in heads.state_dict()}
    assert "decoder_features" not in model.eval()(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))
