"""Memory of the published mask along a stream: a recursive filter that carries the last mask
forward along the flow, for frames paired (newest, previous) as the node and ``replay`` pair them.

    p~_t(x) = (1 - m) p_t(x) + m p~_{t-1}(x + f(x))

p_t: the published mask probability of the newest frame on the network grid
(``runtime.motion_layers``); f: the pair's flow newest -> previous in network pixels; the memory
p~_{t-1} is sampled bilinearly; m: the memory weight in [0, 1), 0 = no memory. Where x was not
visible in the previous frame (the pair's occlusion), x + f falls outside the frame or f is not
finite, p~_t = p_t: nothing to carry (without the occlusion gate, background uncovered behind a
mover inherits the mover's mask, a trail). Non-finite p_t counts as 0, as the threshold treats it.
A single pair gives a noisy cue on real video (a slow mover's residual vanishes for a frame); the
memory keeps the object through such frames (``benchmarks/mask_memory.py``).
"""
from __future__ import annotations

import cv2
import numpy as np

from jointperception.errors import InputError
from jointperception.ranges import FLOAT_RANGES

DEFAULT_MEMORY_WEIGHT = 0.5  # benchmarks/mask_memory.py: best DAVIS J on the 7 non-held-out sequences, synthetic J kept
MAX_MEMORY_WEIGHT = FLOAT_RANGES["mask_memory"][1]


def check_memory_weight(weight: float) -> float:
    """``weight`` as a float in [0, MAX_MEMORY_WEIGHT], else InputError naming the range."""
    value = float(weight)
    if not 0.0 <= value <= MAX_MEMORY_WEIGHT:  # NaN fails too
        raise InputError(f"mask memory weight must be in [0, {MAX_MEMORY_WEIGHT}], got {weight!r}")
    return value


class MaskMemory:
    """The filter's state for one stream: the last filtered probability (h, w) and its source."""

    def __init__(self, weight: float = DEFAULT_MEMORY_WEIGHT) -> None:
        self.weight = check_memory_weight(weight)
        self._last: np.ndarray | None = None  # (h, w) float32, the newest frame's filtered probability
        self._source: str | None = None  # the mask source it was computed from

    def reset(self) -> None:
        """Forget the stream (a pair reset: stamp jump, size or encoding change)."""
        self._last = None
        self._source = None

    def update(self, probability: np.ndarray, flow_to_previous: np.ndarray, occluded: np.ndarray,
               source: str) -> np.ndarray:
        """probability (h, w) float32 of the newest frame, flow_to_previous (h, w, 2) network
        pixels (newest -> previous), occluded (h, w) bool (pixels of the newest frame not visible
        in the previous), source: its mask source -> the filtered probability (h, w) float32,
        kept as the memory. A new size or source starts the memory over."""
        current = np.nan_to_num(probability.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=0.0)
        if self.weight > 0.0 and self._last is not None and self._source == source and self._last.shape == current.shape:
            filtered = self._blend(current, flow_to_previous, occluded)
        else:
            filtered = current.copy()
        self._last, self._source = filtered, source
        return filtered

    def _blend(self, current: np.ndarray, flow: np.ndarray, occluded: np.ndarray) -> np.ndarray:
        carried, carries = carry_along_flow(self._last, flow, occluded)
        return np.where(carries, (1.0 - self.weight) * current + self.weight * carried, current).astype(np.float32)


def carry_along_flow(last: np.ndarray, flow: np.ndarray, occluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """last (h, w) float32 of the previous frame, flow (h, w, 2) newest -> previous (network
    pixels), occluded (h, w) bool of the newest frame -> (carried (h, w) float32: ``last`` sampled
    bilinearly at x + f(x); carries (h, w) bool: where that is defined, i.e. x visible in the
    previous frame at a finite place inside it; elsewhere ``carried`` holds nothing meaningful)."""
    height, width = last.shape
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x = grid_x + flow[..., 0].astype(np.float32, copy=False)
    map_y = grid_y + flow[..., 1].astype(np.float32, copy=False)
    # NaN fails every comparison
    carries = ~occluded & (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    carried = cv2.remap(last, np.where(carries, map_x, -1), np.where(carries, map_y, -1),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return carried, carries
