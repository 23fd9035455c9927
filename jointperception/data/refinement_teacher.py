"""Self-refinement teacher: the network's own flow of a training step, refined by the runtime's
variational stage (classical.flow_refinement), as a distillation target (no labels involved).

The deployed pipeline refines the network's flow after every inference; this teacher hands the
same refinement back to training, so the network learns to predict what the refinement would make
of its answer. Pixels where the refined forward and backward flows disagree (occlusions,
outliers: data/teacher.py's forward-backward check) carry no target.

Batches hold B pairs followed by the same B pairs reversed, as the self-supervised trainer runs
them: item i + B is item i's backward direction.
"""
from __future__ import annotations

import numpy as np
import torch

from jointperception.classical.flow_refinement import refine_flow
from jointperception.classical.forward_backward import forward_backward_consistent


def _channels_last(batch: torch.Tensor) -> np.ndarray:
    """(N, C, h, w) tensor -> (N, h, w, C) contiguous numpy array (no gradient)."""
    return np.ascontiguousarray(batch.detach().cpu().permute(0, 2, 3, 1).numpy())


def refined_flow_targets(first: torch.Tensor, second: torch.Tensor,
                         flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """first, second: (2B, 3, h, w) uint8 RGB, item i + B the reverse of item i; flow: (2B, 2, h, w)
    px, first -> second -> (target flow (2B, 2, h, w) float32 px, valid (2B, 1, h, w) float32 in
    {0, 1}); both detached from ``flow``'s graph."""
    if first.dtype != torch.uint8 or second.dtype != torch.uint8:
        raise ValueError(f"refined_flow_targets: frames must be uint8, got {first.dtype} / {second.dtype}")
    count = first.shape[0]
    if count % 2 or second.shape != first.shape or flow.shape != (count, 2, *first.shape[2:]):
        raise ValueError(f"refined_flow_targets: frames {tuple(first.shape)} / {tuple(second.shape)} and flow "
                         f"{tuple(flow.shape)} are not B pairs plus their reverses")
    images1, images2, flows = _channels_last(first), _channels_last(second), _channels_last(flow.float())
    refined = np.stack([refine_flow(a, b, f) for a, b, f in zip(images1, images2, flows, strict=True)])
    reverse = np.roll(refined, count // 2, axis=0)  # item i's backward flow sits at i + B (mod 2B)
    valid = np.stack([forward_backward_consistent(forward, backward)  # False wherever either is non-finite
                      for forward, backward in zip(refined, reverse, strict=True)])
    target = torch.from_numpy(np.nan_to_num(refined, nan=0.0, posinf=0.0, neginf=0.0)).permute(0, 3, 1, 2)
    return target.contiguous(), torch.from_numpy(valid.astype(np.float32))[:, None]
