"""Flow fields with GT motion layers for MotionLayerNet: exact synthetic flow, and the flow the joint
network predicts for the same pairs, cached in a run folder (the joint model runs once per pair).
"""
from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jointperception.config import DataConfig
from jointperception.data.datasets import SyntheticPairDataset
from jointperception.errors import ModelFileError
from jointperception.runtime.pipeline import PerceptionPipeline

LOG = logging.getLogger(__name__)
CACHE_FORMAT = "jointperception-flow-samples-v2"


@dataclass(frozen=True)
class FlowSamples:
    gt_flow: torch.Tensor  # (N, 2, H, W) float32, pixels, exact flow image1 -> image2
    predicted_flow: torch.Tensor  # (M, 2, H, W) float32, the joint model's flow of the first M pairs (M <= N)
    layers: torch.Tensor  # (N, H, W) uint8 GT motion-layer ids of image1 (0 = background)

    def __len__(self) -> int:
        return self.gt_flow.shape[0]


def _image(tensor: torch.Tensor) -> np.ndarray:
    """(3, H, W) uint8 -> (H, W, 3) uint8 contiguous."""
    return np.ascontiguousarray(tensor.permute(1, 2, 0).numpy())


def build_flow_samples(data_cfg: DataConfig, split: str, count: int, predicted_count: int,
                       joint_model: str | Path | None) -> FlowSamples:
    """Render ``count`` pairs of ``split`` (seeds of data_cfg) and predict the flow of the first
    ``predicted_count`` with the joint model file ``joint_model`` (None = bundled) through the
    runtime pipeline on CPU at the data resolution."""
    dataset = SyntheticPairDataset.from_config(data_cfg, split)
    count = min(count, len(dataset))
    predicted_count = min(predicted_count, count)
    pipeline = None
    if predicted_count:
        pipeline = PerceptionPipeline.from_model_file(joint_model, backend="torch", device="cpu",
                                                      network_size=(data_cfg.width, data_cfg.height))
    gt_flow = torch.empty(count, 2, data_cfg.height, data_cfg.width)
    predicted = torch.empty(predicted_count, 2, data_cfg.height, data_cfg.width)
    layers = torch.empty(count, data_cfg.height, data_cfg.width, dtype=torch.uint8)
    for index in range(count):
        item = dataset[index]
        gt_flow[index] = item["flow"]
        layers[index] = item["layers"].to(torch.uint8)
        if index < predicted_count:
            outputs = pipeline.infer_pair(_image(item["image1"]), _image(item["image2"]))
            predicted[index] = torch.from_numpy(outputs.flow).permute(2, 0, 1)
    return FlowSamples(gt_flow, predicted, layers)


def cached_tensors(path: Path, key: dict, build: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The tensors ``build()`` returns, cached at ``path`` (torch file, weights_only, written
    atomically) under ``key``; rebuilt when the cached key differs."""
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=True)
        except pickle.UnpicklingError:
            raise ModelFileError(f"{path}: refused: not a flow cache of plain tensors; delete it to rebuild") from None
        except (RuntimeError, OSError, EOFError) as exc:
            raise ModelFileError(f"{path}: unreadable flow cache ({exc}); delete it to rebuild") from None
        if cached.get("format") == CACHE_FORMAT and cached.get("key") == key:
            return cached["tensors"]
    tensors = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CACHE_FORMAT, "key": key, "tensors": tensors}, tmp)
    tmp.replace(path)
    return tensors


def load_or_build_flow_samples(path: Path, data_cfg: DataConfig, split: str, count: int, predicted_count: int,
                               joint_model: str | Path | None) -> FlowSamples:
    """``build_flow_samples`` cached at ``path``; rebuilt when the request (data config, split,
    counts, model) differs from the cached one."""
    key = {"data": repr(data_cfg), "split": split, "count": count, "predicted": predicted_count,
           "model": str(joint_model)}

    def build() -> dict[str, torch.Tensor]:
        LOG.info("building %s flow samples: %d pairs, %d with predicted flow", split, count, predicted_count)
        samples = build_flow_samples(data_cfg, split, count, predicted_count, joint_model)
        return {"gt_flow": samples.gt_flow, "predicted_flow": samples.predicted_flow, "layers": samples.layers}

    tensors = cached_tensors(path, key, build)
    return FlowSamples(tensors["gt_flow"], tensors["predicted_flow"], tensors["layers"])
