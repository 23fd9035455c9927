"""MotionLayerNet: a small U-Net over optical flow -> K motion-layer logits (EM motion segmentation).

forward(flow) for flow (B, 2, H, W) in pixels, H and W multiples of ``stride`` = 2 ** (levels + 1):
    layer_logits (B, K, H, W); g = softmax over K is the soft layer assignment.
Inside: non-finite / huge flow is zeroed / clamped with plain ops (Equal, Where, Clip); flow is
divided by the image size (u / W, v / H) so the net works at any resolution; a stride-4 stem,
a U-Net of ``levels`` InstanceNorm stages (max-pool down, bilinear up to explicit sizes, concat),
a 1x1 head, and a bilinear upsample of the logits to (H, W). Only conv, InstanceNorm, LeakyReLU,
max-pool, interpolate and concat: exportable to ONNX / TensorRT.

Inference post-processing, shared with classical EM and the runtime: ``order_by_area`` renumbers
layer labels by decreasing area so 0 is the largest layer (background); ``layers_from_logits`` =
argmax over K, then that order.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MAX_INPUT_FLOW = 1e4  # px: flow is clamped to this magnitude per component


class ConvINLeaky(nn.Sequential):
    """3x3 conv -> InstanceNorm (affine) -> LeakyReLU(0.1)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.InstanceNorm2d(out_channels, affine=True),
            nn.LeakyReLU(0.1, inplace=True),
        )


class MotionLayerNet(nn.Module):
    """U-Net(levels, base_width) over flow -> ``num_layers`` logits; channels double per level."""

    def __init__(self, num_layers: int = 4, levels: int = 3, base_width: int = 16):
        super().__init__()
        if not 2 <= num_layers <= 5:
            raise ValueError(f"num_layers must be in 2..5, got {num_layers}")
        if not 1 <= levels <= 5 or base_width < 4:
            raise ValueError(f"levels must be in 1..5 and base_width >= 4, got {levels}, {base_width}")
        self.num_layers, self.levels, self.base_width = num_layers, levels, base_width
        self.stride = 2 ** (levels + 1)  # stem /4, then levels - 1 max-pools
        widths = [base_width * 2**i for i in range(levels)]
        self.stem = nn.Sequential(ConvINLeaky(2, widths[0], stride=2), ConvINLeaky(widths[0], widths[0], stride=2))
        self.down = nn.ModuleList(
            [nn.Sequential(ConvINLeaky(c_in, c_out), ConvINLeaky(c_out, c_out))
             for c_in, c_out in zip([widths[0]] + widths[:-1], widths)]
        )
        self.up = nn.ModuleList(
            [nn.Sequential(ConvINLeaky(widths[i + 1] + widths[i], widths[i]), ConvINLeaky(widths[i], widths[i]))
             for i in reversed(range(levels - 1))]
        )
        self.head = nn.Conv2d(widths[0], num_layers, 1)

    def forward(self, flow: torch.Tensor, output_size: tuple[int, int] | None = None) -> torch.Tensor:
        """flow (B, 2, H, W) pixels -> layer logits (B, K, *output_size), default (H, W)."""
        height, width = flow.shape[-2:]
        flow = torch.where(flow == flow, flow, torch.zeros_like(flow))  # NaN -> 0 (NaN != NaN)
        flow = flow.clamp(-MAX_INPUT_FLOW, MAX_INPUT_FLOW)  # ±Inf -> ±MAX_INPUT_FLOW
        scale = torch.tensor([1.0 / width, 1.0 / height], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
        x = self.stem(flow * scale)  # (u / W, v / H), features at stride 4
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        logits = self.head(x)
        return F.interpolate(logits, size=output_size or (height, width), mode="bilinear", align_corners=False)


def order_by_area(labels: np.ndarray, num_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """labels (h, w) ints in 0..K-1 -> (ids (h, w) uint8 with 0 = largest layer, then by decreasing
    area, ties by lower label; order (K,) with order[r] = label of the r-th largest layer)."""
    areas = np.bincount(labels.ravel(), minlength=num_layers)
    order = np.argsort(-areas, kind="stable")
    rank = np.empty(num_layers, dtype=np.uint8)
    rank[order] = np.arange(num_layers, dtype=np.uint8)
    return rank[labels], order


def layers_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Layer ids (B, H, W) int64 on the logits' device from logits or probabilities (B, K, H, W):
    argmax, then ``order_by_area`` (largest layer = 0)."""
    labels = logits.permute(0, 2, 3, 1).contiguous().argmax(dim=-1).cpu().numpy()  # channels-last argmax: ~8x faster on CPU
    ids = np.stack([order_by_area(item, logits.shape[1])[0] for item in labels])
    return torch.from_numpy(ids).long().to(logits.device)
