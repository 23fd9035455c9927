"""ObjectMemory (first-mask mode): the given object carried along the flow, evidence near it only,
re-identification after a collapse, bad masks; and the bundled pipeline following one of two movers."""
from __future__ import annotations

import numpy as np
import pytest

from jointperception.data.synthetic import render_sequence
from jointperception.errors import InputError
from jointperception.eval.metrics import jaccard
from jointperception.runtime.mask_memory import MaskMemory
from jointperception.runtime.object_memory import ObjectMemory, ObjectRule, check_object_mask
from jointperception.runtime.pipeline import PerceptionPipeline

H, W = 40, 60  # network grid = camera size in the unit tests


def _square(x: int, y: int, size: int = 10) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y:y + size, x:x + size] = True
    return mask


def _update(memory: ObjectMemory, appearance: np.ndarray, motion: np.ndarray | None = None,
            flow: tuple[float, float] = (0.0, 0.0), occluded: np.ndarray | None = None) -> np.ndarray:
    """One pair; the motion cue says what the appearance says unless given."""
    field = np.broadcast_to(np.array(flow, np.float32), (H, W, 2))
    motion = appearance if motion is None else motion
    return memory.update(appearance.astype(np.float32), motion.astype(np.float32), field,
                         np.zeros((H, W), bool) if occluded is None else occluded, (W, H))


def test_the_given_mask_is_published_for_the_newest_frame_then_carried_along_the_flow() -> None:
    memory = ObjectMemory()
    memory.give(_square(10, 10), newest=True)
    given = _update(memory, np.zeros((H, W)))
    assert memory.source == "given"
    np.testing.assert_array_equal(given > 0.5, _square(10, 10))
    # the object moved 5 px right: newest -> previous flow is -5; the cues see it there, weakly
    carried = _update(memory, 0.3 * _square(15, 10), flow=(-5.0, 0.0))
    assert memory.source == "carried"
    np.testing.assert_array_equal(carried > 0.5, _square(15, 10))


def test_a_mask_for_the_previous_frame_is_carried_into_the_newest() -> None:
    memory = ObjectMemory()
    memory.give(_square(10, 10), newest=False)
    carried = _update(memory, _square(12, 10), flow=(-2.0, 0.0))
    assert memory.source == "carried"
    np.testing.assert_array_equal(carried > 0.5, _square(12, 10))


def test_evidence_counts_only_near_the_carried_object() -> None:
    memory = ObjectMemory(ObjectRule(reach_px=4))
    memory.give(_square(5, 5), newest=True)
    _update(memory, np.zeros((H, W)))
    far_mover = _square(40, 25)  # another object that moves and looks like the followed one
    out = _update(memory, (_square(5, 5) | far_mover).astype(np.float32))
    assert not (out[far_mover] > 0.5).any()
    assert (out[_square(5, 5)] > 0.5).all()


@pytest.mark.parametrize("growth_weight, grows", [(0.0, False), (0.8, True)])
def test_strong_evidence_next_to_the_object_grows_it_only_with_growth(growth_weight: float, grows: bool) -> None:
    memory = ObjectMemory(ObjectRule(reach_px=4, growth_weight=growth_weight, join_fraction=0.0))
    memory.give(_square(10, 10), newest=True)
    _update(memory, np.zeros((H, W)))
    closer = _square(8, 8, size=14)  # the object came closer: 2 px more on every side, the cues agree
    out = _update(memory, closer.astype(np.float32))
    assert (out[_square(10, 10)] > 0.5).all()
    assert (out[closer] > 0.5).all() == grows
    weak = _update(memory, 0.5 * _square(6, 6, size=18))  # evidence 0.5 * 0.8 stays below the threshold
    assert not (weak[_square(6, 6, size=18) & ~closer] > 0.5).any()


def test_an_agreeing_region_joins_whole_when_enough_of_it_is_in_reach() -> None:
    memory = ObjectMemory(ObjectRule(reach_px=2, join_fraction=0.3))
    memory.give(_square(10, 10), newest=True)
    _update(memory, np.zeros((H, W)))
    grown = _square(8, 8, size=24)  # the object came much closer: its region reaches far past the reach
    neighbour = _square(44, 10)  # another region where both cues agree, out of reach
    half_agree = _square(10, 28, size=8) & ~_square(8, 8, size=24)  # appearance only: no agreement
    appearance = (grown | neighbour | half_agree).astype(np.float32)
    out = _update(memory, appearance, motion=(grown | neighbour).astype(np.float32))
    assert (out[grown] > 0.5).all()
    assert not (out[neighbour] > 0.5).any() and not (out[half_agree] > 0.5).any()
    without = ObjectMemory(ObjectRule(reach_px=2))
    without.give(_square(10, 10), newest=True)
    _update(without, np.zeros((H, W)))
    assert not (_update(without, appearance, motion=(grown | neighbour).astype(np.float32))[grown] > 0.5).all()


