"""Motion-layer scores: best-matching layer IoU and foreground J (numpy, shared by trainer and benchmark)."""
from __future__ import annotations

import itertools

import numpy as np

from jointperception.errors import InputError
from jointperception.eval.metrics import jaccard

MAX_MATCHED_LAYERS = 8  # brute force over assignments: at most 8! permutations


def _iou_matrix(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU (P, G) between every predicted and GT layer id present; returns (iou, gt ids)."""
    pred_ids, gt_ids = np.unique(pred), np.unique(gt)
    pred_masks = pred.reshape(1, -1) == pred_ids[:, None]
    gt_masks = gt.reshape(1, -1) == gt_ids[:, None]
    inter = pred_masks.astype(np.float64) @ gt_masks.T.astype(np.float64)
    union = pred_masks.sum(1)[:, None] + gt_masks.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1.0), gt_ids


def matched_layer_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Layer J: mean IoU over the GT layers under the one-to-one matching of predicted to GT
    layers that maximises the total IoU (brute force); unmatched GT layers score 0.

    pred, gt: (H, W) integer layer ids.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise InputError(f"layer maps must be equal (H, W), got {pred.shape} and {gt.shape}")
    iou, gt_ids = _iou_matrix(pred, gt)
    num_pred, num_gt = iou.shape
    if min(num_pred, num_gt) > MAX_MATCHED_LAYERS:
        raise InputError(f"at most {MAX_MATCHED_LAYERS} layers can be matched, got {num_pred} and {num_gt}")
    best = 0.0
    if num_pred >= num_gt:  # assign a distinct predicted layer to every GT layer
        for rows in itertools.permutations(range(num_pred), num_gt):
            best = max(best, float(iou[list(rows), range(num_gt)].sum()))
    else:  # assign a distinct GT layer to every predicted layer
        for cols in itertools.permutations(range(num_gt), num_pred):
            best = max(best, float(iou[range(num_pred), list(cols)].sum()))
    return best / len(gt_ids)


def foreground_j(pred_layers: np.ndarray, gt_moving: np.ndarray) -> float:
    """J of "every layer except the largest (id 0)" against the GT moving mask; (H, W) each."""
    return jaccard(np.asarray(pred_layers) > 0, np.asarray(gt_moving).astype(bool))
