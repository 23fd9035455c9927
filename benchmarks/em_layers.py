"""MotionLayerNet vs classical iterative EM on the synthetic validation split (seeds from val_seed,
never used in training), on exact GT flow and on the bundled joint model's predicted flow.

Per method and flow source: layer J (best one-to-one matching of predicted to GT motion layers,
mean IoU over GT layers), foreground J (all layers but the largest vs the GT moving mask), and
time per frame measured here on one thread (network: one forward pass + argmax + ordering by area, in
torch eager and in ONNX Runtime from a static-shape export as the runtime opens it; classical EM: to convergence, same K and motion model),
with the speed ratios.

    OMP_NUM_THREADS=1 python benchmarks/em_layers.py --model models/motionnet_k4.safetensors
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from jointperception.config import config_from_dict
from jointperception.eval.classical_em import classical_em
from jointperception.eval.layer_metrics import foreground_j, matched_layer_iou
from jointperception.models.motionnet import layers_from_logits, order_by_area
from jointperception.models.weights import load_motion_model
from jointperception.runtime.motion_layers import argmax_layers
from jointperception.runtime.onnxruntime_backend import open_session
from jointperception.train.flow_samples import build_flow_samples

WARMUP_PASSES = 5


def score(method: str, layers: list[np.ndarray], gt_layers: np.ndarray, times_s: list[float], iterations: list[int]) -> dict:
    layer_j = [matched_layer_iou(pred, gt) for pred, gt in zip(layers, gt_layers)]
    fg_j = [foreground_j(pred, gt > 0) for pred, gt in zip(layers, gt_layers)]
    motions = np.array([np.unique(gt).size for gt in gt_layers])
    result = {
        "method": method,
        "layer_j": float(np.mean(layer_j)),
        "fg_j": float(np.mean(fg_j)),
        "ms_mean": 1000.0 * float(np.mean(times_s)),
        "ms_median": 1000.0 * float(np.median(times_s)),
        "layer_j_by_motions": {int(m): float(np.mean(np.array(layer_j)[motions == m])) for m in np.unique(motions)},
    }
    if iterations:
        result["iterations_mean"] = float(np.mean(iterations))
    return result


@torch.inference_mode()
def run_network(model: torch.nn.Module, flows: torch.Tensor) -> tuple[list[np.ndarray], list[float]]:
    for _ in range(WARMUP_PASSES):
        layers_from_logits(model(flows[:1]))
    layers, times = [], []
    for flow in flows:
        start = time.perf_counter()
        predicted = layers_from_logits(model(flow[None]))[0]
        times.append(time.perf_counter() - start)
        layers.append(predicted.numpy())
    return layers, times


def run_network_onnxruntime(model: torch.nn.Module, flows: torch.Tensor) -> tuple[list[np.ndarray], list[float]]:
    """The same network exported to ONNX (dynamo, opset 18, static shape), run as the deployed
    graph is: ``open_session`` on the CPU, 1 thread, then the runtime's numpy post-processing
    (``argmax_layers``, ``order_by_area``)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "motionnet.onnx"
        torch.onnx.export(model, (flows[:1],), str(path), dynamo=True, external_data=False, opset_version=18,
                          input_names=["flow"], output_names=["layer_logits"])
        session = open_session(path, "cpu", threads=1, allow_spinning=False)
    inputs = [flow[None].numpy() for flow in flows]
    num_layers = model.num_layers
    for _ in range(WARMUP_PASSES):
        session.run(None, {"flow": inputs[0]})
    layers, times = [], []
    for flow in inputs:
        start = time.perf_counter()
        predicted = order_by_area(argmax_layers(session.run(None, {"flow": flow})[0][0]), num_layers)[0]
        times.append(time.perf_counter() - start)
        layers.append(predicted)
    return layers, times


def run_classical(flows: torch.Tensor, num_layers: int, motion_model: str, max_iterations: int
                  ) -> tuple[list[np.ndarray], list[float], list[int]]:
    layers, times, iterations = [], [], []
    for flow in flows:
        start = time.perf_counter()
        result = classical_em(flow, num_layers, motion_model, max_iterations=max_iterations)
        times.append(time.perf_counter() - start)
        layers.append(result.layers.numpy())
        iterations.append(result.iterations)
    return layers, times, iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/motionnet_k4.safetensors"))
    parser.add_argument("--pairs", type=int, default=100, help="validation pairs (default: %(default)s)")
    parser.add_argument("--max-iterations", type=int, default=50, help="classical EM cap (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/em_layers.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, motion_cfg, meta = load_motion_model(args.model)
    train_data = config_from_dict({"data": meta["config"]["data"]}).data
    data_cfg = dataclasses.replace(train_data, val_samples=args.pairs)
    samples = build_flow_samples(data_cfg, "val", args.pairs, args.pairs, None)
    gt_layers = samples.layers.numpy()
    results = []
    for source, flows in (("gt_flow", samples.gt_flow), ("predicted_flow", samples.predicted_flow)):
        net_layers, net_times = run_network(model, flows)
        ort_layers, ort_times = run_network_onnxruntime(model, flows)
        em_layers, em_times, em_iterations = run_classical(flows, motion_cfg.num_layers, motion_cfg.motion_model,
                                                           args.max_iterations)
        network = score("motionnet", net_layers, gt_layers, net_times, [])
        network_ort = score("motionnet_onnxruntime", ort_layers, gt_layers, ort_times, [])
        classical = score("classical_em", em_layers, gt_layers, em_times, em_iterations)
        for entry in (network, network_ort, classical):
            results.append({"flow": source, **entry})
        for entry in (network, network_ort):
            ratio = classical["ms_mean"] / entry["ms_mean"]
            results.append({"flow": source, "method": f"{entry['method']} vs classical_em", "speed_ratio": ratio,
                            "layer_j_gain": entry["layer_j"] - classical["layer_j"],
                            "meets_target": bool(entry["layer_j"] >= classical["layer_j"] and ratio >= 20.0)})
            print(f"{source}: {entry['method']} layer J {entry['layer_j']:.3f} fg J {entry['fg_j']:.3f} "
                  f"{entry['ms_mean']:.2f} ms | classical EM layer J {classical['layer_j']:.3f} fg J "
                  f"{classical['fg_j']:.3f} {classical['ms_mean']:.1f} ms ({classical['iterations_mean']:.1f} it) "
                  f"| {ratio:.1f}x faster")
    report = {
        "model": str(args.model),
        "num_layers": motion_cfg.num_layers,
        "motion_model": motion_cfg.motion_model,
        "resolution": [data_cfg.width, data_cfg.height],
        "pairs": args.pairs,
        "val_seed": data_cfg.val_seed,
        "threads": args.threads,
        "classical_max_iterations": args.max_iterations,
        "machine": platform.processor() or platform.machine(),
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
