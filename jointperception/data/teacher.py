"""Classical-teacher targets for an unlabelled frame pair (no labels involved).

The teacher is the classical pipeline the learned one is measured against: DIS-medium flow in
both directions, kept where the two agree (forward-backward check, Meister et al., UnFlow), and
the classical motion segmentation (robust dominant affine -> Otsu residual -> largest component)
of each frame. Self-supervised training may distil these beside the Every Frame Counts losses
(``selfsup.teacher_flow_weight`` / ``teacher_mask_weight``).

Frames: (H, W, 3) uint8 RGB. Flow: (H, W, 2) float32 px, channel 0 = u (right), 1 = v (down).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from jointperception.eval.baselines import dis_flow
from jointperception.eval.classical_segmentation import classical_motion_segmentation

# forward-backward check: |f + b(x + f)|^2 < ALPHA (|f|^2 + |b(x + f)|^2) + BETA (UnFlow's values)
FB_ALPHA = 0.01
FB_BETA = 0.5


@dataclass(frozen=True)
class TeacherTargets:
    flow_forward: np.ndarray  # (H, W, 2) float32, first -> second
    flow_backward: np.ndarray  # (H, W, 2) float32, second -> first
    valid_forward: np.ndarray  # (H, W) bool: forward flow passes the forward-backward check
    valid_backward: np.ndarray  # (H, W) bool: backward flow passes it
    mask_first: np.ndarray  # (H, W) bool: classical moving-object mask of the first frame
    mask_second: np.ndarray  # (H, W) bool: of the second frame


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


def teacher_targets(first: np.ndarray, second: np.ndarray) -> TeacherTargets:
    """The classical teacher's flow, validity and masks for the pair (first, second)."""
    forward = dis_flow(first, second)
    backward = dis_flow(second, first)
    return TeacherTargets(
        flow_forward=forward,
        flow_backward=backward,
        valid_forward=forward_backward_consistent(forward, backward),
        valid_backward=forward_backward_consistent(backward, forward),
        mask_first=classical_motion_segmentation(forward),
        mask_second=classical_motion_segmentation(backward),
    )
