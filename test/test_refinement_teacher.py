"""The self-refinement teacher (data/refinement_teacher.py): refined targets, their
forward-backward validity and their input checks."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from jointperception.data.refinement_teacher import refined_flow_targets

HEIGHT, WIDTH = 64, 96
SHIFT = (2.0, 1.0)  # (dx, dy) px: frame 2 is frame 1 translated by SHIFT


def translated_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random texture and its copy translated by SHIFT (bilinear), (H, W, 3) uint8 each."""
    noise = np.random.default_rng(seed).random((HEIGHT // 4, WIDTH // 4, 3)).astype(np.float32)
    first = (255 * cv2.resize(noise, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC).clip(0, 1)).astype(np.uint8)
    shift = np.float32([[1, 0, SHIFT[0]], [0, 1, SHIFT[1]]])
    second = cv2.warpAffine(first, shift, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return first, second


def both_directions(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """B pairs -> (first, second) (2B, 3, H, W) uint8: the pairs, then the same pairs reversed."""
    ones = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a, _ in pairs])
    twos = torch.stack([torch.from_numpy(b).permute(2, 0, 1) for _, b in pairs])
    return torch.cat([ones, twos]), torch.cat([twos, ones])


def constant_flow(count: int, dx: float, dy: float) -> torch.Tensor:
    flow = torch.empty(count, 2, HEIGHT, WIDTH)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def test_targets_move_a_biased_flow_towards_the_true_motion_and_keep_consistent_pixels() -> None:
    first, second = both_directions([translated_pair(0), translated_pair(1)])
    bias = (0.3, -0.3)  # px, the same error in both directions (so they still agree)
    start = torch.cat([constant_flow(2, SHIFT[0] + bias[0], SHIFT[1] + bias[1]),
                       constant_flow(2, -SHIFT[0] - bias[0], -SHIFT[1] - bias[1])])
    start.requires_grad_()
    target, valid = refined_flow_targets(first, second, start)
    assert target.shape == (4, 2, HEIGHT, WIDTH) and valid.shape == (4, 1, HEIGHT, WIDTH)
    assert not target.requires_grad and not valid.requires_grad
    truth = torch.cat([constant_flow(2, *SHIFT), constant_flow(2, -SHIFT[0], -SHIFT[1])])
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # away from the border the shift reflects
    error_before = (start.detach() - truth)[inner].norm(dim=1).mean()
    error_after = (target - truth)[inner].norm(dim=1).mean()
    assert error_after < 0.85 * error_before  # one refinement pulls about a fifth of the way (0.42 -> 0.33 px)
    assert valid[inner].mean() > 0.9  # both refined directions agree almost everywhere inside


def test_a_backward_flow_that_does_not_map_back_leaves_no_valid_pixel() -> None:
    first, second = both_directions([translated_pair(2)])
    wrong_backward = constant_flow(1, 12.0, -9.0)  # far from -SHIFT: the refinement cannot reach it
    _, valid = refined_flow_targets(first, second, torch.cat([constant_flow(1, *SHIFT), wrong_backward]))
    assert valid.sum() < 0.02 * valid.numel()


def test_a_non_finite_flow_gives_no_valid_pixel_and_a_finite_target() -> None:
    first, second = both_directions([translated_pair(3)])
    flow = torch.cat([constant_flow(1, *SHIFT), constant_flow(1, -SHIFT[0], -SHIFT[1])])
    flow[0, 0, 10, 10] = float("nan")
    target, valid = refined_flow_targets(first, second, flow)
    assert torch.isfinite(target).all()
    assert valid[0, 0, 10, 10] == 0
    assert valid[1, 0, 11, 12] == 0  # item 1 (the backward flow, about -SHIFT) reads the NaN there


@pytest.mark.parametrize("case", ["odd batch", "flow size", "float frames"])
def test_inputs_that_are_not_pairs_plus_reverses_are_refused(case: str) -> None:
    first, second = both_directions([translated_pair(4)])
    flow = constant_flow(2, 0.0, 0.0)
    if case == "odd batch":
        first, second, flow = first[:1], second[:1], flow[:1]
    elif case == "flow size":
        flow = flow[..., :-2]
    else:
        first = first.float()
    with pytest.raises(ValueError, match="refined_flow_targets"):
        refined_flow_targets(first, second, flow)
