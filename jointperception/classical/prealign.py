"""Global pre-alignment: the dominant translation between the two frames of a pair is taken out
before the network and added back to its flow.

The joint network learned flow from synthetic pairs whose camera moves at most 4 px per frame
(half of ``data.max_translation`` at 160x128); a panning real camera moves 10-40 px per frame at
320x240 (DAVIS drift-straight, motocross-jump), out of that range, and the flow there is wrong
everywhere, which no mask rule can undo. Phase correlation (OpenCV, Hann window, grayscale) finds
the dominant translation t = (dx, dy) of ``second`` relative to ``first``, kept only when it is
the majority's motion (below); ``second`` is resampled at x + t (rounded to whole pixels: a copy,
no blur; border replicated), so the network sees only what moves relative to the camera's
translation, and the pair's flow is network flow + t.
"""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np


def dominant_translation(first: np.ndarray, second: np.ndarray) -> tuple[int, int]:
    """first, second (h, w, 3) uint8 RGB of one size -> (dx, dy) whole pixels with
    second(x + dx, y + dy) ~ first(x, y) for most pixels, else (0, 0).

    The phase-correlation peak follows the most textured layer, which may be a large object rather
    than the background; the shift is kept only if it makes the frames agree better on the
    majority of pixels: median |first - shifted second| below median |first - second| (grayscale,
    on the interior both cover). (0, 0) also for frames smaller than 2x2 or a non-finite peak.
    """
    height, width = first.shape[:2]
    if height < 2 or width < 2:
        return 0, 0
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in (first, second)]  # uint8
    # float32 copies: phaseCorrelate windows its inputs in place
    (dx, dy), _ = cv2.phaseCorrelate(gray[0].astype(np.float32), gray[1].astype(np.float32), hann_window(width, height))
    if not (math.isfinite(dx) and math.isfinite(dy)):
        return 0, 0
    shift = int(round(dx)), int(round(dy))
    margin = max(abs(shift[0]), abs(shift[1])) + 1
    if shift == (0, 0) or 2 * margin >= min(height, width):
        return 0, 0
    rows, cols = slice(margin, height - margin), slice(margin, width - margin)
    moved = slice(margin + shift[1], height - margin + shift[1]), slice(margin + shift[0], width - margin + shift[0])
    before = median_of_bytes(cv2.absdiff(gray[0][rows, cols], gray[1][rows, cols]))
    after = median_of_bytes(cv2.absdiff(gray[0][rows, cols], gray[1][moved]))
    return shift if after < before else (0, 0)


@lru_cache(maxsize=8)
def hann_window(width: int, height: int) -> np.ndarray:
    """(height, width) float32 Hann window, built once per frame size; read-only (phaseCorrelate
    multiplies its inputs by it in place, never the window itself)."""
    window = cv2.createHanningWindow((width, height), cv2.CV_32F)
    window.flags.writeable = False
    return window


def median_of_bytes(values: np.ndarray) -> float:
    """np.median of a non-empty uint8 array, from its histogram (O(n), no sort)."""
    cumulative = np.cumsum(np.bincount(values.ravel(), minlength=256))
    count = int(cumulative[-1])
    low, high = np.searchsorted(cumulative, [(count - 1) // 2 + 1, count // 2 + 1])
    return (float(low) + float(high)) / 2.0


def shift_frame(frame: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """frame (h, w, C) -> out (h, w, C) with out(x, y) = frame(x + dx, y + dy), edges replicated."""
    if dx == 0 and dy == 0:
        return frame
    height, width = frame.shape[:2]
    rows = np.clip(np.arange(height) + dy, 0, height - 1)
    cols = np.clip(np.arange(width) + dx, 0, width - 1)
    return frame[rows[:, None], cols[None, :]]
