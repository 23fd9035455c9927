"""Unlabelled video frame pairs for self-supervised training (Every Frame Counts sampling).

Sequences come from image folders (or globs of image files, grouped by folder), video files and
rosbag2 sensor_msgs/Image topics. Frames are resized once to ``frame_size`` (the network size of
the runtime pipeline, so flow magnitudes match deployment) and kept in memory as uint8.
Item i (seeded by ``seed + i``) picks a sequence, a frame t and a gap dt in [1, max_dt]
(EFC: "pairs with dt in [1, 5]"), then one random crop and horizontal flip for both frames:
    image1, image2: (3, h, w) uint8 RGB, frames t and t + dt (or t + dt and t, half the time).
With ``prealign=True`` the pair's dominant translation is taken out of the second frame first, on
the whole frames, as the runtime pipeline does before its network (classical.prealign), so the pairs
move as the deployed network's inputs do.
With ``teacher=True`` an item also holds the classical teacher's targets (data/teacher.py),
computed on the whole frames and then cropped and flipped like them:
    teacher_flow1, teacher_flow2: (2, h, w) float32 px, image1 -> image2 and image2 -> image1;
    teacher_valid1, teacher_valid2: (1, h, w) float32 in {0, 1}, forward-backward consistent;
    teacher_mask1, teacher_mask2: (1, h, w) float32 in {0, 1}, moving-object mask of each image.
"""
from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from jointperception.classical.prealign import dominant_translation, shift_frame
from jointperception.data.bags import read_image_messages, record_rgb
from jointperception.data.formats import read_image
from jointperception.data.sources import IMAGE_SUFFIXES, open_frames
from jointperception.data.teacher import teacher_targets
from jointperception.errors import ConfigError, InputError


@dataclass(frozen=True)
class FrameSequence:
    name: str  # folder / video / bag name, matched against hold-out patterns
    frames: tuple[np.ndarray, ...]  # (H, W, 3) uint8 RGB at the common frame size


