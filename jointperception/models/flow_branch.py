"""SegFlow flow branch: a FlowNetS-style encoder-decoder over the stacked frame pair.

The decoder runs coarse to fine (strides 32 -> 2) with skip links from the encoder. At every
scale it fuses segmentation features (resample, concatenate, conv to the decoder's width) and
refines the flow with a residual prediction:
    flow_s = up(flow_2s) + Delta(skip_s, up(features_2s), up(flow_2s), I1_s, warp(I2_s, up(flow_2s)))
where flows are in pixels at the input resolution. Giving the fine decoder levels image 1 and
image 2 warped by the current estimate (our addition to FlowNetS, as in FlowNet2's stacking and
SpyNet) lets a small network reach sub-pixel accuracy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jointperception.models.blocks import ConvLeaky, FlowPredictor, FusionConv, backward_warp

DECODER_STRIDES = (32, 16, 8, 4, 2)
WARPED_STRIDES = (8, 4, 2)  # decoder levels that see image 1 and the warped image 2


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
    """Coarse-to-fine decoder with skip links, seg fusion, warping and a flow per scale."""

    def __init__(self, encoder_channels: dict[int, int], decoder_channels: dict[int, int], seg_channels: dict[int, int]):
        super().__init__()
        self.inputs = nn.ModuleDict()
        self.fusions = nn.ModuleDict()
        self.predictors = nn.ModuleDict()
        self.upconvs = nn.ModuleDict()
        previous = None
        for stride in DECODER_STRIDES:
            width = decoder_channels[stride]
            in_ch = encoder_channels[stride]
            if previous is not None:
                in_ch += decoder_channels[previous] + 2
                self.upconvs[str(stride)] = nn.ConvTranspose2d(decoder_channels[previous], decoder_channels[previous], 4, 2, 1)
            if stride in WARPED_STRIDES:
                in_ch += 6
            self.inputs[str(stride)] = ConvLeaky(in_ch, width)
            self.fusions[str(stride)] = FusionConv(width, seg_channels.get(stride, 0), normalized=False)
            self.predictors[str(stride)] = FlowPredictor(width)
            previous = stride

    def forward(
        self,
        encoder_features: dict[int, torch.Tensor],
        seg_features: dict[int, torch.Tensor] | None,
        image1: torch.Tensor,
        image2: torch.Tensor,
    ) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
        """image1, image2: (B, 3, H, W) normalised frames.
        -> (flow per stride, coarse to fine, each (B, 2, H/s, W/s) in input pixels;
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
                parts = [skip, up_features, flow]
                if stride in WARPED_STRIDES:
                    small1 = F.avg_pool2d(image1, stride)
                    small2 = F.avg_pool2d(image2, stride)
                    parts += [small1, backward_warp(small2, flow / stride)]
                x = torch.cat(parts, dim=1)
            x = self.inputs[str(stride)](x)
            other = seg_features.get(stride) if seg_features is not None else None
            x = self.fusions[str(stride)](x, other)
            delta = self.predictors[str(stride)](x)
            flow = delta if flow is None else flow + delta
            flows.append(flow)
            features[stride] = x
        return flows, features
