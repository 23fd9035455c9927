"""``jointperception build-engine``: a TensorRT engine for this GPU from a model or ONNX file.

The engine is written into the engine cache (``--cache-dir``, default
``~/.cache/jointperception/tensorrt``) under its key (ONNX sha256, TensorRT version, GPU,
precision, input shape), where the tensorrt backend finds it, and copied to ``--out`` when
given. This command always builds; the runtime reuses, and the kept timing cache makes a
rebuild quick. It needs TensorRT 10.0 or newer (logged) and builds strongly typed networks:
fp16 from the mixed-precision ONNX, int8 from an explicit Q/DQ ONNX calibrated on consecutive
frame pairs of a folder, a video or a rosbag2 bag (``--topic``, needed when the bag has several
camera topics; Image or CompressedImage), preprocessed like the pipeline.
"""
from __future__ import annotations

import argparse
import itertools
import logging
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import numpy as np

from jointperception.commands.argument_types import parse_size
from jointperception.data.bags import camera_topic, is_bag, read_image_messages, record_rgb
from jointperception.data.image_msg import ImageConversionError
from jointperception.data.sources import open_frames
from jointperception.errors import InputError, ModelFileError
from jointperception.export.engine_cache import (
    PRECISIONS,
    EngineCache,
    copy_engine,
    default_engine_dir,
    sidecar_path,
)
from jointperception.export.onnx import read_onnx_model
from jointperception.export.onnx_cache import cached_onnx
from jointperception.export.tensorrt import build_engine, import_tensorrt, runtime_spec
from jointperception.models.weights import DEFAULT_MODEL_PATH
from jointperception.runtime.pipeline import padded_size, preprocess
from jointperception.runtime.tensorrt_backend import ENGINE_SUFFIXES

LOG = logging.getLogger(__name__)

HELP = "build a TensorRT engine (fp32, fp16 or int8) for this GPU; int8 calibrates on frames or a bag"
DEFAULT_SIZE = (320, 240)  # (W, H) network size when neither --size nor a static ONNX gives one
DEFAULT_PAIRS = 32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None,
                        help="model file: .safetensors, trainer .pt or exported .onnx (default: the bundled model)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="engine precision (default fp32)")
    parser.add_argument("--calibration", type=Path, default=None, metavar="FOLDER|VIDEO|BAG",
                        help="int8 calibration frames: image folder, video file or rosbag2 bag folder")
    parser.add_argument("--topic", default=None, help="camera topic (Image or CompressedImage) of the calibration bag")
    parser.add_argument("--calibration-pairs", type=int, default=DEFAULT_PAIRS,
                        help=f"consecutive frame pairs to calibrate on (default {DEFAULT_PAIRS})")
    parser.add_argument("--size", type=parse_size, default=None, metavar="WxH",
                        help="network size, padded to multiples of 32 (default: a static ONNX's size, else 320x240)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="engine (and ONNX export) cache folder")
    parser.add_argument("--out", type=Path, default=None, help="also copy the engine (+ .json sidecar) here")
    parser.add_argument("--workspace-gb", type=float, default=2.0, help="TensorRT workspace limit (default 2 GiB)")
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N (default cuda)")


def _bag_frames(bag: Path, topic: str | None, count: int) -> list[np.ndarray]:
    """The first ``count`` decodable frames of the bag's camera topic; bad frames are skipped with a warning."""
    topic, _info = camera_topic(bag, topic)
    frames: list[np.ndarray] = []
    with closing(read_image_messages(bag, topic)) as records:
        for record in records:
            try:
                frames.append(record_rgb(record))
            except ImageConversionError as exc:
                LOG.warning("%s: skipping the %s frame at stamp %d: %s", bag, topic, record.stamp_ns, exc)
            if len(frames) == count:
                break
    return frames


def read_calibration_frames(path: Path, topic: str | None, count: int) -> list[np.ndarray]:
    """The first ``count`` frames, (H, W, 3) uint8 RGB, of a bag (``topic``), folder or video.

    Raises InputError for fewer than 2 frames or a ``topic`` without a bag; DataFormatError
    (naming the file) for unreadable data.
    """
    if is_bag(path):
        frames = _bag_frames(path, topic, count)
    else:
        with closing(iter(open_frames(path, topic))) as source:
            frames = [frame for _stem, frame in itertools.islice(source, count)]
    if len(frames) < 2:
        raise InputError(f"{path}: calibration needs at least 2 frames, found {len(frames)}")
    return frames


def calibration_pairs(
    frames: list[np.ndarray], network_size: tuple[int, int]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive frames -> (image1, image2) network inputs, (1, 3, h_pad, w_pad) float32 each,
    preprocessed exactly as ``PerceptionPipeline`` does at ``network_size`` (W, H)."""
    previous = preprocess(frames[0], network_size)
    for frame in frames[1:]:
        current = preprocess(frame, network_size)
        yield previous, current
        previous = current


def _check_arguments(args: argparse.Namespace) -> None:
    if args.precision != "int8" and (args.calibration is not None or args.topic is not None):
        raise InputError("--calibration and --topic apply to --precision int8 only")
    if args.topic is not None and args.calibration is None:
        raise InputError("--topic needs --calibration BAG")
    if args.calibration is not None and not args.calibration.exists():
        raise InputError(f"{args.calibration}: no such file or folder")
    if args.calibration_pairs < 1 or args.workspace_gb <= 0:
        raise InputError("--calibration-pairs and --workspace-gb must be positive")
    if args.out is not None and args.out.suffix not in ENGINE_SUFFIXES:
        raise InputError(f"--out must end in one of {', '.join(sorted(ENGINE_SUFFIXES))}, got {args.out}")


def run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    model_path = args.model if args.model is not None else DEFAULT_MODEL_PATH
    if not model_path.is_file():
        raise ModelFileError(f"{model_path}: model file not found")
    trt = import_tensorrt(args.device)  # a one-line error here without TensorRT >= 10 or a GPU
    LOG.info("build-engine: TensorRT %s, strongly typed %s build", trt.__version__, args.precision)
    frames = None
    if args.calibration is not None:  # read before the (slow) export, so bad data fails fast
        frames = read_calibration_frames(args.calibration, args.topic, args.calibration_pairs + 1)
    if model_path.suffix == ".onnx":
        onnx_path, static = model_path, read_onnx_model(model_path).input_size
    else:
        size = padded_size(args.size or DEFAULT_SIZE)
        onnx_path, static = cached_onnx(model_path, size, cache_dir=args.cache_dir), None
    network_size = args.size or static or DEFAULT_SIZE
    input_size = padded_size(network_size)
    cache = EngineCache(args.cache_dir if args.cache_dir is not None else default_engine_dir())
    spec = runtime_spec(trt, onnx_path, args.precision, input_size, args.device)
    result = build_engine(
        onnx_path, cache.engine_path(spec), args.precision,
        calibration_pairs=calibration_pairs(frames, network_size) if frames is not None else None,
        timing_cache=cache.timing_cache_path(spec), workspace_gb=args.workspace_gb, input_size=input_size,
        int8_onnx=cache.int8_onnx_path(spec), device=args.device,
    )
    print(f"built {result.spec.describe()} in {result.seconds:.1f} s: {result.path}")
    if args.out is not None:
        copy_engine(result.path, args.out)
        print(f"wrote {args.out} and {sidecar_path(args.out).name}")
    return 0
