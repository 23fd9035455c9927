"""Real-photo textures for synthetic layers (FlyingChairs-style: synthetic motion over real images).

Procedural textures (``data/textures.py``) lack the statistics of real video. A ``PhotoTextures``
pool gives a layer, with probability ``fraction``, a random crop of a real frame instead, at a
random scale and mirrored half the time. The ground truth stays exact: the renderer only ever
samples a texture by bilinear interpolation, whatever the texture holds.

Frames are read once, on the first draw, resized to POOL_SIZE, and kept in memory as uint8; the
pool pickles without them (DataLoader workers and DDP ranks read their own copy). A missing
folder or a pattern that matches nothing fails at construction, in the main process.
"""
from __future__ import annotations

import glob
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from jointperception.data.textures import make_texture
from jointperception.data.video_pairs import drop_held_out, image_sequences
from jointperception.errors import ConfigError, InputError

POOL_SIZE = (432, 240)  # (width, height) every pool frame is resized to: about half of DAVIS 480p
SCALE_RANGE = (0.6, 1.2)  # texture px per pool px: 0.3..0.6 of a DAVIS 480p frame
PHOTO_BLUR_SIGMA = 0.5  # px: softens JPEG blocks and aliasing of the resized crop


class PhotoTextures:
    """A texture source: ``pool(rng, height, width) -> (height, width, 3) float32 in [0, 255]``.

    patterns: image folders or globs of image files under ``root`` (one sequence per folder);
    holdout: sequence-name patterns (fnmatch) never used as textures; fraction: probability that
    a draw is a photo crop rather than ``make_texture``. Deterministic for a generator state.
    """

    def __init__(self, root: str | Path, patterns: Sequence[str], holdout: Sequence[str], fraction: float) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"photo texture fraction: must be in [0, 1], got {fraction}")
        if not patterns:
            raise ConfigError("photo textures: no image patterns given")
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: photo texture folder not found (set data.photo_root or JOINTPERCEPTION_DATA)")
        for pattern in patterns:
            if not glob.glob(str(self.root / pattern)):
                raise InputError(f"{self.root / pattern}: matches no image folder or image files (data.photo_textures)")
        self.patterns = tuple(patterns)
        self.holdout = tuple(holdout)
        self.fraction = fraction
        self._frames: tuple[np.ndarray, ...] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_frames"] = None
        return state

    @property
    def frames(self) -> tuple[np.ndarray, ...]:
        """Every pool frame, (POOL_SIZE[1], POOL_SIZE[0], 3) uint8 RGB; read on first use."""
        if self._frames is None:
            sequences = [s for pattern in self.patterns
                         for s in image_sequences(str(self.root / pattern), POOL_SIZE, min_frames=1)]
            kept = drop_held_out(sequences, self.holdout)
            if not kept:
                raise InputError(f"{self.root}: every photo texture sequence is held out ({', '.join(self.holdout)})")
            self._frames = tuple(frame for sequence in kept for frame in sequence.frames)
        return self._frames

    def __call__(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        if rng.random() >= self.fraction:
            return make_texture(rng, height, width)
        return self.crop(rng, height, width)

    def crop(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A random photo crop resized to (height, width, 3) float32; mirrored beyond a frame's border."""
        frames = self.frames
        frame = frames[int(rng.integers(len(frames)))]
        scale = rng.uniform(*SCALE_RANGE)
        crop_h, crop_w = math.ceil(height / scale), math.ceil(width / scale)
        pad_y, pad_x = max(crop_h - frame.shape[0], 0), max(crop_w - frame.shape[1], 0)
        if pad_y or pad_x:
            frame = cv2.copyMakeBorder(frame, 0, pad_y, 0, pad_x, cv2.BORDER_REFLECT_101)
        y0 = int(rng.integers(frame.shape[0] - crop_h + 1))
        x0 = int(rng.integers(frame.shape[1] - crop_w + 1))
        crop = frame[y0:y0 + crop_h, x0:x0 + crop_w].astype(np.float32)
        if rng.random() < 0.5:
            crop = np.ascontiguousarray(crop[:, ::-1])
        texture = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        return cv2.GaussianBlur(texture, (0, 0), PHOTO_BLUR_SIGMA)
