"""SegFlow flow branch: a FlowNetS-style encoder-decoder over the stacked frame pair.

The decoder runs coarse to fine (strides 32 -> 4). At every scale it fuses segmentation
features (resample, concatenate, conv to the decoder's width) and refines the flow:
    flow_s = up(flow_{2s}) + Delta(features_s)          (pixels at the input resolution)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jointperception.models.blocks import ConvLeaky, FlowPredictor, FusionConv

DECODER_STRIDES = (32, 16, 8, 4)


class FlowEncoder(nn.Module):
    """Stacked pair (B, 6, H, W) -> features at strides 2..32 (FlowNetS conv1..conv6 shape)."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        layers = [ConvLeaky(6, channels[0], stride=2, kernel_size=7)]
        for in_ch, out_ch in zip(channels[:-1], channels[1:]):
            kernel = 5 if out_ch == channels[1] else 3
            layers.append(nn.Sequential(ConvLeaky(in_ch, out_ch, 2, kernel), ConvLeaky(out_ch, out_ch)))
        self.levels = nn.ModuleList(layers)

    def forward(self, pair: torch.Tensor) -> dict[int, torch.Tensor]:
        features = {}
        x = pair
        for level, layer in enumerate(self.levels, start=1):
            x = layer(x)
            features[2**level] = x
        return features


class FlowDecoder(nn.Module):
    """Coarse-to-fine decoder with skip links, seg fusion and a flow prediction per scale."""

    def __init__(self, encoder_channels: dict[int, int], decoder_channels: dict[int, int], seg_channels: dict[int, int]):
        super().__init__()
        self.inputs = nn.ModuleDict()
        self.fusions = nn.ModuleDict()
        self.predictors = nn.ModuleDict()
        self.upconvs = nn.ModuleDict()
        previous = None
        for stride in DECODER_STRIDES:
            width = decoder_channels[stride]
            in_ch = encoder_channels[stride] + (0 if previous is None else decoder_channels[previous] + 2)
            self.inputs[str(stride)] = ConvLeaky(in_ch, width)
            self.fusions[str(stride)] = FusionConv(width, seg_channels.get(stride, 0), normalized=False)
            self.predictors[str(stride)] = FlowPredictor(width)
            if previous is not None:
                self.upconvs[str(stride)] = nn.ConvTranspose2d(decoder_channels[previous], decoder_channels[previous], 4, 2, 1)
            previous = stride

    def forward(
        self, encoder_features: dict[int, torch.Tensor], seg_features: dict[int, torch.Tensor] | None
    ) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
        """-> (flow per stride, coarse to fine, each (B, 2, H/s, W/s) in input pixels;
        fused decoder features per stride)."""
        flows, features = [], {}
        x, flow = None, None
        for stride in DECODER_STRIDES:
            skip = encoder_features[stride]
            if x is None:
                x = skip
            else:
                up_features = self.upconvs[str(stride)](x)
                flow = F.interpolate(flow, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                x = torch.cat([skip, up_features, flow], dim=1)
            x = self.inputs[str(stride)](x)
            other = seg_features.get(stride) if seg_features is not None else None
            x = self.fusions[str(stride)](x, other)
            delta = self.predictors[str(stride)](x)
            flow = delta if flow is None else flow + delta
            flows.append(flow)
            features[stride] = x
        return flows, features
