"""``jointperception predict``: masks, flow, occlusion and motion layers for a folder, a video or a
camera topic of a rosbag2 bag (Image or CompressedImage; stems "<index>_<stamp ns>")."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from jointperception.commands.argument_types import network_size
from jointperception.commands.stage_options import add_stage_arguments, stage_settings
from jointperception.data.formats import read_mask
from jointperception.data.sources import BagFrames, open_frames
from jointperception.errors import EXIT_SHORT_INPUT, InputError
from jointperception.models.weights import DEFAULT_MODEL_PATH, load_model
from jointperception.outputs import check_replaceable, staged_folder
from jointperception.runtime.backends import BACKEND_NAMES, PRECISIONS, TorchBackend
from jointperception.runtime.motion_layers import MASK_SOURCES
from jointperception.runtime.pipeline import PerceptionPipeline
from jointperception.runtime.predict_files import predict_to_folder
from jointperception.runtime.predict_object import predict_object_to_folder
from jointperception.train.online_finetune import FinetuneSettings, finetune_segmentation

HELP = "predict mask, flow, occlusion and layers for every frame of a folder, a video or a rosbag2 camera topic"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path,
                        help="folder of frames (sorted by name), a video file or a rosbag2 bag (folder, .mcap or .db3)")
    parser.add_argument("--topic", default=None,
                        help="camera topic of a bag input, sensor_msgs/Image or CompressedImage (default: the bag's only one)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (flow/, mask/, occlusion/, layers/); written whole or not at all, docs/outputs.md")
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the bundled model)")
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="auto", help="inference backend")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (torch backend)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp16: torch CUDA / TensorRT; int8: ONNX Runtime CPU / TensorRT engine")
    parser.add_argument(
        "--network-size", type=network_size, default=(320, 240), metavar="WxH", help="network input size"
    )
    parser.add_argument(
        "--first-mask", type=Path, default=None, metavar="MASK.png",
        help="mask of the first frame (nonzero = object): fine-tune the segmentation branch on it, then follow "
        "that object (semi-supervised mode, docs/first_mask.md; torch backend only; the mask must not be empty)",
    )
    defaults = FinetuneSettings()
    parser.add_argument("--finetune-iters", type=int, default=defaults.iterations, help="fine-tuning steps at most")
    parser.add_argument(
        "--finetune-seconds", type=float, default=defaults.seconds, help="fine-tuning wall time at most (s)"
    )
    parser.add_argument(
        "--mask-source", choices=MASK_SOURCES, default=None,
        help="what the mask thresholds (see README), default fused; with --first-mask the followed object's "
        "motion cue (fused or residual: motion layers and residual, else the motion layers)",
    )
    parser.add_argument(
        "--flip-average", action="store_true",
        help="also run the left-right mirrored pair and average probabilities and flow (2x the cost)",
    )
    add_stage_arguments(parser)


def first_frame(source: Iterable[tuple[str, np.ndarray]]) -> np.ndarray:
    """The first (H, W, 3) uint8 frame of a re-iterable frame source."""
    for _stem, frame in source:
        return frame
    raise InputError("the input holds no frames")


def finetuned_pipeline(
    args: argparse.Namespace, source: Iterable[tuple[str, np.ndarray]]
) -> tuple[PerceptionPipeline, dict, np.ndarray]:
    """Fine-tune the model on (first frame, --first-mask) -> (torch pipeline, summary fields, the
    first mask (H, W) bool)."""
    if args.backend not in ("auto", "torch"):
        raise InputError(f"--first-mask fine-tunes the PyTorch model; use --backend torch or auto, not {args.backend}")
    frame = first_frame(source)
    mask = read_mask(args.first_mask)
    if mask.shape != frame.shape[:2]:
        raise InputError(
            f"{args.first_mask}: first mask is {mask.shape[1]}x{mask.shape[0]} but the frames are "
            f"{frame.shape[1]}x{frame.shape[0]} (WxH)"
        )
    if not mask.any():
        raise InputError(f"{args.first_mask}: first mask is empty: mark the object to follow with nonzero pixels")
    settings = FinetuneSettings(iterations=args.finetune_iters, seconds=args.finetune_seconds)
    model, _cfg, _metadata = load_model(args.model)
    result = finetune_segmentation(model, frame, mask, args.network_size, settings)
    pipeline = PerceptionPipeline(
        TorchBackend(result.model, device=args.device), args.network_size, model_path=args.model or DEFAULT_MODEL_PATH,
        flip_average=args.flip_average, mask_source=args.mask_source or "fused", **stage_settings(args),
    )
    fields = {
        "first_mask": str(args.first_mask),
        "max_iterations": settings.iterations,
        "max_seconds": settings.seconds,
        "iterations": result.iterations,
        "seconds": result.seconds,
        "first_loss": result.losses[0] if result.losses else None,
        "last_loss": result.losses[-1] if result.losses else None,
        "skipped": result.skipped,
    }
    return pipeline, fields, mask


def run(args: argparse.Namespace) -> int:
    check_replaceable(args.out, "predict")  # before the model loads and fine-tunes
    source = open_frames(args.input, args.topic)
    metadata: dict[str, object] = {"input": str(args.input)}
    if isinstance(source, BagFrames):
        metadata["topic"] = source.topic
    if args.first_mask is None:
        pipeline = PerceptionPipeline.from_model_file(
            args.model, args.backend, args.device, args.network_size, flip_average=args.flip_average,
            mask_source=args.mask_source or "fused", precision=args.precision, **stage_settings(args),
        )
        with staged_folder(args.out, "predict") as folder:
            summary = predict_to_folder(pipeline, source, folder, metadata=metadata)
    else:
        pipeline, metadata["finetune"], first_mask = finetuned_pipeline(args, source)
        finetune = metadata["finetune"]
        print(f"fine-tuned the segmentation branch: {finetune['iterations']} steps in {finetune['seconds']:.1f} s")
        with staged_folder(args.out, "predict") as folder:
            summary = predict_object_to_folder(pipeline, source, folder, first_mask, metadata=metadata)
        origins = Counter(row["mask_origin"] for row in summary["frames"])
        print("mask per frame: " + ", ".join(f"{name} {count}" for name, count in sorted(origins.items())))
    latency = summary["latency_ms"]
    print(
        f"wrote predictions for {summary['frame_count']} frames to {args.out} "
        f"(backend {summary['backend']}, mean {latency['mean']:.1f} ms, p90 {latency['p90']:.1f} ms per pair)"
    )
    for warning in summary["warnings"]:
        print(f"jointperception predict: warning: {warning} (summary.json lists it; exit {EXIT_SHORT_INPUT})",
              file=sys.stderr)
    return EXIT_SHORT_INPUT if summary["warnings"] else 0
