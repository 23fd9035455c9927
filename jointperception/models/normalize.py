"""Image normalisation shared by training, every runtime backend and evaluation: x -> (x / 255 - mean) / std.

``normalize_images`` for torch batches (training, evaluation), ``normalize_frame`` for one numpy
frame (the runtime pipeline's pre-processing); the same arithmetic.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

NETWORK_STRIDE = 32  # network inputs must have H and W divisible by this
IMAGE_MEAN = 0.45  # mean of x / 255 over natural images, all channels
IMAGE_STD = 0.225  # standard deviation of x / 255


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 or float RGB in [0, 255] -> float32 (B, 3, H, W), zero-mean unit-ish std."""
    return (images.float() / 255.0 - IMAGE_MEAN) / IMAGE_STD


def normalize_frame(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32: ``normalize_images``' arithmetic in one OpenCV call."""
    # (x / 255 - mean) / std == (x - 255 mean) * 1 / (255 std), per channel, NCHW float32
    return cv2.dnn.blobFromImage(frame, 1.0 / (255.0 * IMAGE_STD), mean=(255.0 * IMAGE_MEAN,) * 3)
