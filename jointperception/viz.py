"""Pictures of the outputs: Middlebury flow colour wheel, mask overlay, layer palette, strips.

Every function takes and returns numpy arrays; images are (H, W, 3) uint8 RGB.
"""
from __future__ import annotations

import cv2
import numpy as np

# Baker et al., "A Database and Evaluation Methodology for Optical Flow" (Middlebury): number of
# hues between the six primary/secondary colours of the wheel.
_RY, _YG, _GC, _CB, _BM, _MR = 15, 6, 4, 11, 13, 6


def _color_wheel() -> np.ndarray:
    """(55, 3) float32 RGB in [0, 255]: red -> yellow -> green -> cyan -> blue -> magenta -> red."""
    segments = []
    for length, start, channel, rising in (
        (_RY, (255, 0, 0), 1, True),
        (_YG, (255, 255, 0), 0, False),
        (_GC, (0, 255, 0), 2, True),
        (_CB, (0, 255, 255), 1, False),
        (_BM, (0, 0, 255), 0, True),
        (_MR, (255, 0, 255), 2, False),
    ):
        seg = np.tile(np.array(start, dtype=np.float32), (length, 1))
        ramp = np.floor(255.0 * np.arange(length) / length)
        seg[:, channel] = ramp if rising else 255.0 - ramp
        segments.append(seg)
    return np.concatenate(segments, axis=0)


_WHEEL = _color_wheel()


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """flow (H, W, 2) float pixels -> (H, W, 3) uint8 RGB; hue = direction, saturation = speed.

    Magnitudes are divided by ``max_magnitude`` (default: the largest finite magnitude in
    ``flow``) and clipped to 1; zero flow is white. Non-finite vectors are drawn black.
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got shape {flow.shape}")
    finite = np.isfinite(flow).all(axis=2)
    u = np.where(finite, flow[..., 0], 0.0)
    v = np.where(finite, flow[..., 1], 0.0)
    radius = np.sqrt(u * u + v * v)
    if max_magnitude is None:
        max_magnitude = float(radius.max()) if radius.size else 0.0
    scale = max(float(max_magnitude), 1e-6)
    u, v, radius = u / scale, v / scale, np.minimum(radius / scale, 1.0)

    n = len(_WHEEL)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    position = (angle + 1.0) / 2.0 * (n - 1)
    k0 = np.floor(position).astype(np.int64)
    k1 = (k0 + 1) % n
    frac = (position - k0)[..., None]
    color = (1.0 - frac) * _WHEEL[k0] / 255.0 + frac * _WHEEL[k1] / 255.0
    color = 1.0 - radius[..., None] * (1.0 - color)  # desaturate towards white for slow motion
    color[~finite] = 0.0
    return np.clip(np.round(color * 255.0), 0, 255).astype(np.uint8)


def overlay_mask(
    rgb: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 0, 0), alpha: float = 0.5
) -> np.ndarray:
    """rgb (H, W, 3) uint8, mask (H, W) bool -> (H, W, 3) uint8 with ``color`` blended on the mask."""
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {rgb.shape[:2]}")
    out = rgb.astype(np.float32)
    tint = np.asarray(color, dtype=np.float32)
    out[mask] = (1.0 - alpha) * out[mask] + alpha * tint
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def layers_to_color(layers: np.ndarray) -> np.ndarray:
    """layers (H, W) integer ids -> (H, W, 3) uint8; 0 (background) is black, ids get distinct hues."""
    ids = np.arange(256)
    hue = (ids * 0.618033988749895) % 1.0  # golden-ratio steps keep neighbouring ids apart
    hsv = np.stack([hue * 180.0, np.full(256, 200.0), np.full(256, 255.0)], axis=1)
    palette = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]
    palette[0] = 0
    return palette[np.clip(layers.astype(np.int64), 0, 255)]


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` in the top-left corner of a copy of ``panel`` (white on a dark box)."""
    panel = panel.copy()
    scale = max(0.3, panel.shape[0] / 400.0)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(panel, (0, 0), (tw + 4, th + base + 4), (0, 0, 0), thickness=-1)
    cv2.putText(panel, text, (2, th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def make_strip(
    frame: np.ndarray, mask: np.ndarray, flow: np.ndarray | None, layers: np.ndarray
) -> np.ndarray:
    """Side by side, labelled: frame | mask overlay | flow colour | layers -> (H, 4W, 3) uint8.

    frame (H, W, 3) uint8; mask (H, W) bool; flow (H, W, 2) float pixels, or None (e.g. the last
    frame of a sequence) for a grey panel; layers (H, W) integer ids.
    """
    if flow is None:
        flow_panel = np.full_like(frame, 128)
        flow_text = "flow: none"
    else:
        flow_panel = flow_to_color(flow)
        flow_text = "flow"
    panels = [
        _label(frame, "frame"),
        _label(overlay_mask(frame, mask), "mask"),
        _label(flow_panel, flow_text),
        _label(layers_to_color(layers), "layers"),
    ]
    return np.concatenate(panels, axis=1)
