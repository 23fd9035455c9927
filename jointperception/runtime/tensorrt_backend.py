"""TensorRT backend: a serialized engine run with the TensorRT 10 tensor API on a torch stream.

The model is an engine file (``.engine`` / ``.plan``, checked against its sidecar and never
rebuilt: a mismatch is a clear error), an ``.onnx`` file, or a model file exported to ONNX
first; the last two go through ``EngineCache``, which rebuilds an engine that is missing,
corrupt, or was built by another TensorRT version or for another GPU. ``tensorrt`` is imported
only when a backend is created.
"""
from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from jointperception.errors import InputError
from jointperception.export.engine_cache import (
    RUNTIME_FIELDS,
    EngineCache,
    default_engine_dir,
    engine_problem,
    sidecar_path,
)
from jointperception.export.onnx_cache import cached_onnx
from jointperception.export.tensorrt import (
    TensorRTEngineError,
    build_engine,
    cuda_index,
    import_tensorrt,
    runtime_spec,
    trt_logger,
)
from jointperception.models.perception import (
    INPUT_NAMES,
    JOINT_OUTPUT_NAMES,
    OUTPUT_NAMES,
    layer_probabilities,
    motion_stride_for,
)
from jointperception.models.weights import load_motion_model

LOG = logging.getLogger(__name__)

ENGINE_SUFFIXES = frozenset({".engine", ".plan", ".trt"})
# TensorRT DataType name -> torch dtype of the buffer bound to that tensor
TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
                "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}


def _deserialize(trt: ModuleType, runtime: Any, path: Path) -> Any:
    """ICudaEngine, or None when TensorRT refuses the plan (corrupt, other version or GPU)."""
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        LOG.warning("TensorRT %s cannot deserialize %s: %s", trt.__version__, path, trt_logger(trt).take_errors())
    return engine


