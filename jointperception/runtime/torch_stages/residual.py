"""The residual cue on the device: ``runtime.motion_layers.residual_mask`` in torch.

The robust affine fit of the dominant motion (``classical.motion_segmentation.fit_dominant_affine``:
subsampled grid, median start, IRLS with Tukey biweights, ridge-regularised 3x3 normal equations)
runs a fixed IRLS_ITERATIONS (the CPU stops once the parameters move < 1e-4 px; further
iterations change them less than that). The Otsu threshold is computed on the same 8-bit
histogram as OpenCV's; the connected components (8-connected) by label propagation (max-pooling)
until no label changes. Float32 on the device where the CPU fits in float64: the cue is a 0/1
mask, and the tests hold the two to >= 99 % equal pixels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from jointperception.classical.motion_segmentation import (
    FIT_SAMPLES,
    IRLS_ITERATIONS,
    MAX_FLOW,
    MIN_SCALE,
    OTSU_PERCENTILE,
    RIDGE,
    TUKEY_C,
)

MIN_RESIDUAL = 0.5  # px, ``dominant_motion``'s default
PROPAGATION_CHECK = 16  # label-propagation steps between convergence checks (each check syncs)


def _design(xs: torch.Tensor, ys: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``classical.motion_model.motion_design`` (affine) in torch: pixel columns / rows (N,) -> (N, 3) [1, x, y] in [-1, 1]."""
    x = 2.0 * xs / max(width - 1, 1) - 1.0
    y = 2.0 * ys / max(height - 1, 1) - 1.0
    return torch.stack([torch.ones_like(x), x, y], dim=1)


def fit_dominant_affine(flow: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """flow (2, h, w), valid (h, w) bool -> theta (3, 2) float64 of u, v = [1, x, y] theta."""
    height, width = valid.shape
    step = max(1, int(round(math.sqrt(height * width / FIT_SAMPLES))))
    rows = torch.arange(step // 2, height, step, device=flow.device)
    cols = torch.arange(step // 2, width, step, device=flow.device)
    grid_rows, grid_cols = torch.meshgrid(rows, cols, indexing="ij")
    weights_valid = valid[grid_rows, grid_cols].flatten().double()
    target = flow[:, grid_rows, grid_cols].reshape(2, -1).T.double()  # (N, 2)
    design = _design(grid_cols.flatten().double(), grid_rows.flatten().double(), height, width)  # (N, 3)
    masked_median = torch.nanquantile(torch.where(weights_valid[:, None] > 0, target, float("nan")), 0.5, dim=0)
    theta = torch.zeros(3, 2, dtype=torch.float64, device=flow.device)
    theta[0] = torch.nan_to_num(masked_median)
    ridge = RIDGE * torch.eye(3, dtype=torch.float64, device=flow.device)
    for _ in range(IRLS_ITERATIONS):
        residual = (target - design @ theta).norm(dim=1)
        median = torch.nanquantile(torch.where(weights_valid > 0, residual, float("nan")), 0.5)
        scale = torch.clamp(1.4826 * median, min=MIN_SCALE)
        weights = torch.clamp(1.0 - (residual / (TUKEY_C * scale)) ** 2, min=0.0) ** 2 * weights_valid
        weighted_t = design.T * weights
        solved = torch.linalg.solve(weighted_t @ design + ridge, weighted_t @ target)
        theta = torch.where(weights.sum() >= 3, solved, theta)
    return theta


def affine_field(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """theta (3, 2) -> (2, height, width) float32 affine flow on the grid."""
    x = torch.linspace(-1.0, 1.0, width, device=theta.device) if width > 1 else torch.full((1,), -1.0, device=theta.device)
    y = torch.linspace(-1.0, 1.0, height, device=theta.device) if height > 1 else torch.full((1,), -1.0, device=theta.device)
    theta = theta.float()
    return theta[0][:, None, None] + theta[1][:, None, None] * x[None, None, :] + theta[2][:, None, None] * y[None, :, None]


def otsu_threshold(residual: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``_otsu_threshold`` of the valid residuals: clip at the OTSU_PERCENTILE, 8-bit histogram,
    Otsu's between-class variance maximum (OpenCV's rule: the first maximum); 0-d tensor in px."""
    top = torch.nanquantile(torch.where(valid, residual, float("nan")).flatten(), OTSU_PERCENTILE / 100.0)
    levels = torch.clamp(residual / top * 255.0, 0, 255).to(torch.uint8).long()
    histogram = torch.bincount(levels[valid], minlength=256).double()
    probability = histogram / histogram.sum()
    bins = torch.arange(256, dtype=torch.float64, device=residual.device)
    omega = probability.cumsum(0)
    mu = (probability * bins).cumsum(0)
    mu_total = mu[-1]
    between = (mu_total * omega - mu) ** 2 / (omega * (1.0 - omega))
    between = torch.where((omega > 1e-12) & (omega < 1.0 - 1e-12), between, -1.0)
    level = torch.argmax(between).double()
    return torch.where(top > 0, level / 255.0 * top, top).float()


def connected_labels(mask: torch.Tensor) -> torch.Tensor:
    """(h, w) bool -> (h, w) int64 labels of the 8-connected components (a component's label is
    its largest 1-based pixel index), 0 outside the mask."""
    height, width = mask.shape
    index = torch.arange(1, height * width + 1, device=mask.device, dtype=torch.float32).view(1, 1, height, width)
    inside = mask.view(1, 1, height, width)
    labels = torch.where(inside, index, 0.0)
    while True:
        previous = labels
        for _ in range(PROPAGATION_CHECK):
            labels = torch.where(inside, F.max_pool2d(labels, 3, stride=1, padding=1), 0.0)
        if torch.equal(labels, previous):
            return labels[0, 0].long()


def most_supported_component(mask: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """``most_supported_component`` in torch: the component with the largest summed support
    (NaN counts as 0; ties: the larger one), as (h, w) bool; all False for an empty mask."""
    labels = connected_labels(mask).flatten()
    count = mask.numel() + 1
    sums = torch.zeros(count, dtype=torch.float64, device=mask.device).scatter_add_(
        0, labels, torch.nan_to_num(support, nan=0.0).flatten().double())
    areas = torch.bincount(labels, minlength=count)
    sums[0], areas[0] = -math.inf, -1  # the background is no component
    best_sum = sums.max()
    best = torch.argmax(torch.where(sums == best_sum, areas, -1))
    return (labels == best).view(mask.shape) & mask


def residual_mask(flow: torch.Tensor, height: int, width: int, support: torch.Tensor) -> torch.Tensor:
    """flow (1, 2, h_pad, w_pad), support (1, 1, h_pad, w_pad) -> (1, 1, h_pad, w_pad) float32 in
    {0, 1}; ``runtime.motion_layers.residual_mask`` on the device."""
    field = flow[0, :, :height, :width].float()
    valid = (field.abs() <= MAX_FLOW).all(dim=0)  # False for NaN / inf
    field = torch.where(valid[None], field, 0.0)
    theta = fit_dominant_affine(field, valid)
    residual = (field - affine_field(theta, height, width)).norm(dim=0)
    residual = torch.where(valid, residual, 0.0)
    threshold = torch.clamp(otsu_threshold(residual, valid), min=MIN_RESIDUAL)
    moving = valid & (residual > threshold)
    out = torch.zeros((1, 1) + tuple(flow.shape[2:]), dtype=torch.float32, device=flow.device)
    out[0, 0, :height, :width] = most_supported_component(moving, support[0, 0, :height, :width]).float()
    return out
