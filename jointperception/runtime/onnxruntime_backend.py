"""ONNX Runtime backend: the exported PerceptionModel on the CPU or CUDA execution provider.

``onnxruntime`` is imported lazily, inside these functions, so importing this module costs
nothing and a missing package is reported only to whoever asks for this backend.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from jointperception.errors import InputError, ModelFileError
from jointperception.export.onnx import load_onnx_proto, onnx_model_info
from jointperception.export.onnx_cache import cached_onnx
from jointperception.models.perception import (
    INPUT_NAMES,
    JOINT_OUTPUT_NAMES,
    LAYER_INPUT_NAME,
    LAYER_OUTPUT_NAME,
)
from jointperception.runtime.onnx_cpu_layout import unblock_thin_resizes
from jointperception.export.onnx_int8 import quantized_onnx
from jointperception.runtime.onnx_io_binding import run_on_tensors
from jointperception.runtime.onnx_layer_split import split_layer_head

DEFAULT_THREADS = 2  # intra-op threads; set explicitly, never "all cores"
PRECISIONS = ("fp32", "int8")


def _cuda_device_id(device: str) -> int | None:
    """"cpu" -> None, "cuda" -> 0, "cuda:N" -> N; anything else raises InputError."""
    if device == "cpu":
        return None
    index = device.partition(":")[2] if device.startswith("cuda:") else ("0" if device == "cuda" else "")
    if not index.isdigit():
        raise InputError(f"unknown device {device!r}; use cpu or cuda[:N]")
    return int(index)


def unavailable_reason(device: str) -> str | None:
    """Why ONNX Runtime cannot run on ``device`` ("cpu" / "cuda[:N]"), or None when it can."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    if _cuda_device_id(device) is None:
        return None
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return f"onnxruntime has no CUDAExecutionProvider (available: {', '.join(providers)}); install onnxruntime-gpu"
    return None


def check_available(device: str, threads: int) -> None:
    """Raise InputError when ONNX Runtime cannot run on ``device`` or ``threads`` < 1."""
    reason = unavailable_reason(device)
    if reason is not None:
        raise InputError(f"backend onnxruntime on {device}: {reason}")
    if threads < 1:
        raise InputError(f"onnxruntime threads must be >= 1, got {threads}")


def open_session(path: Path, device: str, threads: int, allow_spinning: bool = True,
                 profile_prefix: Path | None = None, proto: onnx.ModelProto | None = None) -> Any:
    """InferenceSession over ``path`` (or over ``proto``, a graph taken from it, when given; ``path``
    then only names it in errors) with ``threads`` intra-op threads, 1 inter-op thread,
    sequential execution and every graph optimisation. ``allow_spinning`` False makes idle
    worker threads sleep at once instead of busy-waiting (better on a CPU shared with others). On the CPU the graph is first given
    ``unblock_thin_resizes`` (1-2 channel upsampling outside the NCHWc layout; same maths).
    ``profile_prefix``: record ONNX Runtime's per-kernel profile (``session.end_profiling()``
    writes it to a JSON file whose name starts with this prefix).

    Raises InputError when the device's execution provider is unavailable, ModelFileError when
    ONNX Runtime rejects the file.
    """
    check_available(device, threads)
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    device_id = _cuda_device_id(device)
    providers: list[Any] = ["CPUExecutionProvider"]
    if device_id is not None:
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
    if device_id is None:
        proto = unblock_thin_resizes(proto if proto is not None else load_onnx_proto(path))[0]
    model: str | bytes = str(path) if proto is None else proto.SerializeToString()
    rejected = (ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf,
                ort_errors.NoSuchFile, ort_errors.NotImplemented, ort_errors.RuntimeException)
    try:
        session = onnxruntime.InferenceSession(model, sess_options=options, providers=providers)
    except rejected as exc:
        raise ModelFileError(f"{path}: ONNX Runtime cannot load the model ({exc})") from None
    if device_id is not None and "CUDAExecutionProvider" not in session.get_providers():
        # ORT falls back to the CPU silently when the CUDA provider fails to start (e.g. no cuDNN)
        raise InputError(f"backend onnxruntime on {device}: the CUDA execution provider failed to start; see the log")
    return session


