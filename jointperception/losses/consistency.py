"""Every Frame Counts temporal consistency of encoder features (eq. 1-2).

    S'_i  = Warp(S_{i+t}, F_{i->i+t})                      (eq. 1, bilinear backward warp)
    Lcons = mean_xy (1 - O_est^xy) || S'^xy - S^xy ||_2     (eq. 2)
"""
from __future__ import annotations

import torch

from jointperception.models.blocks import backward_warp


def feature_consistency_loss(
    features: torch.Tensor, other_features: torch.Tensor, flow: torch.Tensor, occlusion: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Lcons of eq. 2 at one scale.

    features S_i, other_features S_{i+t}: (B, C, h, w); flow F_{i->i+t}: (B, 2, h, w) pixels of this
    resolution; occlusion O_est: (B, 1, h, w) in [0, 1] or None (no pixel masked).
    """
    warped = backward_warp(other_features, flow)
    distance = torch.linalg.vector_norm(warped - features, dim=1, keepdim=True)
    if occlusion is not None:
        distance = distance * (1.0 - occlusion)
    loss = distance.mean()
    return loss, {"loss_cons": loss.item()}
