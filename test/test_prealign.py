"""Global pre-alignment (classical.prealign): the translation estimate, the shift, and what it does to
the bundled (trained) network's flow on a camera pan beyond its training range."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from jointperception.classical.prealign import dominant_translation, median_of_bytes, shift_frame
from jointperception.data.synthetic import render_sequence
from jointperception.runtime.pipeline import PerceptionPipeline

PAN = 14  # px per frame: beyond the 4 px camera motion of the synthetic training pairs


def scene(width: int = 160 + PAN, height: int = 128) -> np.ndarray:
    """A textured (height, width, 3) uint8 frame without moving objects' seams: a rendered scene."""
    return render_sequence(5, 2, height, width, photometric=False).frames[0]


@pytest.mark.parametrize("dx, dy", [(PAN, 0), (-9, 4), (0, -6)])
def test_dominant_translation_recovers_a_pan(dx: int, dy: int) -> None:
    image = scene(200, 160)
    # first(x) = second(x + d): crop the same picture at offsets that differ by d
    first = image[20:140, 20:180]
    second = image[20 - dy:140 - dy, 20 - dx:180 - dx]
    assert dominant_translation(first, second) == (dx, dy)
    assert dominant_translation(first, first) == (0, 0)


def test_a_shift_that_aligns_only_a_minority_object_is_refused() -> None:
    """A still, faintly textured background under a high-contrast object that moves 8 px: the
    phase-correlation peak follows the object, but most pixels agree better unshifted."""
    rng = np.random.default_rng(3)
    background = np.repeat(rng.normal(128, 6, (120, 160, 1)), 3, axis=2)
    texture = np.repeat(rng.integers(0, 256, (60, 60, 1)), 3, axis=2)
    first, second = background.copy(), background.copy()
    first[30:90, 40:100], second[30:90, 48:108] = texture, texture
    first, second = (np.clip(frame, 0, 255).astype(np.uint8) for frame in (first, second))
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) for frame in (first, second)]
    (dx, dy), _ = cv2.phaseCorrelate(*gray, cv2.createHanningWindow((160, 120), cv2.CV_32F))
    assert (round(dx), round(dy)) == (8, 0)  # the peak is the object's
    assert dominant_translation(first, second) == (0, 0)


@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_median_of_bytes_is_numpys_median(size: int) -> None:
    values = np.random.default_rng(size).integers(0, 256, size).astype(np.uint8)
    assert median_of_bytes(values) == np.median(values)


def test_tiny_frames_are_not_aligned() -> None:
    assert dominant_translation(np.zeros((1, 5, 3), np.uint8), np.zeros((1, 5, 3), np.uint8)) == (0, 0)


def test_shift_frame_samples_at_x_plus_d_with_replicated_edges() -> None:
    frame = np.arange(4 * 5 * 1, dtype=np.uint8).reshape(4, 5, 1)
    out = shift_frame(frame, 2, -1)
    assert out[1, 0, 0] == frame[0, 2, 0] and out[3, 2, 0] == frame[2, 4, 0]
    np.testing.assert_array_equal(out[0], out[1])  # row -1 does not exist: row 0 repeats
    np.testing.assert_array_equal(out[:, 3:], np.repeat(out[:, 2:3], 2, axis=1))  # columns past the edge repeat it
    assert shift_frame(frame, 0, 0) is frame


def test_prealignment_recovers_a_pan_the_network_alone_misses() -> None:
    image = scene()
    first, second = np.ascontiguousarray(image[:, PAN:]), np.ascontiguousarray(image[:, :-PAN])  # content moves +PAN
    errors = {}
    for prealign in (True, False):
        pipeline = PerceptionPipeline.from_model_file(None, "torch", network_size=(160, 128), prealign=prealign)
        flow = pipeline.infer_pair(first, second).flow[:, :-PAN]  # pixels whose match x + PAN is inside the frame
        errors[prealign] = float(np.linalg.norm(flow - np.array([PAN, 0.0]), axis=-1).mean())
    assert errors[True] < 1.0, errors  # 0.44 px measured; without pre-alignment 6.5 px
    assert errors[True] < errors[False], errors
