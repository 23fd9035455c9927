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

import math

import torch
import torch.nn.functional as F
from torch import nn

from jointperception.models.blocks import channel_softmax
from jointperception.models.jointnet import JointNet
from jointperception.models.motionnet import MotionLayerNet

INPUT_NAMES = ("image1", "image2")
OUTPUT_NAMES = ("mask_prob", "flow", "occlusion_prob", "layer_prob")
JOINT_OUTPUT_NAMES = OUTPUT_NAMES[:3]  # the outputs before the motion-layer head
LAYER_INPUT_NAME, LAYER_OUTPUT_NAME = "flow", "layer_prob"  # the motion-layer head's input and output
MOTION_GRID_WIDTH = 160  # width of the synthetic flow MotionLayerNet is trained on


def motion_stride_for(width: int) -> int:
    """Power-of-two pooling factor that brings a network input ``width`` closest to
    MOTION_GRID_WIDTH: 160 -> 1, 320 -> 2, 640 -> 4, 1280 -> 8 (at most the network stride 32).
    Measured at 320x240 on DAVIS (10 sequences, every 5th frame): motion-layer J 0.130 at
    stride 1, 0.147 at stride 2; at 160x128 on synthetic validation 0.942 at 1, 0.901 at 2."""
    return int(2 ** min(5, max(0, round(math.log2(max(width, 1) / MOTION_GRID_WIDTH)))))


def motion_grid_flow(flow: torch.Tensor, stride: int) -> torch.Tensor:
    """flow (B, 2, H, W) pixels -> (B, 2, H / stride, W / stride) average-pooled, in pixels of that grid."""
    return flow if stride == 1 else F.avg_pool2d(flow, stride) / stride


def layer_probabilities(motion_net: MotionLayerNet, flow: torch.Tensor, motion_stride: int | None = None) -> torch.Tensor:
    """The fused graph's motion-layer head: flow (B, 2, H, W) pixels -> (B, K, H, W) softmax over
    the K layers of ``motion_net`` run on the flow average-pooled by ``motion_stride`` (None:
    ``motion_stride_for`` W), its logits upsampled to (H, W). The runtime also runs it alone, on
    the refined flow (``runtime.pipeline``)."""
    stride = motion_stride or motion_stride_for(flow.shape[-1])
    return channel_softmax(motion_net(motion_grid_flow(flow, stride), output_size=flow.shape[-2:]))


class PerceptionModel(nn.Module):
    """JointNet + MotionLayerNet over its flow: probabilities instead of logits, tuple outputs.

    The motion net runs on the flow average-pooled by ``motion_stride`` (in pixels of that grid;
    the net normalises flow by its input size, so the scale cancels) and its logits are upsampled
    straight to the network resolution, so at any input size it works on about the grid it was
    trained on (and at 320x240 for a quarter of the cost). ``motion_stride`` None picks
    ``motion_stride_for`` the input width at every call (eager torch, static-shape export); a
    dynamic-shape export fixes it.
    """

    def __init__(self, network: JointNet, motion_net: MotionLayerNet, motion_stride: int | None = None):
        super().__init__()
        if motion_stride is not None and motion_stride < 1:
            raise ValueError(f"motion_stride must be >= 1, got {motion_stride}")
        self.network = network
        self.motion_net = motion_net
        self.motion_stride = motion_stride

    def joint_outputs(self, image1: torch.Tensor, image2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The graph without its motion-layer head: (mask_prob, flow, occlusion_prob)."""
        out = self.network(image1, image2)
        return torch.sigmoid(out["mask_logits"]), out["flow"], torch.sigmoid(out["occlusion_logits"])

    def layer_probabilities(self, flow: torch.Tensor) -> torch.Tensor:
        """flow (B, 2, H, W) pixels -> layer_prob (B, K, H, W): ``layer_probabilities`` with this graph's motion net."""
        return layer_probabilities(self.motion_net, flow, self.motion_stride)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mask_prob, flow, occlusion_prob = self.joint_outputs(image1, image2)
        return mask_prob, flow, occlusion_prob, self.layer_probabilities(flow)
