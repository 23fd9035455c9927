"""Photo textures: synthetic motion over real-image crops keeps exact, deterministic ground truth."""
from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from flow_helpers import warp_error

from jointperception.config import config_from_dict
from jointperception.data.datasets import SyntheticPairDataset
from jointperception.data.photo_textures import POOL_SIZE, PhotoTextures
from jointperception.data.synthetic import render_sequence
from jointperception.data.textures import make_texture
from jointperception.errors import ConfigError, InputError

H, W = 96, 128


def _write_photos(folder: Path, count: int, seed: int) -> Path:
    """``count`` detailed 300x200 PNG "photos" (procedural texture plus sharp noise) in ``folder``."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        image = make_texture(rng, 200, 300) + rng.normal(0.0, 12.0, (200, 300, 3))
        cv2.imwrite(str(folder / f"{index:05d}.png"), np.clip(image, 0, 255).astype(np.uint8))
    return folder


def _write_flat(folder: Path, bgr: tuple[int, int, int]) -> Path:
    folder.mkdir(parents=True)
    for index in range(2):
        cv2.imwrite(str(folder / f"{index:05d}.png"), np.full((200, 300, 3), bgr, np.uint8))
    return folder


@pytest.fixture
def photo_root(tmp_path: Path) -> Path:
    _write_photos(tmp_path / "photos" / "street", 3, seed=1)
    _write_photos(tmp_path / "photos" / "heldout_park", 2, seed=2)
    return tmp_path / "photos"


def test_pool_reads_kept_sequences_only_and_pickles_without_frames(photo_root: Path) -> None:
    pool = PhotoTextures(photo_root, ["*/*.png"], ["heldout_*"], 1.0)
    assert len(pool.frames) == 3
    assert all(frame.shape == (POOL_SIZE[1], POOL_SIZE[0], 3) and frame.dtype == np.uint8 for frame in pool.frames)
    copy = pickle.loads(pickle.dumps(pool))
    assert copy._frames is None and len(pickle.dumps(pool)) < 10_000
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    assert np.array_equal(copy(rng_a, 50, 60), pool(rng_b, 50, 60))  # re-read copy draws the same crop


def test_every_layer_takes_the_photo_when_fraction_is_one(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _write_flat(root / "flat", (40, 40, 200))  # BGR on disk: RGB (200, 40, 40)
    seq = render_sequence(3, 2, H, W, photometric=False, textures=PhotoTextures(root, ["flat"], [], 1.0))
    assert np.abs(seq.frames.astype(int) - np.array([200, 40, 40])).max() <= 1
    procedural = render_sequence(3, 2, H, W, photometric=False, textures=PhotoTextures(root, ["flat"], [], 0.0))
    assert np.abs(procedural.frames.astype(int) - np.array([200, 40, 40])).max() > 50


@pytest.mark.parametrize("seed", [0, 4, 9])
def test_ground_truth_stays_exact_and_deterministic_on_photo_textures(photo_root: Path, seed: int) -> None:
    pool = PhotoTextures(photo_root, ["*/*.png"], ["heldout_*"], 1.0)
    seq = render_sequence(seed, 2, H, W, photometric=False, textures=pool)
    again = render_sequence(seed, 2, H, W, photometric=False, textures=pool)
    assert np.array_equal(seq.frames, again.frames) and np.array_equal(seq.flow_forward, again.flow_forward)
    error = warp_error(seq.frames[0], seq.frames[1], seq.flow_forward[0], ~seq.occlusion_forward[0])
    unmoved = warp_error(seq.frames[0], seq.frames[1], np.zeros_like(seq.flow_forward[0]), ~seq.occlusion_forward[0])
    assert error < 2.0  # sharper than procedural textures, so resampling costs a little more
    assert unmoved > 4 * error


def test_a_folder_of_one_photo_is_a_pool(tmp_path: Path) -> None:
    _write_photos(tmp_path / "photos" / "single", 1, seed=3)
    pool = PhotoTextures(tmp_path / "photos", ["single"], [], 1.0)
    assert len(pool.frames) == 1
    assert pool(np.random.default_rng(0), 40, 50).shape == (40, 50, 3)


def test_crops_larger_than_a_frame_are_mirrored(photo_root: Path) -> None:
    pool = PhotoTextures(photo_root, ["street"], [], 1.0)
    texture = pool.crop(np.random.default_rng(0), 700, 1000)
    assert texture.shape == (700, 1000, 3) and texture.dtype == np.float32
    assert np.isfinite(texture).all() and 0.0 <= texture.min() and texture.max() <= 255.0


def test_bad_pools_raise_errors_that_name_the_problem(tmp_path: Path, photo_root: Path) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="not found"):
        PhotoTextures(tmp_path / "missing", ["*"], [], 1.0)
    with pytest.raises(InputError, match="nothing_here.*matches no image"):
        PhotoTextures(photo_root, ["nothing_here/*.png"], [], 1.0)
    with pytest.raises(InputError, match="held out"):
        PhotoTextures(photo_root, ["heldout_park"], ["heldout_*"], 1.0)(rng, 8, 8)
    with pytest.raises(ConfigError, match="fraction"):
        PhotoTextures(photo_root, ["*"], [], 1.5)
    with pytest.raises(ConfigError, match="data.photo_fraction"):
        config_from_dict({"data": {"photo_fraction": -0.1}})


def test_config_puts_photos_on_the_training_split_only(photo_root: Path) -> None:
    data = config_from_dict({"data": {"photo_textures": ["*/*.png"], "photo_root": str(photo_root),
                                      "photo_holdout": ["heldout_*"], "photo_fraction": 0.7,
                                      "train_samples": 4, "val_samples": 2}}).data
    train = SyntheticPairDataset.from_config(data, "train")
    assert isinstance(train.textures, PhotoTextures) and train.textures.fraction == 0.7
    assert SyntheticPairDataset.from_config(data, "val").textures is make_texture
    item = train[0]
    assert item["image1"].shape == (3, data.height, data.width) and item["flow"].isfinite().all()
