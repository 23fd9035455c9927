"""Flow errors, KITTI Fl, DAVIS J / F and sequence statistics on hand-made cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from jointperception.errors import InputError
from jointperception.eval.metrics import (
    aggregate_flow_errors,
    boundary_f_measure,
    flow_errors,
    jaccard,
    seg2bmap,
    sequence_j_statistics,
    sequence_statistics,
    summarize_sequences,
)

H, W = 64, 96


def constant_flow(u: float, v: float) -> np.ndarray:
    flow = np.empty((H, W, 2), dtype=np.float32)
    flow[..., 0], flow[..., 1] = u, v
    return flow


def test_epe_of_a_3_4_offset_is_5() -> None:
    gt = np.random.default_rng(0).normal(size=(H, W, 2)).astype(np.float32)
    result = flow_errors(gt + np.array([3.0, 4.0], dtype=np.float32), gt)
    assert result["epe_all"] == pytest.approx(5.0, abs=1e-5)
    assert result["epe_noc"] == pytest.approx(5.0, abs=1e-5)
    assert math.isnan(result["epe_occ"]) and result["n_occ"] == 0
    assert result["n_all"] == H * W


@pytest.mark.parametrize(
    ("gt_u", "error", "outlier"),
    [
        (10.0, 3.0, False),  # EPE must exceed 3 px strictly
        (10.0, 3.01, True),
        (80.0, 4.0, False),  # 4 px is exactly 5 % of 80: not an outlier
        (79.0, 4.0, True),
        (200.0, 5.0, False),  # > 3 px but only 2.5 % of |gt|
    ],
)
def test_fl_all_at_the_3px_and_5_percent_boundaries(gt_u: float, error: float, outlier: bool) -> None:
    gt = constant_flow(gt_u, 0.0).astype(np.float64)
    pred = gt.copy()
    pred[: H // 4, :, 1] += error  # a quarter of the pixels carry the error
    result = flow_errors(pred, gt)
    assert result["fl_all"] == pytest.approx(0.25 if outlier else 0.0)
    assert result["epe_all"] == pytest.approx(error / 4)


def test_occluded_and_non_occluded_split() -> None:
    gt = constant_flow(1.0, 2.0)
    occlusion = np.zeros((H, W), dtype=bool)
    occlusion[:, :24] = True  # a quarter of the image
    pred = gt.copy()
    pred[occlusion] += np.array([0.0, 2.0], dtype=np.float32)
    result = flow_errors(pred, gt, occlusion=occlusion)
    assert result["epe_noc"] == pytest.approx(0.0)
    assert result["epe_occ"] == pytest.approx(2.0)
    assert result["epe_all"] == pytest.approx(0.5)
    assert (result["n_noc"], result["n_occ"]) == (H * 72, H * 24)


def test_invalid_ground_truth_and_valid_mask_are_excluded() -> None:
    gt = constant_flow(1.0, 0.0)
    gt[0, :] = np.nan
    gt[1, :] = 1e10  # Middlebury "unknown" marker
    valid = np.ones((H, W), dtype=bool)
    valid[2, :] = False
    pred = gt.copy()
    pred[:3] = 100.0  # wrong only where nothing may be scored
    result = flow_errors(pred, gt, valid=valid)
    assert result["n_all"] == (H - 3) * W
    assert result["epe_all"] == pytest.approx(0.0)
    assert result["fl_all"] == 0.0


def test_non_finite_predictions_give_finite_penalised_results() -> None:
    gt = constant_flow(1.0, 0.0)
    pred = gt.copy()
    pred[:16, :, 0] = np.nan
    pred[16:32, :, 1] = np.inf
    result = flow_errors(pred, gt)
    assert all(math.isfinite(result[k]) for k in ("epe_all", "epe_noc", "fl_all"))
    assert result["epe_all"] == pytest.approx(0.5)  # scored as zero flow: EPE |gt| = 1 on half
    assert result["fl_all"] == pytest.approx(0.5)  # and always outliers
    assert result["n_nonfinite"] == 32 * W


def test_flow_errors_rejects_mismatched_shapes() -> None:
    with pytest.raises(InputError):
        flow_errors(np.zeros((H, W, 2)), np.zeros((H, W + 1, 2)))
    with pytest.raises(InputError):
        flow_errors(np.zeros((H, W, 2)), np.zeros((H, W, 2)), occlusion=np.zeros((H, W - 1), dtype=bool))


def test_aggregate_means_over_pairs_and_weights_by_pixels() -> None:
    gt = constant_flow(0.0, 0.0)
    small_valid = np.zeros((H, W), dtype=bool)
    small_valid[:16, :] = True
    first = flow_errors(constant_flow(1.0, 0.0), gt)  # EPE 1 on H*W px
    second = flow_errors(constant_flow(3.0, 0.0), gt, valid=small_valid)  # EPE 3 on 16*W px
    total = aggregate_flow_errors([first, second])
    assert total["epe_all"] == pytest.approx(2.0)
    assert total["epe_all_px"] == pytest.approx((H * W * 1 + 16 * W * 3) / (H * W + 16 * W))
    assert math.isnan(total["epe_occ"])
    assert total["n_all"] == H * W + 16 * W and total["num_pairs"] == 2


def rectangle(top: int, left: int, bottom: int, right: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def test_jaccard_of_known_rectangles() -> None:
    a, b = rectangle(0, 0, 10, 10), rectangle(5, 0, 15, 10)  # 50 px shared, 150 px union
    assert jaccard(a, b) == pytest.approx(1 / 3)
    assert jaccard(a, a) == 1.0
    assert jaccard(a, np.zeros_like(a)) == 0.0
    assert jaccard(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_seg2bmap_marks_pixels_differing_from_east_south_or_southeast() -> None:
    mask = np.zeros((5, 5), dtype=bool)
    mask[2, 2] = True
    expected = np.zeros((5, 5), dtype=bool)
    expected[1:3, 1:3] = True
    np.testing.assert_array_equal(seg2bmap(mask), expected)


def test_boundary_f_measure_tolerance() -> None:
    shape = (100, 100)  # diagonal 141.4 -> tolerance ceil(1.13) = 2 px
    square = rectangle(30, 30, 70, 70, shape)
    assert boundary_f_measure(square, square) == 1.0
    assert boundary_f_measure(rectangle(31, 31, 71, 71, shape), square) == 1.0  # within the disk
    assert boundary_f_measure(rectangle(30, 32, 70, 72, shape), square) == 1.0
    assert boundary_f_measure(rectangle(31, 32, 71, 72, shape), square) < 1.0  # corner at 2.24 px
    assert boundary_f_measure(rectangle(35, 35, 75, 75, shape), square) < 0.3  # 5 px off
    assert boundary_f_measure(rectangle(30, 33, 70, 73, shape), square, bound_th=3) == 1.0
    empty = np.zeros(shape, dtype=bool)
    assert boundary_f_measure(empty, empty) == 1.0
    assert boundary_f_measure(empty, square) == 0.0
    assert boundary_f_measure(square, empty) == 0.0


def test_sequence_statistics_mean_recall_and_decay_sign() -> None:
    falling = [1.0] * 4 + [0.0] * 4
    stats = sequence_j_statistics(falling)
    assert stats["j_mean"] == pytest.approx(0.5)
    assert stats["j_recall"] == pytest.approx(0.5)
    assert stats["j_decay"] == pytest.approx(1.0)
    assert sequence_j_statistics(falling[::-1])["j_decay"] == pytest.approx(-1.0)
    assert sequence_statistics([0.5, 0.5, 0.9], "f")["f_recall"] == pytest.approx(1 / 3)  # 0.5 is not > 0.5
    assert sequence_statistics([0.7], "f")["f_decay"] == 0.0
    with pytest.raises(InputError):
        sequence_j_statistics([])


def test_summary_averages_sequences_not_frames() -> None:
    summary = summarize_sequences({"short": [0.2] * 2, "long": [0.8] * 10})
    assert summary["j_mean"] == pytest.approx(0.5)  # frame-weighted would give 0.7
    assert summary["j_recall"] == pytest.approx(0.5)
    assert summary["num_sequences"] == 2
    with pytest.raises(InputError):
        summarize_sequences({})
