"""Accuracy on the synthetic validation split (seeds never used in training), through the same
runtime pipeline as ``predict``: our flow / mask vs DIS-medium flow and the classical reference."""
from __future__ import annotations

import time

import numpy as np

from jointperception.classical.opencv_flow import classical_motion_segmentation, dis_flow
from jointperception.config import DataConfig
from jointperception.data.datasets import SyntheticPairDataset
from jointperception.data.real import FlowPair
from jointperception.eval.metrics import aggregate_flow_errors, flow_errors, jaccard
from jointperception.runtime.motion_layers import MASK_SOURCES, source_masks
from jointperception.runtime.pipeline import PerceptionPipeline


def synthetic_pairs(data_cfg: DataConfig, num_pairs: int) -> tuple[list[FlowPair], list[np.ndarray]]:
    """The first ``num_pairs`` validation pairs as numpy FlowPairs (with occlusion) and the
    (H, W) bool moving-object masks of their first frames."""
    dataset = SyntheticPairDataset.from_config(data_cfg, split="val")
    pairs, masks = [], []
    for index in range(min(num_pairs, len(dataset))):
        item = dataset[index]
        masks.append(item["mask"][0].numpy() > 0.5)
        pairs.append(
            FlowPair(
                name=f"val_{index:05d}",
                image1=item["image1"].permute(1, 2, 0).numpy(),
                image2=item["image2"].permute(1, 2, 0).numpy(),
                flow=item["flow"].permute(1, 2, 0).numpy(),
                occlusion=item["occlusion"][0].numpy() > 0.5,
                valid=None,
            )
        )
    return pairs, masks


def evaluate_synthetic_split(pipeline: PerceptionPipeline, data_cfg: DataConfig, num_pairs: int) -> dict[str, dict]:
    """-> {"flow": {ours, dis_medium}, "mask": {ours_fused, ours_segmentation, ours_motion,
    classical_dis_medium}} on ``num_pairs`` val pairs (mask sources: runtime.motion_layers).

    Each method runs once per pair: our flow and masks come from one ``infer_pair``, the classical
    mask from the same DIS-medium flow that is scored as the flow peer.
    """
    pairs, masks = synthetic_pairs(data_cfg, num_pairs)
    errors: dict[str, list[dict[str, float]]] = {"ours": [], "dis_medium": []}
    j_values: dict[str, list[float]] = {f"ours_{source}": [] for source in MASK_SOURCES} | {"classical_dis_medium": []}
    seconds = {"ours": 0.0, "dis_medium": 0.0}
    for pair, mask in zip(pairs, masks):
        start = time.perf_counter()
        ours = pipeline.infer_pair(pair.image1, pair.image2)
        seconds["ours"] += time.perf_counter() - start
        start = time.perf_counter()
        dis = dis_flow(pair.image1, pair.image2, "medium")
        seconds["dis_medium"] += time.perf_counter() - start
        errors["ours"].append(flow_errors(ours.flow, pair.flow, pair.occlusion, pair.valid))
        errors["dis_medium"].append(flow_errors(dis, pair.flow, pair.occlusion, pair.valid))
        for source, predicted in source_masks(ours, pipeline.mask_threshold).items():
            j_values[f"ours_{source}"].append(jaccard(predicted, mask))
        j_values["classical_dis_medium"].append(jaccard(classical_motion_segmentation(dis), mask))
    ms_per_pair = {name: 1000.0 * value / len(pairs) for name, value in seconds.items()}
    flow_results = {name: aggregate_flow_errors(e) | {"ms_per_pair": ms_per_pair[name]} for name, e in errors.items()}
    mask_results = {name: {"j_mean": float(np.mean(values))} for name, values in j_values.items()}
    mask_results[f"ours_{pipeline.mask_source}"]["ms_per_pair"] = ms_per_pair["ours"]  # the published mask
    return {"flow": flow_results, "mask": mask_results, "num_pairs": len(pairs)}
