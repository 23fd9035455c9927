"""Flow colour wheel, mask overlay, layer palette and strips."""
from __future__ import annotations

import numpy as np
import pytest

from jointperception.viz import flow_to_color, layers_to_color, make_strip, overlay_mask


def _constant_flow(u: float, v: float, shape: tuple[int, int] = (8, 10)) -> np.ndarray:
    flow = np.zeros((*shape, 2), dtype=np.float32)
    flow[..., 0], flow[..., 1] = u, v
    return flow


def test_flow_to_color_shape_and_dtype() -> None:
    rgb = flow_to_color(np.random.default_rng(0).normal(size=(64, 96, 2)).astype(np.float32))
    assert rgb.shape == (64, 96, 3)
    assert rgb.dtype == np.uint8


def test_zero_flow_is_white() -> None:
    rgb = flow_to_color(np.zeros((5, 7, 2), np.float32))
    assert rgb.min() >= 250


def test_opposite_directions_get_different_hues() -> None:
    flow = np.concatenate([_constant_flow(3.0, 0.0), _constant_flow(-3.0, 0.0)], axis=1)
    rgb = flow_to_color(flow).astype(int)
    right, left = rgb[0, 0], rgb[0, -1]
    assert np.abs(right - left).sum() > 200
    # full-speed vectors are saturated: far from white
    assert right.min() < 100 and left.min() < 100


def test_all_four_directions_distinct() -> None:
    directions = [(1, 0), (0, 1), (-1, 0), (0, -1)]
    flow = np.concatenate([_constant_flow(u, v, (2, 2)) for u, v in directions], axis=1)
    colors = [tuple(flow_to_color(flow)[0, 2 * i]) for i in range(4)]
    assert len(set(colors)) == 4


def test_max_magnitude_controls_saturation() -> None:
    flow = _constant_flow(1.0, 0.0)
    weak = flow_to_color(flow, max_magnitude=10.0).astype(int)
    strong = flow_to_color(flow, max_magnitude=1.0).astype(int)
    # a slow vector on a large scale is paler (closer to white) than at full scale
    assert weak[0, 0].min() > strong[0, 0].min()


def test_non_finite_flow_is_black_and_does_not_break_scaling() -> None:
    flow = _constant_flow(2.0, 0.0)
    flow[0, 0] = np.nan
    rgb = flow_to_color(flow)
    assert (rgb[0, 0] == 0).all()
    assert rgb[1, 1].min() < 100


def test_flow_to_color_rejects_bad_shape() -> None:
    with pytest.raises(ValueError):
        flow_to_color(np.zeros((4, 4, 3), np.float32))


def test_overlay_mask_only_changes_masked_pixels() -> None:
    rgb = np.full((6, 6, 3), 100, np.uint8)
    mask = np.zeros((6, 6), bool)
    mask[2:4, 2:4] = True
    out = overlay_mask(rgb, mask, color=(255, 0, 0), alpha=0.5)
    assert out.dtype == np.uint8
    assert (out[~mask] == 100).all()
    assert tuple(out[2, 2]) == (178, 50, 50)


def test_layers_to_color_background_black_and_ids_distinct() -> None:
    layers = np.array([[0, 1, 2, 3]], np.uint8)
    rgb = layers_to_color(layers)
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 0).all()
    assert len({tuple(c) for c in rgb[0]}) == 4


def test_make_strip_layout() -> None:
    h, w = 64, 96
    frame = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[20:40, 30:60] = True
    layers = mask.astype(np.uint8)
    strip = make_strip(frame, mask, _constant_flow(2.0, -1.0, (h, w)), layers)
    assert strip.shape == (h, 4 * w, 3) and strip.dtype == np.uint8
    # the first panel is the frame itself below the label box
    np.testing.assert_array_equal(strip[h - 10 :, :w], frame[h - 10 :])
    # no flow (last frame) still gives a full strip
    assert make_strip(frame, mask, None, layers).shape == (h, 4 * w, 3)
