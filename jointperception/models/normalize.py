"""Image normalisation shared by training, every runtime backend and evaluation."""
from __future__ import annotations

import torch

NETWORK_STRIDE = 32  # network inputs must have H and W divisible by this
IMAGE_MEAN = 0.45  # mean of x / 255 over natural images, all channels
IMAGE_STD = 0.225  # standard deviation of x / 255


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 or float RGB in [0, 255] -> float32 (B, 3, H, W), zero-mean unit-ish std."""
    return (images.float() / 255.0 - IMAGE_MEAN) / IMAGE_STD
