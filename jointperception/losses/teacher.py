"""Distillation of the classical teacher (data/teacher.py) on unlabelled pairs. Pure functions
returning ``(loss, metrics)``; not part of Every Frame Counts, off unless its weights are set.

    L_teacher = lambda_tf * sum_s alpha_s mean_{valid} ||f_s - f_DIS,s||_2   (masked multi-scale EPE)
              + lambda_tm * Ls(mask_logits, classical mask)                  (SegFlow eq. 1)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from jointperception.losses.supervised import PYRAMID_WEIGHTS, balanced_cross_entropy, endpoint_error

VALID_FRACTION = 0.5  # a coarse pyramid cell is supervised when at least this share of it is valid


def masked_multiscale_epe(
    flow_pyramid: Sequence[torch.Tensor], target: torch.Tensor, valid: torch.Tensor,
    weights: Sequence[float] = PYRAMID_WEIGHTS,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Multi-scale EPE against ``target`` where ``valid``.

    flow_pyramid: list of (B, 2, h_s, w_s) px at input resolution, coarse to fine; target:
    (B, 2, H, W); valid: (B, 1, H, W) in {0, 1}. A level's target is the valid-weighted average
    of the cells it covers.
    """
    if len(flow_pyramid) != len(weights):
        raise ValueError(f"{len(flow_pyramid)} pyramid levels but {len(weights)} weights")
    loss = target.new_zeros(())
    for flow, weight in zip(flow_pyramid, weights):
        if flow.shape[-2:] == target.shape[-2:]:
            level_target, level_valid = target, valid
        else:
            cover = F.adaptive_avg_pool2d(valid, flow.shape[-2:])
            level_target = F.adaptive_avg_pool2d(target * valid, flow.shape[-2:]) / cover.clamp(min=1e-6)
            level_valid = (cover >= VALID_FRACTION).float()
        error = endpoint_error(flow, level_target) * level_valid[:, 0]
        loss = loss + weight * error.sum() / level_valid.sum().clamp(min=1.0)
    final = endpoint_error(flow_pyramid[-1].detach(), target) * valid[:, 0]
    final_epe = final.sum() / valid.sum().clamp(min=1.0)
    return loss, {"loss_teacher_flow": loss.item(), "teacher_epe": final_epe.item(),
                  "teacher_valid": valid.mean().item()}


def teacher_loss(
    outputs: Mapping[str, torch.Tensor | list[torch.Tensor]],
    flow: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor,
    flow_weight: float, mask_weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """lambda_tf * masked multi-scale EPE + lambda_tm * balanced BCE on the teacher's mask.

    outputs: JointNet training outputs for B pairs; flow (B, 2, H, W), valid and mask (B, 1, H, W).
    """
    total = flow.new_zeros(())
    metrics: dict[str, float] = {}
    if flow_weight > 0:
        pyramid = outputs.get("flow_pyramid") or [outputs["flow"]]
        weights = PYRAMID_WEIGHTS if len(pyramid) == len(PYRAMID_WEIGHTS) else (1.0,) * len(pyramid)
        flow_loss, terms = masked_multiscale_epe(pyramid, flow, valid, weights)
        total = total + flow_weight * flow_loss
        metrics |= terms
    if mask_weight > 0:
        mask_loss, terms = balanced_cross_entropy(outputs["mask_logits"], mask)
        total = total + mask_weight * mask_loss
        metrics |= {"loss_teacher_mask": terms["loss_seg"], "teacher_iou": terms["iou"]}
    return total, metrics
