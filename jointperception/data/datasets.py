"""Torch datasets over synthetic scenes rendered on the fly."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from jointperception.classical.prealign import dominant_translation, shift_frame
from jointperception.config import DataConfig
from jointperception.data.paths import shared_data_root
from jointperception.data.photo_textures import PhotoTextures
from jointperception.data.scene_sampling import TextureSource
from jointperception.data.synthetic import render_sequence
from jointperception.data.textures import make_texture
from jointperception.errors import ConfigError

SWAP_STREAM = 0x5A4D  # second SeedSequence word of the generator that decides a pair's order


def _chw(array: np.ndarray) -> torch.Tensor:
    """(H, W, C) numpy -> (C, H, W) contiguous tensor."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


class SyntheticPairDataset(Dataset):
    """Frame pairs of synthetic scenes; item i is rendered from seed ``base_seed + i``.

    Each item is a dict of tensors:
      image1, image2: (3, H, W) uint8 RGB; flow: (2, H, W) float32, pixels, image1 -> image2;
      occlusion: (1, H, W) float32 in {0, 1}, pixels of image1 not visible in image2;
      mask: (1, H, W) float32 in {0, 1}, moving objects in image1; layers: (H, W) int64 of image1.
    With ``random_order``, half of the items (decided by the seed) are the pair played backwards:
    image1 = frame t+1, image2 = frame t, with the backward flow and occlusion of frame t+1.
    With ``prealign``, the pair is pre-aligned as the runtime pipeline does before its network
    (``classical.prealign``): image2 is shifted by the pair's dominant translation d and the flow
    target is flow - d, so the network learns the residual motion it is given in deployment.
    ``motion`` names the motion profile ("small" | "real"). ``textures`` draws each layer's texture (procedural, or a ``PhotoTextures`` pool, which
    pickles without its frames); the dataset pickles cheaply for DataLoader workers and DDP.
    """

    def __init__(self, num_samples: int, base_seed: int, height: int, width: int, *, max_objects: int = 4,
                 max_translation: float = 8.0, photometric: bool = True, random_order: bool = True,
                 textures: TextureSource = make_texture, motion: str = "small", prealign: bool = False) -> None:
        if num_samples <= 0:
            raise ConfigError(f"num_samples: must be > 0, got {num_samples}")
        if base_seed < 0:
            raise ConfigError(f"base_seed: must be >= 0, got {base_seed}")
        self.num_samples = num_samples
        self.base_seed = base_seed
        self.height = height
        self.width = width
        self.max_objects = max_objects
        self.max_translation = max_translation
        self.photometric = photometric
        self.random_order = random_order
        self.textures = textures
        self.motion = motion
        self.prealign = prealign

    @classmethod
    def from_config(cls, data_cfg: DataConfig, split: str = "train") -> SyntheticPairDataset:
        """The train or val split described by ``data_cfg``; photo textures go to the train split
        only, so the validation split is the same procedural one for every model."""
        textures: TextureSource = make_texture
        if split == "train":
            num_samples, base_seed = data_cfg.train_samples, data_cfg.train_seed
            if data_cfg.photo_textures:
                root = data_cfg.photo_root or shared_data_root()
                textures = PhotoTextures(root, data_cfg.photo_textures, data_cfg.photo_holdout, data_cfg.photo_fraction)
        elif split == "val":
            num_samples, base_seed = data_cfg.val_samples, data_cfg.val_seed
        else:
            raise ConfigError(f"split: must be 'train' or 'val', got {split!r}")
        return cls(num_samples, base_seed, data_cfg.height, data_cfg.width, max_objects=data_cfg.max_objects,
                   max_translation=data_cfg.max_translation, photometric=data_cfg.photometric,
                   random_order=data_cfg.random_order, textures=textures, motion=data_cfg.motion,
                   prealign=data_cfg.prealign)

    def __len__(self) -> int:
        return self.num_samples

    def is_swapped(self, index: int) -> bool:
        """Whether item ``index`` is played backwards (fixed by its seed)."""
        if not self.random_order:
            return False
        return bool(np.random.default_rng([self.base_seed + index, SWAP_STREAM]).random() < 0.5)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        seq = render_sequence(self.base_seed + index, 2, self.height, self.width, max_objects=self.max_objects,
                              max_translation=self.max_translation, photometric=self.photometric,
                              textures=self.textures, motion=self.motion)
        if self.is_swapped(index):
            first, second, flow, occlusion = 1, 0, seq.flow_backward[0], seq.occlusion_backward[0]
        else:
            first, second, flow, occlusion = 0, 1, seq.flow_forward[0], seq.occlusion_forward[0]
        image1, image2 = seq.frames[first], seq.frames[second]
        if self.prealign:
            dx, dy = dominant_translation(image1, image2)
            image2 = shift_frame(image2, dx, dy)
            flow = flow - np.array([dx, dy], dtype=flow.dtype)
        return {
            "image1": _chw(image1),
            "image2": _chw(image2),
            "flow": _chw(flow),
            "occlusion": torch.from_numpy(occlusion[None].astype(np.float32)),
            "mask": torch.from_numpy(seq.masks[first][None].astype(np.float32)),
            "layers": torch.from_numpy(seq.layers[first].astype(np.int64)),
        }
