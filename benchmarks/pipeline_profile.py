"""Where the time of one frame pair goes: the fused graph per ONNX operator type, and each stage of
the pipeline around it, on this CPU.

    OMP_NUM_THREADS=1 python benchmarks/pipeline_profile.py [--input-size 640x480] [--runs 60] \
        --out benchmarks/results/pipeline_profile.json

Bundled models through ONNX Runtime fp32 (2 intra-op threads, idle threads sleep: the node's
settings), 320x240 network, a rendered pair at the input size. Graph: ONNX Runtime's own profiler
over ``runs`` runs, kernel time summed per operator type (ms per run) and the number of kernels
per run; ``session.run`` p50 outside the profiler. Stages: p50 of each public function the
pipeline calls, called on the pair's own data, and of the whole ``infer_pair``, round-robin; the
stages add up to about the whole. Prints a table; writes JSON; no asserts (a profile, not a target).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jointperception.classical.flow_refinement import refine_flow
from jointperception.classical.prealign import dominant_translation, shift_frame
from jointperception.data.synthetic import render_sequence
from jointperception.runtime.motion_layers import residual_mask, split_layers
from jointperception.runtime.onnxruntime_backend import open_session
from jointperception.runtime.pipeline import (
    PerceptionPipeline,
    preprocess,
    resize_to_network,
    restore_flow,
    restore_probability,
)

NETWORK_SIZE = (320, 240)
THREADS = 2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", default="640x480", help="WxH of the camera frames")
    parser.add_argument("--runs", type=int, default=60, help="timed runs per measurement, after 5 warm-up runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"), help="JSON result")
    return parser.parse_args()


def p50_ms(call: Callable[[], object], runs: int) -> float:
    """Median wall time of ``call()`` in ms over ``runs`` runs after 5 warm-up calls."""
    for _ in range(5):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def graph_profile(onnx_path: Path, feeds: dict[str, np.ndarray], runs: int) -> dict:
    """Per operator type: kernel ms per run and kernels per run, from ONNX Runtime's profiler."""
    session = open_session(onnx_path, "cpu", THREADS, allow_spinning=False)
    run_p50 = p50_ms(lambda: session.run(None, feeds), runs)
    with tempfile.TemporaryDirectory() as work:
        profiled = open_session(onnx_path, "cpu", THREADS, allow_spinning=False, profile_prefix=Path(work) / "ort")
        for _ in range(runs):
            profiled.run(None, feeds)
        events = json.loads(Path(profiled.end_profiling()).read_text())
    kernel_us, kernels = Counter(), Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernel_us[event["args"]["op_name"]] += event["dur"]
            kernels[event["args"]["op_name"]] += 1
    by_op = {op: {"ms_per_run": us / runs / 1000.0, "kernels_per_run": kernels[op] // runs}
             for op, us in kernel_us.most_common()}
    return {"session_run_p50_ms": run_p50, "kernel_ms_per_run": sum(kernel_us.values()) / runs / 1000.0,
            "kernels_per_run": sum(kernels.values()) // runs, "by_op_type": by_op}


def stage_profile(pipeline: PerceptionPipeline, first: np.ndarray, second: np.ndarray, runs: int) -> dict:
    """p50 ms of every stage of infer_pair, each called on this pair's own data."""
    width, height = NETWORK_SIZE
    camera = (first.shape[1], first.shape[0])
    first_net, second_net = resize_to_network(first, NETWORK_SIZE), resize_to_network(second, NETWORK_SIZE)
    dx, dy = dominant_translation(first_net, second_net)
    inputs = preprocess(first_net, NETWORK_SIZE), preprocess(shift_frame(second_net, dx, dy), NETWORK_SIZE)
    raw = pipeline.backend.infer(*inputs)
    flow = raw["flow"][0, :, :height, :width].transpose(1, 2, 0)
    stages = {
        "resize both frames": lambda: [resize_to_network(frame, NETWORK_SIZE) for frame in (first, second)],
        "pre-alignment": lambda: dominant_translation(first_net, second_net),
        "pre-processing (both frames)": lambda: [preprocess(frame, NETWORK_SIZE) for frame in (first_net, second_net)],
        "backend (graph without the layer head)": lambda: pipeline.backend.infer(*inputs, layers=False),
        "flow refinement": lambda: refine_flow(first_net, second_net, flow),
        "motion-layer head (on the refined flow)": lambda: pipeline.backend.motion_layers(raw["flow"]),
        "motion layers (split)": lambda: split_layers(raw["layer_prob"], height, width),
        "residual cue": lambda: residual_mask(raw["flow"], height, width, raw["mask_prob"]),
        "restore 5 probabilities": lambda: [restore_probability(raw["mask_prob"], NETWORK_SIZE, camera) for _ in range(5)],
        "restore flow": lambda: restore_flow(raw["flow"], NETWORK_SIZE, camera),
    }
    stages["infer_pair (whole)"] = lambda: pipeline.infer_pair(first, second)
    times: dict[str, list[float]] = {name: [] for name in stages}
    for run in range(5 + runs):  # round-robin, so a slow spell of a shared machine hits every stage alike
        for name, call in stages.items():
            start = time.perf_counter()
            call()
            if run >= 5:
                times[name].append(1000.0 * (time.perf_counter() - start))
    result = {name: statistics.median(values) for name, values in times.items()}
    result["sum of the stages"] = sum(value for name, value in result.items() if name != "infer_pair (whole)")
    return result


def main() -> None:
    args = parse_args()
    width, height = (int(side) for side in args.input_size.lower().split("x"))
    first, second = render_sequence(123, 2, height, width).frames
    pipeline = PerceptionPipeline.from_model_file(None, backend="onnxruntime", network_size=NETWORK_SIZE, threads=THREADS)
    feeds = dict(zip(("image1", "image2"), (preprocess(resize_to_network(frame, NETWORK_SIZE), NETWORK_SIZE)
                                            for frame in (first, second))))
    result = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "input_size": args.input_size, "network_size": "x".join(map(str, NETWORK_SIZE)), "threads": THREADS,
        "runs": args.runs, "graph": graph_profile(pipeline.backend.onnx_path, feeds, args.runs),
        "stages_p50_ms": stage_profile(pipeline, first, second, args.runs),
    }
    graph = result["graph"]
    print(f"fused graph: session.run p50 {graph['session_run_p50_ms']:.1f} ms; under the profiler "
          f"{graph['kernel_ms_per_run']:.1f} ms in {graph['kernels_per_run']} kernels per run")
    for op, row in list(graph["by_op_type"].items())[:12]:
        print(f"  {op:24s} {row['ms_per_run']:6.2f} ms  {row['kernels_per_run']:4d} kernels")
    print(f"pipeline stages at {args.input_size} input, p50 ms:")
    for name, value in result["stages_p50_ms"].items():
        print(f"  {name:30s} {value:6.2f}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
