"""Frames on the device: upload, resize to the network size, replicate-pad, normalise, and the
way back to camera resolution; torch counterparts of ``runtime.pipeline``'s OpenCV calls.

Shrinking uses torch's area mode (adaptive average pooling) where OpenCV uses INTER_AREA: the
same box average for integer factors, overlapping boxes instead of fractional pixel weights
otherwise; the result is rounded to whole grey levels as OpenCV's uint8 output is (tests: mean
|diff| <= 1.5 levels at a non-integer factor).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from jointperception.models.normalize import NETWORK_STRIDE, normalize_images


def upload(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 on ``device``, values 0..255."""
    tensor = torch.from_numpy(np.ascontiguousarray(frame)).to(device, non_blocking=True)
    return tensor.permute(2, 0, 1)[None].float()


def resize_to_network(image: torch.Tensor, network_size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) 0..255 -> (1, 3, h, w) 0..255 whole levels at the network size (W, H) = (w, h)."""
    width, height = network_size
    if image.shape[-2:] == (height, width):
        return image
    shrinking = width <= image.shape[-1] and height <= image.shape[-2]
    if shrinking:
        resized = F.interpolate(image, size=(height, width), mode="area")
    else:
        resized = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False)
    return resized.round().clamp(0.0, 255.0)


def pad_to_stride(image: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, h_pad, w_pad), replicate-padded bottom / right to NETWORK_STRIDE multiples."""
    height, width = image.shape[-2:]
    pad_h, pad_w = -height % NETWORK_STRIDE, -width % NETWORK_STRIDE
    return F.pad(image, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else image


def normalise(image: torch.Tensor) -> torch.Tensor:
    """(1, 3, h, w) 0..255 -> (1, 3, h_pad, w_pad) float32 network input (``runtime.pipeline.preprocess``)."""
    return normalize_images(pad_to_stride(image))


def shift_image(image: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w), shift (2,) int64 (dx, dy) -> out(x, y) = image(x + dx, y + dy), edges replicated."""
    height, width = image.shape[-2:]
    rows = (torch.arange(height, device=image.device) + shift[1]).clamp(0, height - 1)
    cols = (torch.arange(width, device=image.device) + shift[0]).clamp(0, width - 1)
    return image[..., rows[:, None], cols[None, :]]


def to_camera(planes: torch.Tensor, network_size: tuple[int, int], camera_size: tuple[int, int]) -> torch.Tensor:
    """(1, C, h_pad, w_pad) -> (1, C, H, W): crop the padding, bilinear resize (half-pixel centres,
    as cv2.resize INTER_LINEAR)."""
    width, height = network_size
    cropped = planes[..., :height, :width]
    if (width, height) == tuple(camera_size):
        return cropped
    return F.interpolate(cropped, size=(camera_size[1], camera_size[0]), mode="bilinear", align_corners=False)


def gray(image: torch.Tensor) -> torch.Tensor:
    """(1, 3, h, w) RGB 0..255 -> (h, w) grey levels rounded as cv2.COLOR_RGB2GRAY (BT.601 weights)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1)[0].round()
