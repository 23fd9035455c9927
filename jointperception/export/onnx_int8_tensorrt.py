"""Int8 Q/DQ ONNX for strongly typed TensorRT builds, calibrated on real frame pairs.

TensorRT 11 removed implicit INT8 calibration (and 10.x deprecated it since 10.1): an int8
engine is built from a graph with explicit QuantizeLinear / DequantizeLinear nodes. This is the
ONNX Runtime int8 recipe (``runtime.onnx_int8.write_qdq``: convolutions, per-channel int8
weights, min / max calibrated activations) in TensorRT's form: int8 symmetric activations,
float32 biases. Calibration uses the caller's preprocessed pairs (``build-engine --calibration``).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from jointperception.errors import InputError
from jointperception.export.engine_cache import resolve_input_shape
from jointperception.export.onnx_cache import file_sha256
from jointperception.models.perception import INPUT_NAMES
from jointperception.export.onnx_int8 import write_qdq


def tensorrt_int8_onnx(fp32_path: Path, pairs: Iterable[tuple[np.ndarray, np.ndarray]], target: Path,
                       input_size: tuple[int, int] | None = None) -> Path:
    """Quantise ``fp32_path`` for TensorRT into ``target`` (written atomically), calibrated on
    ``pairs``: preprocessed (1, 3, H, W) float32 (image1, image2) at the engine's input shape.

    ``input_size`` (W, H): see ``resolve_input_shape``. Raises InputError for a pair of another
    shape or fewer than one pair.
    """
    shape = resolve_input_shape(fp32_path, input_size)
    feeds, digest = [], hashlib.sha256()
    for index, pair in enumerate(pairs):
        if any(np.shape(image) != shape for image in pair):
            raise InputError(f"calibration pair {index}: shapes {[np.shape(i) for i in pair]}, the engine takes {shape}")
        feed = {name: np.ascontiguousarray(image, dtype=np.float32) for name, image in zip(INPUT_NAMES, pair)}
        for image in feed.values():
            digest.update(image.tobytes())
        feeds.append(feed)
    if not feeds:
        raise InputError("int8 calibration needs at least one frame pair")
    metadata = {"int8_source_sha256": file_sha256(fp32_path), "int8_calibration_sha256": digest.hexdigest(),
                "int8_calibration": f"{len(feeds)} frame pairs, minmax, TensorRT Q/DQ (int8 symmetric)"}
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_qdq(fp32_path, target, feeds, metadata, for_tensorrt=True)
