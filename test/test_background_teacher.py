"""The dominant-motion background of a teacher flow (data/background_teacher.py) and the
dominant-motion split it relies on (eval.classical_segmentation.dominant_motion)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jointperception.config import ConfigError, SelfSupConfig, config_from_dict
from jointperception.data.background_teacher import affine_background
from jointperception.eval.classical_segmentation import classical_motion_segmentation, dominant_motion
from jointperception.train.selfsup_trainer import teacher_batch

HEIGHT, WIDTH = 64, 80
MOVER = (slice(20, 40), slice(30, 55))  # rows, columns of the independently moving block


def affine_scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A zoom-and-pan background with +-0.3 px ripples and a block moving 6 px unlike it ->
    (flow (H, W, 2) float32, the ripple-free affine background (H, W, 2) float32)."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    affine = np.stack([1.5 + 0.02 * (xs - WIDTH / 2), -0.5 + 0.02 * (ys - HEIGHT / 2)], axis=-1)
    ripples = np.random.default_rng(seed).uniform(-0.3, 0.3, affine.shape).astype(np.float32)
    flow = affine + ripples
    flow[MOVER] = (-4.5, 4.0)
    return flow, affine


def test_dominant_motion_splits_the_mover_from_a_rippling_background() -> None:
    flow, affine = affine_scene(0)
    moving, field = dominant_motion(flow)
    truth = np.zeros((HEIGHT, WIDTH), dtype=bool)
    truth[MOVER] = True
    assert (moving == truth).mean() > 0.99
    assert np.abs(np.stack(field, axis=-1) - affine)[~truth].max() < 0.1
    assert np.array_equal(classical_motion_segmentation(flow), moving)  # one mover: the largest component is all of it


def test_affine_background_flattens_the_ripples_and_keeps_the_mover_and_invalid_pixels() -> None:
    flow, affine = affine_scene(1)
    valid = np.ones((HEIGHT, WIDTH), dtype=bool)
    valid[:, :6] = False  # e.g. failed the forward-backward check
    target = affine_background(torch.from_numpy(flow).permute(2, 0, 1)[None],
                               torch.from_numpy(valid.astype(np.float32))[None, None])[0].permute(1, 2, 0).numpy()
    background = valid.copy()
    background[MOVER] = False
    assert np.abs(target - affine)[background].max() < 0.1  # ripples of up to 0.3 px are gone
    assert np.abs(flow - affine)[background].max() > 0.25
    assert np.array_equal(target[MOVER], flow[MOVER])
    assert np.array_equal(target[~valid], flow[~valid])


def test_an_item_without_valid_pixels_is_kept_and_the_others_still_change() -> None:
    flows = torch.from_numpy(np.stack([affine_scene(2)[0], affine_scene(3)[0]])).permute(0, 3, 1, 2)
    valid = torch.ones(2, 1, HEIGHT, WIDTH)
    valid[0] = 0.0
    target = affine_background(flows, valid)
    assert torch.equal(target[0], flows[0])
    assert not torch.equal(target[1], flows[1])
    assert torch.isfinite(target).all()


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="affine_background"):
        affine_background(torch.zeros(2, 2, 8, 8), torch.ones(2, 1, 8, 9))


def test_unknown_teacher_background_is_refused() -> None:
    with pytest.raises(ConfigError, match="selfsup.teacher_background"):
        config_from_dict({"train": {"mode": "selfsup"}, "selfsup": {"images": ["*"], "teacher_background": "quadratic"}})


def test_the_trainer_hands_the_flattened_flow_to_the_loss_only_when_asked() -> None:
    forward, backward = affine_scene(4)[0], affine_scene(5)[0]
    batch = {"teacher_flow1": torch.from_numpy(forward).permute(2, 0, 1)[None],
             "teacher_flow2": torch.from_numpy(backward).permute(2, 0, 1)[None],
             "teacher_valid1": torch.ones(1, 1, HEIGHT, WIDTH), "teacher_valid2": torch.ones(1, 1, HEIGHT, WIDTH)}
    flows = {}
    for background in ("flow", "affine"):
        sc = SelfSupConfig(images=("*",), teacher_flow_weight=1.0, teacher_background=background)
        flows[background], valid, mask = teacher_batch(sc, batch, torch.empty(0), torch.empty(0), {})
        assert valid.shape == (2, 1, HEIGHT, WIDTH) and mask is None
    assert torch.equal(flows["flow"], torch.cat([batch["teacher_flow1"], batch["teacher_flow2"]]))
    assert torch.equal(flows["affine"], affine_background(flows["flow"], valid))
    assert not torch.equal(flows["affine"], flows["flow"])
