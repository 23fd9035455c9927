"""Every Frame Counts self-supervised occlusion: the target from backward-flow correspondence
(eq. 3) and the penalised cross-entropy the occlusion heads learn it with (eq. 4).

    p_{i+t} -> p_i = p_{i+t} + F_{i+t->i}(p_{i+t})                               (eq. 3)
    O^_i(p) = 0 if some pixel of I_{i+t} lands on p (inside the image), else 1
    Locc    = mean_xy [ -log p(O_est = O^) - alpha exp(-O_est) ]                  (eq. 4)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

OCCLUSION_ALPHA = 0.2  # alpha in eq. 4: penalty against predicting too much occlusion
COVERAGE_THRESHOLD = 0.5  # a pixel receiving less splatted mass than this has no correspondence


def correspondence_coverage(backward_flow: torch.Tensor) -> torch.Tensor:
    """Mass each pixel of frame i receives when every pixel of frame i+t is moved by the backward
    flow and splatted bilinearly (Wang et al. 2018 range map).

    backward_flow: (B, 2, H, W) pixels, frame i+t -> frame i -> (B, 1, H, W) >= 0.
    Landing points outside the image (eq. 3's 0 <= x < w, 0 <= y < h) deposit nothing.
    """
    batch, _, height, width = backward_flow.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=backward_flow.dtype, device=backward_flow.device),
        torch.arange(width, dtype=backward_flow.dtype, device=backward_flow.device),
        indexing="ij",
    )
    target_x = (xs + backward_flow[:, 0]).reshape(batch, -1)
    target_y = (ys + backward_flow[:, 1]).reshape(batch, -1)
    x0, y0 = target_x.floor(), target_y.floor()
    coverage = backward_flow.new_zeros(batch, height * width)
    for dx in (0, 1):
        for dy in (0, 1):
            corner_x, corner_y = x0 + dx, y0 + dy
            weight = (1 - (target_x - corner_x).abs()) * (1 - (target_y - corner_y).abs())
            inside = (corner_x >= 0) & (corner_x < width) & (corner_y >= 0) & (corner_y < height)
            index = (corner_y.clamp(0, height - 1) * width + corner_x.clamp(0, width - 1)).long()
            coverage.scatter_add_(1, index, torch.where(inside, weight, torch.zeros_like(weight)))
    return coverage.view(batch, 1, height, width)


@torch.no_grad()
def occlusion_target(backward_flow: torch.Tensor) -> torch.Tensor:
    """O^ of eq. 3: (B, 2, H, W) backward flow -> (B, 1, H, W) float in {0, 1}, 1 = no correspondence."""
    return (correspondence_coverage(backward_flow) < COVERAGE_THRESHOLD).float()


def occlusion_loss(
    occlusion: torch.Tensor, target: torch.Tensor, alpha: float = OCCLUSION_ALPHA
) -> tuple[torch.Tensor, dict[str, float]]:
    """Locc of eq. 4: occlusion O_est (B, 1, H, W) probabilities, target O^ (B, 1, H, W) in {0, 1}."""
    probability = occlusion.clamp(1e-6, 1 - 1e-6)
    cross_entropy = F.binary_cross_entropy(probability, target)
    loss = cross_entropy - alpha * torch.exp(-occlusion).mean()
    with torch.no_grad():
        accuracy = ((occlusion > 0.5) == (target > 0.5)).float().mean()
    return loss, {"loss_occ": loss.item(), "occ_acc": accuracy.item(), "occ_target_ratio": target.mean().item()}
