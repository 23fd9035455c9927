"""Int8 ONNX for the ONNX Runtime CPU provider: static QDQ quantisation of the convolutions.

Convolutions (about 75 % of the CPU time) get int8 weights (per output channel, symmetric) and
uint8 activations whose ranges are calibrated (min / max) on ``CALIBRATION_PAIRS`` rendered
synthetic pairs at the model's input size; everything else (correlation, soft-argmax,
warping, upsampling, sigmoid) stays float32. The file is derived from a static fp32 export and
cached beside it, keyed by that export's sha256; a stale or corrupt file is rebuilt.
``write_qdq`` also makes TensorRT's explicit-quantization graph (``export.onnx_int8_tensorrt``).
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import torch

from jointperception.data.synthetic import render_sequence
from jointperception.errors import ModelFileError
from jointperception.export.onnx import read_onnx_model
from jointperception.export.onnx_cache import file_sha256, is_current
from jointperception.export.onnx_hash import stamp_graph_hash
from jointperception.models.normalize import normalize_images
from jointperception.models.perception import INPUT_NAMES

LOG = logging.getLogger(__name__)

CALIBRATION_PAIRS = 8
CALIBRATION_SEED = 20_000_000  # rendered scenes; disjoint from the training and validation seeds
QUANTIZED_OPS = ["Conv"]


def _calibration_feeds(input_size: tuple[int, int]) -> list[dict]:
    """CALIBRATION_PAIRS feeds {image1, image2: (1, 3, H, W) float32 normalised} at ``input_size`` (W, H)."""
    width, height = input_size
    feeds = []
    for index in range(CALIBRATION_PAIRS):
        frames = render_sequence(CALIBRATION_SEED + index, 2, height, width).frames
        # frames are rendered at the input size itself, so preprocessing is normalisation only
        feeds.append({name: normalize_images(torch.from_numpy(frame).permute(2, 0, 1)[None]).numpy()
                      for name, frame in zip(INPUT_NAMES, frames)})
    return feeds


def quantized_onnx(fp32_path: Path) -> Path:
    """Static fp32 ONNX export -> path of its int8 (QDQ) version, built on first use.

    Raises ModelFileError for a dynamic-shape export (calibration needs one input size).
    """
    info = read_onnx_model(fp32_path)
    if info.input_size is None:
        raise ModelFileError(f"{fp32_path}: int8 needs a static-shape export; give an input size")
    digest = file_sha256(fp32_path)
    target = fp32_path.with_name(f"{fp32_path.stem}-int8-qdq.onnx")
    if is_current(target, "int8_source_sha256", digest):
        return target
    metadata = {"int8_source_sha256": digest,
                "int8_calibration": f"{CALIBRATION_PAIRS} synthetic pairs from seed {CALIBRATION_SEED}, minmax"}
    return write_qdq(fp32_path, target, _calibration_feeds(info.input_size), metadata, for_tensorrt=False)


def write_qdq(fp32_path: Path, target: Path, feeds: Iterable[dict[str, np.ndarray]], metadata: dict[str, str],
              for_tensorrt: bool) -> Path:
    """Quantise the QUANTIZED_OPS of ``fp32_path`` (static QDQ, min / max calibrated on ``feeds``:
    {image1, image2: (1, 3, H, W) float32}) into ``target`` atomically, ``metadata`` added.

    Weights are int8 per output channel, symmetric. Activations: uint8 with a zero point for ONNX
    Runtime's CPU kernels; for TensorRT's explicit quantization (``for_tensorrt``) int8 symmetric
    (zero point 0) with float32 biases, the only Q/DQ form its strongly typed builder accepts.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self._feeds, None)

    options = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False} if for_tensorrt else {}
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        prepared, quantized = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantized), Frames(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=QUANTIZED_OPS, per_channel=True,
                        activation_type=QuantType.QInt8 if for_tensorrt else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, extra_options=options)
        proto = onnx.load_model(str(quantized))
        onnx.helper.set_model_props(proto, read_onnx_model(fp32_path).metadata | metadata)
        stamp_graph_hash(proto)
        staged = Path(work) / "final.onnx"
        onnx.save_model(proto, str(staged))
        os.replace(staged, target)
    LOG.info("quantised %s to int8 (%s%s) in %s", fp32_path.name, ", ".join(QUANTIZED_OPS),
             ", TensorRT Q/DQ" if for_tensorrt else "", target)
    return target
