"""``jointperception predict``: masks, flow, occlusion and motion layers for a folder or video."""
from __future__ import annotations

import argparse
from pathlib import Path

from jointperception.data.sources import open_frames
from jointperception.runtime.backends import BACKEND_NAMES
from jointperception.runtime.pipeline import PerceptionPipeline
from jointperception.runtime.predict_files import predict_to_folder

HELP = "predict mask, flow, occlusion and layers for every frame of a folder or video"


def parse_size(text: str) -> tuple[int, int]:
    """"320x240" -> (320, 240) as (W, H); argparse turns the error into a usage message."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT with positive integers, got {text!r}")
    return int(parts[0]), int(parts[1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="folder of frames (sorted by name) or a video file")
    parser.add_argument("--out", required=True, type=Path, help="output folder (flow/, mask/, occlusion/, layers/)")
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the bundled model)")
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="auto", help="inference backend")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (torch backend)")
    parser.add_argument(
        "--network-size", type=parse_size, default=(320, 240), metavar="WxH", help="network input size"
    )


def run(args: argparse.Namespace) -> int:
    source = open_frames(args.input)
    pipeline = PerceptionPipeline.from_model_file(args.model, args.backend, args.device, args.network_size)
    summary = predict_to_folder(pipeline, source, args.out, metadata={"input": str(args.input)})
    latency = summary["latency_ms"]
    print(
        f"wrote predictions for {summary['frame_count']} frames to {args.out} "
        f"(backend {summary['backend']}, mean {latency['mean']:.1f} ms, p90 {latency['p90']:.1f} ms per pair)"
    )
    return 0
