"""Every Frame Counts photometric and smoothness losses. Pure functions returning ``(loss, metrics)``
or plain tensors for the building blocks.

    G(I, I')  = beta (1 - SSIM(I, I')) / 2 + (1 - beta) |I - I'|_1           (EFC eq. 6)
    Lpm       = mean_xy G(I, I')_xy * (1 + O_error - O_est)                  (EFC eq. 6)
    Lsm       = mean_xy |grad F(x, y)| * exp(-|grad I(x, y)|)                (EFC eq. 7)
Images are in [0, 1] (or any fixed range: SSIM constants assume [0, 1]).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_BETA = 0.85  # beta in eq. 6, as in Yin and Shi 2018
SSIM_C1 = 0.01**2  # stabilisers of SSIM for a dynamic range of 1
SSIM_C2 = 0.03**2


def ssim(image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM over 3x3 windows (Wang et al. 2004): (B, C, H, W) x 2 -> (B, C, H, W) in [-1, 1]."""
    pad1 = F.pad(image1, (1, 1, 1, 1), mode="reflect")
    pad2 = F.pad(image2, (1, 1, 1, 1), mode="reflect")
    mu1, mu2 = F.avg_pool2d(pad1, 3, 1), F.avg_pool2d(pad2, 3, 1)
    var1 = F.avg_pool2d(pad1 * pad1, 3, 1) - mu1 * mu1
    var2 = F.avg_pool2d(pad2 * pad2, 3, 1) - mu2 * mu2
    covariance = F.avg_pool2d(pad1 * pad2, 3, 1) - mu1 * mu2
    numerator = (2 * mu1 * mu2 + SSIM_C1) * (2 * covariance + SSIM_C2)
    denominator = (mu1 * mu1 + mu2 * mu2 + SSIM_C1) * (var1 + var2 + SSIM_C2)
    return numerator / denominator


def photometric_error_map(image: torch.Tensor, warped: torch.Tensor, beta: float = SSIM_BETA) -> torch.Tensor:
    """G(I, I') of eq. 6, averaged over channels: (B, C, H, W) x 2 -> (B, 1, H, W) >= 0."""
    structure = ((1.0 - ssim(image, warped)) / 2.0).clamp(0.0, 1.0)
    intensity = (image - warped).abs()
    return (beta * structure + (1.0 - beta) * intensity).mean(dim=1, keepdim=True)


def error_mask(segmentation_inconsistency: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
    """O_error = max(O_seg - O_est, 0) (eq. 5); both (B, 1, H, W) in [0, 1]."""
    return (segmentation_inconsistency - occlusion).clamp(min=0.0)


def photometric_loss(
    image: torch.Tensor,
    warped: torch.Tensor,
    occlusion: torch.Tensor | None = None,
    segmentation_inconsistency: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Lpm of eq. 6: G(I, I') weighted by (1 + O_error - O_est), mean over pixels.

    image, warped: (B, 3, H, W) in [0, 1]; occlusion O_est and segmentation_inconsistency O_seg:
    (B, 1, H, W) in [0, 1] or None (weight 1: the plain UL loss).
    """
    error = photometric_error_map(image, warped)
    weight = torch.ones_like(error)
    if occlusion is not None:
        weight = weight - occlusion
        if segmentation_inconsistency is not None:
            weight = weight + error_mask(segmentation_inconsistency, occlusion)
    loss = (error * weight).mean()
    return loss, {"loss_pm": loss.item()}


def smoothness_loss(flow: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Edge-aware first-order smoothness (eq. 7): flow (B, 2, H, W) pixels, image (B, 3, H, W) in [0, 1].

    |dF/dx| exp(-|dI/dx|) + |dF/dy| exp(-|dI/dy|), image gradients averaged over channels.
    """
    flow_dx = (flow[..., :, 1:] - flow[..., :, :-1]).abs().mean(dim=1, keepdim=True)
    flow_dy = (flow[..., 1:, :] - flow[..., :-1, :]).abs().mean(dim=1, keepdim=True)
    image_dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(dim=1, keepdim=True)
    image_dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=1, keepdim=True)
    loss = (flow_dx * torch.exp(-image_dx)).mean() + (flow_dy * torch.exp(-image_dy)).mean()
    return loss, {"loss_sm": loss.item()}
