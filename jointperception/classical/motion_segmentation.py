"""Classical motion segmentation, the reference the learned segmentation is compared against.

flow -> robust affine dominant motion (IRLS, Tukey biweight, on a subsampled grid) -> residual
magnitude |flow - affine| -> Otsu threshold -> largest connected component.
"""
from __future__ import annotations

import cv2
import numpy as np

from jointperception.classical.motion_model import motion_design, normalised
from jointperception.errors import InputError

FIT_SAMPLES = 4096  # about this many grid sites enter the robust fit
IRLS_ITERATIONS = 10  # at most; the fit stops once no parameter moves by FIT_TOLERANCE
FIT_TOLERANCE = 1e-4  # px: on DAVIS flows reached after 6 iterations on average (was: always 10)
RIDGE = 1e-3  # Tikhonov weight on the 3 affine parameters of each component
TUKEY_C = 4.685  # biweight tuning constant, in units of the robust residual scale
MIN_SCALE = 0.1  # px: floor of the robust scale, so an exactly affine field does not collapse it
OTSU_PERCENTILE = 99.5  # residuals are clipped here before the 8-bit Otsu histogram
MAX_FLOW = 1e6  # px: larger (or non-finite) flow vectors are treated as missing


def _weighted_ridge_lstsq(design_t: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """argmin_theta sum_i w_i |P_i theta - f_i|^2 + RIDGE |theta|^2: P^T (3, N), f (N, 2), w (N,) ->
    (3, 2), by its 3x3 normal equations (P^T W P + RIDGE I) theta = P^T W f."""
    weighted_t = design_t * weights
    return np.linalg.solve(weighted_t @ design_t.T + RIDGE * np.eye(3), weighted_t @ target)


def fit_dominant_affine(flow: np.ndarray, valid: np.ndarray) -> np.ndarray | None:
    """Robust affine fit u, v = [1, x, y] theta of the dominant (background) motion.

    flow: (H, W, 2) float, valid: (H, W) bool (finite sites). Returns theta (3, 2) float64, column
    0 for u and 1 for v, or None when fewer than 3 valid sites. Starts from the median
    translation, then IRLS with Tukey biweights on the residual magnitude (scale = 1.4826 MAD)
    until the parameters settle (FIT_TOLERANCE) or IRLS_ITERATIONS.
    """
    height, width = valid.shape
    step = max(1, int(round(np.sqrt(height * width / FIT_SAMPLES))))
    rows, cols = np.mgrid[step // 2 : height : step, step // 2 : width : step]
    keep = valid[rows, cols]
    rows, cols = rows[keep], cols[keep]
    if rows.size < 3:
        return None
    target = flow[rows, cols].astype(np.float64)
    design_t = np.ascontiguousarray(motion_design(cols, rows, height, width, "affine").T)
    theta = np.zeros((3, 2))
    theta[0] = np.median(target, axis=0)
    for _ in range(IRLS_ITERATIONS):
        error = target - (theta.T @ design_t).T
        residual = np.sqrt(np.einsum("ij,ij->i", error, error))  # |error| per site (np.linalg.norm's sum, in one pass)
        scale = max(1.4826 * float(np.median(residual)), MIN_SCALE)
        weights = np.square(np.maximum(1.0 - np.square(residual * (1.0 / (TUKEY_C * scale))), 0.0))
        if weights.sum() < 3:
            break
        theta, previous = _weighted_ridge_lstsq(design_t, target, weights), theta
        if np.abs(theta - previous).max() < FIT_TOLERANCE:
            break
    return theta


def _otsu_threshold(residual: np.ndarray) -> float:
    """Otsu threshold (px) of residual magnitudes (N,) float, via OpenCV on an 8-bit scaling."""
    top = float(np.percentile(residual, OTSU_PERCENTILE))
    if top <= 0.0:
        return top
    scaled = np.clip(residual / top * 255.0, 0, 255).astype(np.uint8).reshape(-1, 1)
    level, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return level / 255.0 * top


def select_component(mask: np.ndarray, support: np.ndarray | None = None) -> np.ndarray:
    """One 8-connected component of a (H, W) bool mask, as (H, W) bool (none: all False): without
    ``support`` the largest (ties: the first found); with ``support`` (H, W) float (NaN counts as 0)
    the one with the largest summed support (ties: the larger, then the last found)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if support is None:
        return labels == 1 + int(np.argmax(areas))
    sums = np.bincount(labels.ravel(), weights=np.nan_to_num(support, nan=0.0).ravel(), minlength=count)[1:]
    return labels == 1 + int(np.lexsort((areas, sums))[-1])


def affine_field(theta: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """f_theta(x, y) = theta_0 + theta_1 x + theta_2 y on the (height, width) grid (x, y as
    ``motion_design``): theta (3, 2) -> (u, v), each (height, width) float32."""
    x = normalised(np.arange(width), width).astype(np.float32)
    y = normalised(np.arange(height), height).astype(np.float32)
    theta = theta.astype(np.float32)
    u = theta[0, 0] + x[None, :] * theta[1, 0] + y[:, None] * theta[2, 0]  # broadcast (1, W) + (H, 1)
    v = theta[0, 1] + x[None, :] * theta[1, 1] + y[:, None] * theta[2, 1]
    return u, v


def dominant_motion(flow: np.ndarray, min_residual: float = 0.5) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Where flow (H, W, 2) float px moves unlike its robust dominant affine motion -> (moving (H, W)
    bool: residual |flow - affine| above both the Otsu threshold and ``min_residual`` px, before any
    component selection; the affine field (u, v), each (H, W) float32, or None when too few finite
    sites to fit one). Non-finite flow (or beyond 1e6 px) is ignored in the fit and never moving."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[0] < 1 or flow.shape[1] < 1:
        raise InputError(f"flow must be (H, W, 2), got shape {flow.shape}")
    height, width = flow.shape[:2]
    with np.errstate(invalid="ignore"):  # per component: faster than a reduction over the last axis
        valid = (np.abs(flow[..., 0]) <= MAX_FLOW) & (np.abs(flow[..., 1]) <= MAX_FLOW)  # False for NaN/Inf too
    flow = flow.astype(np.float32, copy=False) if valid.all() else np.where(valid[..., None], flow, 0.0).astype(np.float32)
    theta = fit_dominant_affine(flow, valid)
    if theta is None:
        return np.zeros((height, width), dtype=bool), None
    u, v = affine_field(theta, height, width)
    residual = cv2.magnitude(flow[..., 0] - u, flow[..., 1] - v)
    residual[~valid] = 0.0
    threshold = max(_otsu_threshold(residual[valid]), min_residual)
    return valid & (residual > threshold), (u, v)


def classical_motion_segmentation(flow: np.ndarray, min_residual: float = 0.5) -> np.ndarray:
    """Pixels moving unlike the dominant affine motion: flow (H, W, 2) float px -> (H, W) bool.

    A pixel is foreground when its residual |flow - affine| exceeds both the Otsu threshold and
    ``min_residual`` px (so a field that is affine up to noise gives an empty mask); only the
    largest connected component is kept. Non-finite flow (or beyond 1e6 px) is ignored in the
    fit and is background.
    """
    return select_component(dominant_motion(flow, min_residual)[0])
