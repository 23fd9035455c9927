"""Readers of the real evaluation sets: on tiny layouts built here, and on ../shared/data if present."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from jointperception.data.formats import write_flo, write_image, write_mask
from jointperception.data.paths import shared_data_root
from jointperception.data.real import (
    davis_sequences,
    flyingchairs_pairs,
    load_davis_sequence,
    sintel_pairs,
)
from jointperception.errors import DataFormatError

H, W = 48, 64
DATA = shared_data_root()


def rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def make_davis(root: Path, sequences: dict[str, int]) -> None:
    for name, count in sequences.items():
        (root / "JPEGImages" / "480p" / name).mkdir(parents=True)
        (root / "Annotations" / "480p" / name).mkdir(parents=True)
        for i in range(count):
            write_image(root / "JPEGImages" / "480p" / name / f"{i:05d}.png", rgb(i))
            write_mask(root / "Annotations" / "480p" / name / f"{i:05d}.png", rgb(i)[..., 0] > 128)


def test_davis_layout_with_png_frames(tmp_path: Path) -> None:
    make_davis(tmp_path, {"walk": 3, "bike": 2})
    assert davis_sequences(tmp_path) == ["bike", "walk"]
    frames, masks = load_davis_sequence(tmp_path, "walk")
    assert len(frames) == len(masks) == 3
    for i, (image, mask) in enumerate(zip(frames, masks)):
        np.testing.assert_array_equal(image, rgb(i))
        np.testing.assert_array_equal(mask, rgb(i)[..., 0] > 128)


def test_davis_missing_mask_and_missing_root_are_named(tmp_path: Path) -> None:
    make_davis(tmp_path, {"walk": 3})
    (tmp_path / "Annotations" / "480p" / "walk" / "00001.png").unlink()
    with pytest.raises(DataFormatError, match="00001.png"):
        load_davis_sequence(tmp_path, "walk")
    with pytest.raises(DataFormatError, match="1080p"):
        davis_sequences(tmp_path, resolution="1080p")
    with pytest.raises(DataFormatError, match="nothing"):
        load_davis_sequence(tmp_path / "nothing", "walk")


def make_pair_folder(folder: Path, seed: int) -> np.ndarray:
    folder.mkdir(parents=True)
    write_image(folder / "frame1.png", rgb(seed))
    write_image(folder / "frame2.png", rgb(seed + 1))
    flow = np.random.default_rng(seed).standard_normal((H, W, 2)).astype(np.float32)
    write_flo(folder / "flow.flo", flow)
    occlusion = np.zeros((H, W), bool)
    occlusion[:, -seed - 1:] = True
    write_mask(folder / "occlusions.png", occlusion)
    write_mask(folder / "invalid.png", np.eye(H, W, dtype=bool))
    return flow


def test_sintel_layout(tmp_path: Path) -> None:
    flows = {
        "clean/alley_1_0002": make_pair_folder(tmp_path / "clean_alley_1_0002", 1),
        "final/alley_1_0002": make_pair_folder(tmp_path / "final_alley_1_0002", 2),
    }
    (tmp_path / "README.txt").write_text("ignored")
    pairs = sintel_pairs(tmp_path)
    assert [p.name for p in pairs] == ["clean/alley_1_0002", "final/alley_1_0002"]
    for pair in pairs:
        np.testing.assert_array_equal(pair.flow, flows[pair.name])
        occluded_columns = 2 if pair.name.startswith("clean") else 3
        assert pair.occlusion is not None and pair.occlusion.sum() == H * occluded_columns
        assert pair.valid is not None and np.array_equal(pair.valid, ~np.eye(H, W, dtype=bool))
    assert [p.name for p in sintel_pairs(tmp_path, passes=("final",))] == ["final/alley_1_0002"]
    (tmp_path / "clean_alley_1_0002" / "flow.flo").unlink()
    with pytest.raises(DataFormatError, match="flow.flo"):
        sintel_pairs(tmp_path)


def test_flyingchairs_layout_and_size_mismatch(tmp_path: Path) -> None:
    for i in range(2):
        write_image(tmp_path / f"{i:07d}-img0.ppm", rgb(i))
        write_image(tmp_path / f"{i:07d}-img1.ppm", rgb(i + 10))
        write_flo(tmp_path / f"{i:07d}-gt.flo", np.full((H, W, 2), i, np.float32))
    pairs = flyingchairs_pairs(tmp_path)
    assert [p.name for p in pairs] == ["0000000", "0000001"]
    assert pairs[1].flow.mean() == 1.0 and pairs[1].occlusion is None and pairs[1].valid is None
    np.testing.assert_array_equal(pairs[0].image2, rgb(10))
    write_flo(tmp_path / "0000001-gt.flo", np.zeros((H, W + 1, 2), np.float32))
    with pytest.raises(DataFormatError, match="0000001-gt.flo"):
        flyingchairs_pairs(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="no FlyingChairs"):
        flyingchairs_pairs(tmp_path / "empty")
    with pytest.raises(DataFormatError, match="absent"):
        flyingchairs_pairs(tmp_path / "absent")


def needs_data(test: Callable[[], None]) -> Callable[[], None]:
    """Mark a test as using ../shared/data and skip it when that folder is absent."""
    skip = pytest.mark.skipif(not DATA.is_dir(), reason=f"real evaluation data not found at {DATA}")
    return pytest.mark.real_data(skip(test))


@needs_data
def test_real_davis_sequences() -> None:
    root = DATA / "davis2016"
    names = davis_sequences(root)
    assert len(names) == 10 and "blackswan" in names
    for name in names:  # about 2 s for all 729 frames
        frames, masks = load_davis_sequence(root, name)
        expected = len(list((root / "JPEGImages" / "480p" / name).glob("*.jpg")))
        assert len(frames) == len(masks) == expected > 1
        assert all(f.shape == (480, 854, 3) and m.shape == (480, 854) for f, m in zip(frames, masks))
        assert 0.0 < np.mean([m.mean() for m in masks]) < 0.5  # an object, not the whole frame


@needs_data
def test_real_sintel_pairs() -> None:
    pairs = sintel_pairs(DATA / "sintel")
    assert len(pairs) == 6 and {p.name.split("/")[0] for p in pairs} == {"clean", "final"}
    for pair in pairs:
        assert pair.image1.shape == pair.image2.shape == (436, 1024, 3)
        assert pair.flow.shape == pair.image1.shape[:2] + (2,)
        assert pair.occlusion is not None and pair.occlusion.shape == pair.image1.shape[:2]
        assert 0.0 < pair.occlusion.mean() < 0.5
        assert np.all(np.isfinite(pair.flow)) and np.abs(pair.flow).max() > 0.5


@needs_data
def test_real_flyingchairs_pairs() -> None:
    pairs = flyingchairs_pairs(DATA / "flyingchairs")
    assert len(pairs) == 9
    for pair in pairs:
        assert pair.image1.shape == pair.image2.shape == (384, 512, 3)
        assert pair.flow.shape == (384, 512, 2) and np.all(np.isfinite(pair.flow))
