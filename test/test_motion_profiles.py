"""The synthetic motion profiles: the small one draws the scenes it always drew, the real one
reaches the displacements of real video and adds thin bars and camera degradations."""
from __future__ import annotations

import numpy as np
import pytest

from jointperception.data.degradations import degrade, line_kernel
from jointperception.data.motion_profiles import REAL, SMALL, draw_translation, motion_profile
from jointperception.data.scene_layers import BarShape
from jointperception.data.scene_sampling import sample_scene
from jointperception.data.synthetic import render_sequence
from jointperception.errors import ConfigError


def test_real_profile_reaches_the_real_tail_and_keeps_small_motions() -> None:
    """Per-pixel GT magnitudes of real-profile pairs at 256x192 with max_translation 64: the p95 /
    p99 of real video at 320 px width (17-41 / 28-59 px) are inside the range, and a share of the
    pixels still moves less than 4 px (the home ground must stay trained)."""
    magnitudes = np.concatenate([
        np.linalg.norm(render_sequence(seed, 2, 96, 128, max_translation=64.0, motion="real",
                                       photometric=False).flow_forward[0], axis=-1).ravel()
        for seed in range(24)])
    p50, p95, p99 = np.percentile(magnitudes, [50, 95, 99])
    assert 4.0 < p50 < 20.0 and p95 > 30.0 and p99 > 40.0
    assert (magnitudes < 4.0).mean() > 0.1
    small = np.concatenate([np.linalg.norm(render_sequence(seed, 2, 96, 128).flow_forward[0], axis=-1).ravel()
                            for seed in range(8)])
    assert np.percentile(small, 99) < 16.0


def test_translations_follow_the_profile() -> None:
    rng = np.random.default_rng(0)
    real = np.array([np.linalg.norm(draw_translation(rng, REAL, 64.0)) for _ in range(4000)])
    assert real.max() <= 64.0 and abs((real < REAL.small_radius).mean() - REAL.small_fraction) < 0.03
    upper = real[real >= REAL.small_radius]  # log-uniform: equal counts per octave
    octaves = np.histogram(np.log2(upper), bins=4, range=(2.0, 6.0))[0]
    assert octaves.min() > 0.8 * octaves.mean()
    small = np.array([np.linalg.norm(draw_translation(rng, SMALL, 8.0)) for _ in range(2000)])
    assert small.max() <= 8.0 and abs(np.median(small) - 8.0 * np.sqrt(0.5)) < 0.3  # uniform in the disk
    with pytest.raises(ConfigError, match="motion profile"):
        motion_profile("huge")


def test_thin_bars_are_a_share_of_real_objects_and_never_of_small_ones() -> None:
    def bars(profile, seeds):
        shapes = [layer.shape for seed in seeds
                  for layer in sample_scene(np.random.default_rng(seed), 2, 96, 128, 4, 32.0, "random",
                                            profile=profile)[1:]]
        return sum(isinstance(shape, BarShape) for shape in shapes) / len(shapes)

    assert 0.1 < bars(REAL, range(40)) < 0.45
    assert bars(SMALL, range(20)) == 0.0


def test_bar_covers_a_rotated_rectangle() -> None:
    bar = BarShape(centre=(10.0, 10.0), half_length=8.0, half_width=1.5, angle=np.pi / 2)  # vertical
    x = np.float32([10.0, 10.0, 11.0, 12.0, 10.0])
    y = np.float32([3.0, 17.5, 10.0, 10.0, 18.5])
    assert bar.contains(x, y).tolist() == [True, True, True, False, False]


def test_degradations_change_the_frames_not_the_ground_truth() -> None:
    plain = render_sequence(5, 2, 64, 96, max_translation=32.0, motion="real", photometric=False)
    degraded = render_sequence(5, 2, 64, 96, max_translation=32.0, motion="real")
    assert np.array_equal(plain.flow_forward, degraded.flow_forward)
    assert np.array_equal(plain.occlusion_forward, degraded.occlusion_forward)
    frames = tuple(frame.astype(np.float32) for frame in plain.frames)
    outcomes = [degrade(np.random.default_rng(seed), frames) for seed in range(10)]
    assert all(a.shape == b.shape and a.dtype == b.dtype for out in outcomes for a, b in zip(frames, out))
    assert sum(not np.array_equal(out[0], frames[0]) for out in outcomes) >= 3
    kernel = line_kernel(7, 0.0)
    assert kernel.sum() == pytest.approx(1.0) and np.count_nonzero(kernel[3]) == 7 and kernel[:3].sum() == 0
