"""One prepared GPU check: the network alone and the whole GPU-resident pipeline, torch fp32 /
fp16 / fp16 + CUDA graphs, at 320x240, 640x480 and 1280x720, with parity against the CPU.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json           # on a CUDA GPU
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check.json    # smoke run

Needs PyTorch with CUDA and the CPU ONNX Runtime the package imports; no network access. The
network alone times ``TorchBackend.infer_tensors`` on device tensors (nothing crosses to the host);
the pipeline times ``DevicePipeline.infer_pair`` from host frames (H, W, 3) uint8 at the network
size to host outputs, with the default stages (pre-alignment, flow refinement, motion layers on
the refined flow, the fused mask, a mask memory); ``stage_ms`` times each device stage alone. Parity: the GPU network's outputs against torch
fp32 on the CPU (flow max / mean |diff| px, mask agreement), the GPU pipeline against the CPU
pipeline (flow mean |diff|, mask agreement) on a rendered pair at each size. Figures are medians
over the timed iterations; fps = 1000 / median ms. The goal the issue set (an H100-class GPU,
640x480 fp16): network >= 2000 fps, pipeline >= 300 fps; the JSON says whether it is met. A run
stops starting new measurements after ``--budget-s`` and records what it skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from jointperception.data.synthetic import render_sequence
from jointperception.models.weights import DEFAULT_MODEL_PATH, load_model
from jointperception.runtime.backends import TorchBackend
from jointperception.runtime.pipeline import PerceptionPipeline, preprocess
from jointperception.runtime.torch_stages import frames as device_frames
from jointperception.runtime.torch_stages.flow_refinement import refine_flow
from jointperception.runtime.torch_stages.layers import split_layers
from jointperception.runtime.torch_stages.mask_memory import TorchMaskMemory
from jointperception.runtime.torch_stages.pipeline import DevicePipeline
from jointperception.runtime.torch_stages.prealign import dominant_translation
from jointperception.runtime.torch_stages.residual import residual_mask

SIZES = ((320, 240), (640, 480), (1280, 720))
QUICK_SIZES = ((96, 64),)
CONFIGS = {"fp32": {}, "fp16": {"fp16": True}, "fp16_cuda_graphs": {"fp16": True, "cuda_graphs": True}}
GOAL = {"size": [640, 480], "config": "fp16_cuda_graphs", "network_fps": 2000.0, "pipeline_fps": 300.0}


def synchronize(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize(device)


def timed(run, device: str, warmup: int, iterations: int) -> dict:
    """Median / p90 ms of ``run()`` after ``warmup`` calls, the device synchronised around each."""
    for _ in range(warmup):
        run()
    synchronize(device)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1000.0)
    median = float(np.median(times))
    return {"ms_median": median, "ms_p90": float(np.percentile(times, 90)), "fps": 1000.0 / median,
            "iterations": iterations}


def stream(size: tuple[int, int], count: int) -> list[np.ndarray]:
    width, height = size
    return list(render_sequence(77, count, height, width).frames)


def network_parity(backend: TorchBackend, reference: dict, inputs: tuple[np.ndarray, np.ndarray]) -> dict:
    ours = backend.infer(*inputs)
    flow = np.abs(ours["flow"] - reference["flow"])
    return {"flow_max_px": float(flow.max()), "flow_mean_px": float(flow.mean()),
            "mask_agreement": float(np.mean((ours["mask_prob"] > 0.5) == (reference["mask_prob"] > 0.5)))}


def pipeline_parity(pipeline: DevicePipeline, cpu: PerceptionPipeline, frames: list[np.ndarray]) -> dict:
    ours, expected = pipeline.infer_pair(frames[1], frames[0]), cpu.infer_pair(frames[1], frames[0])
    return {"flow_mean_px": float(np.abs(ours.flow - expected.flow).mean()),
            "mask_agreement": float(np.mean(ours.mask == expected.mask)),
            "layers_agreement": float(np.mean(ours.layers == expected.layers))}


def stage_times(backend: TorchBackend, pair: list[np.ndarray], size: tuple[int, int], device: str, warmup: int,
                iterations: int) -> dict:
    """Median ms of each device stage alone on one pair (where the pipeline's time goes)."""
    width, height = size
    with torch.inference_mode():
        first, second = (device_frames.resize_to_network(device_frames.upload(frame, torch.device(device)), size)
                         for frame in pair)
        inputs = (device_frames.normalise(first), device_frames.normalise(second))
        raw = {name: value.float().clone() for name, value in backend.infer_tensors(*inputs, layers=False).items()}
        flow = raw["flow"]
        moving = split_layers(backend.motion_layers_tensor(flow).float(), height, width)[1]
        memory = TorchMaskMemory()
        memory.update(raw["mask_prob"][0, 0, :height, :width], flow[0, :, :height, :width],
                      raw["occlusion_prob"][0, 0, :height, :width] > 0.5, "fused")
        stages = {
            "upload_resize": lambda: device_frames.resize_to_network(device_frames.upload(pair[0], torch.device(device)),
                                                                     size),
            "prealign": lambda: dominant_translation(first, second),
            "network_joint": lambda: backend.infer_tensors(*inputs, layers=False),
            "refine_flow": lambda: refine_flow(first, second, flow[..., :height, :width]),
            "motion_layers": lambda: split_layers(backend.motion_layers_tensor(flow).float(), height, width),
            "residual_cue": lambda: residual_mask(flow, height, width, raw["mask_prob"] + moving),
            "mask_memory": lambda: memory.update(raw["mask_prob"][0, 0, :height, :width], flow[0, :, :height, :width],
                                                 raw["occlusion_prob"][0, 0, :height, :width] > 0.5, "fused"),
        }
        return {name: timed(run, device, warmup, iterations)["ms_median"] for name, run in stages.items()}


def measure_size(size: tuple[int, int], device: str, configs: dict, warmup: int, iterations: int,
                 deadline: float, skipped: list[str]) -> list[dict]:
    network, _config, _extra = load_model(DEFAULT_MODEL_PATH, device="cpu")
    frames = stream(size, iterations + warmup + 2)
    inputs = (preprocess(frames[1], size), preprocess(frames[0], size))
    cpu_backend = TorchBackend(network, "cpu")
    reference = cpu_backend.infer(*inputs)
    cpu_pipeline = PerceptionPipeline(cpu_backend, size)
    records = []
    for name, options in configs.items():
        label = f"{size[0]}x{size[1]} {name}"
        if time.perf_counter() > deadline:
            skipped.append(f"{label}: time budget spent")
            continue
        backend = TorchBackend(load_model(DEFAULT_MODEL_PATH, device=device)[0], device, **options)
        tensors = tuple(torch.from_numpy(image).to(device) for image in inputs)
        network_time = timed(lambda: backend.infer_tensors(*tensors), device, warmup, iterations)
        pipeline = DevicePipeline(backend, size)
        memory = TorchMaskMemory()
        position = iter(range(len(frames) - 1))

        def one_pair() -> None:
            index = next(position, None)
            if index is None:
                index = 0
            pipeline.infer_pair(frames[index + 1], frames[index], memory)

        pipeline_time = timed(one_pair, device, warmup, iterations)
        record = {"size": list(size), "config": name, "network": network_time, "pipeline": pipeline_time,
                  "stage_ms": stage_times(backend, frames[:2], size, device, warmup, iterations),
                  "network_parity_vs_cpu_fp32": network_parity(backend, reference, inputs),
                  "pipeline_parity_vs_cpu_pipeline": pipeline_parity(pipeline, cpu_pipeline, frames)}
        print(f"{label:28s} network {network_time['ms_median']:8.3f} ms ({network_time['fps']:8.1f} fps)  "
              f"pipeline {pipeline_time['ms_median']:8.3f} ms ({pipeline_time['fps']:7.1f} fps)  "
              f"flow |diff| {record['network_parity_vs_cpu_fp32']['flow_mean_px']:.4f} px", flush=True)
        records.append(record)
    return records


def goal_status(records: list[dict]) -> dict:
    match = [r for r in records if r["size"] == GOAL["size"] and r["config"] == GOAL["config"]]
    if not match:
        return {**GOAL, "measured": False}
    network_fps, pipeline_fps = match[0]["network"]["fps"], match[0]["pipeline"]["fps"]
    return {**GOAL, "measured": True, "network_fps_measured": network_fps, "pipeline_fps_measured": pipeline_fps,
            "network_met": network_fps >= GOAL["network_fps"], "pipeline_met": pipeline_fps >= GOAL["pipeline_fps"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu: a smoke run of the same code)")
    parser.add_argument("--quick", action="store_true", help="one small size, 1 timed iteration (smoke test)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"), help="JSON to write")
    parser.add_argument("--iterations", type=int, default=50, help="timed iterations per measurement (default 50)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="start no new measurement after this many seconds (default 420)")
    args = parser.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: PyTorch sees no CUDA GPU; use --device cpu --quick for a smoke run")
    start = time.perf_counter()
    sizes = QUICK_SIZES if args.quick else SIZES
    iterations, warmup = (1, 0) if args.quick else (args.iterations, 10)
    configs = CONFIGS if args.device != "cpu" else {"fp32": {}}
    skipped = [] if args.device != "cpu" else [f"{name}: needs CUDA" for name in CONFIGS if name != "fp32"]
    records = []
    for size in sizes:
        records += measure_size(size, args.device, configs, warmup, iterations,
                                start + args.budget_s, skipped)
    result = {
        "command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": torch.cuda.get_device_name(args.device) if args.device != "cpu" else platform.processor() or "cpu",
        "torch": torch.__version__, "cuda": torch.version.cuda, "quick": args.quick,
        "wall_s": round(time.perf_counter() - start, 1), "records": records, "skipped": skipped,
        "goal": goal_status(records),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f"{args.out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({result['wall_s']} s); goal: {json.dumps(result['goal'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
