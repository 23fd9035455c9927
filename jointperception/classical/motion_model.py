"""The parametric motion models of the EM loss, classical EM and the dominant-motion fit: one design matrix.

Site i at normalised coordinates (x, y) in [-1, 1] (a side of one pixel maps to 0); design vector
P(i) = [1, x, y] (affine) or [1, x, y, x², xy, y²] (quadratic), one per flow component, so the
parametric flow is f_θ(i) = (P(i)·θ^u, P(i)·θ^v) (docs/design.md, equations: EM).
"""
from __future__ import annotations

import numpy as np

MOTION_MODELS = {"affine": 3, "quadratic": 6}  # design vector length per flow component


def normalised(coords: np.ndarray, size: int) -> np.ndarray:
    """Pixel columns or rows (N,) of a side of ``size`` pixels -> (N,) float64 in [-1, 1]; 0 when size is 1."""
    if size <= 1:
        return np.zeros(np.shape(coords), dtype=np.float64)
    return 2.0 * np.asarray(coords, dtype=np.float64) / (size - 1) - 1.0


def motion_design(xs: np.ndarray, ys: np.ndarray, height: int, width: int, model: str = "affine") -> np.ndarray:
    """P: pixel columns ``xs`` and rows ``ys`` (N,) of a (height, width) grid -> (N, D) float64 rows P(i),
    D = 3 (affine) or 6 (quadratic)."""
    if model not in MOTION_MODELS:
        raise ValueError(f"motion model must be one of {', '.join(MOTION_MODELS)}, got {model!r}")
    x, y = normalised(xs, width), normalised(ys, height)
    columns = [np.ones_like(x), x, y]
    if model == "quadratic":
        columns += [x * x, x * y, y * y]
    return np.stack(columns, axis=1)
