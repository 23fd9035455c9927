"""SegFlow flow branch: a FlowNetS-style encoder-decoder (with batch norm) over the stacked frame pair.

The decoder runs coarse to fine (strides 32 -> 2) with skip links from the encoder. At every
scale it fuses segmentation features (resample, concatenate, conv to the decoder's width) and
refines the flow with a residual prediction:
    flow_s = up(flow_2s) + Delta(skip_s, up(features_2s), up(flow_2s), I1_s, warp(I2_s, up(flow_2s)))
where flows are in pixels at the input resolution.

Two additions to FlowNetS let a small network learn on a CPU budget: a local correlation of
siamese features at stride 8 (as FlowNetC) joins the encoder there, giving an explicit matching
signal, and the fine decoder levels see image 1 and image 2 warped by the current estimate (as
FlowNet2's stacking and SpyNet), which brings sub-pixel accuracy.

With ``cost_volumes`` (PWC-Net's coarse-to-fine matching) the siamese features form a pyramid at
strides 4..32 and every decoder level s in COST_VOLUME_STRIDES also sees the cost volume
    c_s(p, d) = <m1_s(p), m2_s(p + up(flow_2s)(p) / s + d)>,   |d|_inf <= r_s,
of image 2's features warped by the upsampled estimate. The coarsest level matches unwarped over
+-r_32 * 32 px, each finer level corrects the residual, so the reach grows to
sum_s r_s * s (+-120 px) instead of the stride-8 correlation's +-24 px.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jointperception.models.blocks import (
    ConvLeaky,
    FlowPredictor,
    FusionConv,
    backward_warp,
    channel_softmax,
)

DECODER_STRIDES = (32, 16, 8, 4, 2)
WARPED_STRIDES = (8, 4, 2)  # decoder levels that see image 1 and the warped image 2
CORRELATION_STRIDE = 8  # encoder level joined by the correlation volume
CORRELATION_RADIUS = 3  # displacements -3..3 at stride 8, i.e. +-24 px at the input resolution
COST_VOLUME_RADII = {32: 2, 16: 2, 8: 2, 4: 2}  # decoder stride -> r_s of its warped cost volume
COST_VOLUME_STRIDES = tuple(COST_VOLUME_RADII)


def correlation_window_index(height: int, width: int, radius: int, device: torch.device) -> torch.Tensor:
    """Flat indices into a (height + 2 radius, width + 2 radius) plane of every p + d, |dx|, |dy|
    <= radius: -> ((2 radius + 1)^2 * height * width,) int64, ordered (d, y, x) with d = (dy, dx)
    row-major."""
    side = 2 * radius + 1
    padded_width = width + 2 * radius
    offsets = torch.arange(side, device=device)
    window = (offsets.view(side, 1) * padded_width + offsets.view(1, side)).view(-1, 1, 1)  # d -> dy W' + dx
    ys = torch.arange(height, device=device).view(1, height, 1) * padded_width
    xs = torch.arange(width, device=device).view(1, 1, width)
    return (window + ys + xs).reshape(-1)


def local_correlation(features1: torch.Tensor, features2: torch.Tensor, radius: int) -> torch.Tensor:
    """Cosine cost volume c(p, d) = <f1(p), f2(p + d)> / (|f1(p)| |f2(p + d)|), |dx|, |dy| <= radius.

    features1, features2: (B, C, h, w) -> (B, (2 radius + 1)^2, h, w) in [-1, 1], zero outside
    the image. Unit-normalised features keep the volume O(1) from the first step of training.
    Two lowerings of the same sums: a product per displacement in eager torch (the fastest there,
    training included), and while exporting to ONNX one gather of every window, a product and a
    sum (``_gathered_correlation``: 3 ONNX ops instead of 3 per displacement, 2.6 ms less in
    ONNX Runtime at 320x240).
    """
    features1 = F.normalize(features1, dim=1)
    padded = F.pad(F.normalize(features2, dim=1), (radius, radius, radius, radius))
    if torch.onnx.is_in_onnx_export():
        return _gathered_correlation(features1, padded, radius)
    _, _, height, width = features1.shape
    costs = [
        (features1 * padded[:, :, dy : dy + height, dx : dx + width]).sum(dim=1, keepdim=True)
        for dy in range(2 * radius + 1)
        for dx in range(2 * radius + 1)
    ]
    return torch.cat(costs, dim=1)


def _gathered_correlation(features1: torch.Tensor, padded2: torch.Tensor, radius: int) -> torch.Tensor:
    """features1 (B, C, h, w), padded2 (B, C, h + 2r, w + 2r) -> (B, (2r + 1)^2, h, w) dot products
    of features1(p) with padded2(p + r + d): one Gather of whole (channels-last) feature vectors."""
    batch, channels, height, width = features1.shape
    side = 2 * radius + 1
    index = correlation_window_index(height, width, radius, features1.device)
    windows = padded2.flatten(2).transpose(1, 2).index_select(1, index)  # (B, d h w, C)
    windows = windows.view(batch, side * side, height, width, channels)
    return (features1.permute(0, 2, 3, 1).unsqueeze(1) * windows).sum(dim=-1)


def soft_argmax_flow(correlation: torch.Tensor, radius: int, stride: int, temperature: float = 0.1) -> torch.Tensor:
    """Expected displacement under softmax(c / temperature) over the window:
    correlation (B, (2r+1)^2, h, w) -> flow (B, 2, h, w) in input-resolution pixels (x stride)."""
    offsets = torch.arange(-radius, radius + 1, dtype=correlation.dtype, device=correlation.device) * stride
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    weights = channel_softmax(correlation / temperature)
    u = (weights * dx.reshape(1, -1, 1, 1)).sum(dim=1, keepdim=True)
    v = (weights * dy.reshape(1, -1, 1, 1)).sum(dim=1, keepdim=True)
    return torch.cat([u, v], dim=1)


def average_pyramid(image: torch.Tensor, max_stride: int) -> dict[int, torch.Tensor]:
    """image (B, C, H, W), H and W multiples of ``max_stride`` (a power of two) -> {s: (B, C, H/s,
    W/s) mean over s x s blocks} for s = 2, 4, .. max_stride, each level pooled from the one
    before (the same means as pooling the image by s, for a fraction of the reads)."""
    levels, stride = {}, 2
    while stride <= max_stride:
        image = levels[stride] = F.avg_pool2d(image, 2)
        stride *= 2
    return levels


class MatchingFeatures(nn.Module):
    """Siamese image (B, 3, H, W) -> {s: (B, channels, H/s, W/s)} matching features at s = 4, 8
    (the encoder's correlation), and 16, 32 as well when ``pyramid`` (the decoder's cost volumes)."""

    def __init__(self, channels: int, pyramid: bool = False):
        super().__init__()
        self.layers = nn.Sequential(
            ConvLeaky(3, channels // 2, 2), ConvLeaky(channels // 2, channels, 2), ConvLeaky(channels, channels, 2)
        )
        self.coarse = nn.ModuleList([ConvLeaky(channels, channels, 2) for _ in (16, 32)] if pyramid else [])

    def forward(self, image: torch.Tensor) -> dict[int, torch.Tensor]:
        stride4 = self.layers[1](self.layers[0](image))
        features = {4: stride4, 8: self.layers[2](stride4)}
        for stride, layer in zip((16, 32), self.coarse):
            features[stride] = layer(features[stride // 2])
        return features


class FlowEncoder(nn.Module):
    """Stacked pair (B, 6, H, W) -> features at strides 2..32 (FlowNetS conv1..conv6 shape),
    with the stride-8 level merged with the correlation of siamese matching features."""

    def __init__(self, channels: tuple[int, ...], cost_volumes: bool = False):
        super().__init__()
        layers = [ConvLeaky(6, channels[0], stride=2, kernel_size=7)]
        for in_ch, out_ch in zip(channels[:-1], channels[1:]):
            kernel = 5 if out_ch == channels[1] else 3
            layers.append(nn.Sequential(ConvLeaky(in_ch, out_ch, 2, kernel), ConvLeaky(out_ch, out_ch)))
        self.levels = nn.ModuleList(layers)
        self.matching = MatchingFeatures(channels[1], pyramid=cost_volumes)
        merged = channels[2]
        self.merge = ConvLeaky(merged + (2 * CORRELATION_RADIUS + 1) ** 2 + 2, merged)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> tuple[
            dict[int, torch.Tensor], torch.Tensor, tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]]:
        """-> (features per stride, matching flow (B, 2, H/8, W/8) in input pixels, the matching
        feature pyramids {s: (B, C, H/s, W/s)} of image 1 and image 2)."""
        features = {}
        x = torch.cat([image1, image2], dim=1)
        matching = (self.matching(image1), self.matching(image2))
        matching_flow = None
        for level, layer in enumerate(self.levels, start=1):
            x = layer(x)
            if 2**level == CORRELATION_STRIDE:
                correlation = local_correlation(*(pyramid[CORRELATION_STRIDE] for pyramid in matching),
                                                CORRELATION_RADIUS)
                matching_flow = soft_argmax_flow(correlation, CORRELATION_RADIUS, CORRELATION_STRIDE)
                x = self.merge(torch.cat([x, correlation, matching_flow / CORRELATION_STRIDE], dim=1))
            features[2**level] = x
        return features, matching_flow, matching


class FlowDecoder(nn.Module):
    """Coarse-to-fine decoder with skip links, seg fusion, warping and a flow per scale, from stride
    32 down to 2, with a warped cost volume at the COST_VOLUME_STRIDES levels when
    ``cost_volumes``. The cost volume enters last in a level's input, so a network without it
    widens by zero weights exactly."""

    def __init__(self, encoder_channels: dict[int, int], decoder_channels: dict[int, int], seg_channels: dict[int, int],
                 cost_volumes: bool = False):
        super().__init__()
        self.cost_volume_radii = dict(COST_VOLUME_RADII) if cost_volumes else {}
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
            if stride in self.cost_volume_radii:
                in_ch += (2 * self.cost_volume_radii[stride] + 1) ** 2
            self.inputs[str(stride)] = ConvLeaky(in_ch, width)
            self.fusions[str(stride)] = FusionConv(width, seg_channels.get(stride, 0), leaky=True)
            self.predictors[str(stride)] = FlowPredictor(width)
            previous = stride

    def forward(
        self,
        encoder_features: dict[int, torch.Tensor],
        seg_features: dict[int, torch.Tensor] | None,
        image1: torch.Tensor,
        image2: torch.Tensor,
        matching: tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]],
    ) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
        """image1, image2: (B, 3, H, W) normalised frames; matching: the encoder's matching
        feature pyramids of both images.
        -> (flow per stride, coarse to fine, each (B, 2, H/s, W/s) in input pixels;
            fused decoder features per stride)."""
        flows, features = [], {}
        x, flow = None, None
        pyramids = [average_pyramid(image, max(WARPED_STRIDES)) for image in (image1, image2)]
        for stride in DECODER_STRIDES:
            skip = encoder_features[stride]
            if x is None:
                x = skip
            else:
                up_features = self.upconvs[str(stride)](x)
                flow = F.interpolate(flow, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                parts = [skip, up_features, flow]
                if stride in WARPED_STRIDES:
                    parts += [pyramids[0][stride], backward_warp(pyramids[1][stride], flow / stride)]
                x = torch.cat(parts, dim=1)
            if stride in self.cost_volume_radii:
                x = torch.cat([x, self._cost_volume(matching, stride, flow)], dim=1)
            x = self.inputs[str(stride)](x)
            other = seg_features.get(stride) if seg_features is not None else None
            x = self.fusions[str(stride)](x, other)
            delta = self.predictors[str(stride)](x)
            flow = delta if flow is None else flow + delta
            flows.append(flow)
            features[stride] = x
        return flows, features

    def _cost_volume(self, matching: tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]], stride: int,
                     flow: torch.Tensor | None) -> torch.Tensor:
        """c_s of image 1's features against image 2's warped by ``flow`` (B, 2, H/s, W/s) in input
        pixels (None at the coarsest level: no warp) -> (B, (2 r_s + 1)^2, H/s, W/s)."""
        features1, features2 = matching[0][stride], matching[1][stride]
        if flow is not None:
            features2 = backward_warp(features2, flow / stride)
        return local_correlation(features1, features2, self.cost_volume_radii[stride])
