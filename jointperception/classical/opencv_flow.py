"""OpenCV optical-flow peers (DIS, Farneback) and the classical segmentation reference built on DIS.

Images: (H, W, 3) uint8 RGB or (H, W) uint8 grayscale. Flow: (H, W, 2) float32, pixels, image1 ->
image2 (channel 0 = u to the right, 1 = v down).
"""
from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from jointperception.classical.motion_segmentation import classical_motion_segmentation
from jointperception.errors import InputError

__all__ = [
    "DIS_PRESETS",
    "classical_motion_segmentation",
    "classical_reference",
    "dis_flow",
    "farneback_flow",
]

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# Farneback parameters: a 5-level pyramid at scale 0.5 reaches motions of several tens of px;
# 15 px Gaussian-weighted windows and polynomial expansion n=7, sigma=1.5 (the OpenCV docs'
# recommendation for n=7) trade detail for robustness on textureless regions.
FARNEBACK_PARAMS = {
    "pyr_scale": 0.5,
    "levels": 5,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 7,
    "poly_sigma": 1.5,
    "flags": cv2.OPTFLOW_FARNEBACK_GAUSSIAN,
}


def _gray_pair(img1: np.ndarray, img2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two frames -> two (H, W) uint8 grayscale images; InputError on shape/dtype mismatch."""
    grays = []
    for name, img in (("img1", img1), ("img2", img2)):
        img = np.asarray(img)
        if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
            raise InputError(f"{name} must be (H, W, 3) or (H, W) uint8, got {img.shape} {img.dtype}")
        grays.append(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else np.ascontiguousarray(img))
    if grays[0].shape != grays[1].shape:
        raise InputError(f"frames differ in size: {grays[0].shape} vs {grays[1].shape}")
    return grays[0], grays[1]


@cache
def _dis(preset: str) -> cv2.DISOpticalFlow:
    """One DIS object per preset, created on first use. Not thread-safe: callers in several
    threads must not share it (OpenCV keeps per-call buffers inside the object)."""
    return cv2.DISOpticalFlow_create(DIS_PRESETS[preset])


def dis_flow(img1: np.ndarray, img2: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Dense Inverse Search flow (Kroeger et al. 2016) on grayscale -> (H, W, 2) float32 px.

    preset: "ultrafast" | "fast" | "medium". The DIS object is cached per preset (not thread-safe).
    """
    if preset not in DIS_PRESETS:
        raise InputError(f"unknown DIS preset {preset!r}; choose one of {sorted(DIS_PRESETS)}")
    gray1, gray2 = _gray_pair(img1, img2)
    flow = _dis(preset).calc(gray1, gray2, None)
    return np.asarray(flow, dtype=np.float32)


def farneback_flow(img1: np.ndarray, img2: np.ndarray) -> np.ndarray:
    """Farneback polynomial-expansion flow with ``FARNEBACK_PARAMS`` -> (H, W, 2) float32 px."""
    gray1, gray2 = _gray_pair(img1, img2)
    flow = cv2.calcOpticalFlowFarneback(gray1, gray2, None, **FARNEBACK_PARAMS)
    return np.asarray(flow, dtype=np.float32)


def classical_reference(
    img1: np.ndarray, img2: np.ndarray, preset: str = "medium"
) -> tuple[np.ndarray, np.ndarray]:
    """DIS flow then ``classical_motion_segmentation`` -> (mask (H, W) bool of img1, flow (H, W, 2) f32)."""
    flow = dis_flow(img1, img2, preset)
    return classical_motion_segmentation(flow), flow
