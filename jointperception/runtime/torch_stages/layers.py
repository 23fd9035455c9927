"""Motion-layer post-processing on the device: ``runtime.motion_layers.split_layers`` in torch
(same numbers: argmax with the first layer on ties, layers renumbered by decreasing area, ties
to the lower label). The mask fusion (``runtime.motion_layers.fuse_mask_probability``) is plain
arithmetic and takes tensors as it is."""
from __future__ import annotations

import torch


def split_layers(layer_prob: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """layer_prob (1, K, h_pad, w_pad) -> (ids (height, width) uint8, 0 = the largest layer;
    moving probability (1, 1, h_pad, w_pad) = 1 - p(largest layer)). NaN counts as 0."""
    probabilities = torch.nan_to_num(layer_prob[0], nan=0.0)
    num_layers = probabilities.shape[0]
    labels = probabilities[:, :height, :width].argmax(dim=0)  # torch returns the first maximum
    areas = torch.bincount(labels.flatten(), minlength=num_layers)
    # stable descending order of areas: sort on (-area, label)
    order = torch.argsort(-areas * num_layers + torch.arange(num_layers, device=areas.device))
    rank = torch.empty_like(order)
    rank[order] = torch.arange(num_layers, device=order.device)
    moving = 1.0 - probabilities[order[0]]
    return rank[labels].to(torch.uint8), moving[None, None].float()

