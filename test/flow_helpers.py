"""Flow helpers shared by the data tests."""
from __future__ import annotations

import cv2
import numpy as np


def warp_error(frame_here: np.ndarray, frame_there: np.ndarray, flow: np.ndarray, visible: np.ndarray) -> float:
    """frame_here, frame_there (H, W, C), flow (H, W, 2) pixels, visible (H, W) bool -> mean abs error of
    frame_there sampled bilinearly at p + flow(p) against frame_here, over the visible pixels."""
    height, width = flow.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    warped = cv2.remap(frame_there.astype(np.float32), xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    return float(np.abs(warped - frame_here).mean(axis=2)[visible].mean())
