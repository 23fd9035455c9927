"""JointNet: the SegFlow two-branch network (segmentation + FlowNetS flow) with bidirectional
feature fusion and an occlusion head (SegFlow §3, occlusion head as in Every Frame Counts).

forward(image1, image2) for normalised (B, 3, H, W) frames, H and W multiples of 32:
    mask_logits       (B, 1, H, W)  moving / primary object of image1
    flow              (B, 2, H, W)  image1 -> image2, pixels at the input resolution
    occlusion_logits  (B, 1, H, W)  pixels of image1 not visible in image2
    flow_pyramid      [soft-argmax matching flow at stride 8, then (B, 2, H/s, W/s) for
                       s = 32, 16, 8, 4, 2, 1], input pixels   (training mode only)
    decoder_features  [(B, C_s, H/s, W/s) fused flow-decoder features, s = 32, 16, 8, 4, 2]
                      (training mode only; fed to the EFC occlusion heads)
With ``cost_volumes`` the decoder also matches features at strides 32..4
against image 2's warped by the running estimate (PWC-Net style; see flow_branch).
    encoder_features  [(B, C_s, H/s, W/s) segmentation-encoder features of image1, s = 2 .. 32]
                      (training mode only; EFC temporal consistency)
The pair may come in either temporal order: the node feeds (current, previous).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from jointperception.models.flow_branch import DECODER_STRIDES, FlowDecoder, FlowEncoder
from jointperception.models.segmentation_branch import (
    ResidualEncoder,
    SegmentationHead,
    upsample_logits,
)

STRIDES = (2, 4, 8, 16, 32)
BRANCHES = ("segmentation", "flow")


@dataclass(frozen=True)
class JointNetWidths:
    segmentation: tuple[int, ...]  # residual encoder channels at strides 2..32
    flow_encoder: tuple[int, ...]  # FlowNetS encoder channels at strides 2..32
    flow_decoder: tuple[int, ...]  # decoder channels at strides 32, 16, 8, 4, 2
    blocks_per_stage: int  # residual blocks per segmentation stage


WIDTHS = {
    "tiny": JointNetWidths((16, 24, 32, 48, 64), (16, 32, 48, 64, 96), (64, 48, 32, 24, 16), 1),
    "small": JointNetWidths((24, 32, 48, 64, 96), (24, 48, 64, 96, 128), (96, 64, 48, 32, 24), 2),
    "base": JointNetWidths((32, 64, 96, 128, 192), (32, 64, 128, 192, 256), (128, 96, 64, 48, 32), 2),
}


class OcclusionHead(nn.Module):
    """Two 3x3 convs (hidden_dim, 1) on decoder features + flow at the finest decoder stride -> occlusion logits."""

    def __init__(self, input_dim: int, hidden_dim: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(input_dim + 2, hidden_dim, 3, 1, 1)
        self.conv2 = nn.Conv2d(hidden_dim, 1, 3, 1, 1)

    def forward(self, features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        x = torch.cat([features, flow / 10.0], dim=1)
        return self.conv2(F.leaky_relu(self.conv1(x), 0.1))


class JointNet(nn.Module):
    def __init__(self, widths: JointNetWidths, fusion: bool = True, cost_volumes: bool = False):
        super().__init__()
        seg_channels = dict(zip(STRIDES, widths.segmentation))
        flow_channels = dict(zip(STRIDES, widths.flow_encoder))
        decoder_channels = dict(zip(DECODER_STRIDES, widths.flow_decoder))
        self.fusion = fusion
        self.segmentation_encoder = ResidualEncoder(widths.segmentation, widths.blocks_per_stage)
        self.segmentation_head = SegmentationHead(seg_channels, decoder_channels if fusion else {})
        self.flow_encoder = FlowEncoder(widths.flow_encoder, cost_volumes)
        self.flow_decoder = FlowDecoder(flow_channels, decoder_channels, seg_channels if fusion else {},
                                        cost_volumes)
        self.occlusion_head = OcclusionHead(decoder_channels[DECODER_STRIDES[-1]])

    def branch_modules(self, branch: str) -> list[nn.Module]:
        """Modules trained in a ``branch`` phase; fusion convs belong to the branch they feed."""
        if branch == "segmentation":
            return [self.segmentation_encoder, self.segmentation_head]
        if branch == "flow":
            return [self.flow_encoder, self.flow_decoder, self.occlusion_head]
        raise ValueError(f"unknown branch {branch!r}, expected one of {BRANCHES}")

    def branch_parameters(self, branch: str) -> list[nn.Parameter]:
        return [p for module in self.branch_modules(branch) for p in module.parameters()]

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        size = image1.shape[-2:]
        seg_features = self.segmentation_encoder(image1)
        flow_features, matching_flow, matching = self.flow_encoder(image1, image2)
        # seg -> flow: encoder features of the segmentation branch enter every decoder scale
        flows, decoder_features = self.flow_decoder(
            flow_features, seg_features if self.fusion else None, image1, image2, matching
        )
        # flow -> seg: fused decoder features enter the 1/8, 1/16, 1/32 score layers
        mask_logits, _ = self.segmentation_head(seg_features, decoder_features if self.fusion else None)
        flow = F.interpolate(flows[-1], size=size, mode="bilinear", align_corners=False)
        occlusion_logits = self.occlusion_head(decoder_features[DECODER_STRIDES[-1]], flows[-1])
        outputs: dict[str, torch.Tensor | list[torch.Tensor]] = {
            "mask_logits": upsample_logits(mask_logits, size),
            "flow": flow,
            "occlusion_logits": upsample_logits(occlusion_logits, size),
        }
        if self.training:
            outputs["flow_pyramid"] = [matching_flow, *flows, flow]
            outputs["decoder_features"] = [decoder_features[stride] for stride in DECODER_STRIDES]
            outputs["encoder_features"] = [seg_features[stride] for stride in STRIDES]
        return outputs
