"""Optical flow accuracy on pairs with ground truth (Sintel, FlyingChairs, synthetic): ours vs peers."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from jointperception.classical.opencv_flow import dis_flow
from jointperception.data.real import FlowPair
from jointperception.eval.metrics import aggregate_flow_errors, flow_errors
from jointperception.runtime.pipeline import PerceptionPipeline

FlowPredictor = Callable[[np.ndarray, np.ndarray], np.ndarray]  # uint8 frames -> (H, W, 2) f32


def flow_predictors(pipeline: PerceptionPipeline, dis_presets: Iterable[str] = ("medium",)) -> dict[str, FlowPredictor]:
    """Ours through the shared runtime pipeline, plus OpenCV DIS at each preset."""
    predictors: dict[str, FlowPredictor] = {"ours": lambda a, b: pipeline.infer_pair(a, b).flow}
    for preset in dis_presets:
        predictors[f"dis_{preset}"] = lambda a, b, p=preset: dis_flow(a, b, p)
    return predictors


def score_flow_pairs(pairs: Iterable[FlowPair], predictors: dict[str, FlowPredictor]) -> dict[str, dict[str, float]]:
    """-> {predictor: aggregate_flow_errors(...) + ms_per_pair}; EPE averaged over pairs."""
    per_pair: dict[str, list[dict[str, float]]] = {name: [] for name in predictors}
    seconds = {name: 0.0 for name in predictors}
    for pair in pairs:
        for name, predict in predictors.items():
            start = time.perf_counter()
            flow = predict(pair.image1, pair.image2)
            seconds[name] += time.perf_counter() - start
            per_pair[name].append(flow_errors(flow, pair.flow, pair.occlusion, pair.valid))
    results = {}
    for name, errors in per_pair.items():
        results[name] = aggregate_flow_errors(errors)
        results[name]["ms_per_pair"] = 1000.0 * seconds[name] / max(len(errors), 1)
    return results
