"""PerceptionModel: the fused inference graph every backend runs (eager torch, ONNX, TensorRT).

forward(image1, image2) for normalised float32 (B, 3, H, W) frames, H and W multiples of 32:
    mask_prob       (B, 1, H, W)  sigmoid(mask_logits), moving / primary object of image1
    flow            (B, 2, H, W)  image1 -> image2, pixels at the input resolution
    occlusion_prob  (B, 1, H, W)  sigmoid(occlusion_logits), pixels of image1 not visible in image2
Outputs are a tuple in ``OUTPUT_NAMES`` order, which is also the ONNX output order. The motion
layer network (issue #3) joins here: it reads ``flow`` and appends a ``layer_prob`` output, so
the graph stays one fused model.
"""
from __future__ import annotations

import torch
from torch import nn

from jointperception.models.jointnet import JointNet

INPUT_NAMES = ("image1", "image2")
OUTPUT_NAMES = ("mask_prob", "flow", "occlusion_prob")


class PerceptionModel(nn.Module):
    """Inference wrapper around a JointNet: probabilities instead of logits, tuple outputs."""

    def __init__(self, network: JointNet):
        super().__init__()
        self.network = network

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.network(image1, image2)
        return torch.sigmoid(out["mask_logits"]), out["flow"], torch.sigmoid(out["occlusion_logits"])
