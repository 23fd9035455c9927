"""Variational flow refinement (classical.flow_refinement): what it does to the bundled (trained)
network's flow on synthetic pairs with exact ground truth, and its input contract."""
from __future__ import annotations

import numpy as np
import pytest

from jointperception.classical.flow_refinement import refine_flow
from jointperception.config import DataConfig
from jointperception.eval.synthetic_benchmark import synthetic_pairs
from jointperception.runtime.pipeline import PerceptionPipeline


def _epe(flow: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(flow - truth, axis=-1).mean())


def test_refinement_lowers_the_networks_error_on_validation_pairs() -> None:
    pairs, _masks = synthetic_pairs(DataConfig(), 12)
    errors: dict[bool, list[float]] = {True: [], False: []}
    for refine in (True, False):
        pipeline = PerceptionPipeline.from_model_file(None, "torch", network_size=(160, 128), refine=refine)
        errors[refine] = [_epe(pipeline.infer_pair(pair.image1, pair.image2).flow, pair.flow) for pair in pairs]
    assert np.mean(errors[True]) < 0.9 * np.mean(errors[False]), errors  # 0.37 -> 0.30 px on the 200-pair split
    assert sum(a < b for a, b in zip(errors[True], errors[False])) >= 8, errors  # most pairs improve, not a few


def test_refinement_snaps_a_biased_flow_to_the_frames() -> None:
    """Ground truth shifted by half a pixel in x and y (0.71 px): the frames' own evidence pulls it back."""
    for pair in synthetic_pairs(DataConfig(photometric=False), 3)[0]:
        biased = pair.flow + np.float32(0.5)
        refined = refine_flow(pair.image1, pair.image2, biased)
        visible = ~pair.occlusion
        before = np.linalg.norm(biased - pair.flow, axis=-1)[visible].mean()
        after = np.linalg.norm(refined - pair.flow, axis=-1)[visible].mean()
        assert after < 0.7 * before, (pair.name, before, after)


def test_input_is_not_modified_and_output_is_float32() -> None:
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    second = np.roll(first, 1, axis=1)
    flow = np.zeros((32, 48, 2), np.float64)
    refined = refine_flow(first, second, flow)
    assert refined.dtype == np.float32 and refined.shape == (32, 48, 2)
    assert not flow.any()
    assert np.isfinite(refined).all()


def test_non_finite_flow_is_returned_unchanged() -> None:
    frame = np.full((16, 16, 3), 100, np.uint8)
    flow = np.zeros((16, 16, 2), np.float32)
    flow[3, 4] = (np.nan, np.inf)
    refined = refine_flow(frame, frame, flow)
    np.testing.assert_array_equal(refined, flow)  # NaN compares equal here; no NaN spread to neighbours
    assert refined is not flow


@pytest.mark.parametrize("second_shape, flow_shape", [((16, 17, 3), (16, 16, 2)), ((16, 16, 3), (16, 16, 1))])
def test_mismatched_shapes_raise(second_shape: tuple[int, ...], flow_shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="disagree"):
        refine_flow(np.zeros((16, 16, 3), np.uint8), np.zeros(second_shape, np.uint8), np.zeros(flow_shape, np.float32))
