"""TensorRT engine builder: lazy ``tensorrt`` import, the runtime's EngineSpec, and build_engine.

``tensorrt`` is imported lazily (``import_tensorrt``, 10.0 or newer); the cache key, sidecar
checks and input shapes live in ``export.engine_cache`` and work without it. Every network is
strongly typed (the one mode TensorRT 11 has, opt-in since 10.0), so the precision comes from
the ONNX graph: fp32 the export itself, fp16 its mixed-precision version
(``export.onnx_fp16``), int8 its explicit Q/DQ version calibrated on real frames
(``export.onnx_int8_tensorrt``). No precision builder flag and no implicit calibrator is used;
``test/test_tensorrt_api.py`` checks every ``trt.`` call against the 10.x and 11.x API.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from jointperception.errors import InputError, ModelFileError
from jointperception.export.engine_cache import (
    PRECISIONS,
    EngineSpec,
    atomic_write,
    resolve_input_shape,
    write_engine,
)
from jointperception.export.onnx_cache import file_sha256
from jointperception.export.onnx_fp16 import fp16_onnx
from jointperception.export.onnx_int8_tensorrt import tensorrt_int8_onnx

LOG = logging.getLogger(__name__)
TRT_LOG = logging.getLogger(f"{__name__}.trt")  # TensorRT's own messages

MIN_TRT_MAJOR = 10
# TensorRT severity (INTERNAL_ERROR=0 .. VERBOSE=4) -> logging level; its INFO is build chatter
_LEVELS = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.DEBUG, 4: logging.DEBUG - 5}


class TensorRTUnavailableError(InputError):
    """TensorRT cannot run here: not installed, too old, or no CUDA GPU; the message says which."""


class TensorRTEngineError(ModelFileError):
    """TensorRT cannot parse, build or load an engine for this model; the message says why."""


def cuda_index(device: str) -> int:
    """"cuda" -> 0, "cuda:N" -> N; InputError for anything else (TensorRT needs a CUDA device)."""
    index = device.partition(":")[2] if device.startswith("cuda:") else ("0" if device == "cuda" else "")
    if not index.isdigit():
        raise InputError(f"TensorRT needs a CUDA device (cuda or cuda:N), got {device!r}")
    return int(index)


def unavailable_reason(device: str) -> str | None:
    """Why TensorRT cannot run on ``device`` here, or None when it can (not imported here)."""
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed"
    if device == "cpu":
        return "device is cpu"
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA GPU"
    index = cuda_index(device)
    if index >= torch.cuda.device_count():
        return f"no CUDA device {index} (PyTorch sees {torch.cuda.device_count()})"
    return None


def import_tensorrt(device: str = "cuda") -> ModuleType:
    """The ``tensorrt`` module (>= 10) usable on ``device``; TensorRTUnavailableError otherwise."""
    reason = unavailable_reason(device)
    if reason is not None:
        raise TensorRTUnavailableError(reason)
    try:
        import tensorrt
    except ImportError as exc:  # e.g. the PyPI stub without its libraries
        raise TensorRTUnavailableError(f"tensorrt cannot be imported ({exc})") from exc
    check_version(tensorrt.__version__)
    LOG.info("TensorRT %s (strongly typed builds)", tensorrt.__version__)
    return tensorrt


def check_version(version: str) -> None:
    """TensorRTUnavailableError unless ``version`` ("10.3.0", "11.4.0.12") is MIN_TRT_MAJOR or newer."""
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < MIN_TRT_MAJOR:
        raise TensorRTUnavailableError(
            f"tensorrt {version} found; TensorRT {MIN_TRT_MAJOR}.0 or newer is needed (strongly typed networks)")


def runtime_spec(
    trt: ModuleType, onnx_path: str | Path, precision: str, input_size: tuple[int, int] | None, device: str
) -> EngineSpec:
    """The EngineSpec of ``onnx_path`` built here: this TensorRT, the GPU of ``device``."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    index = cuda_index(device)
    major, minor = torch.cuda.get_device_capability(index)
    return EngineSpec(
        onnx_sha256=file_sha256(Path(onnx_path)), trt_version=trt.__version__,
        gpu_name=torch.cuda.get_device_name(index), compute_capability=(major, minor),
        precision=precision, input_shape=resolve_input_shape(onnx_path, input_size),
    )


@functools.cache
def trt_logger(trt: ModuleType) -> Any:
    """The process-wide TensorRT logger (TensorRT wants one): forwards to ``TRT_LOG`` and keeps
    the latest errors so exceptions can quote them."""

    class ForwardingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = _LEVELS.get(int(severity), logging.DEBUG)
            if level >= logging.ERROR:
                self.errors = [*self.errors[-9:], msg]
            if TRT_LOG.isEnabledFor(level):
                TRT_LOG.log(level, "%s", msg)

        def take_errors(self) -> str:
            """The errors logged since the last call, joined; "see the log" when there are none."""
            errors, self.errors = self.errors, []
            return " | ".join(errors) or "no TensorRT error message; see the log"

    return ForwardingLogger()


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # -1 marks a dynamic dimension
    dtype: str  # TensorRT DataType name, e.g. "FLOAT"


@dataclass(frozen=True)
class BuildResult:
    path: Path
    spec: EngineSpec
    seconds: float
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


def _io_tensors(network: Any) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    def info(tensor: Any) -> TensorInfo:
        return TensorInfo(tensor.name, tuple(int(d) for d in tensor.shape), tensor.dtype.name)

    inputs = tuple(info(network.get_input(i)) for i in range(network.num_inputs))
    return inputs, tuple(info(network.get_output(i)) for i in range(network.num_outputs))


