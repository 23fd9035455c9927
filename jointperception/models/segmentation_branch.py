"""SegFlow segmentation branch: a residual FCN whose 1/8, 1/16 and 1/32 scores are summed."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jointperception.models.blocks import (
    ConvBNReLU,
    FusionConv,
    ResidualBlock,
    resample_to,
)

SCORE_STRIDES = (8, 16, 32)  # FCN-8s style score maps


class ResidualEncoder(nn.Module):
    """Image (B, 3, H, W) -> features at strides 2, 4, 8, 16, 32 with ``channels[i]`` channels."""

    def __init__(self, channels: tuple[int, ...], blocks_per_stage: int):
        super().__init__()
        self.stem = ConvBNReLU(3, channels[0], stride=2)
        stages = []
        for in_ch, out_ch in zip(channels[:-1], channels[1:]):
            blocks = [ResidualBlock(in_ch, out_ch, stride=2)]
            blocks += [ResidualBlock(out_ch, out_ch) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)

    def forward(self, image: torch.Tensor) -> dict[int, torch.Tensor]:
        x = self.stem(image)
        features = {2: x}
        for stride_index, stage in enumerate(self.stages, start=2):
            x = stage(x)
            features[2**stride_index] = x
        return features


class SegmentationHead(nn.Module):
    """Fuses flow-decoder features into the 1/8, 1/16, 1/32 encoder features, scores each
    (1 channel), upsamples and sums: logits = up(s8) + up(s16) + up(s32) at stride 8."""

    def __init__(self, seg_channels: dict[int, int], flow_channels: dict[int, int]):
        super().__init__()
        self.fusions = nn.ModuleDict(
            {str(s): FusionConv(seg_channels[s], flow_channels.get(s, 0), leaky=False) for s in SCORE_STRIDES}
        )
        self.scores = nn.ModuleDict({str(s): nn.Conv2d(seg_channels[s], 1, 1) for s in SCORE_STRIDES})

    def forward(
        self, seg_features: dict[int, torch.Tensor], flow_features: dict[int, torch.Tensor] | None
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """-> (logits (B, 1, H/8, W/8), fused features per stride)."""
        fused = {}
        logits = None
        for stride in SCORE_STRIDES:
            other = flow_features.get(stride) if flow_features is not None else None
            fused[stride] = self.fusions[str(stride)](seg_features[stride], other)
            score = self.scores[str(stride)](fused[stride])
            logits = score if logits is None else logits + resample_to(score, logits)
        return logits, fused


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, H, W) bilinear."""
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
