"""Evaluation metrics: optical flow errors (EPE, KITTI Fl) and DAVIS region/boundary measures.

Pure numpy (plus OpenCV for the boundary dilation); shared by trainer, CLI and replay.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from jointperception.errors import InputError

GT_MAX_MAGNITUDE = 1e9  # ground-truth vectors beyond this (e.g. Middlebury's 1e10 "unknown") are invalid
FL_ABS_THRESHOLD = 3.0  # KITTI outlier: EPE > 3 px ...
FL_REL_THRESHOLD = 0.05  # ... and EPE > 5 % of the ground-truth magnitude
FLOW_METRICS = ("epe_all", "epe_noc", "epe_occ", "fl_all")
FLOW_COUNTS = {"epe_all": "n_all", "epe_noc": "n_noc", "epe_occ": "n_occ", "fl_all": "n_all"}


def _check_mask(name: str, mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise InputError(f"{name} has shape {mask.shape}, expected {shape}")
    return mask.astype(bool)


def flow_errors(
    pred: np.ndarray,
    gt: np.ndarray,
    occlusion: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> dict[str, float]:
    """Endpoint errors and the KITTI outlier rate of one flow field.

    pred, gt: (H, W, 2) float, pixels. occlusion, valid: (H, W) bool or None (None = no pixel
    occluded / every pixel valid). Ground-truth pixels that are non-finite or longer than 1e9 px
    are invalid. Non-finite *predictions* are scored as zero flow (so their EPE is |gt|) and are
    always counted as Fl outliers: results stay finite and such pixels are never rewarded.
    Returns epe_all (valid), epe_noc (valid & ~occlusion), epe_occ (valid & occlusion), fl_all
    (fraction, not percent, of valid pixels with EPE > 3 px and EPE > 5 % of |gt|), and pixel
    counts n_all, n_noc, n_occ, n_nonfinite (float). A mean over zero pixels is NaN.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if gt.ndim != 3 or gt.shape[2] != 2 or pred.shape != gt.shape:
        raise InputError(f"flow shapes must be equal (H, W, 2), got pred {pred.shape} and gt {gt.shape}")
    shape = gt.shape[:2]
    occlusion = _check_mask("occlusion", occlusion, shape)
    valid = _check_mask("valid", valid, shape)

    with np.errstate(over="ignore", invalid="ignore"):
        gt_mag = np.sqrt((gt**2).sum(axis=2))
    valid_all = np.isfinite(gt_mag) & (gt_mag <= GT_MAX_MAGNITUDE)
    if valid is not None:
        valid_all &= valid
    pred_finite = np.isfinite(pred).all(axis=2)
    pred = np.where(pred_finite[..., None], pred, 0.0)
    gt = np.where(valid_all[..., None], gt, 0.0)
    gt_mag = np.where(valid_all, gt_mag, 0.0)

    epe = np.sqrt(((pred - gt) ** 2).sum(axis=2))
    outlier = ((epe > FL_ABS_THRESHOLD) & (epe > FL_REL_THRESHOLD * gt_mag)) | ~pred_finite
    occluded = occlusion if occlusion is not None else np.zeros(shape, dtype=bool)
    regions = {"all": valid_all, "noc": valid_all & ~occluded, "occ": valid_all & occluded}

    def mean_over(values: np.ndarray, region: np.ndarray) -> float:
        count = int(region.sum())
        return float(values[region].mean()) if count else math.nan

    result = {f"epe_{name}": mean_over(epe, region) for name, region in regions.items()}
    result["fl_all"] = mean_over(outlier.astype(np.float64), valid_all)
    result.update({f"n_{name}": float(region.sum()) for name, region in regions.items()})
    result["n_nonfinite"] = float((~pred_finite & valid_all).sum())
    return result


