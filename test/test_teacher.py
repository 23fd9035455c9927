"""The classical teacher (data/teacher.py), its crops in VideoPairDataset, and its distillation
loss (losses/teacher.py)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from jointperception.classical.forward_backward import forward_backward_consistent, sample_at_flow
from jointperception.config import ConfigError, config_from_dict
from jointperception.data.teacher import teacher_targets
from jointperception.data.video_pairs import FrameSequence, VideoPairDataset
from jointperception.losses.teacher import masked_multiscale_epe, teacher_loss

HEIGHT, WIDTH = 96, 128
BACKGROUND_SHIFT = (2, 1)  # (dx, dy) px per frame
OBJECT_SHIFT = (-7, 0)
OBJECT = (slice(30, 70), slice(40, 85))  # rows, columns of the object in frame k = 0


def textured(seed: int, height: int, width: int) -> np.ndarray:
    """Smooth random texture (H, W, 3) uint8 that DIS can track."""
    noise = np.random.default_rng(seed).random((height // 4, width // 4, 3)).astype(np.float32)
    return (255 * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)).astype(np.uint8)


def moving_scene(count: int, with_object: bool = True) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames whose background translates by BACKGROUND_SHIFT and whose object (if any) by
    OBJECT_SHIFT per frame, and the object's mask in each frame."""
    background = textured(0, HEIGHT + 40, WIDTH + 40)
    texture = textured(1, HEIGHT, WIDTH)
    frames, masks = [], []
    for k in range(count):
        bx, by = BACKGROUND_SHIFT[0] * k, BACKGROUND_SHIFT[1] * k
        frame = background[20 - by : 20 - by + HEIGHT, 20 - bx : 20 - bx + WIDTH].copy()
        rows = slice(OBJECT[0].start + OBJECT_SHIFT[1] * k, OBJECT[0].stop + OBJECT_SHIFT[1] * k)
        cols = slice(OBJECT[1].start + OBJECT_SHIFT[0] * k, OBJECT[1].stop + OBJECT_SHIFT[0] * k)
        mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
        if with_object:
            frame[rows, cols] = texture[OBJECT]
            mask[rows, cols] = True
        frames.append(frame)
        masks.append(mask)
    return frames, masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_forward_backward_check_keeps_consistent_flow_inside_the_frame() -> None:
    forward = np.zeros((20, 30, 2), np.float32)
    forward[..., 0] = 3.0
    valid = forward_backward_consistent(forward, -forward)
    assert valid[:, :26].all() and not valid[:, 27:].any()  # x + 3 leaves the frame after column 26
    assert not forward_backward_consistent(forward, forward).any()  # backward does not map back


def test_sample_at_flow_reads_the_target_pixel() -> None:
    field = np.arange(20 * 30, dtype=np.float32).reshape(20, 30, 1)
    flow = np.zeros((20, 30, 2), np.float32)
    flow[..., 1] = 2.0
    sampled, inside = sample_at_flow(field, flow)
    assert sampled.shape == field.shape
    np.testing.assert_allclose(sampled[:18], field[2:])
    assert inside[:18].all() and not inside[18:].any()


def test_teacher_targets_find_the_moving_object_and_its_motion() -> None:
    frames, masks = moving_scene(2)
    targets = teacher_targets(frames[0], frames[1])
    for found, truth in ((targets.mask_first, masks[0]), (targets.mask_second, masks[1])):
        assert iou(found, truth) > 0.45 and (found & truth).sum() > 0.8 * found.sum()  # mostly on the object
    background = targets.valid_forward & ~masks[0]
    assert background.mean() > 0.4
    np.testing.assert_allclose(np.median(targets.flow_forward[background], axis=0), BACKGROUND_SHIFT, atol=0.3)
    np.testing.assert_allclose(np.median(targets.flow_backward[targets.valid_backward & ~masks[1]], axis=0),
                               -np.array(BACKGROUND_SHIFT), atol=0.3)


def test_dataset_crops_and_flips_teacher_targets_with_the_frames() -> None:
    frames, _ = moving_scene(4, with_object=False)  # DIS is exact on the translating texture
    dataset = VideoPairDataset([FrameSequence("scene", tuple(frames))], 16, seed=0, height=64, width=96,
                               max_dt=2, teacher=True)
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["teacher_flow1"].shape == (2, 64, 96) and item["teacher_mask2"].shape == (1, 64, 96)
        first, second = (item[k].permute(1, 2, 0).numpy().astype(np.float32) for k in ("image1", "image2"))
        for flow, valid, source, target in (("teacher_flow1", "teacher_valid1", first, second),
                                            ("teacher_flow2", "teacher_valid2", second, first)):
            warped, inside = sample_at_flow(target, item[flow].permute(1, 2, 0).numpy())
            keep = (item[valid][0].numpy() > 0) & inside
            assert keep.mean() > 0.3
            # the crop's flow (u negated when flipped) carries each pixel to its match
            assert np.abs(warped - source)[keep].mean() < 3.0


def test_masked_epe_ignores_invalid_pixels_at_every_level() -> None:
    target = torch.randn(2, 2, 32, 32)
    valid = torch.ones(2, 1, 32, 32)
    valid[:, :, :, 16:] = 0
    flow = target.clone()
    flow[:, :, :, 16:] += 50.0  # wrong only where the teacher is not trusted
    pyramid = [torch.nn.functional.adaptive_avg_pool2d(flow, size) for size in (8, 16)] + [flow.requires_grad_()]
    loss, terms = masked_multiscale_epe(pyramid, target, valid, (0.5, 0.5, 1.0))
    assert terms["teacher_epe"] == pytest.approx(0.0, abs=1e-5) and loss.item() < 1e-3
    wrong = flow.detach() + 1.0
    loss, _ = masked_multiscale_epe([wrong], target, valid, (1.0,))
    assert loss.item() == pytest.approx(np.sqrt(2.0), rel=1e-4)
    empty, _ = masked_multiscale_epe([wrong], target, torch.zeros_like(valid), (1.0,))
    assert empty.item() == 0.0


def test_teacher_loss_adds_only_the_weighted_terms() -> None:
    outputs = {"flow": torch.zeros(1, 2, 16, 16, requires_grad=True),
               "mask_logits": torch.zeros(1, 1, 16, 16, requires_grad=True)}
    flow, valid, mask = torch.ones(1, 2, 16, 16), torch.ones(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    mask[..., :8] = 1
    off, terms = teacher_loss(outputs, flow, valid, mask, 0.0, 0.0)
    assert off.item() == 0.0 and terms == {}
    flow_only, terms = teacher_loss(outputs, flow, valid, mask, 2.0, 0.0)
    assert flow_only.item() == pytest.approx(2.0 * np.sqrt(2.0), rel=1e-5) and "teacher_iou" not in terms
    without_mask, _ = teacher_loss(outputs, flow, valid, None, 2.0, 0.0)  # an unused target may be absent
    assert without_mask.item() == flow_only.item()
    both, terms = teacher_loss(outputs, flow, valid, mask, 2.0, 1.0)
    assert both.item() > flow_only.item() and {"teacher_epe", "teacher_iou"} <= set(terms)
    both.backward()
    assert outputs["mask_logits"].grad.abs().sum() > 0


@pytest.mark.parametrize("key", ["teacher_flow_weight", "teacher_mask_weight"])
def test_negative_teacher_weight_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match=f"selfsup.{key}: must be >= 0"):
        config_from_dict({"train": {"mode": "selfsup"}, "selfsup": {"images": ["*"], key: -1.0}})
