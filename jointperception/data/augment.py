"""Online-training samples from one annotated frame (SegFlow §4.2).

Segmentation augmentation: a random affine transform (shift, rotation, scale, horizontal flip)
of the frame and its mask. Flow augmentation: a synthesized "next frame" in which only the
foreground moves by a second, slight affine transform; the area it vacates is left empty
(black), i.e. treated as occlusion, as in the paper. The pair (frame, next frame) is what the
network sees at inference; the target is the mask of the first frame of the pair.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AffineRanges:
    """Uniform sampling ranges of a random similarity transform (plus optional mirror)."""

    shift: float  # max |translation| as a fraction of the image side
    rotation_deg: float  # max |rotation| in degrees
    scale: float  # scale in [1 - scale, 1 + scale]
    flip: bool  # mirror left-right with probability 0.5


FRAME_RANGES = AffineRanges(shift=0.1, rotation_deg=10.0, scale=0.15, flip=True)  # whole-frame transform
OBJECT_RANGES = AffineRanges(shift=0.04, rotation_deg=4.0, scale=0.05, flip=False)  # "slight" object motion


def random_affine(rng: np.random.Generator, size: tuple[int, int], ranges: AffineRanges, center: tuple[float, float]) -> np.ndarray:
    """(2, 3) matrix x' = A x + t: rotate/scale about ``center`` (x, y), mirror, shift; size is (W, H)."""
    width, height = size
    angle = rng.uniform(-ranges.rotation_deg, ranges.rotation_deg)
    scale = rng.uniform(1.0 - ranges.scale, 1.0 + ranges.scale)
    matrix = cv2.getRotationMatrix2D(center, angle, scale)
    if ranges.flip and rng.random() < 0.5:
        # x' = (W - 1) - x applied after the rotation
        matrix[0] = -matrix[0]
        matrix[0, 2] += width - 1
    matrix[:, 2] += rng.uniform(-ranges.shift, ranges.shift, size=2) * (width, height)
    return matrix


def _warp(image: np.ndarray, matrix: np.ndarray, nearest: bool, border: int) -> np.ndarray:
    height, width = image.shape[:2]
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    mode = cv2.BORDER_CONSTANT if border == cv2.BORDER_CONSTANT else cv2.BORDER_REFLECT_101
    return cv2.warpAffine(image, matrix, (width, height), flags=flags, borderMode=mode)


def augment_frame(frame: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """frame (H, W, 3) uint8, mask (H, W) bool -> the same random affine applied to both."""
    height, width = mask.shape
    matrix = random_affine(rng, (width, height), FRAME_RANGES, ((width - 1) / 2.0, (height - 1) / 2.0))
    image = _warp(frame, matrix, nearest=False, border=cv2.BORDER_REFLECT_101)
    # the mask is warped with the same reflected border so object and label stay aligned
    moved = _warp(mask.astype(np.uint8), matrix, nearest=True, border=cv2.BORDER_REFLECT_101)
    return image, moved.astype(bool)


def synthesize_next_frame(frame: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Move the foreground of ``frame`` by a slight random affine -> (next frame, moved mask).

    next = moved object over the frame, with the pixels the object vacated set to 0 (black).
    An empty mask gives next = frame (a static pair).
    """
    if not mask.any():
        return frame.copy(), mask.copy()
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    matrix = random_affine(rng, (width, height), OBJECT_RANGES, (float(xs.mean()), float(ys.mean())))
    moved_mask = _warp(mask.astype(np.uint8), matrix, nearest=True, border=cv2.BORDER_CONSTANT).astype(bool)
    moved_object = _warp(frame, matrix, nearest=False, border=cv2.BORDER_CONSTANT)
    next_frame = frame.copy()
    next_frame[mask] = 0  # vacated area: empty, an occlusion of the first frame
    next_frame[moved_mask] = moved_object[moved_mask]
    return next_frame, moved_mask


def online_training_pair(
    frame: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sample: (first (H, W, 3) uint8, second (H, W, 3) uint8, mask of first (H, W) bool).

    The pair is presented in either temporal order with probability 0.5, since inference feeds
    both (next, current) and (current, previous) pairs.
    """
    image, target = augment_frame(frame, mask, rng)
    next_frame, next_mask = synthesize_next_frame(image, target, rng)
    if rng.random() < 0.5:
        return next_frame, image, next_mask
    return image, next_frame, target
