"""Latency and throughput of the full pipeline (pre + backend + post, ``infer_pair``) for each
backend variant x resolution, beside the OpenCV peers on the same frames, plus accuracy of every
method on the synthetic validation split. Unavailable variants are listed with the reason."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from jointperception.classical.opencv_flow import classical_motion_segmentation, classical_reference, farneback_flow
from jointperception.config import DataConfig
from jointperception.data.synthetic import render_sequence
from jointperception.errors import InputError
from jointperception.eval.flow_eval import score_flow_pairs
from jointperception.eval.metrics import jaccard
from jointperception.eval.report import latency_stats
from jointperception.eval.synthetic_benchmark import synthetic_pairs
from jointperception.export import tensorrt as tensorrt_export
from jointperception.models.weights import load_model
from jointperception.runtime import onnxruntime_backend
from jointperception.runtime.backends import Backend, TorchBackend
from jointperception.runtime.onnxruntime_backend import OnnxRuntimeBackend
from jointperception.runtime.pipeline import PerceptionPipeline, padded_size
from jointperception.runtime.tensorrt_backend import TensorRTBackend

RESOLUTIONS = ((320, 240), (640, 480), (1280, 720))  # (W, H): camera = network size
TIMING_FRAMES = 4  # rendered frames per resolution; timed runs cycle over their 3 pairs
PairMethod = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]  # -> flow (H, W, 2), mask (H, W)


@dataclass(frozen=True)
class BackendVariant:
    name: str  # as given to --backends
    backend: str  # torch | onnxruntime | tensorrt
    device: str  # cpu | cuda
    precision: str  # fp32 | fp16 | int8
    channels_last: bool = False
    cuda_graphs: bool = False


VARIANTS = (
    BackendVariant("torch", "torch", "cpu", "fp32"),
    BackendVariant("torch-channels-last", "torch", "cpu", "fp32", channels_last=True),
    BackendVariant("onnxruntime", "onnxruntime", "cpu", "fp32"),
    BackendVariant("onnxruntime-int8", "onnxruntime", "cpu", "int8"),
    BackendVariant("torch-cuda-fp16", "torch", "cuda", "fp16"),
    BackendVariant("torch-cuda-fp16-graphs", "torch", "cuda", "fp16", cuda_graphs=True),
    BackendVariant("onnxruntime-cuda", "onnxruntime", "cuda", "fp32"),
    BackendVariant("tensorrt-fp16", "tensorrt", "cuda", "fp16"),
    BackendVariant("tensorrt-int8", "tensorrt", "cuda", "int8"),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)


def dis_classical(preset: str) -> PairMethod:
    """OpenCV DIS at ``preset``, then the classical motion-segmentation reference."""
    def method(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask, flow = classical_reference(first, second, preset)
        return flow, mask
    return method


def farneback_classical(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV Farneback, then the classical motion-segmentation reference."""
    flow = farneback_flow(first, second)
    return flow, classical_motion_segmentation(flow)


PEERS: dict[str, PairMethod] = {
    "dis_ultrafast+classical": dis_classical("ultrafast"),
    "dis_medium+classical": dis_classical("medium"),
    "farneback+classical": farneback_classical,
}


@dataclass(frozen=True)
class BenchSettings:
    model_path: Path
    variants: tuple[BackendVariant, ...]
    peers: tuple[str, ...]
    resolutions: tuple[tuple[int, int], ...]
    runs: int
    warmup: int
    threads: int  # torch intra-op, ONNX Runtime intra-op and OpenCV threads
    val_pairs: int
    cache_dir: Path | None = None  # ONNX exports / TensorRT engines (None = the default caches)
    spin: bool = True  # ONNX Runtime workers busy-wait between parallel sections (torch: OMP_WAIT_POLICY)


def unavailable_reason(variant: BackendVariant) -> str | None:
    """Why ``variant`` cannot run here, or None."""
    if variant.backend == "onnxruntime":
        return onnxruntime_backend.unavailable_reason(variant.device)
    if variant.backend == "tensorrt":
        return tensorrt_export.unavailable_reason(variant.device)
    return None if variant.device == "cpu" or torch.cuda.is_available() else "PyTorch sees no CUDA GPU"


def build_backend(variant: BackendVariant, settings: BenchSettings, network_size: tuple[int, int]) -> Backend:
    """The backend of ``variant`` for frames of ``network_size`` (W, H) (static shapes where it helps)."""
    if variant.backend == "torch":
        network = load_model(settings.model_path, device=variant.device)[0]
        return TorchBackend(network, variant.device, fp16=variant.precision == "fp16",
                            channels_last=variant.channels_last, cuda_graphs=variant.cuda_graphs)
    if variant.backend == "onnxruntime":
        return OnnxRuntimeBackend(settings.model_path, variant.device, threads=settings.threads,
                                  input_size=padded_size(network_size), cache_dir=settings.cache_dir,
                                  precision=variant.precision, allow_spinning=settings.spin)
    return TensorRTBackend(settings.model_path, variant.device, variant.precision,
                           input_size=padded_size(network_size), cache_dir=settings.cache_dir)


