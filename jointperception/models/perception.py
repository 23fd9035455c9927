"""PerceptionModel: the fused inference graph every backend runs (eager torch, ONNX, TensorRT).

forward(image1, image2) for normalised float32 (B, 3, H, W) frames, H and W multiples of 32:
    mask_prob       (B, 1, H, W)  sigmoid(mask_logits), moving / primary object of image1
    flow            (B, 2, H, W)  image1 -> image2, pixels at the input resolution
    occlusion_prob  (B, 1, H, W)  sigmoid(occlusion_logits), pixels of image1 not visible in image2
    layer_prob      (B, K, H, W)  softmax over K motion layers of ``flow`` (MotionLayerNet, EM
                                  motion segmentation); which layer is background is decided
                                  after the graph (the largest one, ``runtime.pipeline``)
Outputs are a tuple in ``OUTPUT_NAMES`` order, which is also the ONNX output order: one fused
graph from a frame pair to all four outputs.
"""
from __future__ import annotations

import torch
from torch import nn

from jointperception.models.jointnet import JointNet
from jointperception.models.motionnet import MotionLayerNet

INPUT_NAMES = ("image1", "image2")
OUTPUT_NAMES = ("mask_prob", "flow", "occlusion_prob", "layer_prob")


class PerceptionModel(nn.Module):
    """JointNet + MotionLayerNet over its flow: probabilities instead of logits, tuple outputs."""

    def __init__(self, network: JointNet, motion_net: MotionLayerNet):
        super().__init__()
        self.network = network
        self.motion_net = motion_net

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.network(image1, image2)
        flow = out["flow"]
        layer_prob = torch.softmax(self.motion_net(flow), dim=1)
        return torch.sigmoid(out["mask_logits"]), flow, torch.sigmoid(out["occlusion_logits"]), layer_prob