def _resize(frame: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8 for frame_size = (width, height)."""
    if (frame.shape[1], frame.shape[0]) == frame_size:
        return frame
    return cv2.resize(frame, frame_size, interpolation=cv2.INTER_AREA)


def _sequence(name: str, frames: Iterable[np.ndarray], frame_size: tuple[int, int], origin: str,
              min_frames: int = 2) -> FrameSequence:
    resized = tuple(_resize(frame, frame_size) for frame in frames)
    if len(resized) < min_frames:
        raise InputError(f"{origin}: a sequence needs at least {min_frames} frames, got {len(resized)}")
    return FrameSequence(name, resized)


def image_sequences(pattern: str, frame_size: tuple[int, int], min_frames: int = 2) -> list[FrameSequence]:
    """A folder or glob: each matching folder is a sequence of all its images; matching image
    files form one sequence per parent folder. Sorted by name. A sequence with fewer than
    ``min_frames`` images raises InputError naming it (pairs need 2; single photos need 1)."""
    folders: list[Path] = []
    groups: dict[Path, list[Path]] = {}
    for path in sorted(Path(p) for p in glob.glob(pattern)):
        if path.is_dir():
            folders.append(path)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            groups.setdefault(path.parent, []).append(path)
    if not folders and not groups:
        raise InputError(f"{pattern}: matches no image folder or image files")
    sequences = [_sequence(f.name, (frame for _stem, frame in open_frames(f)), frame_size, str(f), min_frames)
                 for f in folders]
    sequences += [_sequence(folder.name, (read_image(f) for f in files), frame_size, str(folder), min_frames)
                  for folder, files in groups.items()]
    return sorted(sequences, key=lambda s: s.name)


def video_sequence(video: str | Path, frame_size: tuple[int, int]) -> FrameSequence:
    """Every frame of a video file as one sequence named after the file's stem."""
    video = Path(video)
    if not video.is_file():
        raise InputError(f"{video}: video file not found")
    return _sequence(video.stem, (frame for _stem, frame in open_frames(video)), frame_size, str(video))


def bag_sequence(bag: str | Path, topic: str, frame_size: tuple[int, int]) -> FrameSequence:
    """The camera frames (Image or CompressedImage) of ``topic`` in a rosbag2 bag, in log-time order."""
    frames = (record_rgb(record) for record in read_image_messages(bag, topic))
    return _sequence(Path(bag).name, frames, frame_size, f"{bag} {topic}")


def drop_held_out(sequences: Sequence[FrameSequence], holdout: Sequence[str]) -> list[FrameSequence]:
    """Sequences whose name matches no hold-out pattern (fnmatch, e.g. ``"*market_5*"``)."""
    return [s for s in sequences if not any(fnmatch(s.name, pattern) for pattern in holdout)]


class VideoPairDataset(Dataset):
    """Random unlabelled pairs from in-memory frame sequences; item i is seeded by ``seed + i``."""

    def __init__(self, sequences: Sequence[FrameSequence], num_samples: int, seed: int, height: int, width: int,
                 max_dt: int = 5, teacher: bool = False, prealign: bool = False) -> None:
        if not sequences:
            raise ConfigError("unlabelled data: no sequences left (all missing or held out)")
        if max_dt < 1:
            raise ConfigError(f"max_dt: must be >= 1, got {max_dt}")
        frame_height, frame_width = sequences[0].frames[0].shape[:2]
        if frame_height < height or frame_width < width:
            raise ConfigError(f"crop {width}x{height} is larger than the frames ({frame_width}x{frame_height})")
        self.sequences = list(sequences)
        self.num_samples = num_samples
        self.seed = seed
        self.height = height
        self.width = width
        self.max_dt = max_dt
        self.teacher = teacher
        self.prealign = prealign
        lengths = np.array([len(s.frames) for s in self.sequences], dtype=np.float64)
        self.sequence_weights = lengths / lengths.sum()  # every frame equally likely as a pair start

    def __len__(self) -> int:
        return self.num_samples

    def sample_indices(self, index: int) -> tuple[int, int, int]:
        """(sequence, first frame, second frame) of item ``index``; |second - first| in [1, max_dt]."""
        rng = np.random.default_rng(self.seed + index)
        sequence = int(rng.choice(len(self.sequences), p=self.sequence_weights))
        length = len(self.sequences[sequence].frames)
        dt = int(rng.integers(1, min(self.max_dt, length - 1) + 1))
        start = int(rng.integers(0, length - dt))
        first, second = (start, start + dt) if rng.random() < 0.5 else (start + dt, start)
        return sequence, first, second

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        sequence, first, second = self.sample_indices(index)
        frames = self.sequences[sequence].frames
        rng = np.random.default_rng([self.seed + index, 1])
        top = int(rng.integers(0, frames[0].shape[0] - self.height + 1))
        left = int(rng.integers(0, frames[0].shape[1] - self.width + 1))
        flip = rng.random() < 0.5

        def crop(array: np.ndarray, is_flow: bool = False) -> torch.Tensor:
            """(H, W[, C]) -> (C, h, w) float32/uint8 tensor of the item's crop and flip."""
            array = array[top : top + self.height, left : left + self.width]
            if array.ndim == 2:
                array = array[..., None]
            if flip:
                array = array[:, ::-1] * np.array([-1.0, 1.0], dtype=np.float32) if is_flow else array[:, ::-1]
            return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))

        image1, image2 = frames[first], frames[second]
        shift = dominant_translation(image1, image2) if self.prealign else (0, 0)
        image2 = shift_frame(image2, *shift)
        item = {"image1": crop(image1), "image2": crop(image2)}
        if self.teacher:
            targets = teacher_targets(image1, image2)
            item |= {
                "teacher_flow1": crop(targets.flow_forward, is_flow=True),
                "teacher_flow2": crop(targets.flow_backward, is_flow=True),
                "teacher_valid1": crop(targets.valid_forward.astype(np.float32)),
                "teacher_valid2": crop(targets.valid_backward.astype(np.float32)),
                "teacher_mask1": crop(targets.mask_first.astype(np.float32)),
                "teacher_mask2": crop(targets.mask_second.astype(np.float32)),
            }
        return item
