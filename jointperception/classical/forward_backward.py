"""Forward-backward consistency of a flow pair (Meister et al., UnFlow), used by both teachers.

Flow: (H, W, 2) float32 px, channel 0 = u (right), 1 = v (down).
"""
from __future__ import annotations

import cv2
import numpy as np

# forward-backward check: |f + b(x + f)|^2 < ALPHA (|f|^2 + |b(x + f)|^2) + BETA (UnFlow's values)
FB_ALPHA = 0.01
FB_BETA = 0.5


def sample_at_flow(field: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """field (H, W, C) float32 read at x + flow (bilinear) -> ((H, W, C) float32, (H, W) bool: the
    target lies inside the frame)."""
    height, width = flow.shape[:2]
    map_x = np.arange(width, dtype=np.float32)[None, :] + flow[..., 0]
    map_y = np.arange(height, dtype=np.float32)[:, None] + flow[..., 1]
    sampled = cv2.remap(field, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    return sampled.reshape(field.shape), inside


def forward_backward_consistent(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W, 2) x 2 float32 -> (H, W) bool: forward flow whose target maps back to it (not
    occluded, not an outlier) and stays inside the frame."""
    backward_at_target, inside = sample_at_flow(backward, forward)
    mismatch = ((forward + backward_at_target) ** 2).sum(axis=2)
    bound = FB_ALPHA * ((forward**2).sum(axis=2) + (backward_at_target**2).sum(axis=2)) + FB_BETA
    return inside & (mismatch < bound)