def _load_timing_cache(config: Any, path: Path) -> None:
    blob = path.read_bytes() if path.is_file() else b""
    timing_cache = config.create_timing_cache(blob)
    if timing_cache is None or not config.set_timing_cache(timing_cache, False):
        LOG.warning("timing cache %s is unreadable or from another TensorRT/GPU; starting an empty one", path)
        config.set_timing_cache(config.create_timing_cache(b""), False)
    elif blob:
        LOG.info("loaded timing cache %s (%d bytes)", path, len(blob))


def typed_onnx(
    onnx_path: Path,
    precision: str,
    calibration_pairs: Iterable[tuple[np.ndarray, np.ndarray]] | None,
    int8_onnx: Path | None,
    input_size: tuple[int, int] | None,
) -> Path:
    """The ONNX graph whose own types give ``precision`` (strong typing): ``onnx_path`` for fp32,
    its fp16 version, or its int8 Q/DQ version: quantised on ``calibration_pairs`` into
    ``int8_onnx`` when pairs are given, else the one already at ``int8_onnx``."""
    if precision == "fp16":
        return fp16_onnx(onnx_path)
    if precision != "int8":
        return onnx_path
    if calibration_pairs is not None:
        if int8_onnx is None:
            raise InputError("an int8 build from calibration frames needs a path for its Q/DQ ONNX")
        return tensorrt_int8_onnx(onnx_path, calibration_pairs, int8_onnx, input_size)
    if int8_onnx is None or not int8_onnx.is_file():
        raise InputError("an int8 engine needs calibration frames (a folder, video or bag) or a calibrated Q/DQ ONNX")
    return int8_onnx


def build_engine(
    onnx_path: str | Path,
    out_path: str | Path,
    precision: str = "fp32",
    calibration_pairs: Iterable[tuple[np.ndarray, np.ndarray]] | None = None,
    timing_cache: str | Path | None = None,
    workspace_gb: float = 2.0,
    input_size: tuple[int, int] | None = None,
    int8_onnx: str | Path | None = None,
    device: str = "cuda",
) -> BuildResult:
    """Build a strongly typed TensorRT engine for ``onnx_path`` at ``out_path`` (+ sidecar ``<out>.json``).

    precision (``typed_onnx``): fp32 (TF32 off, for parity), fp16 (the mixed-precision graph) or
    int8 (the Q/DQ graph at ``int8_onnx``, quantised first on ``calibration_pairs``: preprocessed
    (1, 3, H, W) float32 (image1, image2) pairs, when given). The engine's key stays that of
    ``onnx_path``; the sidecar records the graph built. ``input_size`` (W, H): see
    ``resolve_input_shape``. ``timing_cache`` is loaded when present and saved after the build.
    Raises TensorRTUnavailableError, InputError, ModelFileError for a bad ONNX file and
    TensorRTEngineError when the parser or builder fails (every parser error is in the message).
    """
    trt = import_tensorrt(device)
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    spec = runtime_spec(trt, onnx_path, precision, input_size, device)
    start = time.perf_counter()
    built_from = typed_onnx(onnx_path, precision, calibration_pairs, Path(int8_onnx) if int8_onnx else None,
                            input_size)
    logger = trt_logger(trt)
    logger.take_errors()
    with torch.cuda.device(cuda_index(device)):
        builder = trt.Builder(logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        onnx_parser = trt.OnnxParser(network, logger)
        if not onnx_parser.parse_from_file(str(built_from)):
            errors = [onnx_parser.get_error(i) for i in range(onnx_parser.num_errors)]
            lines = [f"node {e.node()}: {e.code().name}: {e.desc()}" for e in errors]
            for line in lines:
                LOG.error("TensorRT ONNX parser: %s", line)
            raise TensorRTEngineError(f"{built_from}: TensorRT's ONNX parser rejected the model: {'; '.join(lines)}")
        inputs, outputs = _io_tensors(network)
        for kind, tensors in (("input", inputs), ("output", outputs)):
            for tensor in tensors:
                LOG.info("TensorRT network %s %s: shape %s, dtype %s", kind, tensor.name, tensor.shape, tensor.dtype)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        config.clear_flag(trt.BuilderFlag.TF32)  # float32 layers stay float32, as the graph says
        if any(-1 in tensor.shape for tensor in inputs):  # dynamic ONNX: one fixed shape per engine
            profile = builder.create_optimization_profile()
            for tensor in inputs:
                profile.set_shape(tensor.name, spec.input_shape, spec.input_shape, spec.input_shape)
            config.add_optimization_profile(profile)
        if timing_cache is not None:
            _load_timing_cache(config, Path(timing_cache))
        LOG.info("building a strongly typed TensorRT engine from %s (%s)", built_from, spec.describe())
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise TensorRTEngineError(
                f"{built_from}: TensorRT could not build a {precision} engine: {logger.take_errors()}")
        if timing_cache is not None:
            serialized_cache = config.get_timing_cache()
            atomic_write(Path(timing_cache), bytes(serialized_cache.serialize()))
    seconds = time.perf_counter() - start
    details = {
        "onnx_path": str(onnx_path), "built_from": str(built_from), "built_from_sha256": file_sha256(built_from),
        "strongly_typed": True, "build_seconds": round(seconds, 3),
        "inputs": [dataclasses.asdict(t) for t in inputs], "outputs": [dataclasses.asdict(t) for t in outputs],
    }
    write_engine(out_path, bytes(plan), spec, details)
    LOG.info("built %s in %.1f s: %s", spec.describe(), seconds, out_path)
    return BuildResult(path=out_path, spec=spec, seconds=seconds, inputs=inputs, outputs=outputs)
