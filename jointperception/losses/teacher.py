"""Distillation of a teacher on unlabelled pairs: flow from the classical teacher (data/teacher.py)
or the self-refinement one (data/refinement_teacher.py), masks from the classical teacher or the
starting model's pipeline (data/pipeline_masks.py). Pure functions returning ``(loss, metrics)``;
not part of Every Frame Counts, off unless its weights are set.

    L_teacher = lambda_tf * sum_s alpha_s mean_{valid} ||f_s - f_teacher,s||_2   (masked multi-scale EPE)
              + lambda_tm * Ls(mask_logits, teacher mask)                     (SegFlow eq. 1)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from jointperception.losses.supervised import PYRAMID_WEIGHTS, balanced_cross_entropy, multiscale_epe, pyramid_weights


def masked_multiscale_epe(
    flow_pyramid: Sequence[torch.Tensor], target: torch.Tensor, valid: torch.Tensor,
    weights: Sequence[float] = PYRAMID_WEIGHTS,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Multi-scale EPE (losses.supervised.multiscale_epe) against ``target`` where ``valid``.

    flow_pyramid: list of (B, 2, h_s, w_s) px at input resolution, coarse to fine; target:
    (B, 2, H, W); valid: (B, 1, H, W) in {0, 1}.
    """
    loss, terms = multiscale_epe(flow_pyramid, target, weights, valid=valid)
    return loss, {"loss_teacher_flow": terms["loss_flow"], "teacher_epe": terms["epe"],
                  "teacher_valid": valid.mean().item()}


def teacher_loss(
    outputs: Mapping[str, torch.Tensor | list[torch.Tensor]],
    flow: torch.Tensor | None, valid: torch.Tensor | None, mask: torch.Tensor | None,
    flow_weight: float, mask_weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """lambda_tf * masked multi-scale EPE + lambda_tm * balanced BCE on the teacher's mask.

    outputs: JointNet training outputs for B pairs; flow (B, 2, H, W), valid and mask (B, 1, H, W)
    (a target may be None when its weight is 0).
    """
    total = outputs["flow"].new_zeros(())
    metrics: dict[str, float] = {}
    if flow_weight > 0:
        pyramid = outputs.get("flow_pyramid") or [outputs["flow"]]
        flow_loss, terms = masked_multiscale_epe(pyramid, flow, valid, pyramid_weights(len(pyramid)))
        total = total + flow_weight * flow_loss
        metrics |= terms
    if mask_weight > 0:
        mask_loss, terms = balanced_cross_entropy(outputs["mask_logits"], mask)
        total = total + mask_weight * mask_loss
        metrics |= {"loss_teacher_mask": terms["loss_seg"], "teacher_iou": terms["iou"]}
    return total, metrics