class OnnxRuntimeBackend:
    """ONNX Runtime backend on the CPU execution provider, or CUDA when asked for and present.

    ``model`` is an exported ``.onnx`` file, or a model file (.safetensors / checkpoint) that is
    exported once into ``cache_dir`` (static at ``input_size`` (W, H), or dynamic when None).
    ``precision`` "int8" (CPU only) runs ``onnx_int8.quantized_onnx`` of a static export;
    ``allow_spinning``: see ``open_session``; off by default because the node shares the CPU with
    the camera driver, DDS and the rest of the stack (measured in benchmarks/node_benchmark.py:
    17-21 fps spinning vs 22 fps not, 640x480 at 30 fps on 2 cores); ``bench`` sets it per run.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model: str | Path,
        device: str = "cpu",
        threads: int = DEFAULT_THREADS,
        input_size: tuple[int, int] | None = None,
        cache_dir: str | Path | None = None,
        precision: str = "fp32",
        allow_spinning: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise InputError(f"onnxruntime precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        if precision == "int8" and device != "cpu":
            raise InputError("onnxruntime int8 runs on the CPU provider only; use tensorrt int8 on a GPU")
        check_available(device, threads)  # before any (slow) export
        path = Path(model)
        onnx_path = path if path.suffix == ".onnx" else cached_onnx(path, input_size, cache_dir=cache_dir)
        proto = load_onnx_proto(onnx_path)
        info = onnx_model_info(proto, onnx_path)
        if input_size is not None and info.input_size not in (None, input_size):
            raise ModelFileError(f"{onnx_path}: exported for input {info.input_size} (W, H), not {input_size}")
        if precision == "int8":
            onnx_path = quantized_onnx(onnx_path)
            proto = load_onnx_proto(onnx_path)
        self.precision = precision
        self.device = device
        self.threads = threads
        self.input_size = info.input_size
        self.onnx_path = onnx_path
        self.metadata = info.metadata
        try:
            joint, head = split_layer_head(proto)
        except ValueError as exc:
            raise ModelFileError(f"{onnx_path}: not a fused perception graph ({exc})") from None
        self._session = open_session(onnx_path, device, threads, allow_spinning, proto=joint)
        self._layer_session = open_session(onnx_path, device, threads, allow_spinning, proto=head)

    def infer(self, image1: np.ndarray, image2: np.ndarray, layers: bool = True) -> dict[str, np.ndarray]:
        """See ``runtime.backends.Backend.infer``; the joint graph, then (``layers``) the motion-layer
        head on its flow (``runtime.onnx_layer_split``). ORT allocates fresh output arrays per run."""
        images = (image1, image2)
        feeds = {name: np.ascontiguousarray(image, dtype=np.float32) for name, image in zip(INPUT_NAMES, images)}
        outputs = dict(zip(JOINT_OUTPUT_NAMES, self._session.run(list(JOINT_OUTPUT_NAMES), feeds)))
        if layers:
            outputs[LAYER_OUTPUT_NAME] = self.motion_layers(outputs[LAYER_INPUT_NAME])
        return outputs

    def motion_layers(self, flow: np.ndarray) -> np.ndarray:
        """See ``runtime.backends.Backend.motion_layers``."""
        feeds = {LAYER_INPUT_NAME: np.ascontiguousarray(flow, dtype=np.float32)}
        return self._layer_session.run([LAYER_OUTPUT_NAME], feeds)[0]

    def infer_tensors(self, image1: torch.Tensor, image2: torch.Tensor, layers: bool = True) -> dict[str, torch.Tensor]:
        """``infer`` on (1, 3, H, W) float32 tensors on this backend's device; outputs are fresh tensors
        there (CUDA: I/O binding, no host copy; ``runtime.onnx_io_binding``)."""
        outputs = run_on_tensors(self._session, dict(zip(INPUT_NAMES, (image1, image2))), JOINT_OUTPUT_NAMES)
        if layers:
            outputs[LAYER_OUTPUT_NAME] = self.motion_layers_tensor(outputs[LAYER_INPUT_NAME])
        return outputs

    def motion_layers_tensor(self, flow: torch.Tensor) -> torch.Tensor:
        """``motion_layers`` on a (1, 2, h, w) float32 tensor on this backend's device."""
        return run_on_tensors(self._layer_session, {LAYER_INPUT_NAME: flow}, (LAYER_OUTPUT_NAME,))[LAYER_OUTPUT_NAME]