def test_a_region_mostly_out_of_reach_does_not_join() -> None:
    memory = ObjectMemory(ObjectRule(reach_px=2, join_fraction=0.5))
    memory.give(_square(10, 10), newest=True)
    _update(memory, np.zeros((H, W)))
    wall = np.zeros((H, W), bool)
    wall[:, 8:] = True  # a background-sized region that touches the object: a small share is in reach
    out = _update(memory, wall.astype(np.float32))
    assert (out > 0.5).sum() < 0.5 * wall.sum()


def test_occluded_pixels_carry_nothing() -> None:
    memory = ObjectMemory()
    memory.give(_square(10, 10, size=20), newest=True)
    _update(memory, np.zeros((H, W)))
    occluded = np.zeros((H, W), bool)
    occluded[:, :20] = True  # the left half of the object was not visible in the previous frame
    out = _update(memory, 0.3 * _square(10, 10, size=20), occluded=occluded)
    assert memory.source == "carried"
    assert not (out[:, :20] > 0.5).any() and (out[10:30, 20:30] > 0.5).all()


def test_a_collapsed_object_is_reidentified_by_appearance_and_motion() -> None:
    memory = ObjectMemory(ObjectRule(collapse_fraction=0.3))
    memory.give(_square(10, 10), newest=True)
    _update(memory, np.zeros((H, W)))
    # the object left the frame (flow points outside): nothing carries; the appearance sees two
    # candidates, the moving one wins
    candidates = _square(40, 5) | _square(40, 25)
    out = _update(memory, 0.9 * candidates, motion=_square(40, 25).astype(np.float32), flow=(100.0, 0.0))
    assert memory.source == "reidentified"
    np.testing.assert_array_equal(out > 0.5, _square(40, 25))
    # and it is carried from there on
    _update(memory, 0.9 * _square(40, 25))
    assert memory.source == "carried"


@pytest.mark.parametrize(("mask", "size", "match"), [
    (np.zeros((H, W), bool), (W, H), "empty"),
    (np.ones((H, W, 3), bool), (W, H), "2-D"),
    (np.ones((H - 1, W), bool), (W, H), f"{W}x{H - 1} but the frames are {W}x{H}"),
])
def test_bad_object_masks_are_input_errors(mask: np.ndarray, size: tuple[int, int], match: str) -> None:
    with pytest.raises(InputError, match=match):
        check_object_mask(mask, size)


def test_a_mask_of_the_wrong_size_is_rejected_at_its_pair_and_the_object_kept() -> None:
    memory = ObjectMemory()
    memory.give(_square(10, 10), newest=True)
    _update(memory, np.zeros((H, W)))
    memory.give(np.ones((H + 2, W), bool), newest=True)
    with pytest.raises(InputError, match="but the frames are"):
        _update(memory, np.zeros((H, W)))
    assert (_update(memory, 0.3 * _square(10, 10))[_square(10, 10)] > 0.5).all()
    with pytest.raises(InputError, match="empty"):
        memory.give(np.zeros((H, W)), newest=True)


def test_nothing_to_follow_before_a_mask_is_given() -> None:
    memory = ObjectMemory()
    assert not memory.following
    with pytest.raises(InputError, match="no object"):
        _update(memory, np.zeros((H, W)))


def test_the_bundled_pipeline_follows_the_given_one_of_several_movers() -> None:
    """A synthetic scene with several movers at 320x240: the followed object's J (against its own
    GT) beats the unsupervised streamed mask, which keeps every mover."""
    pipeline = PerceptionPipeline.from_model_file(None, "torch", network_size=(320, 240))
    scene = next(s for s in (render_sequence(seed, 8, 240, 320) for seed in range(40_000_000, 40_000_050))
                 if s.layers.max() >= 2 and (s.layers[0] == 1).any())
    frames, truth = list(scene.frames), list(scene.layers == 1)
    follow, unsupervised = ObjectMemory(), MaskMemory()
    follow.give(truth[0], newest=True)
    j_follow, j_unsupervised = [], []
    for i in range(len(frames)):
        partner = frames[i - 1 if i > 0 else 1]
        j_follow.append(jaccard(pipeline.infer_pair(frames[i], partner, follow).mask, truth[i]))
        j_unsupervised.append(jaccard(pipeline.infer_pair(frames[i], partner, unsupervised).mask, truth[i]))
    assert np.mean(j_follow[1:]) > np.mean(j_unsupervised[1:]) + 0.1
