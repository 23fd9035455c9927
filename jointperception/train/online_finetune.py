"""Online fine-tuning of the segmentation branch on a first-frame mask (SegFlow §4.1, semi-supervised).

"We finetune the segmentation network using the object mask in the first frame ... the flow
branch still provides motion representations to segmentation, but does not update the
parameters." Here the segmentation branch is ``JointNet.branch_modules("segmentation")``: the
residual encoder and the segmentation head, which includes the fusion convs that feed flow
features into it. The flow encoder, decoder and occlusion head are frozen (no gradients) but
still run, so the fused features are the ones seen at inference. The whole network stays in
eval mode: batch-norm statistics are not re-estimated from one frame's augmentations.
Each step trains on ``batch_size`` synthesized pairs (``data.augment.online_training_pair``)
with the class-balanced cross-entropy (SegFlow eq. 1). The run stops at ``iterations`` steps or
``seconds`` of wall time, whichever comes first; the input model is never modified.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from jointperception.data.augment import online_training_pair
from jointperception.errors import ConfigError, InputError
from jointperception.losses.supervised import balanced_cross_entropy
from jointperception.models.jointnet import JointNet
from jointperception.runtime.pipeline import preprocess

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneSettings:
    iterations: int = 150  # at most this many optimizer steps
    seconds: float = 180.0  # and at most this much wall time (checked before each step)
    learning_rate: float = 1e-3  # Adam, fixed during the run (SegFlow uses a fixed online rate)
    batch_size: int = 2  # synthesized pairs per step
    seed: int = 0  # augmentation randomness

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ConfigError(f"finetune iterations must be >= 0, got {self.iterations}")
        if not self.seconds >= 0:
            raise ConfigError(f"finetune seconds must be >= 0, got {self.seconds}")
        if not self.learning_rate > 0:
            raise ConfigError(f"finetune learning_rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 1:
            raise ConfigError(f"finetune batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class FinetuneResult:
    model: JointNet  # fine-tuned copy, eval mode, all parameters with requires_grad False
    iterations: int  # optimizer steps run
    seconds: float  # wall time of the run
    losses: tuple[float, ...]  # balanced CE per step
    skipped: str | None  # why no step was run (e.g. empty mask), else None


def _check_inputs(frame: np.ndarray, mask: np.ndarray) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(f"first frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    if mask.shape != frame.shape[:2]:
        raise InputError(
            f"first mask is {mask.shape[1]}x{mask.shape[0]} but the frames are {frame.shape[1]}x{frame.shape[0]} (WxH)"
        )


def _batch(
    frame: np.ndarray, mask: np.ndarray, rng: np.random.Generator, size: int, network_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> image1, image2 (B, 3, h_pad, w_pad) normalised, target (B, 1, H_net, W_net) in {0, 1}."""
    firsts, seconds, targets = [], [], []
    for _ in range(size):
        first, second, target = online_training_pair(frame, mask, rng)
        firsts.append(preprocess(first, network_size))
        seconds.append(preprocess(second, network_size))
        targets.append(target[None, None])
    image1, image2 = torch.from_numpy(np.concatenate(firsts)), torch.from_numpy(np.concatenate(seconds))
    return image1, image2, torch.from_numpy(np.concatenate(targets)).float()


def finetune_segmentation(
    model: JointNet,
    frame: np.ndarray,
    mask: np.ndarray,
    network_size: tuple[int, int],
    settings: FinetuneSettings = FinetuneSettings(),
) -> FinetuneResult:
    """Fine-tune a copy of ``model`` (on CPU) on frame (H, W, 3) uint8 and its mask (H, W) bool.

    Training runs at ``network_size`` (W, H), the resolution used at inference. An empty mask
    skips training (logged as a warning) and returns an unchanged copy. Raises InputError when
    the mask and the frame differ in size.
    """
    _check_inputs(frame, mask)
    tuned = copy.deepcopy(model).cpu().eval()
    tuned.requires_grad_(False)
    start = time.perf_counter()
    if not mask.any():
        reason = "first mask is empty: nothing to fine-tune on, the model is used as is"
        LOG.warning(reason)
        return FinetuneResult(tuned, 0, 0.0, (), reason)
    width, height = network_size
    small_frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    parameters = tuned.branch_parameters("segmentation")
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate)
    rng = np.random.default_rng(settings.seed)
    losses: list[float] = []
    while len(losses) < settings.iterations and time.perf_counter() - start < settings.seconds:
        image1, image2, target = _batch(small_frame, small_mask, rng, settings.batch_size, network_size)
        # crop the stride padding: the loss sees only real pixels
        logits = tuned(image1, image2)["mask_logits"][..., :height, :width]
        loss, _metrics = balanced_cross_entropy(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    tuned.requires_grad_(False)
    return FinetuneResult(tuned, len(losses), time.perf_counter() - start, tuple(losses), None)
