"""SyntheticPairDataset: item contents, pair order, determinism, config splits, pickling."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from flow_helpers import warp_error

from jointperception.classical.prealign import dominant_translation, shift_frame
from jointperception.config import DataConfig
from jointperception.data.datasets import SyntheticPairDataset
from jointperception.data.synthetic import render_sequence
from jointperception.errors import ConfigError

H, W = 64, 96


def _hwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(1, 2, 0).numpy()


def test_item_shapes_and_dtypes() -> None:
    item = SyntheticPairDataset(4, 0, H, W)[1]
    expected = {
        "image1": ((3, H, W), torch.uint8), "image2": ((3, H, W), torch.uint8), "flow": ((2, H, W), torch.float32),
        "occlusion": ((1, H, W), torch.float32), "mask": ((1, H, W), torch.float32), "layers": ((H, W), torch.int64),
    }
    assert set(item) == set(expected)
    for name, (shape, dtype) in expected.items():
        assert tuple(item[name].shape) == shape and item[name].dtype == dtype, name
    for name in ("occlusion", "mask"):
        assert set(torch.unique(item[name]).tolist()) <= {0.0, 1.0}
    assert torch.equal(item["mask"][0] > 0, item["layers"] > 0)


def test_items_follow_the_pair_order_of_their_seed() -> None:
    dataset = SyntheticPairDataset(16, 100, H, W, photometric=False)
    swapped = [dataset.is_swapped(i) for i in range(len(dataset))]
    assert any(swapped) and not all(swapped)
    for index in (swapped.index(True), swapped.index(False)):
        seq = render_sequence(100 + index, 2, H, W, photometric=False)
        item = dataset[index]
        if dataset.is_swapped(index):
            first, second, flow, occlusion = 1, 0, seq.flow_backward[0], seq.occlusion_backward[0]
        else:
            first, second, flow, occlusion = 0, 1, seq.flow_forward[0], seq.occlusion_forward[0]
        np.testing.assert_array_equal(_hwc(item["image1"]), seq.frames[first])
        np.testing.assert_array_equal(_hwc(item["image2"]), seq.frames[second])
        np.testing.assert_array_equal(_hwc(item["flow"]), flow)
        np.testing.assert_array_equal(item["occlusion"][0].numpy(), occlusion)
        np.testing.assert_array_equal(item["mask"][0].numpy(), seq.masks[first])
        np.testing.assert_array_equal(item["layers"].numpy(), seq.layers[first])


def test_fixed_order_never_swaps() -> None:
    dataset = SyntheticPairDataset(16, 100, H, W, photometric=False, random_order=False)
    assert not any(dataset.is_swapped(i) for i in range(16))
    seq = render_sequence(103, 2, H, W, photometric=False)
    np.testing.assert_array_equal(_hwc(dataset[3]["image1"]), seq.frames[0])


def test_items_are_deterministic_and_differ_between_indices() -> None:
    dataset = SyntheticPairDataset(3, 5, H, W)
    a, b, c = dataset[2], dataset[2], dataset[1]
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert not torch.equal(a["image1"], c["image1"])


def test_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        SyntheticPairDataset(3, 0, H, W)[3]


def test_from_config_splits() -> None:
    cfg = DataConfig(height=H, width=W, train_samples=10, train_seed=3, val_samples=4, val_seed=500,
                     max_objects=2, max_translation=5.0, photometric=False, random_order=False)
    train, val = SyntheticPairDataset.from_config(cfg, "train"), SyntheticPairDataset.from_config(cfg, "val")
    assert (len(train), train.base_seed, len(val), val.base_seed) == (10, 3, 4, 500)
    for dataset in (train, val):
        assert (dataset.height, dataset.width, dataset.max_objects) == (H, W, 2)
        assert (dataset.max_translation, dataset.photometric, dataset.random_order) == (5.0, False, False)
    seq = render_sequence(501, 2, H, W, max_objects=2, max_translation=5.0, photometric=False)
    np.testing.assert_array_equal(_hwc(val[1]["flow"]), seq.flow_forward[0])
    with pytest.raises(ConfigError):
        SyntheticPairDataset.from_config(cfg, "test")


def test_pickles_and_batches() -> None:
    dataset = pickle.loads(pickle.dumps(SyntheticPairDataset(4, 9, H, W)))
    batch = next(iter(DataLoader(dataset, batch_size=2, num_workers=0)))
    assert tuple(batch["image1"].shape) == (2, 3, H, W) and tuple(batch["layers"].shape) == (2, H, W)
    assert torch.equal(batch["flow"][1], SyntheticPairDataset(4, 9, H, W)[1]["flow"])


@pytest.mark.parametrize("kwargs", [{"num_samples": 0}, {"base_seed": -1}])
def test_bad_arguments(kwargs: dict) -> None:
    arguments = {"num_samples": 2, "base_seed": 0} | kwargs
    with pytest.raises(ConfigError):
        SyntheticPairDataset(arguments["num_samples"], arguments["base_seed"], H, W)


def _warp_error(item: dict[str, torch.Tensor], flow: np.ndarray) -> float:
    """``warp_error`` of the item's frames over visible pixels whose target stays inside the frame."""
    height, width = flow.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    target_x, target_y = xx + flow[..., 0], yy + flow[..., 1]
    inside = (target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
    return warp_error(_hwc(item["image1"]), _hwc(item["image2"]), flow, inside & (item["occlusion"][0].numpy() == 0))


def test_prealigned_items_shift_image2_and_take_the_translation_out_of_the_flow() -> None:
    size = dict(height=128, width=160, motion="real", max_translation=32.0, photometric=False)
    raw = SyntheticPairDataset(24, 500, **size)
    aligned = SyntheticPairDataset(24, 500, **size, prealign=True)
    shifts = 0
    for index in range(len(raw)):
        before, after = raw[index], aligned[index]
        shift = np.array(dominant_translation(_hwc(before["image1"]), _hwc(before["image2"])), dtype=np.float32)
        np.testing.assert_array_equal(after["image1"].numpy(), before["image1"].numpy())
        np.testing.assert_array_equal(_hwc(after["image2"]), shift_frame(_hwc(before["image2"]), *shift.astype(int)))
        np.testing.assert_allclose(_hwc(after["flow"]), _hwc(before["flow"]) - shift)
        for name in ("occlusion", "mask", "layers"):
            assert torch.equal(after[name], before[name]), name
        if shift.any():
            shifts += 1  # the residual target explains the shifted frame; the sign's opposite does not
            residual = _hwc(after["flow"])
            assert _warp_error(after, residual) < 0.5 * _warp_error(after, residual + 2 * shift)
    assert shifts >= 3


def test_prealign_comes_from_the_data_config() -> None:
    cfg = DataConfig(height=64, width=96, prealign=True)
    assert SyntheticPairDataset.from_config(cfg, "train").prealign and SyntheticPairDataset.from_config(cfg, "val").prealign
    assert not SyntheticPairDataset.from_config(DataConfig(height=64, width=96), "train").prealign
