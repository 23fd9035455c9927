"""What the ROS node and ``replay`` share, without ROS: the pair-reset rule and the output images.

Both pair each frame with the previous kept one and run ``infer_pair(newest, previous)``; the
outputs belong to the newest frame and carry its header.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jointperception.runtime.pipeline import PairOutputs
from jointperception.viz import flow_to_color, overlay_mask

RESET_REASONS = ("stamp_backwards", "encoding_change", "size_change", "time_gap")
# output name (topic ~/<name>) -> encoding of its sensor_msgs/Image
OUTPUT_ENCODINGS = {
    "mask": "mono8",
    "flow": "32FC2",
    "occlusion": "mono8",
    "motion_layers": "mono8",
    "flow_color": "rgb8",
    "overlay": "rgb8",
}


@dataclass(frozen=True)
class PairFrame:
    """A converted frame kept for pairing: rgb (H, W, 3) uint8; stamp in nanoseconds; header:
    whatever the caller carries to its outputs (a std_msgs/Header in the node)."""

    header: object
    encoding: str
    rgb: np.ndarray
    stamp_ns: int


def pair_reset_reason(previous: PairFrame | None, current: PairFrame, reset_gap_s: float) -> str | None:
    """Why ``current`` must not be paired with ``previous`` (one of RESET_REASONS), or None."""
    if previous is None:
        return None
    if current.stamp_ns < previous.stamp_ns:
        return "stamp_backwards"  # e.g. a bag that loops
    if current.encoding != previous.encoding:
        return "encoding_change"
    if current.rgb.shape != previous.rgb.shape:
        return "size_change"
    if reset_gap_s > 0 and current.stamp_ns - previous.stamp_ns > reset_gap_s * 1e9:
        return "time_gap"
    return None


def output_image(name: str, rgb: np.ndarray, out: PairOutputs) -> np.ndarray:
    """The array of output ``name`` (a key of OUTPUT_ENCODINGS) for the newest frame ``rgb``
    (H, W, 3) uint8: mask / occlusion (H, W) uint8 0|255, flow (H, W, 2) float32 newest ->
    previous, motion_layers (H, W) uint8 ids, flow_color / overlay (H, W, 3) uint8 RGB."""
    if name == "mask":
        return out.mask.astype(np.uint8) * 255
    if name == "flow":
        return out.flow
    if name == "occlusion":
        return out.occlusion.astype(np.uint8) * 255
    if name == "motion_layers":
        return out.layers
    if name == "flow_color":
        return flow_to_color(out.flow)
    if name == "overlay":
        return overlay_mask(rgb, out.mask)
    raise KeyError(f"unknown output {name!r}; one of {', '.join(OUTPUT_ENCODINGS)}")
