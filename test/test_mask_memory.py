"""The mask memory (runtime.mask_memory): the recursive filter along the flow, its resets and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from jointperception.errors import InputError
from jointperception.runtime.mask_memory import MAX_MEMORY_WEIGHT, MaskMemory, check_memory_weight

H, W = 24, 32


def square(x0: int, y0: int = 8, size: int = 8) -> np.ndarray:
    out = np.zeros((H, W), np.float32)
    out[y0:y0 + size, x0:x0 + size] = 1.0
    return out


def flow_of(u: float, v: float = 0.0) -> np.ndarray:
    return np.broadcast_to(np.array([u, v], np.float32), (H, W, 2)).copy()


NOTHING_OCCLUDED = np.zeros((H, W), bool)


def test_first_frame_and_zero_weight_publish_the_current_probability() -> None:
    current = square(4)
    np.testing.assert_array_equal(MaskMemory(0.7).update(current, flow_of(0), NOTHING_OCCLUDED, "fused"), current)
    memory = MaskMemory(0.0)
    memory.update(square(20), flow_of(0), NOTHING_OCCLUDED, "fused")
    np.testing.assert_array_equal(memory.update(current, flow_of(0), NOTHING_OCCLUDED, "fused"), current)


def test_blend_weights_the_carried_mask_and_the_newest() -> None:
    memory = MaskMemory(0.7)
    memory.update(np.full((H, W), 0.2, np.float32), flow_of(0), NOTHING_OCCLUDED, "fused")
    out = memory.update(np.full((H, W), 1.0, np.float32), flow_of(0), NOTHING_OCCLUDED, "fused")
    np.testing.assert_allclose(out, 0.3 * 1.0 + 0.7 * 0.2, atol=1e-6)
    # recursive: the next frame blends with the filtered one, not the raw one
    out = memory.update(np.zeros((H, W), np.float32), flow_of(0), NOTHING_OCCLUDED, "fused")
    np.testing.assert_allclose(out, 0.7 * 0.44, atol=1e-6)


def test_the_mask_is_carried_along_the_flow() -> None:
    # an object at x 10..17 in the previous frame moved 5 px right: at x 15..22 in the newest,
    # whose flow to the previous frame is (-5, 0); the newest cue missed it (all zero)
    memory = MaskMemory(0.7)
    memory.update(square(10), flow_of(0), NOTHING_OCCLUDED, "fused")
    out = memory.update(np.zeros((H, W), np.float32), flow_of(-5.0), NOTHING_OCCLUDED, "fused")
    np.testing.assert_allclose(out[8:16, 15:23], 0.7, atol=1e-6)
    assert out[8:16, 10:15].max() == 0.0 and out[:8].max() == 0.0


def test_pixels_occluded_in_the_previous_frame_carry_nothing() -> None:
    # the object moved 5 px right: the background it uncovered (x 10..14) was hidden in the
    # previous frame; its flow follows the background (0, 0) onto the object's old place
    memory = MaskMemory(0.7)
    memory.update(square(10), flow_of(0), NOTHING_OCCLUDED, "fused")
    flow = flow_of(0.0)
    flow[8:16, 15:23] = (-5.0, 0.0)
    occluded = np.zeros((H, W), bool)
    occluded[8:16, 10:15] = True
    out = memory.update(np.zeros((H, W), np.float32), flow, occluded, "fused")
    assert out[8:16, 10:15].max() == 0.0  # no trail behind the mover
    np.testing.assert_allclose(out[8:16, 15:23], 0.7, atol=1e-6)
    # without the occlusion the uncovered background would have inherited the mask
    memory = MaskMemory(0.7)
    memory.update(square(10), flow_of(0), NOTHING_OCCLUDED, "fused")
    assert memory.update(np.zeros((H, W), np.float32), flow, NOTHING_OCCLUDED, "fused")[8:16, 10:15].min() == pytest.approx(0.7)


def test_pixels_whose_flow_leaves_the_frame_or_is_not_finite_keep_the_newest() -> None:
    memory = MaskMemory(0.7)
    memory.update(np.ones((H, W), np.float32), flow_of(0), NOTHING_OCCLUDED, "fused")
    flow = flow_of(-5.0)  # columns 0..4 look left of the frame
    flow[0, 20] = np.nan
    flow[1, 20] = np.inf
    out = memory.update(np.zeros((H, W), np.float32), flow, NOTHING_OCCLUDED, "fused")
    assert out[:, :5].max() == 0.0 and out[0, 20] == 0.0 and out[1, 20] == 0.0
    np.testing.assert_allclose(out[2:, 5:], 0.7, atol=1e-6)


def test_non_finite_probability_counts_as_zero_and_never_sticks() -> None:
    memory = MaskMemory(0.7)
    current = np.ones((H, W), np.float32)
    current[3, 3] = np.nan
    out = memory.update(current, flow_of(0), NOTHING_OCCLUDED, "fused")
    assert out[3, 3] == 0.0 and np.isfinite(out).all()
    out = memory.update(np.ones((H, W), np.float32), flow_of(0), NOTHING_OCCLUDED, "fused")
    assert np.isfinite(out).all() and out[3, 3] == pytest.approx(0.3)


@pytest.mark.parametrize("change", ["reset", "source", "size"])
def test_reset_new_source_or_new_size_start_over(change: str) -> None:
    memory = MaskMemory(0.7)
    memory.update(np.ones((H, W), np.float32), flow_of(0), NOTHING_OCCLUDED, "fused")
    current, source = square(4), "fused"
    if change == "reset":
        memory.reset()
    elif change == "source":
        source = "segmentation"
    else:
        current = np.zeros((H + 8, W), np.float32)
    flow, occluded = np.zeros(current.shape + (2,), np.float32), np.zeros(current.shape, bool)
    np.testing.assert_array_equal(memory.update(current, flow, occluded, source), current)


@pytest.mark.parametrize("weight", [-0.1, MAX_MEMORY_WEIGHT + 0.01, 1.0, math.nan])
def test_weights_outside_the_range_are_refused(weight: float) -> None:
    with pytest.raises(InputError, match="mask memory weight must be in"):
        MaskMemory(weight)
    with pytest.raises(InputError, match="mask memory weight"):
        check_memory_weight(weight)