def aggregate_flow_errors(per_pair: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Combine ``flow_errors`` results of several pairs.

    Returns, per metric m in epe_all/epe_noc/epe_occ/fl_all: ``m`` = mean over the pairs that have
    pixels in that region (the usual "average EPE" of benchmarks), ``m_px`` = pixel-weighted mean;
    summed pixel counts; and ``num_pairs``. NaN when no pair has pixels in the region.
    """
    result: dict[str, float] = {"num_pairs": float(len(per_pair))}
    for metric in FLOW_METRICS:
        count_key = FLOW_COUNTS[metric]
        pairs = [(d[metric], d[count_key]) for d in per_pair if d[count_key] > 0]
        values = np.array([v for v, _ in pairs], dtype=np.float64)
        weights = np.array([n for _, n in pairs], dtype=np.float64)
        result[metric] = float(values.mean()) if pairs else math.nan
        result[f"{metric}_px"] = float((values * weights).sum() / weights.sum()) if pairs else math.nan
    for count_key in ("n_all", "n_noc", "n_occ", "n_nonfinite"):
        result[count_key] = float(sum(d.get(count_key, 0.0) for d in per_pair))
    return result


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise InputError(f"masks must be equal (H, W), got {pred.shape} and {gt.shape}")
    return pred, gt


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J = |pred & gt| / |pred | gt|; pred, gt: (H, W) bool; 1.0 if both empty."""
    pred, gt = _check_pair(pred, gt)
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else 1.0


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """1-px boundary of a mask, as the DAVIS toolkit's ``seg2bmap``: (H, W) bool -> (H, W) bool.

    A pixel is on the boundary when it differs from its east, south or south-east neighbour.
    """
    seg = np.asarray(mask).astype(bool)
    east, south, south_east = (np.zeros_like(seg) for _ in range(3))
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def _disk(radius: int) -> np.ndarray:
    """skimage.morphology.disk(radius) as uint8: pixels with x^2 + y^2 <= radius^2."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return ((x**2 + y**2) <= radius**2).astype(np.uint8)


def boundary_f_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """DAVIS contour accuracy F = 2PR / (P + R); pred, gt: (H, W) bool.

    Boundary pixels match within ``ceil(bound_th * image diagonal)`` px (or ``bound_th`` px when
    >= 1). Both boundaries empty -> 1; exactly one empty -> 0 (the official conventions).
    """
    pred, gt = _check_pair(pred, gt)
    radius = int(bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*pred.shape)))
    pred_b, gt_b = seg2bmap(pred), seg2bmap(gt)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 or n_gt == 0:
        return 1.0 if n_pred == n_gt else 0.0
    disk = _disk(radius)
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), disk).astype(bool)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), disk).astype(bool)
    precision = (pred_b & gt_dil).sum() / n_pred
    recall = (gt_b & pred_dil).sum() / n_gt
    total = precision + recall
    return float(2 * precision * recall / total) if total > 0 else 0.0


def sequence_statistics(values: Sequence[float], prefix: str = "j") -> dict[str, float]:
    """DAVIS statistics of one sequence's per-frame measure (J or F): values (T,) float.

    ``{prefix}_mean``; ``{prefix}_recall`` = fraction of frames > 0.5; ``{prefix}_decay`` = mean of
    the first minus mean of the last of 4 frame bins (bin edges as the DAVIS toolkit, which lets
    neighbouring bins share their edge frame). NaN frames are ignored. Raises InputError if empty.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or np.isnan(v).all():
        raise InputError("sequence statistics need at least one finite per-frame value")
    edges = (np.round(np.linspace(1, v.size, 5) + 1e-10) - 1).astype(int)
    bins = [v[edges[i] : edges[i + 1] + 1] for i in range(4)]
    return {
        f"{prefix}_mean": float(np.nanmean(v)),
        f"{prefix}_recall": float(np.mean(v[~np.isnan(v)] > 0.5)),
        f"{prefix}_decay": float(_nanmean_or_nan(bins[0]) - _nanmean_or_nan(bins[3])),
    }


def _nanmean_or_nan(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def sequence_j_statistics(j_per_frame: Sequence[float]) -> dict[str, float]:
    """``sequence_statistics`` for the region measure: j_mean, j_recall, j_decay."""
    return sequence_statistics(j_per_frame, "j")


def summarize_sequences(per_sequence: Mapping[str, Sequence[float]], prefix: str = "j") -> dict[str, float]:
    """Dataset figures as DAVIS reports them: per-sequence statistics averaged over sequences.

    per_sequence: sequence name -> per-frame values (the DAVIS protocol drops each sequence's first
    and last frame; that choice is the caller's). Returns {prefix}_mean/_recall/_decay and
    num_sequences. Raises InputError when empty.
    """
    if not per_sequence:
        raise InputError("no sequences to summarize")
    stats = [sequence_statistics(values, prefix) for values in per_sequence.values()]
    summary = {key: _nanmean_or_nan(np.array([s[key] for s in stats])) for key in stats[0]}
    summary["num_sequences"] = float(len(stats))
    return summary
