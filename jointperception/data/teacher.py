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

import numpy as np

from jointperception.classical.forward_backward import forward_backward_consistent
from jointperception.classical.motion_segmentation import classical_motion_segmentation
from jointperception.classical.opencv_flow import dis_flow


@dataclass(frozen=True)
class TeacherTargets:
    flow_forward: np.ndarray  # (H, W, 2) float32, first -> second
    flow_backward: np.ndarray  # (H, W, 2) float32, second -> first
    valid_forward: np.ndarray  # (H, W) bool: forward flow passes the forward-backward check
    valid_backward: np.ndarray  # (H, W) bool: backward flow passes it
    mask_first: np.ndarray  # (H, W) bool: classical moving-object mask of the first frame
    mask_second: np.ndarray  # (H, W) bool: of the second frame


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
