"""Online fine-tuning on a first-frame mask: what it trains, what it leaves alone, its bounds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jointperception.config import ModelConfig
from jointperception.data.augment import augment_frame, online_training_pair, synthesize_next_frame
from jointperception.data.synthetic import render_sequence
from jointperception.errors import ConfigError, InputError
from jointperception.eval.metrics import jaccard
from jointperception.models import build_model
from jointperception.runtime.backends import TorchBackend
from jointperception.runtime.pipeline import PerceptionPipeline
from jointperception.train.online_finetune import FinetuneSettings, finetune_segmentation

HEIGHT, WIDTH = 64, 96
NETWORK = (WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def sequence():
    return render_sequence(5, 5, HEIGHT, WIDTH, max_objects=1)  # one object, ~9 % of the frame


@pytest.fixture()
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig()).eval()


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _mean_j(model: torch.nn.Module, sequence) -> float:
    pipeline = PerceptionPipeline(TorchBackend(model), NETWORK, mask_source="segmentation")  # the tuned branch
    frames, masks = sequence.frames, sequence.masks
    return float(np.mean([jaccard(pipeline.infer_pair(frames[i], frames[i + 1]).mask, masks[i]) for i in (1, 2, 3)]))


def test_synthesized_next_frame_moves_only_the_object() -> None:
    rng = np.random.default_rng(0)
    frame = np.full((HEIGHT, WIDTH, 3), 100, np.uint8)
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[20:40, 30:60] = True
    frame[mask] = 250
    next_frame, moved = synthesize_next_frame(frame, mask, rng)
    assert moved.any() and not np.array_equal(moved, mask)
    outside = ~(mask | moved)
    np.testing.assert_array_equal(next_frame[outside], frame[outside])  # the background does not move
    assert (next_frame[mask & ~moved] == 0).all()  # vacated area left empty (occlusion)
    first, second, target = online_training_pair(frame, mask, rng)
    assert first.shape == second.shape == frame.shape and target.shape == mask.shape and target.any()


@pytest.mark.parametrize("seed", range(5))
def test_augmented_frame_and_mask_stay_aligned(seed: int) -> None:
    """Flip, rotation, scale and shift move the frame and its mask together (the object is bright)."""
    frame = np.full((HEIGHT, WIDTH, 3), 100, np.uint8)
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[20:40, 10:35] = True  # off centre, so a mirror or a shift applied to one of them only shows
    frame[mask] = 250
    image, moved = augment_frame(frame, mask, np.random.default_rng(seed))
    bright = image[..., 0] > 175
    assert moved.any() and np.mean(bright == moved) > 0.97  # interpolated edges aside


def test_finetuning_trains_only_the_segmentation_branch(model: torch.nn.Module, sequence) -> None:
    before = _state(model)
    j_before = _mean_j(model, sequence)
    settings = FinetuneSettings(iterations=40, seconds=120.0, learning_rate=3e-3)
    result = finetune_segmentation(model, sequence.frames[0], sequence.masks[0], NETWORK, settings)

    assert result.iterations == 40 and result.skipped is None
    assert np.mean(result.losses[-5:]) < 0.5 * np.mean(result.losses[:5])
    for name, value in _state(model).items():  # the input model is untouched
        assert torch.equal(value, before[name]), name
    tuned = dict(result.model.named_parameters())
    flow_names = {n for n, p in tuned.items() if any(p is q for q in result.model.branch_parameters("flow"))}
    seg_names = {n for n, p in tuned.items() if any(p is q for q in result.model.branch_parameters("segmentation"))}
    assert flow_names and seg_names and not flow_names & seg_names
    for name in flow_names:  # the flow branch is frozen: bit-identical
        assert torch.equal(tuned[name], before[name]), name
    assert any(not torch.equal(tuned[name], before[name]) for name in seg_names)
    buffers_after = dict(result.model.named_buffers())
    for name, value in model.named_buffers():  # eval mode: batch-norm statistics are not re-estimated
        assert torch.equal(buffers_after[name], value), name
    # the object of frame 0 is segmented better in the next frames
    assert _mean_j(result.model, sequence) > j_before + 0.3


def test_iteration_and_time_bounds(model: torch.nn.Module, sequence) -> None:
    frame, mask = sequence.frames[0], sequence.masks[0]
    by_steps = finetune_segmentation(model, frame, mask, NETWORK, FinetuneSettings(iterations=3, seconds=600.0))
    assert by_steps.iterations == 3 == len(by_steps.losses)
    by_time = finetune_segmentation(model, frame, mask, NETWORK, FinetuneSettings(iterations=100_000, seconds=1.0))
    assert 1 <= by_time.iterations < 100_000
    step_seconds = by_time.seconds / by_time.iterations
    assert by_time.seconds <= 1.0 + 2 * step_seconds + 0.5  # stops before a step once the time is spent
    none = finetune_segmentation(model, frame, mask, NETWORK, FinetuneSettings(seconds=0.0))
    assert none.iterations == 0


def test_wrong_size_mask_is_an_input_error(model: torch.nn.Module, sequence) -> None:
    with pytest.raises(InputError, match=f"{WIDTH - 1}x{HEIGHT}.*{WIDTH}x{HEIGHT}"):
        finetune_segmentation(model, sequence.frames[0], np.ones((HEIGHT, WIDTH - 1), bool), NETWORK)


def test_empty_mask_skips_finetuning(model: torch.nn.Module, sequence) -> None:
    before = _state(model)
    result = finetune_segmentation(model, sequence.frames[0], np.zeros((HEIGHT, WIDTH), bool), NETWORK)
    assert result.iterations == 0 and result.skipped is not None and "empty" in result.skipped
    for name, value in result.model.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize("field, value", [("iterations", -1), ("seconds", -1.0), ("learning_rate", 0.0), ("batch_size", 0)])
def test_settings_are_validated(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field.split("_")[0]):
        FinetuneSettings(**{field: value})
