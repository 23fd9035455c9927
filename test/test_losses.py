"""Supervised losses: known values, weighting and branch selection."""
import math

import pytest
import torch
import torch.nn.functional as F

from jointperception.losses.supervised import (
    PYRAMID_WEIGHTS,
    balanced_cross_entropy,
    joint_loss,
    multiscale_epe,
    occlusion_bce,
    pyramid_weights,
)


def _mask(fg_fraction_rows: int, height=10, width=10):
    mask = torch.zeros(1, 1, height, width)
    mask[..., :fg_fraction_rows, :] = 1
    return mask


def test_balanced_ce_weights_rare_foreground_more():
    mask = _mask(1)  # 10 % foreground
    logits_missing_fg = torch.where(mask > 0, -2.0, -2.0)  # everything predicted background
    logits_missing_bg = torch.where(mask > 0, 2.0, 2.0)  # everything predicted foreground
    loss_missed_fg, _ = balanced_cross_entropy(logits_missing_fg, mask)
    loss_missed_bg, _ = balanced_cross_entropy(logits_missing_bg, mask)
    # unweighted BCE would make missing 90 % background far worse; balancing equalises them
    assert math.isclose(loss_missed_fg.item(), loss_missed_bg.item(), rel_tol=1e-5)
    unweighted_fg = F.binary_cross_entropy_with_logits(logits_missing_fg, mask)
    unweighted_bg = F.binary_cross_entropy_with_logits(logits_missing_bg, mask)
    assert unweighted_bg > 5 * unweighted_fg


def test_balanced_ce_is_small_for_confident_correct_logits():
    mask = _mask(4)
    loss, metrics = balanced_cross_entropy((mask * 2 - 1) * 20, mask)
    assert loss.item() < 1e-6
    assert metrics["iou"] == 1.0


def test_multiscale_epe_known_offset():
    gt = torch.zeros(2, 2, 32, 32)
    pyramid = [torch.full((2, 2, s, s), 0.0) for s in (4, 8, 32)]
    pyramid[-1][:, 0] = 3.0
    pyramid[-1][:, 1] = 4.0
    loss, metrics = multiscale_epe(pyramid, gt, weights=(1.0, 1.0, 0.5))
    assert math.isclose(loss.item(), 2.5, rel_tol=1e-6)
    assert math.isclose(metrics["epe"], 5.0, rel_tol=1e-6)


def test_multiscale_epe_is_zero_for_downsampled_gt():
    gt = torch.randn(1, 2, 32, 32)
    pyramid = [F.adaptive_avg_pool2d(gt, s) for s in (4, 8, 16)] + [gt]
    loss, _ = multiscale_epe(pyramid, gt, weights=(1, 1, 1, 1))
    assert loss.item() < 1e-6


def test_occlusion_bce_and_joint_loss_branches():
    occ = _mask(5)
    loss, metrics = occlusion_bce((occ * 2 - 1) * 10, occ)
    assert loss.item() < 1e-3 and metrics["occ_acc"] == 1.0
    outputs = {
        "mask_logits": torch.zeros(1, 1, 10, 10),
        "flow": torch.zeros(1, 2, 10, 10),
        "occlusion_logits": torch.zeros(1, 1, 10, 10),
    }
    batch = {"mask": _mask(3), "flow": torch.ones(1, 2, 10, 10), "occlusion": occ}
    seg_only, seg_metrics = joint_loss(outputs, batch, 1.0, 1.0, branches=("segmentation",))
    flow_only, flow_metrics = joint_loss(outputs, batch, 1.0, 1.0, branches=("flow",))
    both, _ = joint_loss(outputs, batch, 1.0, 1.0)
    assert "epe" not in seg_metrics and "loss_seg" not in flow_metrics
    assert math.isclose(flow_metrics["epe"], math.sqrt(2), rel_tol=1e-6)
    assert math.isclose(both.item(), seg_only.item() + flow_only.item(), rel_tol=1e-6)


def test_pyramid_weights_follow_the_decoder_levels():
    """The decoder: matching, 1/32 .. 1/2, full."""
    assert pyramid_weights(7) == PYRAMID_WEIGHTS
    assert pyramid_weights(1) == (1.0,)
    for levels in (2, 8):
        with pytest.raises(ValueError, match="pyramid"):
            pyramid_weights(levels)
