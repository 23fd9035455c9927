"""JointNet structure: shapes, branch split, and that fusion really connects the branches."""
import pytest
import torch

from jointperception.config import ModelConfig
from jointperception.errors import ConfigError
from jointperception.models import build_model
from jointperception.models.blocks import channel_softmax
from jointperception.models.flow_branch import average_pyramid, local_correlation
from jointperception.models.motionnet import MotionLayerNet
from jointperception.models.perception import PerceptionModel, motion_stride_for


def _pair(batch=2, height=64, width=96, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width, generator=generator), torch.randn(batch, 3, height, width, generator=generator)


@pytest.mark.parametrize("width", ["tiny", "small"])
def test_output_shapes_train_and_eval(width):
    model = build_model(ModelConfig(width=width))
    image1, image2 = _pair()
    outputs = model.train()(image1, image2)
    assert outputs["mask_logits"].shape == (2, 1, 64, 96)
    assert outputs["flow"].shape == (2, 2, 64, 96)
    assert outputs["occlusion_logits"].shape == (2, 1, 64, 96)
    assert [tuple(f.shape[-2:]) for f in outputs["flow_pyramid"]] == [(8, 12), (2, 3), (4, 6), (8, 12), (16, 24), (32, 48), (64, 96)]
    with torch.no_grad():
        assert "flow_pyramid" not in model.eval()(image1, image2)


def test_branch_parameters_partition_the_model():
    model = build_model(ModelConfig())
    seg = {id(p) for p in model.branch_parameters("segmentation")}
    flow = {id(p) for p in model.branch_parameters("flow")}
    assert seg and flow and not seg & flow
    assert seg | flow == {id(p) for p in model.parameters()}
    with pytest.raises(ValueError):
        model.branch_parameters("depth")


def _grad_norm(outputs_key, source_branch, fusion):
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion=fusion)).train()
    outputs = model(*_pair())
    outputs[outputs_key].abs().mean().backward()
    return sum(float(p.grad.abs().sum()) for p in model.branch_parameters(source_branch) if p.grad is not None)


def test_bidirectional_fusion_carries_gradients_both_ways():
    assert _grad_norm("flow", "segmentation", "bidirectional") > 0  # seg -> flow
    assert _grad_norm("mask_logits", "flow", "bidirectional") > 0  # flow -> seg


def test_no_fusion_ablation_isolates_the_branches():
    assert _grad_norm("flow", "segmentation", "none") == 0
    assert _grad_norm("mask_logits", "flow", "none") == 0


def test_pair_order_matters():
    model = build_model(ModelConfig()).eval()
    image1, image2 = _pair()
    with torch.no_grad():
        forward = model(image1, image2)["flow"]
        backward = model(image2, image1)["flow"]
    assert not torch.allclose(forward, backward)


def test_unknown_width_is_a_config_error():
    with pytest.raises(ConfigError, match="model.width"):
        build_model(ModelConfig(width="huge"))


def test_channel_softmax_equals_torch_softmax() -> None:
    logits = 30.0 * torch.randn(2, 5, 7, 9)  # large logits: the max shift keeps exp finite
    torch.testing.assert_close(channel_softmax(logits), torch.softmax(logits, dim=1))


@pytest.mark.parametrize("exporting", [False, True], ids=["eager", "onnx-lowering"])
def test_local_correlation_is_the_cosine_of_every_displaced_pair(exporting: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both lowerings of the cost volume against its definition, pixel by pixel, zero beyond the border."""
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: exporting)
    generator = torch.Generator().manual_seed(3)
    features1, features2 = (torch.randn(2, 5, 4, 6, generator=generator) for _ in range(2))
    radius = 2
    volume = local_correlation(features1, features2, radius)
    assert volume.shape == (2, 25, 4, 6)
    expected = torch.zeros_like(volume)
    for d, (dy, dx) in enumerate((dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)):
        for y in range(4):
            for x in range(6):
                if 0 <= y + dy < 4 and 0 <= x + dx < 6:
                    expected[:, d, y, x] = torch.nn.functional.cosine_similarity(
                        features1[:, :, y, x], features2[:, :, y + dy, x + dx], dim=1)
    torch.testing.assert_close(volume, expected)


def test_average_pyramid_equals_pooling_the_image_by_each_stride() -> None:
    image = torch.randn(2, 3, 32, 64)
    pyramid = average_pyramid(image, 8)
    assert sorted(pyramid) == [2, 4, 8]
    for stride, level in pyramid.items():
        torch.testing.assert_close(level, torch.nn.functional.avg_pool2d(image, stride))


@pytest.mark.parametrize("width,stride", [(96, 1), (160, 1), (320, 2), (480, 4), (640, 4), (1280, 8), (8192, 32)])
def test_motion_stride_brings_the_flow_near_the_training_grid(width: int, stride: int) -> None:
    assert motion_stride_for(width) == stride


def test_perception_model_pools_the_flow_for_the_motion_net_by_input_width() -> None:
    torch.manual_seed(0)
    network = build_model(ModelConfig()).eval()
    motion_net = MotionLayerNet(num_layers=3).eval()
    images = torch.randn(1, 3, 256, 320), torch.randn(1, 3, 256, 320)
    with torch.no_grad():
        adaptive = PerceptionModel(network, motion_net)(*images)
        pooled = PerceptionModel(network, motion_net, motion_stride=2)(*images)
        full = PerceptionModel(network, motion_net, motion_stride=1)(*images)
    assert adaptive[3].shape == (1, 3, 256, 320)
    torch.testing.assert_close(adaptive[3], pooled[3])  # 320 wide: stride 2
    assert not torch.allclose(adaptive[3], full[3])
    torch.testing.assert_close(adaptive[1], full[1])  # the flow itself is untouched
    torch.testing.assert_close(adaptive[3].sum(dim=1), torch.ones(1, 256, 320))
    with pytest.raises(ValueError, match="motion_stride"):
        PerceptionModel(network, motion_net, motion_stride=0)
