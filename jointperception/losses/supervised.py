"""Supervised SegFlow losses. Each is a pure function returning ``(loss, metrics)``.

    Ls = -(1 - w) sum_fg log p - w sum_bg log(1 - p)            (SegFlow eq. 1)
    Lf = sum_s alpha_s * mean_ij || f_s(i, j) - f_gt,s(i, j) ||_2   (multi-scale EPE, eq. 2)
    L  = Ls + lambda * Lf + mu * BCE(occlusion)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

# weights of the flow pyramid levels: the stride-8 matching flow, then 1/32 ... full resolution
PYRAMID_WEIGHTS = (0.1, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0)
FOREGROUND_RATIO_FLOOR = 0.05  # w is clamped to [floor, 1 - floor] so empty masks still train
VALID_FRACTION = 0.5  # with a validity mask, a coarse pyramid cell counts when this share of it is valid


def pyramid_weights(levels: int) -> tuple[float, ...]:
    """PYRAMID_WEIGHTS for a JointNet pyramid of ``levels``: the matching flow, the decoder levels
    from 1/32 down, full resolution; a lone flow weighs 1."""
    if levels == 1:
        return (1.0,)
    decoder_levels = levels - 2
    if not 1 <= decoder_levels <= len(PYRAMID_WEIGHTS) - 2:
        raise ValueError(f"a JointNet flow pyramid has 3..{len(PYRAMID_WEIGHTS)} levels, got {levels}")
    return (PYRAMID_WEIGHTS[0], *PYRAMID_WEIGHTS[1 : 1 + decoder_levels], PYRAMID_WEIGHTS[-1])


def balanced_cross_entropy(mask_logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Class-balanced BCE (eq. 1) with w = |fg| / (|fg| + |bg|) per image.

    mask_logits: (B, 1, H, W) logits; mask: (B, 1, H, W) in {0, 1}. Normalised by H * W.
    """
    fg_ratio = mask.flatten(1).mean(dim=1).clamp(FOREGROUND_RATIO_FLOOR, 1 - FOREGROUND_RATIO_FLOOR)
    w = fg_ratio.view(-1, 1, 1, 1)
    pixel_weights = torch.where(mask > 0.5, 1.0 - w, w)
    per_pixel = F.binary_cross_entropy_with_logits(mask_logits, mask, reduction="none")
    loss = 2.0 * (pixel_weights * per_pixel).mean()  # x2: a balanced image has weights 0.5/0.5
    with torch.no_grad():
        predicted = mask_logits > 0
        target = mask > 0.5
        union = (predicted | target).flatten(1).sum(1).float()
        intersection = (predicted & target).flatten(1).sum(1).float()
        iou = torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union)).mean()
    return loss, {"loss_seg": loss.item(), "iou": iou.item()}


def endpoint_error(flow: torch.Tensor, flow_gt: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) x 2 -> (B, H, W) per-pixel Euclidean endpoint error."""
    return torch.linalg.vector_norm(flow - flow_gt, dim=1)


def multiscale_epe(
    flow_pyramid: Sequence[torch.Tensor], flow_gt: torch.Tensor, weights: Sequence[float] = PYRAMID_WEIGHTS,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over pyramid levels of the mean EPE against area-downsampled GT.

    flow_pyramid: list of (B, 2, h_s, w_s), pixels at the input resolution, coarse to fine;
    flow_gt: (B, 2, H, W). Flow values need no rescaling (all levels are in input pixels).
    valid: optional (B, 1, H, W) in {0, 1}: the mean runs over valid pixels only; a level's target
    is the valid-weighted average of the cells it covers, and a cell counts when at least
    VALID_FRACTION of it is valid.
    """
    if len(flow_pyramid) != len(weights):
        raise ValueError(f"{len(flow_pyramid)} pyramid levels but {len(weights)} weights")
    loss = flow_gt.new_zeros(())
    for flow, weight in zip(flow_pyramid, weights):
        same_size = flow.shape[-2:] == flow_gt.shape[-2:]
        if valid is None:
            target = flow_gt if same_size else F.adaptive_avg_pool2d(flow_gt, flow.shape[-2:])
            loss = loss + weight * endpoint_error(flow, target).mean()
            continue
        if same_size:
            target, level_valid = flow_gt, valid
        else:
            cover = F.adaptive_avg_pool2d(valid, flow.shape[-2:])
            target = F.adaptive_avg_pool2d(flow_gt * valid, flow.shape[-2:]) / cover.clamp(min=1e-6)
            level_valid = (cover >= VALID_FRACTION).float()
        loss = loss + weight * _valid_mean(endpoint_error(flow, target), level_valid)
    final = endpoint_error(flow_pyramid[-1].detach(), flow_gt)
    final_epe = final.mean() if valid is None else _valid_mean(final, valid)
    return loss, {"loss_flow": loss.item(), "epe": final_epe.item()}


def _valid_mean(error: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of error (B, H, W) over valid (B, 1, H, W) in {0, 1}; 0 when nothing is valid."""
    return (error * valid[:, 0]).sum() / valid.sum().clamp(min=1.0)


def occlusion_bce(occlusion_logits: torch.Tensor, occlusion: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Binary cross-entropy; occlusion_logits, occlusion: (B, 1, H, W), target in {0, 1}."""
    loss = F.binary_cross_entropy_with_logits(occlusion_logits, occlusion)
    accuracy = ((occlusion_logits > 0) == (occlusion > 0.5)).float().mean()
    return loss, {"loss_occ": loss.item(), "occ_acc": accuracy.item()}


def joint_loss(
    outputs: Mapping[str, torch.Tensor | list[torch.Tensor]],
    batch: Mapping[str, torch.Tensor],
    flow_weight: float,
    occlusion_weight: float,
    branches: Sequence[str] = ("segmentation", "flow"),
) -> tuple[torch.Tensor, dict[str, float]]:
    """L = Ls + lambda * Lf + mu * Locc, restricted to the terms of the trained ``branches``.

    outputs: JointNet training outputs; batch: mask (B,1,H,W), flow (B,2,H,W), occlusion (B,1,H,W).
    """
    total = batch["flow"].new_zeros(())
    metrics: dict[str, float] = {}
    if "segmentation" in branches:
        loss, terms = balanced_cross_entropy(outputs["mask_logits"], batch["mask"])
        total = total + loss
        metrics.update(terms)
    if "flow" in branches:
        pyramid = outputs.get("flow_pyramid") or [outputs["flow"]]
        flow_loss, flow_terms = multiscale_epe(pyramid, batch["flow"], pyramid_weights(len(pyramid)))
        occ_loss, occ_terms = occlusion_bce(outputs["occlusion_logits"], batch["occlusion"])
        total = total + flow_weight * flow_loss + occlusion_weight * occ_loss
        metrics.update(flow_terms)
        metrics.update(occ_terms)
    metrics["loss"] = total.item()
    return total, metrics
