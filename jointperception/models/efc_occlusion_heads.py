"""Every Frame Counts per-block occlusion heads, a training-time module outside JointNet.

For each flow-decoder block (strides 32, 16, 8, 4, 2) two 3x3 convs with 32 and 1 channels and
a sigmoid estimate O_est, the pixels of image1 without a correspondence in image2 (EFC
"Occlusion Estimation"). They read the ``decoder_features`` a training-mode JointNet returns, so
the inference state dict (models/jointnet_tiny.safetensors, ONNX export) is unchanged; the
self-supervised trainer checkpoints them beside the network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jointperception.models.flow_branch import DECODER_STRIDES
from jointperception.models.jointnet import JointNet

HIDDEN_CHANNELS = 32  # EFC implementation details: 3x3 convs with 32 and 1 channels


class OcclusionBlockHead(nn.Module):
    """(B, C, h, w) decoder features -> (B, 1, h, w) occlusion probability."""

    def __init__(self, in_channels: int, hidden_channels: int = HIDDEN_CHANNELS):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(hidden_channels, 1, 3, 1, 1)
        nn.init.constant_(self.conv2.bias, -2.0)  # start by predicting little occlusion (p ~ 0.12)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv2(F.leaky_relu(self.conv1(features), 0.1)))


class EfcOcclusionHeads(nn.Module):
    """One OcclusionBlockHead per decoder stride of a JointNet."""

    def __init__(self, decoder_channels: tuple[int, ...]):
        super().__init__()
        if len(decoder_channels) != len(DECODER_STRIDES):
            raise ValueError(f"expected {len(DECODER_STRIDES)} decoder widths, got {len(decoder_channels)}")
        self.strides = DECODER_STRIDES
        self.heads = nn.ModuleList(OcclusionBlockHead(channels) for channels in decoder_channels)

    @classmethod
    def for_model(cls, model: JointNet) -> EfcOcclusionHeads:
        """Heads sized for ``model``'s decoder (read from its per-stride input convs)."""
        widths = tuple(model.flow_decoder.predictors[str(stride)].conv.in_channels for stride in DECODER_STRIDES)
        return cls(widths)

    def forward(self, decoder_features: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        """decoder_features: [(B, C_s, H/s, W/s)] for s = 32 .. 2 -> {s: (B, 1, H/s, W/s) O_est}."""
        return {stride: head(features) for stride, head, features in zip(self.strides, self.heads, decoder_features)}
