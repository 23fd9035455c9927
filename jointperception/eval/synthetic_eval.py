"""Validation on synthetic pairs with exact ground truth; shared by the trainer, CLI and benchmarks."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from jointperception.models.normalize import normalize_images


@torch.no_grad()
def evaluate_synthetic(
    model: nn.Module, loader: Iterable[Mapping[str, torch.Tensor]], device: torch.device | str
) -> dict[str, float]:
    """Run ``model`` in eval mode over ``loader`` batches of ``SyntheticPairDataset`` items.

    Batches hold image1, image2 uint8 (B, 3, H, W), flow f32 (B, 2, H, W), occlusion and mask
    f32 (B, 1, H, W). Returns
        epe        mean end-point error over all pixels, pixels
        epe_noc    mean end-point error over pixels of image1 visible in image2
        mask_j     mean per-image IoU of (mask_logits > 0) with the mask (1 when both are empty)
        occ_acc    pixel accuracy of (occlusion_logits > 0)
        num_samples  number of pairs evaluated (to average across processes)
    The train/eval mode of every submodule is restored afterwards.
    """
    modes = {module: module.training for module in model.modules()}
    model.eval()
    epe_sum = noc_epe_sum = noc_count = j_sum = occ_correct = pixels = 0.0
    samples = 0
    try:
        for batch in loader:
            image1 = normalize_images(batch["image1"].to(device))
            image2 = normalize_images(batch["image2"].to(device))
            flow_gt = batch["flow"].to(device)
            occlusion = batch["occlusion"].to(device) > 0.5
            mask = batch["mask"].to(device) > 0.5
            outputs = model(image1, image2)
            # EPE(p) = || f(p) - f_gt(p) ||_2
            epe = torch.linalg.vector_norm(outputs["flow"].float() - flow_gt, dim=1)  # (B, H, W)
            visible = ~occlusion[:, 0]
            epe_sum += epe.sum().item()
            noc_epe_sum += epe[visible].sum().item()
            noc_count += visible.sum().item()
            # J = |P & G| / |P | G|, per image
            predicted = outputs["mask_logits"] > 0
            intersection = (predicted & mask).flatten(1).sum(1).float()
            union = (predicted | mask).flatten(1).sum(1).float()
            j_sum += torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union)).sum().item()
            occ_correct += ((outputs["occlusion_logits"] > 0) == occlusion).sum().item()
            pixels += epe.numel()
            samples += epe.shape[0]
    finally:
        for module, training in modes.items():
            module.training = training
    if samples == 0:
        raise ValueError("evaluate_synthetic: the loader yielded no samples")
    return {
        "epe": epe_sum / pixels,
        "epe_noc": noc_epe_sum / max(noc_count, 1.0),
        "mask_j": j_sum / samples,
        "occ_acc": occ_correct / pixels,
        "num_samples": float(samples),
    }