def ours(pipeline: PerceptionPipeline) -> PairMethod:
    def method(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = pipeline.infer_pair(first, second)
        return outputs.flow, outputs.mask
    return method


def time_methods(
    methods: dict[str, PairMethod], pairs: Sequence[tuple[np.ndarray, np.ndarray]], runs: int, warmup: int
) -> dict[str, dict]:
    """-> {method: latency percentiles (ms), frames/s = 1000 / mean latency, process CPU ms per frame}.

    Every method is warmed up, then the timed runs go round-robin (run i of each method, then run
    i + 1), so a change in machine load touches every method alike and ratios between methods
    measured in one call stay fair on a shared machine.
    """
    for method in methods.values():
        for index in range(warmup):
            method(*pairs[index % len(pairs)])
    latencies: dict[str, list[float]] = {name: [] for name in methods}
    cpu_seconds = dict.fromkeys(methods, 0.0)
    for index in range(runs):
        for name, method in methods.items():
            cpu_start, start = time.process_time(), time.perf_counter()
            method(*pairs[index % len(pairs)])
            latencies[name].append(1000.0 * (time.perf_counter() - start))
            cpu_seconds[name] += time.process_time() - cpu_start
    results = {}
    for name, values in latencies.items():
        stats = latency_stats(values)
        results[name] = {f"{key}_ms": stats[key] for key in ("p50", "p90", "p99", "mean")} | {
            "fps": 1000.0 / stats["mean"], "cpu_ms_per_frame": 1000.0 * cpu_seconds[name] / runs, "runs": runs}
    return results


def accuracy(methods: dict[str, PairMethod], data_cfg: DataConfig, num_pairs: int) -> dict[str, dict]:
    """-> {method: flow EPE (``score_flow_pairs``) + mask J mean} on the first ``num_pairs``
    synthetic validation pairs; each method runs once per pair for both."""
    pairs, truth = synthetic_pairs(data_cfg, num_pairs)
    masks: dict[str, list[np.ndarray]] = {name: [] for name in methods}

    def flow_of(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def predict(first: np.ndarray, second: np.ndarray) -> np.ndarray:
            flow, mask = methods[name](first, second)
            masks[name].append(mask)
            return flow
        return predict

    scores = score_flow_pairs(pairs, {name: flow_of(name) for name in methods})
    for name, predicted in masks.items():
        scores[name]["j_mean"] = float(np.mean([jaccard(m, t) for m, t in zip(predicted, truth)]))
    return scores


def timing_pairs(size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    frames = render_sequence(2024, TIMING_FRAMES, size[1], size[0]).frames
    return list(zip(frames[:-1], frames[1:]))


def run_bench(settings: BenchSettings, data_cfg: DataConfig, log: Callable[[str], None] = print) -> dict:
    """-> {"latency": [row per method x resolution], "accuracy": {method: metrics}, "settings"}."""
    torch.set_num_threads(settings.threads)
    cv2.setNumThreads(settings.threads)
    rows, accuracy_methods = [], {}
    for size in settings.resolutions:
        methods: dict[str, PairMethod] = {}
        described: dict[str, dict] = {}
        for variant in settings.variants:
            row = {"method": variant.name, "kind": "ours", "backend": variant.backend, "device": variant.device,
                   "precision": variant.precision, "resolution": list(size), "network": list(padded_size(size))}
            reason = unavailable_reason(variant)
            if reason is None:
                try:
                    methods[variant.name] = ours(PerceptionPipeline(build_backend(variant, settings, size), size))
                except InputError as exc:  # GPU variants: e.g. no int8 calibration cache; listed with why
                    if variant.device == "cpu":
                        raise
                    reason = str(exc)
            if reason is not None:
                rows.append(row | {"status": "skipped", "reason": reason})
                log(f"{variant.name} {size[0]}x{size[1]}: skipped ({reason})")
            described[variant.name] = row
        for name in settings.peers:
            methods[name] = PEERS[name]
            described[name] = {"method": name, "kind": "peer", "backend": "opencv", "device": "cpu",
                               "precision": "fp32", "resolution": list(size), "network": list(size)}
        for name, timing in time_methods(methods, timing_pairs(size), settings.runs, settings.warmup).items():
            rows.append(described[name] | {"status": "ok"} | timing)
            log(f"{name} {size[0]}x{size[1]}: p50 {timing['p50_ms']:.1f} ms, {timing['fps']:.1f} frames/s")
    val_size = (data_cfg.width, data_cfg.height)
    for variant in settings.variants:
        if any(r["method"] == variant.name and r["status"] == "ok" for r in rows):
            backend = build_backend(variant, settings, val_size)
            accuracy_methods[variant.name] = ours(PerceptionPipeline(backend, val_size))
    accuracy_methods.update({name: PEERS[name] for name in settings.peers})
    return {"latency": rows, "accuracy": accuracy(accuracy_methods, data_cfg, settings.val_pairs),
            "validation": {"size": list(val_size), "pairs": settings.val_pairs, "seed": data_cfg.val_seed}}
