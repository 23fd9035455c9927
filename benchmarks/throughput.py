"""Throughput on this machine: training samples/s and ``predict`` latency per frame.

    python benchmarks/throughput.py --out benchmarks/results/throughput.json

Training: the real trainer (config/train_synthetic.yaml, batch 8, on-the-fly rendering with its
DataLoader worker) for a short run; samples/s is the mean of its steady-state log lines.
Predict: the bundled model through the same code path as ``jointperception predict``
(folder of rendered frames -> files), per-frame latency from summary.json after a warm-up, at
320x240 and 640x480 input, with the default 320x240 network and with the network at the input size.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from jointperception.config import load_config
from jointperception.data.formats import write_image
from jointperception.data.sources import open_frames
from jointperception.data.synthetic import render_sequence
from jointperception.runtime.pipeline import PerceptionPipeline
from jointperception.runtime.predict_files import predict_to_folder
from jointperception.train.trainer import train


def training_samples_per_s(config: Path, steps: int, work: Path) -> dict:
    cfg = load_config(config)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=steps, eval_every=steps, log_every=10))
    start = time.perf_counter()
    train(cfg, work / "train", device="cpu")
    wall = time.perf_counter() - start
    lines = [json.loads(line) for line in (work / "train" / "metrics.jsonl").read_text().splitlines()]
    rates = [line["samples_per_s"] for line in lines if line["kind"] == "train"][1:]  # skip warm-up
    return {"samples_per_s": statistics.mean(rates), "batch_size": cfg.train.batch_size,
            "size": [cfg.data.width, cfg.data.height], "steps": steps, "wall_s_incl_validation": wall}


def predict_latency(model: Path | None, input_size: tuple[int, int], network_size: tuple[int, int], frames: int, work: Path) -> dict:
    width, height = input_size
    folder = work / f"frames_{width}x{height}"
    sequence = render_sequence(123, frames, height, width)
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(sequence.frames):
        write_image(folder / f"{index:05d}.png", frame)
    pipeline = PerceptionPipeline.from_model_file(model, network_size=network_size)
    pipeline.infer_pair(sequence.frames[0], sequence.frames[1])  # warm-up
    start = time.perf_counter()
    summary = predict_to_folder(pipeline, open_frames(folder), work / f"out_{width}x{height}_{network_size[0]}")
    wall = time.perf_counter() - start
    latencies = [frame["latency_ms"] for frame in summary["frames"]]
    return {"input": [width, height], "network": list(network_size), "frames": len(latencies),
            "infer_ms_p50": float(np.percentile(latencies, 50)), "infer_ms_p90": float(np.percentile(latencies, 90)),
            "predict_ms_per_frame_incl_io": 1000.0 * wall / len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config/train_synthetic.yaml"))
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--frames", type=int, default=12, help="frames per input size (<= 16)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
               "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results["predict"] = [
            predict_latency(args.model, size, network, args.frames, work)
            for size in ((320, 240), (640, 480))
            for network in {(320, 240), size}
        ]
        results["training"] = training_samples_per_s(args.config, args.train_steps, work)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"training: {results['training']['samples_per_s']:.1f} samples/s "
          f"(batch {results['training']['batch_size']}, {results['training']['size'][0]}x{results['training']['size'][1]})")
    for row in results["predict"]:
        print(f"predict {row['input'][0]}x{row['input'][1]} (network {row['network'][0]}x{row['network'][1]}): "
              f"p50 {row['infer_ms_p50']:.1f} ms, p90 {row['infer_ms_p90']:.1f} ms, "
              f"{row['predict_ms_per_frame_incl_io']:.1f} ms/frame with file output")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
