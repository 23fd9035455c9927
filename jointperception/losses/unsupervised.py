"""Every Frame Counts total loss (eq. 9) on unlabelled pairs run in both directions at once.

The network sees the batch ``(cat[I1, I2], cat[I2, I1])`` (2B pairs), so sample k's backward
partner is sample (k + B) mod 2B: every term below is computed in both directions.
    L = Lseg + lambda_cons Lcons + lambda_occ Locc + lambda_sm Lsm + Lpm         (eq. 9)
Lpm and Lsm are summed over the flow scales 1, 2, 4, 8 (weights SCALE_WEIGHTS), Locc over every
occlusion head, Lcons over the segmentation-encoder features at strides 4, 8, 16. Lseg (eq. 8)
and the supervised flow terms come from labelled (synthetic) pairs: ``losses.supervised``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from jointperception.losses.consistency import feature_consistency_loss
from jointperception.losses.occlusion import occlusion_loss, occlusion_target
from jointperception.losses.photometric import photometric_loss, smoothness_loss
from jointperception.models.blocks import backward_warp
from jointperception.models.flow_branch import DECODER_STRIDES

SCALE_WEIGHTS = {1: 1.0, 2: 0.5, 4: 0.25, 8: 0.125}  # Lpm / Lsm weight per flow stride
CONSISTENCY_STRIDES = (4, 8, 16)  # encoder feature strides of Lcons
ENCODER_STRIDES = (2, 4, 8, 16, 32)  # order of JointNet's ``encoder_features``


@dataclass(frozen=True)
class EfcWeights:
    consistency: float = 10.0  # lambda_cons (EFC implementation details)
    occlusion: float = 0.4  # lambda_occ
    smoothness: float = 0.5  # lambda_sm
    use_occlusion: bool = True  # OE: occlusion heads, Locc and occlusion-weighted Lpm / Lcons
    use_consistency: bool = True  # TC: feature temporal consistency
    use_segmentation: bool = True  # O_seg error mask of eq. 5 (needs use_occlusion)


def swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    """(2B, ...) -> the partner of each sample: halves exchanged."""
    half = tensor.shape[0] // 2
    return torch.cat([tensor[half:], tensor[:half]], dim=0)


def flow_at_stride(outputs: Mapping[str, list[torch.Tensor] | torch.Tensor], stride: int) -> torch.Tensor:
    """Flow of the decoder level ``stride`` (1 = full resolution) in pixels of that resolution."""
    if stride == 1:
        return outputs["flow"]
    pyramid = outputs["flow_pyramid"]
    return pyramid[1 + DECODER_STRIDES.index(stride)] / stride


def occlusion_at_stride(occlusions: Mapping[int, torch.Tensor], stride: int, reference: torch.Tensor) -> torch.Tensor:
    """O_est of the head at ``stride`` (stride 1: the stride-2 head upsampled) sized like ``reference``."""
    occlusion = occlusions[max(stride, 2)]
    if occlusion.shape[-2:] != reference.shape[-2:]:
        occlusion = F.interpolate(occlusion, size=reference.shape[-2:], mode="bilinear", align_corners=False)
    return occlusion


@torch.no_grad()
def segmentation_inconsistency(mask_logits: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """O_seg = (M != M') with M' = Warp(M_{i+t}, F_{i->i+t}); (2B, 1, H, W) logits, flow -> {0, 1}."""
    mask = (mask_logits > 0).float()
    warped = backward_warp(swap_halves(mask), flow)
    return ((warped > 0.5).float() - mask).abs()


def efc_unlabelled_loss(
    outputs: Mapping[str, list[torch.Tensor] | torch.Tensor],
    occlusions: Mapping[int, torch.Tensor] | None,
    images: torch.Tensor,
    weights: EfcWeights,
) -> tuple[torch.Tensor, dict[str, float]]:
    """lambda_cons Lcons + lambda_occ Locc + lambda_sm Lsm + Lpm over scales and both directions.

    outputs: training-mode JointNet outputs for the 2B pairs; occlusions: {stride: (2B, 1, H/s, W/s)}
    from EfcOcclusionHeads (None when ``use_occlusion`` is off); images: (2B, 3, H, W) image1 of each
    pair in [0, 1] (its partner's image1 is its image2).
    """
    others = swap_halves(images)
    full_seg = segmentation_inconsistency(outputs["mask_logits"], outputs["flow"]) if weights.use_segmentation else None
    pm_total = sm_total = images.new_zeros(())
    for stride, scale_weight in SCALE_WEIGHTS.items():
        flow = flow_at_stride(outputs, stride)
        image = images if stride == 1 else F.avg_pool2d(images, stride)
        other = others if stride == 1 else F.avg_pool2d(others, stride)
        occlusion = occlusion_at_stride(occlusions, stride, flow) if weights.use_occlusion else None
        seg = None
        if full_seg is not None and occlusion is not None:
            seg = full_seg if stride == 1 else F.avg_pool2d(full_seg, stride)
        pm, _ = photometric_loss(image, backward_warp(other, flow), occlusion, seg)
        sm, _ = smoothness_loss(flow, image)
        pm_total = pm_total + scale_weight * pm
        sm_total = sm_total + scale_weight * sm
    total = pm_total + weights.smoothness * sm_total
    metrics = {"loss_pm": pm_total.item(), "loss_sm": sm_total.item()}
    if weights.use_occlusion:
        occ_total = images.new_zeros(())
        for stride in DECODER_STRIDES:
            target = occlusion_target(swap_halves(flow_at_stride(outputs, stride)))
            occ, occ_terms = occlusion_loss(occlusions[stride], target)
            occ_total = occ_total + occ
        metrics["occ_target_ratio"] = occ_terms["occ_target_ratio"]  # at stride 2
        metrics["loss_occ"] = occ_total.item()
        total = total + weights.occlusion * occ_total
    if weights.use_consistency:
        cons_total = images.new_zeros(())
        for stride in CONSISTENCY_STRIDES:
            # unit-length features: the distance is O(1) whatever the encoder's width
            features = F.normalize(outputs["encoder_features"][ENCODER_STRIDES.index(stride)], dim=1)
            flow = flow_at_stride(outputs, stride)
            occlusion = occlusions[stride] if weights.use_occlusion else None
            cons, _ = feature_consistency_loss(features, swap_halves(features), flow, occlusion)
            cons_total = cons_total + cons / len(CONSISTENCY_STRIDES)
        metrics["loss_cons"] = cons_total.item()
        total = total + weights.consistency * cons_total
    metrics["loss_efc"] = total.item()
    return total, metrics
