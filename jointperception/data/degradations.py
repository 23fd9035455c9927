"""Camera degradations of real footage, applied to rendered frames; none of them changes the GT.

Each is drawn per sequence with its own probability (``degrade``):
  motion blur  a line kernel of 3..9 px along one direction per frame (exposure during motion)
  tone change  per-frame gamma 0.8..1.25 and contrast +-15 % about mid-grey (auto exposure)
  JPEG         each frame re-encoded at quality 30..90 (compressed camera streams)
"""
from __future__ import annotations

import cv2
import numpy as np

BLUR_PROBABILITY = 0.3
BLUR_LENGTH = (3, 9)  # px
TONE_PROBABILITY = 0.3
GAMMA_RANGE = (0.8, 1.25)
CONTRAST = 0.15
JPEG_PROBABILITY = 0.4
JPEG_QUALITY = (30, 90)


def line_kernel(length: int, angle: float) -> np.ndarray:
    """(length, length) float32 kernel summing to 1: a line through the centre at ``angle`` rad."""
    kernel = np.zeros((length, length), np.float32)
    centre = (length - 1) / 2.0
    for t in np.linspace(-centre, centre, 4 * length):
        x, y = int(round(centre + t * np.cos(angle))), int(round(centre + t * np.sin(angle)))
        kernel[y, x] = 1.0
    return kernel / kernel.sum()


def _tone(image: np.ndarray, gamma: float, contrast: float) -> np.ndarray:
    """Gamma then contrast about 127.5 on a float32 (H, W, 3) frame in 0..255."""
    toned = 255.0 * np.power(np.clip(image, 0.0, 255.0) / 255.0, np.float32(gamma))
    return (toned - 127.5) * np.float32(1.0 + contrast) + 127.5


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip a float32 RGB frame (H, W, 3) through JPEG at ``quality``."""
    encoded = cv2.imencode(".jpg", np.clip(np.rint(image), 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).astype(np.float32)


def degrade(rng: np.random.Generator, images: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Float32 frames (H, W, 3) in 0..255 -> the same frames with this sequence's degradations."""
    blur = rng.random() < BLUR_PROBABILITY
    tone = rng.random() < TONE_PROBABILITY
    quality = int(rng.integers(*JPEG_QUALITY, endpoint=True)) if rng.random() < JPEG_PROBABILITY else 0
    degraded = []
    for image in images:
        if blur:
            length = int(rng.integers(*BLUR_LENGTH, endpoint=True))
            image = cv2.filter2D(image, -1, line_kernel(length, rng.uniform(0.0, np.pi)), borderType=cv2.BORDER_REFLECT)
        if tone:
            image = _tone(image, rng.uniform(*GAMMA_RANGE), rng.uniform(-CONTRAST, CONTRAST))
        if quality:
            image = _jpeg(image, quality)
        degraded.append(image)
    return tuple(degraded)
