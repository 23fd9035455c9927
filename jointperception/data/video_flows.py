"""Unlabelled real-video flow for MotionLayerNet's EM training (EM-driven motion segmentation
trains on real flow without labels).

The joint network predicts the flow of random consecutive-frame pairs of unlabelled sequences
(image folders or globs, as ``data/video_pairs``) at its deployment network size, and the flow is
brought to the grid the fused graph hands the motion net (``models/perception``: average-pooled
by ``motion_stride_for`` the padded width, in pixels of that grid), then cropped to the training
size at a seeded random position:
    flows (N, 2, height, width) float32 pixels of the motion grid, image1 -> image2.
The pair order is random, as the node feeds (current, previous) and DAVIS evaluation (t, t + 1).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from jointperception.data.flow_samples import cached_tensors
from jointperception.data.paths import shared_data_root
from jointperception.data.video_pairs import FrameSequence, VideoPairDataset, drop_held_out, image_sequences
from jointperception.errors import ConfigError
from jointperception.models.perception import motion_grid_flow, motion_stride_for
from jointperception.models.weights import load_model
from jointperception.runtime.pipeline import preprocess

LOG = logging.getLogger(__name__)


def video_sequences(root: str | Path, patterns: Sequence[str], holdout: Sequence[str],
                    network_size: tuple[int, int]) -> list[FrameSequence]:
    """Sequences of every pattern (relative to ``root``; "" = shared_data_root()) at ``network_size``
    (W, H), without those matching a hold-out pattern."""
    base = Path(root) if root else shared_data_root()
    sequences = [s for pattern in patterns for s in image_sequences(str(base / pattern), network_size)]
    kept = drop_held_out(sequences, holdout)
    if not kept:
        raise ConfigError("motion.video_images: no sequences left (all missing or held out)")
    return kept


@torch.no_grad()
def predict_video_flows(sequences: Sequence[FrameSequence], count: int, seed: int, joint_model: str | Path | None,
                        network_size: tuple[int, int], height: int, width: int) -> torch.Tensor:
    """(count, 2, height, width) motion-grid flow of ``count`` random consecutive pairs (pair i
    seeded by ``seed + i``) from the joint model file ``joint_model`` (None = bundled), on CPU."""
    network, _, _ = load_model(joint_model)
    pairs = VideoPairDataset(sequences, count, seed, network_size[1], network_size[0], max_dt=1)
    flows = torch.empty(count, 2, height, width)
    for index in range(count):
        sequence, first, second = pairs.sample_indices(index)
        frames = sequences[sequence].frames
        flow = network(torch.from_numpy(preprocess(frames[first], network_size)),
                       torch.from_numpy(preprocess(frames[second], network_size)))["flow"]
        grid = motion_grid_flow(flow, motion_stride_for(flow.shape[-1]))  # (1, 2, h_grid, w_grid)
        grid_height, grid_width = grid.shape[-2:]
        if grid_height < height or grid_width < width:
            raise ConfigError(f"motion.video_network_width/height: its motion grid {grid_width}x{grid_height} is smaller "
                              f"than the training flow {width}x{height} (data.width x data.height)")
        rng = np.random.default_rng([seed + index, 2])
        top = int(rng.integers(0, grid_height - height + 1))
        left = int(rng.integers(0, grid_width - width + 1))
        flows[index] = grid[0, :, top:top + height, left:left + width]
    return flows


def load_or_build_video_flows(path: Path, root: str, patterns: Sequence[str], holdout: Sequence[str], count: int,
                              seed: int, joint_model: str | Path | None, network_size: tuple[int, int],
                              height: int, width: int) -> torch.Tensor:
    """``predict_video_flows`` of the sequences of ``patterns`` cached at ``path``; rebuilt when the
    request differs. count 0 -> an empty (0, 2, height, width) tensor, nothing read."""
    if count == 0:
        return torch.empty(0, 2, height, width)
    key = {"root": root, "patterns": list(patterns), "holdout": list(holdout), "count": count, "seed": seed,
           "model": str(joint_model), "network_size": list(network_size), "size": [height, width]}

    def build() -> dict[str, torch.Tensor]:
        sequences = video_sequences(root, patterns, holdout, network_size)
        LOG.info("predicting the flow of %d unlabelled pairs from %d sequences", count, len(sequences))
        return {"flow": predict_video_flows(sequences, count, seed, joint_model, network_size, height, width)}

    return cached_tensors(path, key, build)["flow"]