class TensorRTBackend:
    """Runs an engine on ``device`` (cuda[:N]); ``input_size`` (W, H) is what it was built for.

    infer() is not thread-safe (one execution context); each call returns fresh arrays.
    """

    name = "tensorrt"

    def __init__(
        self,
        model: str | Path,
        device: str = "cuda",
        precision: str = "fp32",
        input_size: tuple[int, int] | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        path = Path(model)
        if input_size is None and path.suffix not in ENGINE_SUFFIXES | {".onnx"}:
            raise InputError(f"{path}: TensorRT builds one engine per input size; give input_size (W, H)")
        trt = import_tensorrt(device)
        self.device = device
        self.precision = precision
        self._index = cuda_index(device)
        self._torch_device = torch.device("cuda", self._index)
        with torch.cuda.device(self._index):
            self._runtime = trt.Runtime(trt_logger(trt))
            if path.suffix in ENGINE_SUFFIXES:
                self.engine_path, self._engine = path, self._load_engine_file(trt, path, input_size)
            else:
                onnx_path = path if path.suffix == ".onnx" else cached_onnx(path, input_size, cache_dir=cache_dir)
                cache = EngineCache(cache_dir if cache_dir is not None else default_engine_dir())
                self.engine_path, self._engine = self._cached_engine(trt, onnx_path, precision, input_size, cache)
            self._check_io(trt)
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise TensorRTEngineError(f"{self.engine_path}: cannot create an execution context: "
                                          f"{trt_logger(trt).take_errors()}")
            self._stream = torch.cuda.Stream(device=self._torch_device)
            for name in INPUT_NAMES:
                if not self._context.set_input_shape(name, self._input_shape):
                    raise TensorRTEngineError(f"{self.engine_path}: TensorRT rejects input shape {self._input_shape}")
            self._output_shapes = {name: tuple(self._context.get_tensor_shape(name)) for name in OUTPUT_NAMES}
        self.input_size = (self._input_shape[3], self._input_shape[2])
        self._trt = trt
        self._motion_net: torch.nn.Module | None = None  # loaded on the first motion_layers call

    def _load_engine_file(self, trt: ModuleType, path: Path, input_size: tuple[int, int] | None) -> Any:
        """An explicit engine file: its sidecar must match this TensorRT and GPU (and the input
        size when given); it is not rebuilt here, so any problem is a TensorRTEngineError."""
        if not path.is_file():
            raise TensorRTEngineError(f"{path}: engine file not found")
        major, minor = torch.cuda.get_device_capability(self._index)
        here = {"trt_version": trt.__version__, "gpu_name": torch.cuda.get_device_name(self._index),
                "compute_capability": [major, minor]}
        expected = {name: here[name] for name in RUNTIME_FIELDS}
        if input_size is not None:
            expected["input_shape"] = [1, 3, input_size[1], input_size[0]]
        hint = "rebuild it here with `jointperception build-engine`"
        if not sidecar_path(path).is_file():
            LOG.warning("%s: no sidecar; cannot check which TensorRT and GPU built it", path)
        elif (problem := engine_problem(path, expected)) is not None:
            raise TensorRTEngineError(f"{path}: {problem}; {hint}")
        engine = _deserialize(trt, self._runtime, path)
        if engine is None:
            raise TensorRTEngineError(f"{path}: TensorRT {trt.__version__} cannot load this engine (corrupt, or "
                                      f"built by another TensorRT version or for another GPU); {hint}")
        return engine

    def _cached_engine(
        self, trt: ModuleType, onnx_path: Path, precision: str, input_size: tuple[int, int] | None, cache: EngineCache
    ) -> tuple[Path, Any]:
        """(path, engine) from the cache, built first when missing or unusable; a cached plan
        that TensorRT still refuses is rebuilt once."""
        spec = runtime_spec(trt, onnx_path, precision, input_size, self.device)
        int8_onnx = cache.int8_onnx_path(spec)

        def build() -> Path:
            if precision == "int8" and not int8_onnx.is_file():
                raise InputError(f"no int8 engine or calibrated Q/DQ ONNX for {onnx_path} in {cache.root}; build one "
                                 "with `jointperception build-engine --precision int8 --calibration FRAMES`")
            return build_engine(onnx_path, cache.engine_path(spec), precision, input_size=input_size,
                                timing_cache=cache.timing_cache_path(spec), int8_onnx=int8_onnx,
                                device=self.device).path

        path = cache.lookup(spec) or build()
        engine = _deserialize(trt, self._runtime, path)
        if engine is None:
            LOG.warning("rebuilding the TensorRT engine %s", path)
            engine = _deserialize(trt, self._runtime, build())
        if engine is None:
            raise TensorRTEngineError(f"{path}: TensorRT {trt.__version__} cannot load the engine it just built")
        return path, engine

    def _check_io(self, trt: ModuleType) -> None:
        """The engine's I/O must be our fused graph's, with one fixed input shape."""
        engine = self._engine
        names = {engine.get_tensor_name(i): engine.get_tensor_mode(engine.get_tensor_name(i))
                 for i in range(engine.num_io_tensors)}
        inputs = tuple(n for n, mode in names.items() if mode == trt.TensorIOMode.INPUT)
        outputs = tuple(n for n, mode in names.items() if mode == trt.TensorIOMode.OUTPUT)
        if set(inputs) != set(INPUT_NAMES) or not set(OUTPUT_NAMES) <= set(outputs):
            raise TensorRTEngineError(f"{self.engine_path}: engine has inputs {inputs} and outputs {outputs}, "
                                      f"expected {INPUT_NAMES} -> {OUTPUT_NAMES}")
        self._dtypes = {name: engine.get_tensor_dtype(name).name for name in INPUT_NAMES + OUTPUT_NAMES}
        unknown = {name: dtype for name, dtype in self._dtypes.items() if dtype not in TORCH_DTYPES}
        if unknown:
            raise TensorRTEngineError(f"{self.engine_path}: unsupported tensor types {unknown}")
        shape = tuple(engine.get_tensor_shape(INPUT_NAMES[0]))
        if -1 in shape:  # dynamic input: our builder pins min = opt = max
            low, _opt, high = (tuple(s) for s in engine.get_tensor_profile_shape(INPUT_NAMES[0], 0))
            if low != high:
                raise TensorRTEngineError(f"{self.engine_path}: engine accepts {low}..{high}; build one per input size")
            shape = low
        self._input_shape = tuple(int(v) for v in shape)

    def infer(self, image1: np.ndarray, image2: np.ndarray, layers: bool = True) -> dict[str, np.ndarray]:
        """See ``runtime.backends.Backend.infer``; inputs must be (1, 3, H, W) at ``input_size``.

        The engine always runs the whole fused graph (``infer_tensors``); without ``layers`` its
        "layer_prob" is dropped. Outputs are copied to fresh numpy arrays.
        """
        for name, image in zip(INPUT_NAMES, (image1, image2)):
            if tuple(np.shape(image)) != self._input_shape:
                raise InputError(f"{name}: shape {tuple(np.shape(image))}, the engine takes {self._input_shape}")
        inputs = (torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(self._torch_device)
                  for image in (image1, image2))
        outputs = self.infer_tensors(*inputs, layers=layers)
        return {name: value.float().cpu().numpy() for name, value in outputs.items()}

    def infer_tensors(self, image1: torch.Tensor, image2: torch.Tensor, layers: bool = True) -> dict[str, torch.Tensor]:
        """The engine on (1, 3, H, W) float32 tensors on this backend's GPU -> new output tensors
        there (the engine's dtypes), bound by name and filled by execute_async_v3 on this backend's
        own stream, which waits for the caller's stream first; the caller's stream waits for it after."""
        context = self._context
        caller = torch.cuda.current_stream(self._torch_device)
        with torch.cuda.device(self._index), torch.cuda.stream(self._stream):
            self._stream.wait_stream(caller)
            tensors = {name: image.to(self._torch_device, TORCH_DTYPES[self._dtypes[name]]).contiguous()
                       for name, image in zip(INPUT_NAMES, (image1, image2))}
            for name in INPUT_NAMES:
                if not context.set_input_shape(name, self._input_shape):
                    raise TensorRTEngineError(f"{self.engine_path}: TensorRT rejects input shape {self._input_shape}")
            tensors.update({name: torch.empty(self._output_shapes[name], dtype=TORCH_DTYPES[self._dtypes[name]],
                                              device=self._torch_device) for name in OUTPUT_NAMES})
            for name, tensor in tensors.items():
                if not context.set_tensor_address(name, tensor.data_ptr()):
                    raise TensorRTEngineError(f"{self.engine_path}: cannot bind tensor {name}")
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution failed: {trt_logger(self._trt).take_errors()}")
        caller.wait_stream(self._stream)
        for tensor in tensors.values():
            tensor.record_stream(caller)
        return {name: tensors[name] for name in (OUTPUT_NAMES if layers else JOINT_OUTPUT_NAMES)}

    def motion_layers(self, flow: np.ndarray) -> np.ndarray:
        """See ``runtime.backends.Backend.motion_layers``: ``motion_layers_tensor`` of the flow, copied back."""
        field = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).to(self._torch_device)
        return self.motion_layers_tensor(field).float().cpu().numpy()

    def motion_layers_tensor(self, flow: torch.Tensor) -> torch.Tensor:
        """The motion-layer head in eager torch on this backend's GPU, with the bundled motion net (the
        one every export and engine fuses), pooled as the engine's input width says (``motion_stride_for``):
        flow (1, 2, h, w) float32 on the GPU -> (1, K, h, w) there."""
        if self._motion_net is None:
            with torch.cuda.device(self._index):
                self._motion_net = load_motion_model(device=self._torch_device)[0]
        with torch.cuda.device(self._index), torch.inference_mode():
            return layer_probabilities(self._motion_net, flow.to(self._torch_device), motion_stride_for(self.input_size[0]))
