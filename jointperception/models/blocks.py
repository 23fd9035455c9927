"""Small building blocks shared by the networks. Every block takes explicit channel sizes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resample_to(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) features to the spatial size of ``reference`` (B, *, H, W)."""
    if features.shape[-2:] == reference.shape[-2:]:
        return features
    return F.interpolate(features, size=reference.shape[-2:], mode="bilinear", align_corners=False)


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` at p + flow(p): image (B, C, h, w), flow (B, 2, h, w) in pixels of this
    resolution -> (B, C, h, w). Points outside the image take the border value."""
    _, _, height, width = image.shape
    ys = torch.arange(height, dtype=flow.dtype, device=flow.device).view(1, height, 1)
    xs = torch.arange(width, dtype=flow.dtype, device=flow.device).view(1, 1, width)
    # grid_sample coordinates in [-1, 1], align_corners=False: x_n = (2 x + 1) / W - 1
    grid_x = (2.0 * (xs + flow[:, 0]) + 1.0) / width - 1.0
    grid_y = (2.0 * (ys + flow[:, 1]) + 1.0) / height - 1.0
    grid = torch.stack([grid_x, grid_y], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def channel_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 of (B, C, H, W), as exp(x - max) / sum: the same values as
    ``torch.softmax(logits, 1)``, written out because ONNX Runtime's CPU Softmax over a non-last
    axis transposes the tensor (measured 3.7 ms for (1, 4, 256, 320), against well under 1 ms
    for the elementwise form)."""
    exponentials = torch.exp(logits - logits.amax(dim=1, keepdim=True))
    return exponentials / exponentials.sum(dim=1, keepdim=True)


class ConvBNReLU(nn.Sequential):
    """3x3 (or k x k) conv -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ConvLeaky(nn.Sequential):
    """FlowNet-style conv -> BatchNorm -> LeakyReLU(0.1) (FlowNetS with batch norm)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.1, inplace=True),
        )


class ResidualBlock(nn.Module):
    """ResNet basic block: y = ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


class FusionConv(nn.Module):
    """SegFlow feature propagation: resample the other branch's features to match, concatenate,
    then a 3x3 conv whose output channels equal the receiving branch's channels.

    own: (B, own_channels, H, W); other: (B, other_channels, h, w) -> (B, own_channels, H, W).
    With ``other_channels == 0`` (ablation without fusion) it is a plain conv on ``own``.
    ``leaky`` picks the flow branch's conv-BN-LeakyReLU over the segmentation's conv-BN-ReLU.
    """

    def __init__(self, own_channels: int, other_channels: int, leaky: bool):
        super().__init__()
        self.other_channels = other_channels
        block = ConvLeaky if leaky else ConvBNReLU
        self.conv = block(own_channels + other_channels, own_channels)

    def forward(self, own: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        if self.other_channels == 0 or other is None:
            return self.conv(own)
        return self.conv(torch.cat([own, resample_to(other, own)], dim=1))


class FlowPredictor(nn.Module):
    """3x3 conv to 2 channels; predicts a flow increment in input-resolution pixels."""

    def __init__(self, in_channels: int, scale: float = 10.0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2, 3, 1, 1)
        self.scale = scale  # outputs are O(1); flow is O(10) px, as FlowNet's /20 target scaling
        nn.init.zeros_(self.conv.bias)
        nn.init.normal_(self.conv.weight, std=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale
