"""runtime.motion_layers: layer ids by area, the background's complement, and the mask sources."""
from __future__ import annotations

import numpy as np
import pytest

from jointperception.classical.motion_segmentation import select_component
from jointperception.models.motionnet import order_by_area
from jointperception.runtime.motion_layers import (
    MASK_SOURCES,
    argmax_layers,
    fuse_mask_probability,
    residual_mask,
    split_layers,
)


def test_order_by_area_numbers_layers_by_decreasing_area_ties_by_label() -> None:
    labels = np.array([[2, 2, 2, 0], [2, 1, 1, 0], [3, 3, 2, 2]])  # areas: 0:2, 1:2, 2:6, 3:2
    ids, order = order_by_area(labels, 5)
    assert ids.dtype == np.uint8
    assert list(order[:4]) == [2, 0, 1, 3]  # label 4 is empty: last
    np.testing.assert_array_equal(ids, [[0, 0, 0, 1], [0, 2, 2, 1], [3, 3, 0, 0]])


def test_argmax_layers_matches_numpy_including_ties() -> None:
    rng = np.random.default_rng(0)
    prob = rng.random((5, 30, 40)).astype(np.float32)
    prob[:, :4] = 0.2  # ties: the first layer wins, as np.argmax
    prob[3, 10:12] = 0.9
    np.testing.assert_array_equal(argmax_layers(prob), prob.argmax(axis=0))


def test_split_layers_takes_the_largest_layer_as_background_and_ignores_padding() -> None:
    prob = np.zeros((1, 3, 8, 8), np.float32)
    prob[0, 1] = 1.0  # layer 1 everywhere ...
    prob[0, 1, 2:4, 2:4], prob[0, 2, 2:4, 2:4] = 0.2, 0.8  # ... but a 2x2 object on layer 2
    prob[0, 1, :, 6:], prob[0, 0, :, 6:] = 0.0, 1.0  # padding columns (cropped away) on layer 0
    ids, moving = split_layers(prob, height=8, width=6)
    assert ids.shape == (8, 6)
    assert (ids[2:4, 2:4] == 1).all() and (ids == 0).sum() == 8 * 6 - 4
    assert moving.shape == (1, 1, 8, 8)
    np.testing.assert_allclose(moving[0, 0, 2:4, 2:4], 0.8)  # 1 - g(layer 1)
    np.testing.assert_allclose(moving[0, 0, 0, 0], 0.0)


def test_split_layers_survives_nan_probabilities() -> None:
    prob = np.full((1, 2, 4, 4), np.nan, np.float32)
    ids, moving = split_layers(prob, 4, 4)
    assert ids.shape == (4, 4) and np.isfinite(moving).all()


@pytest.mark.parametrize("source,expected", [("segmentation", 0.9), ("motion", 0.3), ("residual", 1.0), ("fused", 2.2 / 3)])
def test_mask_sources(source: str, expected: float) -> None:
    out = fuse_mask_probability(np.full((2, 2), 0.9), np.full((2, 2), 0.3), np.ones((2, 2)), source)
    np.testing.assert_allclose(out, expected)
    assert source in MASK_SOURCES


def test_fused_mask_is_a_vote_of_the_three_cues() -> None:
    seg = np.array([[0.9, 0.9, 0.1, 0.1]])
    moving = np.array([[0.9, 0.9, 0.9, 0.1]])
    residual = np.array([[1.0, 0.0, 1.0, 0.0]])
    # two confident cues win, one alone does not
    assert (fuse_mask_probability(seg, moving, residual, "fused") > 0.5).tolist() == [[True, True, True, False]]


def test_residual_mask_marks_the_mover() -> None:
    flow = np.zeros((1, 2, 64, 96), np.float32)
    flow[0, 0] = 0.5  # the dominant motion: 0.5 px to the right everywhere ...
    flow[0, :, 16:40, 24:56] = [[[3.0]], [[-2.0]]]  # ... and one block moving its own way
    flow[0, :, 48:, :] = 100.0  # stride padding below the 48-row image: ignored
    mask = residual_mask(flow, 48, 96, np.zeros((1, 1, 64, 96), np.float32))
    assert mask.shape == (1, 1, 64, 96) and mask.dtype == np.float32
    assert mask[0, 0, 16:40, 24:56].all() and mask[0, 0, 48:].sum() == 0
    assert mask[0, 0, :48].sum() == 24 * 32


def test_residual_mask_keeps_the_mover_the_other_cues_support() -> None:
    flow = np.zeros((1, 2, 64, 96), np.float32)
    flow[0, :, 4:44, 4:44] = 3.0  # a large region moving unlike the background ...
    flow[0, :, 20:30, 60:80] = -3.0  # ... and a small one, the only one the other cues back
    support = np.zeros((1, 1, 64, 96), np.float32)
    support[0, 0, 20:30, 60:80] = 1.5
    support[0, 0, 0, 0] = np.nan  # a NaN cue counts as no support
    mask = residual_mask(flow, 64, 96, support)
    assert mask[0, 0, 20:30, 60:80].all() and mask.sum() == 10 * 20
    unsupported = residual_mask(flow, 64, 96, np.zeros_like(support))  # no support: the largest
    assert unsupported[0, 0, 4:44, 4:44].all() and unsupported.sum() == 40 * 40


def test_select_component_largest_or_most_supported_and_empty_for_an_empty_mask() -> None:
    assert not select_component(np.zeros((8, 8), bool), np.ones((8, 8))).any()
    assert not select_component(np.zeros((8, 8), bool)).any()
    mask = np.zeros((8, 8), bool)
    mask[0:2, 0:4] = True  # 8 pixels
    mask[5:7, 5:7] = True  # 4 pixels
    support = np.where(mask, 0.0, 0.0)
    support[5:7, 5:7] = 1.0
    assert select_component(mask).sum() == 8 and select_component(mask, support).sum() == 4


def test_sources_without_the_residual_cue_need_none() -> None:
    seg, moving = np.full((2, 2), 0.9), np.full((2, 2), 0.3)
    np.testing.assert_allclose(fuse_mask_probability(seg, moving, None, "segmentation"), 0.9)
    np.testing.assert_allclose(fuse_mask_probability(seg, moving, None, "motion"), 0.3)


def test_residual_mask_of_nan_flow_is_empty() -> None:
    flow = np.full((1, 2, 32, 32), np.nan, np.float32)
    assert residual_mask(flow, 32, 32, np.ones((1, 1, 32, 32), np.float32)).sum() == 0


def test_unknown_mask_source_is_refused() -> None:
    with pytest.raises(ValueError, match="mask source must be one of"):
        fuse_mask_probability(np.zeros(1), np.zeros(1), np.zeros(1), "both")
